//! The QEMU command line of a boot: the machine, firmware, kernel or disk, devices and
//! networking for each target and architecture, after options that do not go together are
//! refused.

use super::*;

/// A file the boot needs, named with the build that makes it when it is missing.
pub(crate) fn need(p: PathBuf, build: &str) -> Result<PathBuf> {
    anyhow::ensure!(
        p.is_file(),
        "{} not found: run `cargo xtask build {build}` first",
        p.display()
    );
    Ok(p)
}

impl Target {
    /// The UEFI disk in one of its forms (root by PARTUUID, booted by its own loaders).
    pub(super) fn is_uefi_disk(self) -> bool {
        matches!(self, Target::EfiImage | Target::EfiVhd | Target::EfiVmdk | Target::EfiVhdx)
    }
}

/// The pinned QEMU system emulator for guests of `arch`.
pub(crate) fn qemu_program(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// Refuse options that do not go together, before anything is fetched or started.
pub(super) fn check_options(arch: Arch, a: &BootOptions) -> Result<()> {
    let target = a.target.name();
    if arch == Arch::Aarch64 {
        if a.machine == Machine::Microvm {
            bail!("--machine microvm is x86_64's; an aarch64 guest boots on QEMU's virt (--machine pc, the default)");
        }
        if a.firmware == Firmware::Bios {
            bail!(
                "--firmware bios: an arm64 machine has no BIOS; its media boot through UEFI (AAVMF)"
            );
        }
        if a.devices == Devices::Classic {
            bail!(
                "--devices classic is a PC's AHCI and E1000; an aarch64 guest has virtio devices"
            );
        }
    }
    let own_loader = a.target.is_uefi_disk() || matches!(a.target, Target::Iso | Target::IsoDisk);
    if a.machine == Machine::Microvm && a.target != Target::Image {
        bail!("--machine microvm boots a kernel and a disk (--target hd-image)");
    }
    if a.devices == Devices::Classic && !a.target.is_uefi_disk() {
        bail!(
            "--devices classic boots the UEFI disk (--target efi-image, efi-vhd, efi-vhdx, efi-vmdk), whose root is found by PARTUUID on whatever disk it is; `{target}` names /dev/vda or has no disk"
        );
    }
    if a.firmware != Firmware::Uefi && !own_loader {
        bail!(
            "--firmware {} boots a medium's own boot loader (the ISO, the UEFI disk); `{target}` is started by QEMU with -kernel, which needs no firmware choice",
            match &a.firmware {
                Firmware::File(f) => f.display().to_string(),
                _ => "bios".to_string(),
            }
        );
    }
    if a.memory < 32 {
        bail!("--memory {}: a guest needs at least 32 MiB", a.memory);
    }
    if a.disk_size.is_some_and(|size| size < 1 << 20) {
        bail!("--disk-size: at least 1M (the disk as the guest sees it)");
    }
    if a.ssh_port == 0 {
        bail!("--ssh-port 0: give a port from 1 to 65535");
    }
    if let Some(k) = &a.ssh_key {
        given("--ssh-key", k)?;
    }
    if let Some(q) = &a.qemu {
        given("--qemu", q)?;
    }
    if arch != Arch::X86_64 && a.accel == Accel::Kvm {
        bail!("--accel kvm: an {arch} guest cannot run under KVM on this x86_64 host; use tcg");
    }
    if let Firmware::File(f) = &a.firmware {
        anyhow::ensure!(
            f.is_file(),
            "--firmware {}: no such file (or give uefi or bios)",
            f.display()
        );
    }
    if own_loader && !a.append.is_empty() {
        bail!("--target {target} boots a unified kernel image (or isolinux's entry), whose command line is built in; --append is for hd-image and initramfs");
    }
    Ok(())
}

/// The files a boot reads, each found (or named with the build that makes it) before
/// anything is fetched or started.
pub(super) struct Medium {
    /// `-kernel`.
    kernel: Option<PathBuf>,
    /// `-initrd`.
    initrd: Option<PathBuf>,
    /// The disk and its QEMU format.
    disk: Option<(PathBuf, &'static str)>,
    /// The ISO, as a CD-ROM or a read-only disk.
    iso: Option<PathBuf>,
}

/// A file the user named with `flag`: it must be a file.
pub(crate) fn given(flag: &str, p: &Path) -> Result<PathBuf> {
    anyhow::ensure!(p.is_file(), "{flag} {}: no such file", p.display());
    Ok(p.to_path_buf())
}

/// A kernel QEMU can start on this machine: a bzImage (`HdrS` at 0x202) on a PC, the ELF
/// vmlinux on microvm, an arm64 Image (`ARM\x64` at 0x38) on virt. Checked before anything
/// is fetched or a disk is grown.
pub(crate) fn check_kernel(path: &Path, arch: Arch, machine: Machine) -> Result<()> {
    let mut head = [0u8; 0x210];
    let n = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            Ok(n)
        })
        .with_context(|| format!("reading {}", path.display()))?;
    let head = &head[..n];
    let (ok, what) = match (arch, machine) {
        (_, Machine::Microvm) => (head.starts_with(b"\x7fELF"), "an ELF vmlinux"),
        (Arch::X86_64, Machine::Pc) => (head.get(0x202..0x206) == Some(b"HdrS"), "a bzImage"),
        (Arch::Aarch64, Machine::Pc) => {
            (head.get(0x38..0x3c) == Some(b"ARM\x64"), "an arm64 Image")
        }
    };
    anyhow::ensure!(ok, "{}: not {what}, which this machine boots", path.display());
    Ok(())
}

/// The files of `a`'s target under `project`'s results, or those the user named.
pub(super) fn medium(project: &Project, a: &BootOptions) -> Result<Medium> {
    let results = project.results_dir();
    let out = |f: &str| results.join(f);
    let kernel_image = project.arch.kernel_image();
    let disk_or = |default: &str, build: &str| match &a.image {
        Some(p) => given("--image", p),
        None => need(out(default), build),
    };
    let kernel_or = |build: &str| match &a.kernel {
        Some(p) => given("--kernel", p),
        None => need(out(kernel_image), build),
    };
    let target = a.target.name();
    if a.kernel.is_some() && !matches!(a.target, Target::Image | Target::Initramfs) {
        bail!("--kernel: `--target {target}` boots the kernel inside its medium; --kernel is for hd-image and initramfs");
    }
    if a.image.is_some() && a.target == Target::Initramfs {
        bail!("--image: `--target initramfs` boots no disk");
    }
    let mut m = Medium { kernel: None, initrd: None, disk: None, iso: None };
    match a.target {
        Target::Image => {
            if a.machine == Machine::Microvm && a.kernel.is_none() {
                bail!(
                    "--machine microvm boots the uncompressed vmlinux, as Firecracker does: pass --kernel $(cargo xtask build kernel | tail -n1)/out/vmlinux"
                );
            }
            m.kernel = Some(kernel_or("hd-image")?);
            m.disk = Some((disk_or("hd.img", "hd-image")?, "raw"));
        }
        Target::Initramfs => {
            m.kernel = Some(kernel_or("initramfs")?);
            m.initrd = Some(need(out("initramfs.cpio.gz"), "initramfs")?);
        }
        Target::EfiImage => m.disk = Some((disk_or("efi.img", "efi-image")?, "raw")),
        Target::EfiVhd => m.disk = Some((disk_or("efi.vhd", "efi-image")?, "vpc")),
        Target::EfiVmdk => m.disk = Some((disk_or("efi.vmdk", "efi-image")?, "vmdk")),
        Target::EfiVhdx => m.disk = Some((disk_or("efi.vhdx", "efi-image")?, "vhdx")),
        Target::Iso | Target::IsoDisk => m.iso = Some(disk_or("reprovm.iso", "iso")?),
    }
    if let Some(k) = &m.kernel {
        check_kernel(k, project.arch, a.machine)?;
    }
    Ok(m)
}

/// The QEMU command line for a boot; `scratch` is a directory that lives as long as the
/// guest (it holds the firmware's writable variable store).
pub(super) fn qemu_command(
    project: &Project,
    tools: &HostTools,
    a: &BootOptions,
    scratch: &Path,
) -> Result<Command> {
    check_options(project.arch, a)?;
    let accel = a.accelerator(project, tools)?;
    let arch = project.arch;
    let mut c = match &a.qemu {
        Some(q) => Command::new(q),
        None => tools.command(qemu_program(arch))?,
    };
    // virtio devices on the machine's transport: PCI on a PC (q35 on x86_64, virt's generic
    // PCIe host on aarch64), MMIO on microvm. microvm without its 8259 PIC (interrupts through
    // its I/O APIC): with the PIC, a TCG guest took a timer interrupt as vector 0 (a divide
    // error) right after start_kernel enabled interrupts and reset, before printing a byte;
    // measured on 2026-12-06 with the 6.1 vmlinux, 3 of 6 raw boots reached the console with
    // the PIC and 6 of 6 without, and 8 of 8 boot-tests without it on a loaded machine (no
    // reset).
    let (machine, bus) = match (arch, a.machine) {
        (Arch::X86_64, Machine::Pc) => ("q35", "pci"),
        (Arch::Aarch64, Machine::Pc) => ("virt", "pci"),
        (_, Machine::Microvm) => ("microvm,pic=off", "device"),
    };
    c.args([
        "-accel",
        if accel == Accel::Kvm { "kvm" } else { "tcg" },
        "-machine",
        machine,
        "-m",
        &a.memory.to_string(),
        "-no-reboot",
        "-nodefaults",
    ]);
    if arch == Arch::Aarch64 {
        // A Cortex-A57 (ARMv8.0): what Firecracker and krata guests are built for, and fast
        // under TCG (`max` emulates pointer authentication, several times slower).
        c.args(["-cpu", "cortex-a57"]);
    }
    let console = arch.serial_console();
    let disk = |c: &mut Command, file: &Path, format: &str| -> Result<()> {
        let (file, format, snap) = match (a.disk_size, a.persist) {
            (None, persist) => {
                (file.to_path_buf(), format, if persist { "" } else { ",snapshot=on" })
            }
            (Some(size), true) => {
                grow_raw(file, format, size)?;
                (file.to_path_buf(), format, "")
            }
            (Some(size), false) => (overlay(tools, file, format, size, scratch)?, "qcow2", ""),
        };
        c.arg("-drive").arg(format!("id=d0,file={},format={format},if=none{snap}", file.display()));
        match a.devices {
            Devices::Virtio => c.args(["-device", &format!("virtio-blk-{bus},drive=d0")]),
            // q35's own ICH9 AHCI controller, port 0.
            Devices::Classic => c.args(["-device", "ide-hd,drive=d0,bus=ide.0"]),
        };
        Ok(())
    };
    let m = medium(project, a)?;
    let efi_disk = a.target.is_uefi_disk();
    if efi_disk || matches!(a.target, Target::Iso | Target::IsoDisk) {
        match &a.firmware {
            Firmware::Bios => {}
            Firmware::File(fw) => {
                c.arg("-bios").arg(fw);
            }
            Firmware::Uefi => {
                let fw = tools.uefi_firmware(arch)?;
                let vars = scratch.join("UEFI_VARS.fd");
                std::fs::copy(&fw.vars, &vars)
                    .with_context(|| format!("copying {}", fw.vars.display()))?;
                c.arg("-drive").arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    fw.code.display()
                ));
                c.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
            }
        }
    }
    if let Some(kernel) = &m.kernel {
        c.arg("-kernel").arg(kernel);
    }
    if let Some(initrd) = &m.initrd {
        c.arg("-initrd").arg(initrd);
    }
    if let Some((file, format)) = &m.disk {
        disk(&mut c, file, format)?;
    }
    match a.target {
        Target::Image => {
            let clock = match (a.machine, accel) {
                (Machine::Microvm, Accel::Tcg) => tcg_tsc_parameter(),
                _ => String::new(),
            };
            c.arg("-append").arg(
                format!("root=/dev/vda rw console={console} panic=-1 {clock} {}", a.append).trim(),
            );
        }
        Target::Initramfs => {
            c.arg("-append").arg(format!("console={console} panic=-1 {}", a.append).trim());
        }
        Target::EfiImage | Target::EfiVhd | Target::EfiVmdk | Target::EfiVhdx => {}
        Target::IsoDisk => {
            let iso = m.iso.as_deref().context("the ISO")?;
            c.arg("-drive")
                .arg(format!("id=d0,file={},format=raw,if=none,readonly=on", iso.display()));
            c.args(["-device", &format!("virtio-blk-{bus},drive=d0")]);
        }
        Target::Iso => {
            let iso = m.iso.as_deref().context("the ISO")?;
            c.arg("-drive").arg(format!(
                "file={},format=raw,media=cdrom,if=none,id=cd0,readonly=on",
                iso.display()
            ));
            match arch {
                Arch::X86_64 => c.args(["-device", "ide-cd,drive=cd0,bus=ide.0"]),
                // virt has no IDE: a SCSI CD-ROM on virtio-scsi, which AAVMF boots from.
                Arch::Aarch64 => c.args([
                    "-device",
                    "virtio-scsi-pci,id=scsi0",
                    "-device",
                    "scsi-cd,drive=cd0,bus=scsi0.0",
                ]),
            };
        }
    }
    c.args([
        "-netdev",
        &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", a.ssh_port),
        "-device",
        &match a.devices {
            Devices::Virtio => format!("virtio-net-{bus},netdev=n0"),
            Devices::Classic => "e1000,netdev=n0".to_string(),
        },
    ]);
    c.args(["-device", &format!("virtio-rng-{bus}")]);
    if let Some(k) = &a.ssh_key {
        c.arg("-fw_cfg").arg(format!("name=opt/reprovm/authorized_keys,file={}", k.display()));
    }
    Ok(c)
}
