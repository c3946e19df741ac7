use super::values;
use reprovm::ops::boot::{Accel, BootOptions, Devices, Firmware, Machine, Target};
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

/// How to boot: shared by `run` and `boot-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct BootArgs {
    /// The medium to boot: the recipe that makes it, or its form.
    #[arg(long, value_parser = values::parser(&Target::VALUES), default_value = "hd-image")]
    pub target: Target,
    /// The machine to boot in (microvm: `--target hd-image` only).
    #[arg(long, value_parser = values::parser(&Machine::VALUES), default_value = "pc")]
    pub machine: Machine,
    /// Kernel (default: out/bzImage; with `--machine microvm`, the kernel recipe's vmlinux).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Disk image (default: out/hd.img, or the target's).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Extra kernel command line (e.g. `reprovm.ip=10.0.2.15/24 reprovm.hostname=vm1`); the
    /// UEFI targets carry theirs inside the unified kernel image.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Write to the image (default: changes are discarded, the image stays as built).
    #[arg(long)]
    pub persist: bool,
    /// The accelerator: `auto` uses KVM where a guest runs under it here, TCG (which works
    /// everywhere) elsewhere.
    #[arg(long, value_parser = values::parser(&Accel::VALUES), default_value = "auto")]
    pub accel: Accel,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub memory: u32,
    /// Boot the disk as a larger one (`4G`, `512M`, bytes): a sparse copy-on-write overlay of
    /// that size (with `--persist`, the raw image itself grows, sparsely). The image grows its
    /// root file system to fill it at boot.
    #[arg(long, value_name = "SIZE", value_parser = values::parse_size)]
    pub disk_size: Option<u64>,
    /// A QEMU system emulator of the host to use instead of the pinned one (pins/tools.lock).
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// The firmware the ISO and the UEFI disk boot through: `uefi` (the pinned OVMF, AAVMF on
    /// aarch64, its code read-only and a fresh copy of its variable store as flash), `bios`
    /// (QEMU's own SeaBIOS: isolinux, or SYSLINUX on the UEFI disk's ESP; x86_64), or a UEFI
    /// firmware FILE given to QEMU as `-bios` (`./bios` for a file named so).
    #[arg(long, value_name = "uefi|bios|FILE", default_value = "uefi", value_parser = parse_firmware)]
    pub firmware: Firmware,
    /// The disk's and network card's devices: `classic` puts the UEFI disk on AHCI (SATA) with
    /// an E1000 NIC, as VirtualBox and VMware attach them.
    #[arg(long, value_parser = values::parser(&Devices::VALUES), default_value = "virtio")]
    pub devices: Devices,
}

fn parse_firmware(value: &str) -> Result<Firmware, String> {
    if value.is_empty() {
        return Err("give uefi, bios or a firmware file".into());
    }
    Ok(Firmware::parse(value))
}

impl BootArgs {
    pub fn options(self) -> BootOptions {
        BootOptions {
            target: self.target,
            machine: self.machine,
            kernel: self.kernel,
            image: self.image,
            append: self.append,
            ssh_port: BootOptions::default().ssh_port,
            ssh_key: None,
            persist: self.persist,
            accel: self.accel,
            memory: self.memory,
            disk_size: self.disk_size,
            qemu: self.qemu,
            firmware: self.firmware,
            devices: self.devices,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port.
    #[arg(long, value_name = "PORT", default_value_t = 10022)]
    pub ssh_port: u16,
    /// Public key file installed as root's authorized_keys (through QEMU fw_cfg).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
}

impl RunArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let options =
            BootOptions { ssh_port: self.ssh_port, ssh_key: self.ssh_key, ..self.boot.options() };
        reprovm::ops::boot::run_vm(ctx, &options)?;
        Ok(0)
    }
}
