//! Probes of the host: whether KVM runs guests here (a probe boot, its verdict cached), and
//! the TSC frequency a microvm guest under TCG is told (read with `unsafe` CPU instructions).

use super::*;

/// Whether guests run under KVM here. /dev/kvm answering its API is not enough: nested or
/// restricted hosts (this project's CI machines among them) run a trivial vCPU but hang a
/// real guest. So QEMU boots the pinned OVMF under KVM with no disk, which must print to its
/// serial console within 10 s (it does in about a second under TCG, faster under KVM). The
/// verdict is kept in `out/kvm-probe.json` for this host boot and this QEMU.
pub(super) fn kvm_usable(project: &Project, tools: &HostTools, mut qemu: Command) -> Result<bool> {
    if !kvm_device_answers() {
        return Ok(false);
    }
    #[derive(serde::Serialize, serde::Deserialize, PartialEq)]
    struct Verdict {
        boot_id: String,
        qemu: String,
        usable: bool,
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("reading /proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string();
    // The probe's own form is part of the key: a verdict of an earlier probe is not reused.
    let shown = format!("{} (OVMF as pflash)", reprovm_fs::util::display_command(&qemu));
    let cache = project.out.join("kvm-probe.json");
    if let Ok(text) = std::fs::read(&cache) {
        if let Ok(v) = serde_json::from_slice::<Verdict>(&text) {
            if v.boot_id == boot_id && v.qemu == shown {
                return Ok(v.usable);
            }
        }
    }
    // OVMF as a boot uses it (qemu.rs): its code read-only and a copy of its variable store
    // as flash. (`-bios` takes a single image; the 4 MiB code image alone is refused there,
    // and the probe would blame KVM for QEMU's refusal.)
    let firmware = tools.ovmf()?;
    let scratch = tempfile::tempdir()?;
    let vars = scratch.path().join("UEFI_VARS.fd");
    std::fs::copy(&firmware.vars, &vars)
        .with_context(|| format!("copying {}", firmware.vars.display()))?;
    qemu.args(["-accel", "kvm", "-machine", "q35", "-m", "128", "-nodefaults", "-display"])
        .args(["none", "-no-reboot", "-serial", "stdio", "-drive"])
        .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", firmware.code.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = qemu
        .spawn()
        .with_context(|| format!("starting `{}`", reprovm_fs::util::display_command(&qemu)))?;
    let mut stdout = child.stdout.take().context("probe stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = tx.send(stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false));
    });
    let usable = rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    reprovm_fs::progress::say(&format!(
        "KVM: {} (OVMF under KVM {} in {:.1}s; verdict kept in {})",
        if usable { "usable" } else { "/dev/kvm is there, but guests do not run under it: TCG" },
        if usable { "printed" } else { "printed nothing" },
        started.elapsed().as_secs_f64(),
        cache.display()
    ));
    let verdict = Verdict { boot_id, qemu: shown, usable };
    reprovm_fs::util::write_atomic(&cache, &serde_json::to_vec_pretty(&verdict)?)?;
    Ok(usable)
}

/// Whether /dev/kvm opens read-write and speaks the stable KVM API (version 12).
pub(super) fn kvm_device_answers() -> bool {
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") else {
        return false;
    };
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a number.
    let version = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), KVM_GET_API_VERSION) };
    version == 12
}

/// The kernel parameter that tells a TCG guest on QEMU's microvm its TSC frequency.
///
/// microvm has no HPET and no ACPI PM timer, so the kernel can calibrate its TSC only against
/// the PIT. Under TCG that calibration is timing-sensitive and misses (measured: 3 boots in 10 on
/// a 2-core host); the kernel then marks the TSC unstable, no timer interrupt ever reaches it, and
/// it hangs before userspace. Firecracker gives its guests kvm-clock instead. Under TCG the
/// guest's RDTSC returns the host's TSC (QEMU's `cpu_get_host_ticks`), so its frequency is
/// measured here, against the monotonic clock, and handed over as `tsc_early_khz=`, which makes
/// the kernel skip calibration. Empty (with a warning) where it cannot be measured.
pub(super) fn tcg_tsc_parameter() -> String {
    match host_tsc_khz() {
        Some(khz) => format!("tsc_early_khz={khz}"),
        None => {
            reprovm_fs::progress::say(
                "warning: the host's TSC frequency is unknown (not x86_64, or no constant_tsc); the microvm guest calibrates its own and may hang under TCG");
            String::new()
        }
    }
}

/// The host's TSC frequency in kHz, measured over 100 ms; None unless the CPU says its TSC runs
/// at a constant rate.
#[cfg(target_arch = "x86_64")]
pub(super) fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let constant = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| line.split_whitespace().any(|flag| flag == "constant_tsc"));
    if !constant {
        return None;
    }
    let (started, first) = clock_and_tsc()?;
    std::thread::sleep(Duration::from_millis(100));
    let (ended, last) = clock_and_tsc()?;
    let nanos = ended.duration_since(started).as_nanos();
    let khz = u128::from(last.checked_sub(first)?) * 1_000_000 / nanos.max(1);
    let khz = u64::try_from(khz).ok()?;
    (100_000..=20_000_000).contains(&khz).then_some(khz)
}

/// The monotonic clock and the TSC read at (nearly) one moment: the clock read between two TSC
/// reads, paired with their midpoint, retried when the process was preempted in between (the
/// two TSC reads more than 100,000 ticks apart, a few tens of microseconds), so a busy host
/// does not skew the measurement.
#[cfg(target_arch = "x86_64")]
pub(super) fn clock_and_tsc() -> Option<(Instant, u64)> {
    for _ in 0..100 {
        // SAFETY: RDTSC reads a counter; every x86_64 CPU has it, and it touches no memory.
        let before = unsafe { std::arch::x86_64::_rdtsc() };
        let now = Instant::now();
        // SAFETY: as above.
        let after = unsafe { std::arch::x86_64::_rdtsc() };
        let width = after.checked_sub(before)?;
        if width < 100_000 {
            return Some((now, before + width / 2));
        }
    }
    None
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn host_tsc_khz() -> Option<u64> {
    None
}
