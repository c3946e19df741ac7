//! The programs reprovm runs on the host, pinned: QEMU and its firmware, OVMF/AAVMF, ssh, and
//! the third-party readers of the full tier (skopeo, umoci, unsquashfs, docker-registry,
//! sgdisk, sfdisk, fsck.fat, mtools, xorriso, qemu-img). They are Debian trixie packages in
//! `pins/tools.lock`, materialised by sha256 like the build toolchain, and run through the
//! root's own dynamic loader and libraries: nothing is installed and the host's libc is
//! neither used nor replaced. `cargo xtask tool PROGRAM ARGS...` runs one for people.

use crate::mechanisms::fetch::Fetcher;
use crate::model::project::Project;
use crate::steps::toolchain::{self, PackageSet};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a tools root keeps programs, in lookup order.
const PROGRAM_DIRS: [&str; 2] = ["usr/bin", "usr/sbin"];

/// A materialised root of the pinned host tools.
#[derive(Debug, Clone)]
pub(crate) struct HostTools {
    pub root: PathBuf,
    /// `debian trixie qemu-system-x86 1:10.0...`: for messages.
    pub label: String,
}

/// UEFI firmware images of the tools root.
#[derive(Debug, Clone)]
pub(crate) struct Firmware {
    /// The code flash (read-only).
    pub code: PathBuf,
    /// The variable store template: every boot gets a writable copy.
    pub vars: PathBuf,
}

impl HostTools {
    /// The pinned tools, materialised from `pins/tools.lock` when they are not yet. Takes the
    /// store lock only to materialise (a running build holds it: the first use waits for it).
    pub(crate) fn get(project: &Project, fetcher: &Fetcher) -> Result<HostTools> {
        Self::of_set(project, fetcher, PackageSet::Tools)
    }

    /// The Debian archive's verifier and keyring (`pins/archive.lock`: sqv, sq,
    /// debian-archive-keyring), materialised like the host tools and run the same way.
    pub(crate) fn archive(project: &Project, fetcher: &Fetcher) -> Result<HostTools> {
        Self::of_set(project, fetcher, PackageSet::Archive)
    }

    /// Sigstore's cosign (`pins/cosign.lock`), materialised and run like the host tools.
    pub(crate) fn cosign(project: &Project, fetcher: &Fetcher) -> Result<HostTools> {
        Self::of_set(project, fetcher, PackageSet::Cosign)
    }

    fn of_set(project: &Project, fetcher: &Fetcher, set: PackageSet) -> Result<HostTools> {
        let found = toolchain::find_or_ensure_set(project, fetcher, set)?;
        Ok(HostTools { root: found.root, label: found.version_label })
    }

    /// Whether the root has `program`.
    pub(crate) fn has(&self, program: &str) -> bool {
        self.program_file(program).is_ok()
    }

    /// The file of `program` in the root (`usr/bin`, then `usr/sbin`), relative to the root.
    fn program_file(&self, program: &str) -> Result<PathBuf> {
        anyhow::ensure!(
            !program.is_empty()
                && program.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
                && !program.starts_with('.'),
            "`{program}` is not a program name"
        );
        let dir = reprovm_fs::beneath::Dir::open(&self.root)?;
        for d in PROGRAM_DIRS {
            let candidate = Path::new("/").join(d).join(program);
            if let Ok(rel) = dir.resolve_in_root(&candidate, true) {
                if dir.metadata(&rel)?.is_some_and(|m| m.kind == reprovm_fs::beneath::Kind::File) {
                    return Ok(rel);
                }
            }
        }
        bail!(
            "`{program}` is not a program of the pinned host tools (pins/tools.lock); `cargo xtask tool --list` lists them, and toolchain/tools.toml is where a package is added (then `cargo xtask toolchain lock tools`)"
        )
    }

    /// Every program the root has, sorted.
    pub(crate) fn programs(&self) -> Result<Vec<String>> {
        let dir = reprovm_fs::beneath::Dir::open(&self.root)?;
        let mut out = Vec::new();
        for d in PROGRAM_DIRS {
            if dir.metadata(Path::new(d))?.is_none() {
                continue;
            }
            for name in dir.open_dir(Path::new(d))?.names()? {
                let name = name.to_string_lossy().into_owned();
                if self.program_file(&name).is_ok() {
                    out.push(name);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// A command running `program` of the pinned tools, set up to use the root's own data:
    /// QEMU's firmware and option ROMs (`-L`) and modules, skopeo's policy and registries.
    pub(crate) fn command(&self, program: &str) -> Result<Command> {
        let file = self.program_file(program)?;
        let mut c = toolchain::root_program(&self.root, &file, program)?;
        if program.starts_with("qemu-system-") {
            // The root's data directories first: a host QEMU's would otherwise answer for
            // any file this one does not have (Debian builds QEMU with these as its
            // firmware path).
            for d in ["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"] {
                c.arg("-L").arg(self.root.join(d));
            }
            c.env("QEMU_MODULE_DIR", self.root.join("usr/lib/x86_64-linux-gnu/qemu"));
        }
        if program == "skopeo" {
            c.env("CONTAINERS_REGISTRIES_CONF", self.root.join("etc/containers/registries.conf"));
        }
        Ok(c)
    }

    /// `command`, with the caller's arguments, for `cargo xtask tool`. skopeo gets the root's
    /// trust policy unless the arguments name one (it is a global option, so it goes first).
    pub(crate) fn command_with_args(&self, program: &str, args: &[String]) -> Result<Command> {
        let mut c = self.command(program)?;
        if program == "skopeo" && !args.iter().any(|a| a.starts_with("--policy")) {
            c.arg("--policy").arg(self.root.join("etc/containers/policy.json"));
        }
        c.args(args);
        Ok(c)
    }

    /// OVMF, the x86_64 UEFI firmware.
    pub(crate) fn ovmf(&self) -> Result<Firmware> {
        self.firmware("usr/share/OVMF/OVMF_CODE_4M.fd", "usr/share/OVMF/OVMF_VARS_4M.fd")
    }

    /// The UEFI firmware for QEMU guests of `arch`: OVMF, or AAVMF (ArmVirtQemu, 64 MiB
    /// flash images, no Secure Boot) for QEMU's arm64 virt machine.
    pub(crate) fn uefi_firmware(&self, arch: crate::model::arch::Arch) -> Result<Firmware> {
        match arch {
            crate::model::arch::Arch::X86_64 => self.ovmf(),
            crate::model::arch::Arch::Aarch64 => self.firmware(
                "usr/share/AAVMF/AAVMF_CODE.no-secboot.fd",
                "usr/share/AAVMF/AAVMF_VARS.fd",
            ),
        }
    }

    fn firmware(&self, code: &str, vars: &str) -> Result<Firmware> {
        let dir = reprovm_fs::beneath::Dir::open(&self.root)?;
        let mut found = Vec::new();
        for f in [code, vars] {
            let rel = dir.resolve_in_root(&Path::new("/").join(f), true).with_context(|| {
                format!("{f} is not in the pinned host tools (pins/tools.lock)")
            })?;
            found.push(self.root.join(rel));
        }
        let vars = found.pop().context("no vars")?;
        let code = found.pop().context("no code")?;
        Ok(Firmware { code, vars })
    }
}
