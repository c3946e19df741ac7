//! The rebuild under varied conditions: where it works (tmpfs when it fits), and the child
//! xtask that rebuilds with another umask, time zone, locale, job count, hostname and
//! directory order.

use super::*;

/// Room (bytes) a node's work tree needs, estimated from its compressed sources: unpacked
/// and built, a tree is about 16 times its tarball (the kernel: 138 MB -> ~2 GB).
pub(super) fn work_tree_estimate(r: &crate::model::recipe::Recipe) -> u64 {
    r.sources.iter().map(|s| s.size).sum::<u64>() * 16 + (256 << 20)
}

/// Free bytes of the file system at `path`, and whether it is a tmpfs.
pub(super) fn free_space(path: &Path) -> Option<(u64, bool)> {
    let st = rustix::fs::statfs(path).ok()?;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    Some((st.f_bavail * st.f_bsize as u64, st.f_type as i64 == TMPFS_MAGIC))
}

/// The rebuild's work root: on tmpfs (/dev/shm) when it has room for this node with half of
/// the available memory to spare, so that the path, its length, the file system and directory
/// order all differ from the first build; else a longer path beside the store.
pub(super) fn varied_conditions(
    project: &Project,
    r: &crate::model::recipe::Recipe,
    jobs: usize,
) -> Result<Conditions> {
    let need = work_tree_estimate(r);
    let mem_available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemAvailable:")
                    .map(|v| v.trim().trim_end_matches(" kB").to_string())
            })
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let shm = Path::new("/dev/shm");
    let fits = match (free_space(shm), mem_available) {
        (Some((free, true)), Some(mem)) => free > need && mem / 2 > need,
        _ => false,
    };
    let (work_root, on_tmpfs) = if fits {
        (
            shm.join(format!(
                "{}{}-{}",
                crate::ops::gc::SHM_WORK_PREFIX,
                r.name,
                std::process::id()
            )),
            true,
        )
    } else {
        (
            project.out.join("audit").join(crate::ops::gc::LONG_WORK_DIR).join(format!(
                "{}-{}",
                r.name,
                std::process::id()
            )),
            false,
        )
    };
    Ok(Conditions { work_root, on_tmpfs, other_hostname: sandbox_root(), jobs })
}

pub(super) fn sandbox_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Rebuild `target` in a child xtask: umask 0002, another hostname (as root), another
/// environment, another job count (the jobserver's tokens), another work root, reversed
/// directory order.
pub(super) fn rebuild(
    project: &Project,
    target: &str,
    into: &Path,
    cond: &Conditions,
) -> Result<Manifest> {
    let mut c = Command::new(std::env::current_exe()?);
    if project.host_toolchain {
        c.arg("--host-toolchain");
    }
    c.arg("--recipes")
        .arg(&project.recipes)
        .arg("--out")
        .arg(&project.out)
        .arg("--cache")
        .arg(&project.downloads);
    for u in &project.uses {
        c.arg("--use").arg(u);
    }
    c.arg("--arch").arg(project.arch.name());
    c.args([
        "build",
        target,
        "--jobs",
        &cond.jobs.to_string(),
        "--rebuild",
        target,
        "--shuffle-dirents",
    ]);
    c.arg("--rebuild-into").arg(into).arg("--work-root").arg(&cond.work_root);
    c.env("TZ", "Pacific/Kiritimati")
        .env("LANG", "et_EE.UTF-8")
        .env("LC_ALL", "et_EE.UTF-8")
        .env("REPROVM_AUDIT_CANARY", "1");
    c.stdout(std::process::Stdio::from(std::io::stderr()));
    let other_hostname = cond.other_hostname;
    // SAFETY: between fork and exec only async-signal-safe calls (umask, unshare, sethostname).
    unsafe {
        c.pre_exec(move || {
            libc::umask(0o002);
            if other_hostname {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let name = b"reprovm-audit-other";
                if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    util::run_checked(&mut c).with_context(|| {
        format!("the audit rebuild of {target} failed (logs in {})", into.join("logs").display())
    })?;
    let entry = std::fs::read_dir(into)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").is_file())
        .with_context(|| format!("the rebuild of {target} left no entry in {}", into.display()))?;
    manifest::read(&entry.join("manifest.json"))
}
