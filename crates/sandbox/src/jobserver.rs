//! One GNU make jobserver shared by the sandboxes of a build (however many nodes it runs at
//! once, `build --max-nodes N`): a pipe holding the build's `-j` tokens.
//!
//! GNU make's protocol (the pipe form of make 4.3, the toolchain's): a make that finds
//! `--jobserver-auth=R,W` in `MAKEFLAGS` and open descriptors R and W runs one job on the
//! slot it was started with, and each further job on a token (a byte) read from R, written
//! back to W when that job ends. The engine takes the starting slot of every sandbox phase
//! from the same pipe before the phase starts ([`Jobserver::acquire`]) and gives it back
//! when the phase has ended, so every make of every node draws from one count: at most `-j`
//! jobs run, whatever runs beside what.
//!
//! A token a killed process held is lost, and a build script may write bytes of its own: when
//! no phase runs, the pipe must hold exactly the count, and [`Jobserver::acquire`] puts it
//! back to that before it takes one.

use anyhow::{Context, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The descriptor numbers the pipe has inside the sandbox: high, away from the 3 to 9 that
/// shell scripts (autoconf's among them) open for themselves, below bash's 255 and below
/// the usual 1024 limit.
pub const READ_FD: i32 = 834;
pub const WRITE_FD: i32 = 835;

/// The build's token pipe.
#[derive(Debug)]
pub struct Jobserver {
    read: OwnedFd,
    write: OwnedFd,
    /// The write end opened again without blocking (an open file description of its own:
    /// the sandboxes' makes keep a blocking one), for giving tokens back.
    give_back: OwnedFd,
    tokens: usize,
    /// Tokens the engine holds: one per sandbox phase running.
    held: Mutex<usize>,
}

/// A phase's starting slot, given back to the pipe when dropped.
#[derive(Debug)]
pub struct Token<'a> {
    server: &'a Jobserver,
}

impl Jobserver {
    /// The pipe's descriptor numbers inside a sandbox (read, write).
    pub const SANDBOX_FDS: (i32, i32) = (READ_FD, WRITE_FD);

    /// A pipe holding `tokens` tokens (the build's `-j`).
    pub fn new(tokens: usize) -> Result<Jobserver> {
        anyhow::ensure!(tokens > 0, "a jobserver needs at least one token");
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .context("creating the jobserver's pipe")?;
        // Above the numbers the sandbox gives them, so that the init's dup2 never meets its
        // own source (still close-on-exec: only the sandbox's init gets them).
        let high = |fd: OwnedFd| {
            rustix::io::fcntl_dupfd_cloexec(&fd, WRITE_FD + 1).with_context(|| {
                format!(
                    "moving the jobserver's pipe above descriptor {WRITE_FD}: raise the open-file limit (ulimit -n) above {}",
                    WRITE_FD + 2
                )
            })
        };
        let (read, write) = (high(read)?, high(write)?);
        // A page of slack: the pipe's room is counted in pages, and one partly read keeps
        // its page.
        let room = rustix::pipe::fcntl_getpipe_size(&write)?.saturating_sub(4096);
        anyhow::ensure!(
            tokens <= room,
            "-j {tokens}: more jobs than the jobserver's pipe holds tokens ({room}); give a smaller -j"
        );
        // GNU make reads the pipe without blocking (after waiting for it to be readable), and
        // so does `acquire`.
        rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)?;
        let give_back = rustix::fs::open(
            format!("/proc/self/fd/{}", write.as_raw_fd()),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .context("opening the jobserver's pipe without blocking")?;
        let give_back = high(give_back)?;
        let server = Jobserver { read, write, give_back, tokens, held: Mutex::new(0) };
        server.refill()?;
        Ok(server)
    }

    /// The build's `-j`: how many jobs may run at once across every sandbox.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// What a phase's `MAKEFLAGS` holds for its makes to join this jobserver. No `-jN`: the
    /// environment a build sees is the same whatever `-j` and the schedule are (the count is
    /// the pipe's, and `$JOBS`).
    pub fn makeflags(&self) -> String {
        format!("--jobserver-auth={READ_FD},{WRITE_FD}")
    }

    /// The pipe's two ends, to be given the numbers `READ_FD` and `WRITE_FD` in a sandbox.
    pub(crate) fn fds(&self) -> (i32, i32) {
        (self.read.as_raw_fd(), self.write.as_raw_fd())
    }

    /// Wait for a token (a phase's starting slot), giving up with [`crate::Stopped`] once
    /// `stop` is set.
    pub fn acquire(&self, stop: Option<&AtomicBool>) -> Result<Token<'_>> {
        loop {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Err(crate::Stopped.into());
            }
            {
                let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if *held == 0 {
                    self.refill()?;
                }
                let mut byte = [0u8; 1];
                match rustix::io::read(&self.read, &mut byte) {
                    Ok(1) => {
                        *held += 1;
                        return Ok(Token { server: self });
                    }
                    Ok(_) => anyhow::bail!("the jobserver's pipe was closed"),
                    Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e).context("reading the jobserver's pipe"),
                }
            }
            let mut fds = [rustix::event::PollFd::new(&self.read, rustix::event::PollFlags::IN)];
            let wait = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("waiting on the jobserver's pipe"),
            }
        }
    }

    /// With no phase running, leave exactly `tokens` bytes in the pipe: the ones a killed
    /// process took are put back, the ones a script added are taken out.
    fn refill(&self) -> Result<()> {
        let there = rustix::io::ioctl_fionread(&self.read)
            .context("counting the jobserver's tokens")? as usize;
        if there < self.tokens {
            let bytes = vec![b'+'; self.tokens - there];
            let mut written = 0;
            while written < bytes.len() {
                written += rustix::io::write(&self.write, &bytes[written..])
                    .context("filling the jobserver's pipe")?;
            }
        }
        let mut extra = there.saturating_sub(self.tokens);
        let mut sink = [0u8; 256];
        while extra > 0 {
            let n = extra.min(sink.len());
            match rustix::io::read(&self.read, &mut sink[..n]) {
                Ok(0) => anyhow::bail!("the jobserver's pipe was closed"),
                Ok(got) => extra -= got,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("draining the jobserver's pipe"),
            }
        }
        Ok(())
    }

    /// Tokens in the pipe now (for tests and progress).
    pub fn available(&self) -> Result<usize> {
        Ok(rustix::io::ioctl_fionread(&self.read)? as usize)
    }
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        let mut held = self.server.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *held -= 1;
        // Never blocks: a pipe a script filled with bytes of its own (the only way it has no
        // room for this token) is left as it is, and the next `acquire` with nothing running
        // puts the count back; so does it after any failed write.
        let _ = rustix::io::write(self.server.give_back.as_fd(), b"+");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_taken_given_back_and_counted() {
        let js = Jobserver::new(2).unwrap();
        assert_eq!(js.available().unwrap(), 2);
        assert_eq!(js.makeflags(), format!("--jobserver-auth={READ_FD},{WRITE_FD}"));
        let a = js.acquire(None).unwrap();
        let b = js.acquire(None).unwrap();
        assert_eq!(js.available().unwrap(), 0);
        // A third waits until one is given back, or until the build stops.
        let stop = AtomicBool::new(true);
        let e = js.acquire(Some(&stop)).unwrap_err();
        assert!(e.downcast_ref::<crate::Stopped>().is_some(), "{e:#}");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| js.acquire(None).map(drop));
            std::thread::sleep(std::time::Duration::from_millis(150));
            assert!(!waiter.is_finished(), "a third token was taken while two were held");
            drop(a);
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(js.available().unwrap(), 1);
        drop(b);
        assert_eq!(js.available().unwrap(), 2);
    }

    #[test]
    fn the_pipe_sits_above_the_sandbox_numbers_and_holds_every_token() {
        let js = Jobserver::new(4).unwrap();
        let (read, write) = js.fds();
        assert!(read > WRITE_FD && write > WRITE_FD, "{read} {write}");
        let e = Jobserver::new(10_000_000).unwrap_err().to_string();
        assert!(e.contains("give a smaller -j"), "{e}");
    }

    #[test]
    fn a_token_given_back_to_a_full_pipe_does_not_block() {
        let js = Jobserver::new(2).unwrap();
        let t = js.acquire(None).unwrap();
        // A script fills the pipe.
        while rustix::io::write(&js.give_back, &[b'x'; 512]).is_ok() {}
        drop(t);
        let t = js.acquire(None).unwrap();
        assert_eq!(js.available().unwrap(), 1);
        drop(t);
        assert_eq!(js.available().unwrap(), 2);
    }

    #[test]
    fn lost_and_forged_tokens_are_put_right_when_nothing_runs() {
        let js = Jobserver::new(3).unwrap();
        // A killed make took two tokens with it.
        let mut two = [0u8; 2];
        rustix::io::read(&js.read, &mut two).unwrap();
        assert_eq!(js.available().unwrap(), 1);
        drop(js.acquire(None).unwrap());
        assert_eq!(js.available().unwrap(), 3);
        // A script wrote five bytes of its own.
        rustix::io::write(&js.write, b"xxxxx").unwrap();
        let t = js.acquire(None).unwrap();
        assert_eq!(js.available().unwrap(), 2);
        drop(t);
        assert_eq!(js.available().unwrap(), 3);
    }
}
