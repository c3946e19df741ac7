//! An advisory lock on the store so that two xtask processes never write it at once.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Take the exclusive lock, telling the user when another process holds it.
    pub fn exclusive(store: &Path) -> Result<StoreLock> {
        std::fs::create_dir_all(store).with_context(|| format!("creating {}", store.display()))?;
        let path = store.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("waiting for another reprovm process holding {}", path.display());
            // SAFETY: as above.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        Ok(StoreLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn second_lock_in_another_process_blocks() {
        let t = tempfile::tempdir().unwrap();
        let _l = StoreLock::exclusive(t.path()).unwrap();
        // flock(1) from util-linux in another process must fail to take it without waiting.
        let st = std::process::Command::new("flock")
            .arg("-n")
            .arg(t.path().join(".lock"))
            .arg("true")
            .status();
        if let Ok(st) = st {
            assert!(!st.success(), "a second process took the store lock");
        }
    }
}
