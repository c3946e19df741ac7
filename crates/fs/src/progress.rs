//! Progress reporting: bars on a terminal, plain timestamped lines otherwise (CI logs).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bars and spinners are drawn: stderr is a terminal, not CI, and the front end did not ask
/// for quiet.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && !quiet()
}

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// The front end's choice of how much to show: `quiet` drops bars (its sink drops the
/// lines), `verbose` has long steps follow their logs ([`follow`]).
pub fn set_level(quiet: bool, verbose: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSE.store(verbose, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether long steps report their logs' lines as they are written.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Reports each line written to the log at `path`, prefixed with `prefix: `, until dropped
/// (then the lines written last).
pub struct Follower {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Follow `path` (it may not exist yet) as `tail -f` would.
pub fn follow(path: std::path::PathBuf, prefix: String) -> Follower {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut offset = 0u64;
        let mut partial = Vec::new();
        loop {
            let last = stopped.load(Ordering::Relaxed);
            if let Ok(mut f) = std::fs::File::open(&path) {
                let mut new = Vec::new();
                if f.seek(SeekFrom::Start(offset)).is_ok() && f.read_to_end(&mut new).is_ok() {
                    offset += new.len() as u64;
                    partial.extend_from_slice(&new);
                    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=end).collect();
                        say(&format!("{prefix}: {}", String::from_utf8_lossy(&line).trim_end()));
                    }
                }
            }
            if last {
                if !partial.is_empty() {
                    say(&format!("{prefix}: {}", String::from_utf8_lossy(&partial)));
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    Follower { stop, thread: Some(thread) }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A byte-counting bar for downloads; hidden when stderr is not a terminal.
pub fn bytes_bar(len: u64, msg: &str) -> ProgressBar {
    let pb = if interactive() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A spinner with elapsed time for long steps (builds).
/// A [`spinner`] when `show`, a hidden bar otherwise.
pub fn spinner_if(show: bool, msg: &str) -> ProgressBar {
    if show {
        spinner(msg)
    } else {
        ProgressBar::hidden()
    }
}

pub fn spinner(msg: &str) -> ProgressBar {
    let pb = if interactive() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Where status lines go: the front end's choice ([`set_sink`]), stderr until it makes one.
static SINK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// The one reporting interface: the front end (the command line, a daemon, a test) says where
/// the engine's status lines go, once, before any work. Operations never print.
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

/// Report one status line (the command line prints it to stderr: stdout carries results).
pub fn say(msg: &str) {
    match SINK.get() {
        Some(sink) => sink(msg),
        None => eprintln!("{msg}"),
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    }
}

pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub struct Timer(Instant);
impl Timer {
    pub fn start() -> Timer {
        Timer(Instant::now())
    }
    pub fn elapsed(&self) -> String {
        human_duration(self.0.elapsed())
    }
}
