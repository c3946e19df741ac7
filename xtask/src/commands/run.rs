use super::values;
use reprovm::ops::boot::{Accel, BootOptions, Devices, Machine, Target};
use reprovm::ops::cluster::ClusterOptions;
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

/// How to boot: shared by `run` and `boot-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct BootArgs {
    /// The medium to boot.
    #[arg(long, value_parser = values::parser(&Target::VALUES), default_value = "image")]
    pub target: Target,
    /// The machine to boot in (microvm: `--target image` only).
    #[arg(long, value_parser = values::parser(&Machine::VALUES), default_value = "pc")]
    pub machine: Machine,
    /// Kernel (default: out/bzImage; with `--machine microvm`, the kernel recipe's vmlinux).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Disk image (default: out/hd.img, or the target's).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Extra kernel command line (e.g. `reprovm.ip=10.0.2.15/24 reprovm.hostname=vm1`); the
    /// UEFI targets carry theirs inside the unified kernel image.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port.
    #[arg(long, default_value_t = 10022)]
    pub ssh_port: u16,
    /// Public key file installed as root's authorized_keys (through QEMU fw_cfg).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// Write to the image (default: changes are discarded, the image stays as built). With
    /// `--nodes`, `--persist DIR` keeps every node's overlay in DIR (and uses them again).
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub persist: Option<Option<PathBuf>>,
    /// The accelerator: `auto` uses KVM where a guest runs under it here, TCG (which works
    /// everywhere) elsewhere.
    #[arg(long, value_parser = values::parser(&Accel::VALUES), default_value = "auto")]
    pub accel: Accel,
    /// Same as `--accel kvm` (the spelling before `--accel`).
    #[arg(long, hide = true, conflicts_with = "accel")]
    pub kvm: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Boot the disk as a larger one (`4G`, `512M`, bytes): a sparse copy-on-write overlay of
    /// that size (with `--persist`, the raw image itself grows, sparsely). The image grows its
    /// root file system to fill it at boot.
    #[arg(long, value_name = "SIZE", value_parser = values::parse_size)]
    pub disk_size: Option<u64>,
    /// A QEMU system emulator of the host to use instead of the pinned one (pins/tools.lock).
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// UEFI firmware for the UEFI targets, as one image for `-bios` (default: the pinned OVMF,
    /// its code read-only and a fresh copy of its variable store as flash).
    #[arg(long, value_name = "FILE")]
    pub firmware: Option<PathBuf>,
    /// Boot the ISO (`--target iso` or `iso-disk`) or the UEFI disk (`efi-image` and its
    /// forms: SYSLINUX on the ESP) through a legacy BIOS, QEMU's own SeaBIOS, instead of UEFI.
    #[arg(long, conflicts_with = "firmware")]
    pub legacy_bios: bool,
    /// The disk's and network card's devices: `classic` puts the UEFI disk on AHCI (SATA) with
    /// an E1000 NIC, as VirtualBox and VMware attach them.
    #[arg(long, value_parser = values::parser(&Devices::VALUES), default_value = "virtio")]
    pub devices: Devices,
}

impl BootArgs {
    pub fn options(self) -> BootOptions {
        BootOptions {
            target: self.target,
            machine: self.machine,
            kernel: self.kernel,
            image: self.image,
            append: self.append,
            ssh_port: self.ssh_port,
            ssh_key: self.ssh_key,
            persist: self.persist.is_some(),
            accel: if self.kvm { Accel::Kvm } else { self.accel },
            memory: self.memory,
            disk_size: self.disk_size,
            qemu: self.qemu,
            firmware: self.firmware,
            legacy_bios: self.legacy_bios,
            devices: self.devices,
        }
    }
}

impl BootArgs {
    /// The options of a cluster of `nodes` over these (node N's SSH on `--ssh-port` + N). The
    /// options a cluster does not take are refused, not ignored.
    pub fn cluster(self, nodes: usize) -> anyhow::Result<ClusterOptions> {
        let single_vm_only = [
            ("--disk-size", self.disk_size.is_some()),
            ("--legacy-bios", self.legacy_bios),
            ("--firmware", self.firmware.is_some()),
            ("--devices classic", self.devices != Devices::Virtio),
            ("--machine microvm", self.machine != Machine::Pc),
        ];
        if let Some((flag, _)) = single_vm_only.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} is for a single VM; a cluster (--nodes) boots the image over virtio on a PC");
        }
        Ok(ClusterOptions {
            nodes,
            target: self.target,
            kernel: self.kernel,
            image: self.image,
            ssh_port_base: self.ssh_port,
            ssh_key: self.ssh_key,
            memory: self.memory,
            accel: if self.kvm { Accel::Kvm } else { self.accel },
            qemu: self.qemu,
            persist: self.persist.flatten(),
            append: self.append,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Boot N VMs from the same kernel and image, xcluster-style: node K is vm00K, writes to
    /// its own overlay, has SSH on 127.0.0.1:SSH_PORT+K and is on the private networks net1
    /// and net2 (192.168.1.K, 192.168.2.K). Consoles go to out/cluster/SSH_PORT/.
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// With `--nodes`: stop every node after this many seconds (default: until Ctrl-C or
    /// every node has powered off).
    #[arg(long, value_name = "SECONDS", requires = "nodes")]
    pub timeout: Option<u64>,
}

impl RunArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        match self.nodes {
            Some(n) => {
                let timeout = self.timeout.map(std::time::Duration::from_secs);
                reprovm::ops::cluster::run_cluster(ctx, &self.boot.cluster(n)?, timeout)?
            }
            None => {
                if matches!(self.boot.persist, Some(Some(_))) {
                    anyhow::bail!("--persist DIR keeps a cluster's overlays (with --nodes); a single VM's --persist takes no value");
                }
                reprovm::ops::boot::run_vm(ctx, &self.boot.options())?
            }
        }
        Ok(0)
    }
}
