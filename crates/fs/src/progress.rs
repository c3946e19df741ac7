//! Progress reporting: bars on a terminal, plain timestamped lines otherwise (CI logs).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
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
