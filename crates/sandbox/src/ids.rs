//! Who a build is on the host. Run unprivileged, the sandbox's uid/gid 0 is the caller's own
//! uid/gid (the only id a user namespace may map without privilege). Run as root, it is never
//! host root: each sandbox leases an otherwise unused, unprivileged id from a fixed range (like
//! Nix's build users or `auto-allocate-uids`), held by a lock file in `/run/reprovm` for the
//! sandbox's lifetime. The trees the build writes (`/build`, `/out`, a root being fixed up)
//! are handed to that id before it starts and back to root afterwards.

use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::lock::Lock;
use std::path::Path;

/// First host uid/gid of the range (0x5E000000 = 1577058304): far above regular users, below
/// systemd's nspawn ranges' usual allocations and Nix's auto-allocated ids (0x34000000..).
pub const FIRST_ID: u32 = 0x5E00_0000;
/// Sandboxes that can run at once as root.
pub const SLOTS: u32 = 256;

const LEASES: &str = "/run/reprovm";

/// An id leased for one sandbox; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lease {
    pub id: u32,
    _lock: Lock,
}

/// True when this process is host root: uid 0 in the initial user namespace (whose map is
/// the identity over every id). Root inside a user namespace (a rootless container, `unshare
/// -r`) is an unprivileged user for this purpose: its sandbox maps its own uid.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
        && std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// Ids named in /etc/passwd or /etc/group are somebody's: never leased.
fn named_ids() -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for f in ["/etc/passwd", "/etc/group"] {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {f}")),
        };
        out.extend(
            text.lines()
                .filter_map(|l| l.split(':').nth(2))
                .filter_map(|id| id.parse::<u32>().ok()),
        );
    }
    Ok(out)
}

/// Lease a free id of the range.
pub fn lease() -> Result<Lease> {
    std::fs::create_dir_all(LEASES).with_context(|| format!("creating {LEASES}"))?;
    let named = named_ids()?;
    for slot in 0..SLOTS {
        let id = FIRST_ID + slot;
        if named.contains(&id) {
            continue;
        }
        if let Some(lock) = Lock::try_exclusive(&Path::new(LEASES).join(format!("uid-{id}.lock")))?
        {
            return Ok(Lease { id, _lock: lock });
        }
    }
    anyhow::bail!("all {SLOTS} sandbox ids ({FIRST_ID}..) are in use (see {LEASES}); wait for other builds to finish")
}

/// Give the tree at `path` (every entry, symlinks themselves) to `uid`/`gid`.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let d = Dir::open(path)?;
    d.chown(Path::new(""), uid, gid)?;
    for e in d.walk()? {
        d.chown(&e.path, uid, gid)?;
    }
    Ok(())
}
