//! The target architecture of a build: a parameter of the whole graph (`--arch`), not a copy
//! of every recipe. Recipes say what differs for one architecture in `[arch.NAME]` tables
//! (`model::recipe`), the build runs over that architecture's toolchain
//! (`steps::toolchain::PackageSet::for_arch`), and every input hash of a non-default
//! architecture names it (`model::store`). x86_64 is the default and adds nothing: its input
//! hashes are what they were before architectures existed.

use std::fmt;

/// An architecture reprovm builds for; the build machine is always x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Arch {
    #[default]
    X86_64,
    /// arm64 (ARMv8-A), cross-built with Debian's aarch64-linux-gnu toolchain.
    Aarch64,
}

impl Arch {
    /// Every architecture with its name on the command line and in `[arch.NAME]`.
    pub const VALUES: [(Arch, &'static str, &'static str); 2] = [
        (Arch::X86_64, "x86_64", "x86-64 (the default): QEMU pc/microvm, Firecracker, Xen"),
        (Arch::Aarch64, "aarch64", "arm64, cross-built: QEMU virt, Firecracker, krata"),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Arch> {
        Arch::VALUES.iter().find(|(_, n, _)| *n == name).map(|(a, _, _)| *a)
    }

    /// Debian's (and the OCI platform's) name: amd64, arm64.
    pub(crate) fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The ELF machine of the programs and libraries built for it.
    pub(crate) fn elf_machine(self) -> reprovm_fs::elf::Machine {
        match self {
            Arch::X86_64 => reprovm_fs::elf::Machine::X86_64,
            Arch::Aarch64 => reprovm_fs::elf::Machine::AARCH64,
        }
    }

    /// The kernel image a kernel recipe leaves: `bzImage` on x86, the uncompressed `Image`
    /// on arm64 (what QEMU's `-kernel`, Firecracker and krata load there).
    pub(crate) fn kernel_image(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Aarch64 => "Image",
        }
    }

    /// The UEFI specification's name of the machine, lower-case: `x64`, `aa64`. It names the
    /// removable-media loader (`EFI/BOOT/BOOTX64.EFI`, `BOOTAA64.EFI`) and systemd's stubs
    /// (`linuxx64.efi.stub`, `linuxaa64.efi.stub`).
    pub(crate) fn uefi(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
    }

    /// The prefix of the toolchain's binutils for this architecture: the build machine's own
    /// on x86_64, Debian's `aarch64-linux-gnu-` cross binutils on arm64 (its objcopy writes
    /// `pei-aarch64-little`).
    pub fn binutils_prefix(self) -> &'static str {
        match self {
            Arch::X86_64 => "",
            Arch::Aarch64 => "aarch64-linux-gnu-",
        }
    }

    /// The Linux console on the first serial port of a QEMU or UEFI machine: the 16550 (COM1)
    /// on x86, the PL011 of QEMU's virt machine and of SBSA servers on arm64. (Firecracker's
    /// arm64 guests have a 16550; their command line comes from the VMM, not from here.)
    pub(crate) fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    pub fn is_default(self) -> bool {
        self == Arch::X86_64
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (a, n, _) in Arch::VALUES {
            assert_eq!(Arch::from_name(n), Some(a));
            assert_eq!(a.name(), n);
        }
        assert_eq!(Arch::from_name("arm64"), None);
        assert!(Arch::default().is_default());
    }
}
