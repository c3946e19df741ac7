//! Advisory locks (flock): held while the process lives, released however it dies.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// A held lock; released when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub struct Lock {
    file: File,
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a valid, owned descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Lock {
    /// Take `path` exclusively, telling the user when another process holds it.
    pub fn exclusive(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            crate::progress::say(&format!(
                "waiting for another reprovm process holding {}",
                path.display()
            ));
            flock(&file, libc::LOCK_EX).with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Lock { file })
    }

    /// Take `path` exclusively, as `exclusive`, unless `stopped` says to give up first (asked
    /// every 100 ms while another process holds it): then None.
    pub fn exclusive_unless(path: &Path, stopped: &dyn Fn() -> bool) -> Result<Option<Lock>> {
        let file = open(path)?;
        let mut said = false;
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => return Ok(Some(Lock { file })),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
            if stopped() {
                return Ok(None);
            }
            if !said {
                crate::progress::say(&format!(
                    "waiting for another reprovm process holding {}",
                    path.display()
                ));
                said = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Take `path` exclusively if nobody holds it at all right now.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Lock { file })),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// Take `path` shared (several holders at once; excludes an exclusive holder).
    /// Tells the user when another process holds it exclusively.
    pub fn shared(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        if flock(&file, libc::LOCK_SH | libc::LOCK_NB).is_err() {
            crate::progress::say(&format!(
                "waiting for another reprovm process holding {} alone",
                path.display()
            ));
            flock(&file, libc::LOCK_SH).with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Lock { file })
    }

    /// Turn an exclusive lock into a shared one without letting go of it.
    pub fn downgrade(self) -> Result<Lock> {
        flock(&self.file, libc::LOCK_SH).context("downgrading a lock")?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_another_process_blocks() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".lock");
        let _l = Lock::exclusive(&path).unwrap();
        // flock(1) from util-linux in another process must fail to take it without waiting.
        let st = std::process::Command::new("flock")
            .arg("-n")
            .arg(&path)
            .arg("true")
            .status()
            .expect("flock(1) from util-linux is needed by this test");
        assert!(!st.success(), "a second process took the lock");
    }

    #[test]
    fn a_wait_for_a_held_lock_gives_up_when_told() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".lock");
        let held = Lock::exclusive(&path).unwrap();
        let asked = std::cell::Cell::new(0);
        let stopped = || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        };
        assert!(Lock::exclusive_unless(&path, &stopped).unwrap().is_none());
        assert_eq!(asked.get(), 3);
        drop(held);
        assert!(Lock::exclusive_unless(&path, &|| true).unwrap().is_some());
    }

    #[test]
    fn shared_holders_coexist_and_exclude_the_sweeper() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".lock");
        let a = Lock::shared(&path).unwrap();
        let b = Lock::shared(&path).unwrap();
        assert!(Lock::try_exclusive(&path).unwrap().is_none());
        drop((a, b));
        let ex = Lock::try_exclusive(&path).unwrap().expect("free lock");
        let _shared = ex.downgrade().unwrap();
        let _another = Lock::shared(&path).unwrap();
    }
}
