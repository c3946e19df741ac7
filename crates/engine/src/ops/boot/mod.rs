//! Booting images under QEMU: `cargo xtask run` (interactive, like xcluster's `xc start` for
//! one VM) and `cargo xtask boot-test` (automated: boot, log in over SSH, check, power off).

use crate::model::arch::Arch;
use crate::model::project::Project;
use crate::ops::context::RunContext;
use crate::steps::host_tools::HostTools;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The virtual machine a guest boots in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// A PC (q35) with virtio-pci devices, booting a bzImage: the xcluster way.
    Pc,
    /// QEMU's microvm: Firecracker's machine model (virtio-mmio devices described by ACPI, no
    /// PCI, no firmware), booting the uncompressed ELF vmlinux through its PVH entry point.
    Microvm,
}

impl Machine {
    /// Every machine with its name on the command line and what it is.
    pub const VALUES: [(Machine, &'static str, &'static str); 2] = [
        (Machine::Pc, "pc", "a PC (q35) with virtio-pci devices, booting a bzImage"),
        (
            Machine::Microvm,
            "microvm",
            "QEMU's microvm, Firecracker's machine model: virtio-mmio, the ELF vmlinux through PVH",
        ),
    ];
}

/// The devices the guest's disk and network card are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Devices {
    /// virtio-blk and virtio-net: QEMU's, Firecracker's and the clusters' (the default).
    Virtio,
    /// The disk on the machine's AHCI SATA controller and an Intel E1000 NIC, as VirtualBox
    /// and VMware attach them (the OVA declares both): the kernel's drivers for the classic
    /// hypervisors, tested under QEMU.
    Classic,
}

impl Devices {
    /// Every choice with its name on the command line and what it is.
    pub const VALUES: [(Devices, &'static str, &'static str); 2] = [
        (Devices::Virtio, "virtio", "virtio-blk and virtio-net (QEMU, Firecracker, clusters)"),
        (
            Devices::Classic,
            "classic",
            "the disk on AHCI (SATA) and an E1000 NIC, as VirtualBox and VMware attach them (the UEFI disk's targets)",
        ),
    ];
}

/// What to boot: the medium, and with it how the guest starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// out/bzImage with out/hd.img as root (`-kernel`; `build hd-image`).
    Image,
    /// out/bzImage with out/initramfs.cpio.gz and no disk: a live system (`build initramfs`).
    Initramfs,
    /// out/efi.img through OVMF (UEFI; AAVMF for aarch64, where every UEFI target boots
    /// through AAVMF on virt), no `-kernel` (`build efi-image`).
    EfiImage,
    /// out/efi.vhd, the fixed VHD form, through QEMU's vpc driver and OVMF.
    EfiVhd,
    /// out/efi.vmdk, the stream-optimised VMDK form, through QEMU's vmdk driver and OVMF.
    EfiVmdk,
    /// out/efi.vhdx through QEMU's vhdx driver and OVMF.
    EfiVhdx,
    /// out/reprovm.iso written to a disk (a USB stick): GPT and the ESP for UEFI, the
    /// isohybrid MBR for a legacy BIOS.
    IsoDisk,
    /// out/reprovm.iso as a CD-ROM through OVMF (`build iso`).
    Iso,
}

impl Target {
    /// Every medium with its name on the command line and what it is: the name of the recipe
    /// that makes it, or of the recipe's form (`efi-vhd`, `iso-disk`).
    pub const VALUES: [(Target, &'static str, &'static str); 8] = [
        (
            Target::Image,
            "hd-image",
            "out/bzImage (aarch64: out/aarch64/Image) with out/hd.img as root (`build hd-image`)",
        ),
        (Target::Initramfs, "initramfs", "out/bzImage with out/initramfs.cpio.gz, no disk"),
        (
            Target::EfiImage,
            "efi-image",
            "out/efi.img through UEFI firmware (OVMF; AAVMF on aarch64), no -kernel",
        ),
        (Target::EfiVhd, "efi-vhd", "out/efi.vhd through QEMU's vpc driver and OVMF/AAVMF"),
        (Target::EfiVmdk, "efi-vmdk", "out/efi.vmdk through QEMU's vmdk driver and OVMF/AAVMF"),
        (Target::EfiVhdx, "efi-vhdx", "out/efi.vhdx through QEMU's vhdx driver and OVMF/AAVMF"),
        (Target::Iso, "iso", "out/reprovm.iso as a CD-ROM through OVMF/AAVMF"),
        (Target::IsoDisk, "iso-disk", "out/reprovm.iso as a disk (a USB stick)"),
    ];

    /// The medium's name on the command line.
    pub fn name(self) -> &'static str {
        name_in(&Target::VALUES, self)
    }
}

/// A value's name in its `VALUES` list: what the command line calls it, and so what every
/// message calls it.
fn name_in<T: PartialEq + Copy>(values: &[(T, &'static str, &'static str)], v: T) -> &'static str {
    values.iter().find(|(x, _, _)| *x == v).map(|(_, n, _)| *n).unwrap_or("?")
}

impl Machine {
    /// The machine's name on the command line.
    pub fn name(self) -> &'static str {
        name_in(&Machine::VALUES, self)
    }
}

impl Accel {
    /// The accelerator's name on the command line.
    pub fn name(self) -> &'static str {
        name_in(&Accel::VALUES, self)
    }
}

/// How to boot (the options of `run` and `boot-test`).
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The medium to boot.
    pub target: Target,
    /// The machine to boot in (microvm: `Target::Image` only).
    pub machine: Machine,
    /// Kernel (default: out/bzImage).
    pub kernel: Option<PathBuf>,
    /// Disk image (default: out/hd.img, or the target's).
    pub image: Option<PathBuf>,
    /// Extra kernel command line (not for the UEFI targets, whose command line is built in).
    pub append: String,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port.
    pub ssh_port: u16,
    /// Public key file installed as root's authorized_keys (through QEMU fw_cfg).
    pub ssh_key: Option<PathBuf>,
    /// Write to the image (default: changes are discarded).
    pub persist: bool,
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory: u32,
    /// Present the disk as this many bytes: a qcow2 overlay of that size in the boot's scratch
    /// directory, or (with `persist`) the raw image itself grown sparsely.
    pub disk_size: Option<u64>,
    /// A QEMU system emulator of the host instead of the pinned one.
    pub qemu: Option<PathBuf>,
    /// The firmware a medium with its own boot loader (the ISO, the UEFI disk) boots through.
    pub firmware: Firmware,
    /// The disk's and network card's devices.
    pub devices: Devices,
}

impl Default for BootOptions {
    fn default() -> BootOptions {
        BootOptions {
            target: Target::Image,
            machine: Machine::Pc,
            kernel: None,
            image: None,
            append: String::new(),
            ssh_port: 10022,
            ssh_key: None,
            persist: false,
            accel: Accel::Auto,
            memory: 256,
            disk_size: None,
            qemu: None,
            firmware: Firmware::Uefi,
            devices: Devices::Virtio,
        }
    }
}

/// The firmware of a boot: `--firmware uefi|bios|FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// The pinned UEFI firmware (OVMF; AAVMF on aarch64), its code read-only and a fresh copy
    /// of its variable store as flash.
    Uefi,
    /// A legacy BIOS, QEMU's own SeaBIOS (x86_64 only): the ISO's isolinux or the UEFI disk's
    /// SYSLINUX on the ESP.
    Bios,
    /// A UEFI firmware image of the user's, given to QEMU as `-bios FILE`.
    File(PathBuf),
}

impl Firmware {
    /// The command line's names of the two built-in choices (anything else is a file).
    pub const NAMES: [(&'static str, &'static str); 2] = [
        ("uefi", "the pinned UEFI firmware (OVMF; AAVMF on aarch64)"),
        ("bios", "a legacy BIOS, QEMU's own SeaBIOS (x86_64)"),
    ];

    /// `uefi`, `bios`, or a file's path (`./bios` for a file named so).
    pub fn parse(value: &str) -> Firmware {
        match value {
            "uefi" => Firmware::Uefi,
            "bios" => Firmware::Bios,
            file => Firmware::File(PathBuf::from(file)),
        }
    }
}

/// Which accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when /dev/kvm can be opened and answers, else TCG.
    Auto,
    /// Hardware virtualisation (fails where /dev/kvm is unusable).
    Kvm,
    /// QEMU's own code translation: slower, everywhere.
    Tcg,
}

impl Accel {
    /// Every accelerator with its name on the command line and what it is.
    pub const VALUES: [(Accel, &'static str, &'static str); 3] = [
        (Accel::Auto, "auto", "KVM where a guest runs under it here, else TCG"),
        (Accel::Kvm, "kvm", "hardware virtualisation (fails where /dev/kvm is unusable)"),
        (Accel::Tcg, "tcg", "QEMU's own code translation: slower, everywhere"),
    ];
}

impl BootOptions {
    /// The accelerator this run uses: `auto` asks [`kvm_usable`].
    pub(crate) fn accelerator(&self, project: &Project, tools: &HostTools) -> Result<Accel> {
        if !project.arch.is_default() {
            // The build machine is x86_64: another architecture's guest runs under TCG only.
            anyhow::ensure!(
                self.accel != Accel::Kvm,
                "--accel kvm: an {} guest cannot run under KVM on this x86_64 host; use tcg",
                project.arch
            );
            return Ok(Accel::Tcg);
        }
        Ok(match self.accel {
            Accel::Auto => {
                let qemu = match &self.qemu {
                    Some(q) => Command::new(q),
                    None => tools.command(qemu_program(project.arch))?,
                };
                if kvm_usable(project, tools, qemu)? {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
            chosen => chosen,
        })
    }
}

mod disk;
mod probe;
mod qemu;

use disk::*;
use probe::*;
use qemu::*;
pub(crate) use qemu::{check_kernel, given, need, qemu_program};

/// `run`: boot with the serial console on this terminal.
pub fn run_vm(ctx: &RunContext, a: &BootOptions) -> Result<()> {
    check_options(ctx.project.arch, a)?;
    medium(&ctx.project, a)?;
    let (project, tools) = (&ctx.project, &HostTools::get(&ctx.project, &ctx.fetcher)?);
    let scratch = tempfile::tempdir()?;
    let mut c = qemu_command(project, tools, a, scratch.path())?;
    c.args(["-nographic", "-serial", "mon:stdio"]);
    reprovm_fs::progress::say(&format!(
        "booting (serial console here; Ctrl-A X quits; ssh -p {} root@127.0.0.1)",
        a.ssh_port
    ));
    reprovm_fs::util::run_checked(&mut c)
}

/// What a passed `boot-test` saw (`boot-test --json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootReport {
    pub target: String,
    pub architecture: String,
    pub accelerator: String,
    /// From QEMU's start to `reprovm: boot complete` on the console.
    pub userspace_seconds: f64,
    /// From QEMU's start to its exit after `poweroff`.
    pub total_seconds: f64,
    /// Each command run in the guest over SSH and what it printed.
    pub checks: Vec<BootCheck>,
    pub console: PathBuf,
}

/// One command of a boot test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootCheck {
    pub command: String,
    pub output: String,
}

struct Vm {
    child: Child,
    console: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Run `cmd` in the guest whose SSH is forwarded from 127.0.0.1:`port`, with the pinned ssh.
pub(crate) fn ssh(tools: &HostTools, port: u16, key: &Path, cmd: &str) -> Result<(bool, String)> {
    let out = tools
        .command("ssh")?
        // Neither the host's nor the user's ssh configuration applies.
        .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            cmd,
        ])
        .stdin(Stdio::null())
        .output()
        .context("running the pinned ssh")?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// `boot-test`: boot, log in with a key made now, run the checks, power off, within
/// `timeout` seconds. Fails with the console log.
/// `user_checks` are the user's commands (`boot-test --check`), run after the built-in ones; each
/// must exit 0.
pub fn boot_test(
    ctx: &RunContext,
    run: &BootOptions,
    timeout: u64,
    user_checks: &[String],
) -> Result<BootReport> {
    check_options(ctx.project.arch, run)?;
    medium(&ctx.project, run)?;
    let (project, tools) = (&ctx.project, &HostTools::get(&ctx.project, &ctx.fetcher)?);
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("id_ed25519");
    reprovm_fs::util::run_checked(
        tools.command("ssh-keygen")?.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key),
    )
    .context("making a key for the test")?;
    let mut args = run.clone();
    args.accel = args.accelerator(project, tools)?;
    args.ssh_key = Some(key.with_extension("pub"));
    args.ssh_port = free_port()?;
    let console = project.out.join("boot-test-console.log");
    // A log left by an earlier boot would answer for this one before QEMU truncates it.
    match std::fs::remove_file(&console) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", console.display()))
        }
        _ => {}
    }
    let mut c = qemu_command(project, tools, &args, dir.path())?;
    c.args(["-display", "none", "-serial"]).arg(format!("file:{}", console.display()));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let release = std::fs::read_to_string(project.results_dir().join("kernel.release"))
        .ok()
        .map(|s| s.trim().to_string());
    reprovm_fs::progress::say(&format!(
        "boot-test: booting {} {} under {} (--machine {}, --accel {}), console log {}",
        run.target.name(),
        args.kernel
            .as_deref()
            .or(args.image.as_deref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        match &run.qemu {
            Some(q) => format!("the host's {}", q.display()),
            None => format!("the pinned QEMU ({})", tools.label),
        },
        run.machine.name(),
        args.accel.name(),
        console.display()
    ));
    let started = Instant::now();
    let shown = reprovm_fs::util::display_command(&c);
    let mut vm =
        Vm { child: c.spawn().with_context(|| format!("could not start `{shown}`"))?, console };
    // Under TCG a guest now and then resets (a clean QEMU exit under -no-reboot) before its
    // kernel has printed a byte: measured on microvm with the 6.1 and 6.18 kernels, 1 boot in
    // 8 idle and up to 5 in 12 with the machine loaded, with kernels that boot on every other
    // try, and every boot of the 6.1 vmlinux on 2026-12-06 until microvm lost its 8259 PIC
    // (qemu.rs). Such a boot is started again, twice at most; one that prints anything, or
    // resets three times, fails as before.
    let mut resets_left = 2;
    let mut report = BootReport {
        target: run.target.name().to_string(),
        architecture: project.arch.to_string(),
        accelerator: args.accel.name().to_string(),
        userspace_seconds: 0.0,
        total_seconds: 0.0,
        checks: Vec::new(),
        console: vm.console.clone(),
    };
    let result = (|| -> Result<()> {
        let deadline = started + Duration::from_secs(timeout);
        loop {
            if let Some(st) = vm.child.try_wait()? {
                let printed = std::fs::metadata(&vm.console).map(|m| m.len()).unwrap_or(0);
                if st.success() && printed == 0 && resets_left > 0 {
                    resets_left -= 1;
                    reprovm_fs::progress::say(&format!(
                        "boot-test: the guest reset before its kernel printed anything (a TCG flake); starting it again ({resets_left} more allowed)"
                    ));
                    vm.child = c.spawn().with_context(|| format!("could not start `{shown}`"))?;
                    continue;
                }
                let mut err = String::new();
                if let Some(mut e) = vm.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!("`{shown}` exited early ({st}): {}", err.trim());
            }
            let log = std::fs::read_to_string(&vm.console).unwrap_or_default();
            if log.contains("reprovm: boot complete") {
                break;
            }
            if log.contains("Kernel panic") {
                bail!("kernel panic");
            }
            if Instant::now() > deadline {
                bail!("no 'reprovm: boot complete' on the console after {}s", timeout);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        report.userspace_seconds = started.elapsed().as_secs_f64();
        reprovm_fs::progress::say(&format!(
            "boot-test: userspace up after {:.1}s",
            report.userspace_seconds
        ));
        let mut last = String::new();
        let mut ok = false;
        while Instant::now() < deadline {
            let (good, out) = ssh(tools, args.ssh_port, &key, "true")?;
            if good {
                ok = true;
                break;
            }
            last = out;
            std::thread::sleep(Duration::from_secs(2));
        }
        anyhow::ensure!(ok, "SSH login failed: {}", last.trim());
        let checks: [(&str, &str); 6] = [
            ("uname -r", "uname -r"),
            ("uname -m", "uname -m"),
            ("df", "df -k /"),
            ("ip -V", "ip -V"),
            ("modules", "ls /lib/modules/$(uname -r)"),
            (
                "modprobe dummy",
                "modprobe dummy && grep -w dummy /proc/modules && ip link show dummy0",
            ),
        ];
        for (name, cmd) in checks {
            let (good, out) = ssh(tools, args.ssh_port, &key, cmd)?;
            reprovm_fs::progress::say(&format!("boot-test: $ {cmd}\n{}", out.trim_end()));
            report
                .checks
                .push(BootCheck { command: cmd.to_string(), output: out.trim_end().to_string() });
            // `df` only reports (an initramfs root has no file system df can name).
            anyhow::ensure!(good || name == "df", "`{cmd}` failed in the guest");
            match name {
                "uname -r" => {
                    if let Some(r) = &release {
                        anyhow::ensure!(
                            out.trim() == r,
                            "guest runs kernel {} but {r} was built",
                            out.trim()
                        );
                    }
                }
                "uname -m" => anyhow::ensure!(
                    out.trim() == project.arch.name(),
                    "guest runs on {} but the image was built for {}",
                    out.trim(),
                    project.arch
                ),
                "ip -V" => anyhow::ensure!(out.contains("iproute2"), "unexpected `ip -V` output"),
                "modules" => {
                    anyhow::ensure!(out.contains("modules.dep"), "no modules.dep in /lib/modules")
                }
                "df" => {}
                _ => anyhow::ensure!(out.contains("dummy"), "dummy module not loaded"),
            }
        }
        for cmd in user_checks {
            let (good, out) = ssh(tools, args.ssh_port, &key, cmd)?;
            reprovm_fs::progress::say(&format!("boot-test: $ {cmd}\n{}", out.trim_end()));
            report
                .checks
                .push(BootCheck { command: cmd.clone(), output: out.trim_end().to_string() });
            let last = out.trim().lines().last().unwrap_or("no output").to_string();
            anyhow::ensure!(good, "`{cmd}` (--check) failed in the guest: {last}");
        }
        let _ = ssh(tools, args.ssh_port, &key, "poweroff");
        let stop = Instant::now() + Duration::from_secs(120);
        while Instant::now() < stop {
            if let Some(st) = vm.child.try_wait()? {
                report.total_seconds = started.elapsed().as_secs_f64();
                reprovm_fs::progress::say(&format!(
                    "boot-test: guest powered off ({st}) after {:.1}s in all",
                    report.total_seconds
                ));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("guest did not power off within 120s")
    })();
    if let Err(e) = result {
        let log = std::fs::read_to_string(&vm.console).unwrap_or_default();
        let tail: Vec<&str> =
            log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        reprovm_fs::progress::say(&format!(
            "---- console log ({}) ----\n{}\n----",
            vm.console.display(),
            tail.join("\n")
        ));
        return Err(e.context("boot test failed"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_do_not_go_together_are_refused() {
        let checked = |arch: Arch, f: &dyn Fn(&mut BootOptions)| {
            let mut o = BootOptions::default();
            f(&mut o);
            check_options(arch, &o).map_err(|e| e.to_string())
        };
        let with = |f: &dyn Fn(&mut BootOptions)| checked(Arch::X86_64, f);
        assert!(with(&|_| {}).is_ok());
        for (target, ok) in [
            (Target::EfiImage, true),
            (Target::EfiVhdx, true),
            (Target::Image, false),
            (Target::Iso, false),
        ] {
            let r = with(&|o| {
                o.target = target;
                o.devices = Devices::Classic;
            });
            assert_eq!(r.is_ok(), ok, "{target:?}: {r:?}");
        }
        let r = with(&|o| o.firmware = Firmware::Bios).unwrap_err();
        assert!(r.contains("--firmware bios boots a medium's own boot loader"), "{r}");
        assert!(r.contains("`hd-image` is started"), "{r}");
        assert!(with(&|o| {
            o.target = Target::IsoDisk;
            o.firmware = Firmware::Bios;
        })
        .is_ok());
        let r = with(&|o| {
            o.target = Target::Initramfs;
            o.machine = Machine::Microvm;
        })
        .unwrap_err();
        assert!(r.contains("--machine microvm"), "{r}");
        // arm64: the UEFI media boot through AAVMF; there is no BIOS and no PC hardware.
        let arm = |f: &dyn Fn(&mut BootOptions)| checked(Arch::Aarch64, f);
        for target in [Target::EfiImage, Target::EfiVhdx, Target::Iso, Target::IsoDisk] {
            assert!(arm(&|o| o.target = target).is_ok(), "{target:?}");
        }
        let r = arm(&|o| {
            o.target = Target::IsoDisk;
            o.firmware = Firmware::Bios;
        })
        .unwrap_err();
        assert!(r.contains("no BIOS"), "{r}");
        let r = arm(&|o| {
            o.target = Target::EfiImage;
            o.devices = Devices::Classic;
        })
        .unwrap_err();
        assert!(r.contains("virtio devices"), "{r}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_host_tsc_frequency_is_measured_when_the_tsc_is_constant() {
        let constant = std::fs::read_to_string("/proc/cpuinfo").unwrap().contains(" constant_tsc");
        let (first, second) = (host_tsc_khz(), host_tsc_khz());
        assert_eq!(first.is_some(), constant, "{first:?}");
        assert_eq!(second.is_some(), constant, "{second:?}");
        if let (Some(first), Some(second)) = (first, second) {
            // Two measurements of one clock agree to within 2 %.
            assert!(first.abs_diff(second) * 50 < first, "{first} kHz vs {second} kHz");
            let parameter = tcg_tsc_parameter();
            let khz: u64 = parameter.strip_prefix("tsc_early_khz=").unwrap().parse().unwrap();
            assert!(first.abs_diff(khz) * 50 < first, "{parameter} vs {first} kHz");
        }
    }
}
