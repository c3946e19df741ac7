//! A minimal sandbox root made from host programs and their ELF closure. Used by the fast
//! tests (seconds, no toolchain download) to exercise the real sandbox; real builds use the
//! pinned toolchain instead.

use anyhow::{Context, Result};
use reprovm_fs::elf;
use std::path::{Path, PathBuf};

pub const PROGRAMS: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/cat",
    "/bin/ls",
    "/bin/mkdir",
    "/bin/touch",
    "/bin/sleep",
    "/bin/hostname",
    "/usr/bin/env",
    "/usr/bin/sort",
    "/usr/bin/id",
    "/bin/grep",
    "/usr/bin/head",
    "/bin/rm",
    "/usr/bin/sha256sum",
    "/bin/echo",
    "/bin/chmod",
    "/usr/bin/wc",
    "/usr/bin/tail",
    "/bin/cp",
    "/bin/mv",
    "/bin/sed",
    "/usr/bin/tr",
    "/usr/bin/cut",
    "/bin/date",
    "/bin/dd",
    "/usr/bin/od",
    "/bin/ln",
    "/usr/bin/mkfifo",
    "/usr/bin/unshare",
    "/usr/bin/perl",
    "/usr/bin/make",
];

/// Populate `root` with PROGRAMS (those present), their libraries and the mount points.
pub fn make(root: &Path) -> Result<()> {
    let mut datas = Vec::new();
    for p in PROGRAMS {
        let Ok(real) = std::fs::canonicalize(p) else {
            continue;
        };
        let data = std::fs::read(&real)?;
        let dest = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap_or(root))?;
        std::fs::write(&dest, &data)?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        datas.push((PathBuf::from(p), data));
    }
    let dirs: Vec<String> = elf::DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect();
    for (install, real) in elf::closure(
        &reprovm_fs::beneath::Dir::open(Path::new("/"))?,
        &datas,
        &dirs,
        elf::Machine::X86_64,
    )? {
        let real = Path::new("/").join(real);
        let dest = root.join(install.strip_prefix("/").unwrap_or(&install));
        std::fs::create_dir_all(dest.parent().unwrap_or(root))?;
        std::fs::copy(&real, &dest).with_context(|| format!("copying {}", real.display()))?;
    }
    for m in super::MOUNT_POINTS {
        std::fs::create_dir_all(root.join(m))?;
    }
    std::fs::create_dir_all(root.join("usr/bin"))?;
    Ok(())
}
