//! The hermetic build sandbox: Linux user, mount, PID, network, UTS and IPC namespaces set up
//! in Rust (no bwrap). The xtask binary re-executes itself as the namespace's init; see
//! `init.rs`. Inside: the toolchain root read-only as `/`, the work tree at `/build`, the
//! output at `/out`, fresh `/proc`, a minimal `/dev`, tmpfs `/tmp`, uid/gid 0, hostname
//! `reprovm`, loopback only, a fixed environment. Every process dies with the build.

mod init;
mod preflight;
pub mod testroot;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use init::maybe_run_init;
#[allow(unused_imports)]
pub use preflight::SandboxError;

/// Environment variable carrying the spec path to the re-executed init.
const INIT_ENV: &str = "__REPROVM_SANDBOX_INIT";

/// Directories that must exist in every sandbox root (mount points).
pub const MOUNT_POINTS: [&str; 5] = ["build", "out", "proc", "dev", "tmp"];

pub const HOSTNAME: &str = "reprovm";
pub const HOME: &str = "/homeless";
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub src: PathBuf,
    pub dest: PathBuf,
    pub rw: bool,
}

/// Everything the init needs, serialised to JSON next to the work tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// Read-only root (the toolchain store entry).
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// Leave the root writable (only for fix-ups of a root being materialised).
    #[serde(default)]
    pub root_rw: bool,
}

/// The fixed environment every build sees; nothing from the host leaks in.
pub fn base_env(source_date_epoch: i64, jobs: usize) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), HOME.into()),
        ("TZ".into(), "UTC".into()),
        ("LC_ALL".into(), "C".into()),
        ("LANG".into(), "C".into()),
        ("SOURCE_DATE_EPOCH".into(), source_date_epoch.to_string()),
        ("JOBS".into(), jobs.to_string()),
        // Where outputs go; recipes write to "$OUT" so the same scripts run under Nix.
        ("OUT".into(), "/out".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("TERM".into(), "dumb".into()),
        ("PYTHONHASHSEED".into(), "0".into()),
        ("PERL_HASH_SEED".into(), "0".into()),
    ]
}

/// Run `spec` in a fresh sandbox; stdout and stderr go to `log`. Returns the exit code.
pub fn run(spec: &Spec, spec_path: &Path, log: &Path) -> Result<i32> {
    preflight::check()?;
    for m in MOUNT_POINTS {
        let p = spec.root.join(m);
        anyhow::ensure!(
            p.is_dir(),
            "sandbox root {} lacks the mount point /{m}; rematerialise it",
            spec.root.display()
        );
    }
    let json = serde_json::to_vec_pretty(spec)?;
    std::fs::write(spec_path, json).with_context(|| format!("writing {}", spec_path.display()))?;
    // /proc/self/exe works even if the binary was replaced on disk while a build runs.
    let exe = PathBuf::from("/proc/self/exe");
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let status = Command::new(exe)
        .env_clear()
        .env(INIT_ENV, spec_path)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .status()
        .context("starting the sandbox")?;
    Ok(status.code().unwrap_or(128 + 9))
}

/// Like `run`, but with the terminal attached (menuconfig).
pub fn run_interactive(spec: &Spec, spec_path: &Path) -> Result<i32> {
    preflight::check()?;
    std::fs::write(spec_path, serde_json::to_vec_pretty(spec)?)?;
    let status = Command::new("/proc/self/exe").env_clear().env(INIT_ENV, spec_path).status()?;
    Ok(status.code().unwrap_or(137))
}

/// Like `run`, but the root stays writable (toolchain fix-ups such as ldconfig).
pub fn run_with_rw_root(spec: &Spec, spec_path: &Path, log: &Path) -> Result<i32> {
    let mut s = spec.clone();
    s.root_rw = true;
    run(&s, spec_path, log)
}

/// Run `cmd` over `root` with empty /build and /out; its output goes to our stdout/stderr.
pub fn exec_capture(root: &Path, cmd: &[String]) -> Result<i32> {
    let t = tempfile::tempdir()?;
    let (b, o) = (t.path().join("build"), t.path().join("out"));
    std::fs::create_dir_all(&b)?;
    std::fs::create_dir_all(&o)?;
    let spec = Spec {
        root: root.to_path_buf(),
        binds: vec![
            Bind { src: b, dest: "/build".into(), rw: true },
            Bind { src: o, dest: "/out".into(), rw: true },
        ],
        env: base_env(crate::build::DEFAULT_SOURCE_DATE_EPOCH, 1),
        cwd: "/build".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "exec \"$@\"".into(), "sh".into()]
            .into_iter()
            .chain(cmd.iter().cloned())
            .collect(),
        root_rw: false,
    };
    let log = t.path().join("log");
    let code = run(&spec, &t.path().join("spec.json"), &log)?;
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    Ok(code)
}
