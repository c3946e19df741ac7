//! The hermetic build sandbox: Linux user, mount, PID, network, UTS and IPC namespaces set up
//! in Rust (no bwrap). The xtask binary re-executes itself as the namespace's init; see
//! `init.rs`. Inside: the toolchain root read-only as `/`, the work tree at `/build`, the
//! output at `/out`, fresh `/proc` with `/proc/sys` read-only, a minimal `/dev`, tmpfs `/tmp`,
//! uid/gid 0, hostname `reprovm`, loopback only, a fixed environment. The build itself runs
//! in a nested user namespace (the mounts are locked), with no capabilities, `no_new_privs`
//! and a seccomp filter (`lockdown.rs`, `seccomp.rs`). Every process dies with the build; a
//! build that outlives its timeout is killed whole.

mod ids;
mod init;
mod jobserver;
mod lockdown;
mod preflight;
mod seccomp;
pub mod testroot;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use init::maybe_run_init;
pub use jobserver::{Jobserver, Token};
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
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub src: PathBuf,
    pub dest: PathBuf,
    pub rw: bool,
}

/// Everything the init needs, serialised to JSON next to the work tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// What the init reads: the spec and, when the xtask runs as root, the host id the sandbox's
/// uid/gid 0 maps to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitSpec {
    spec: Spec,
    host_id: Option<u32>,
}

/// The build directory as recipe scripts see it (and `$REPROVM_BUILD`: recipes name it through
/// that variable, which Nix sets to its own build directory).
pub const BUILD_DIR: &str = "/build";

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
        ("REPROVM_BUILD".into(), BUILD_DIR.into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("TERM".into(), "dumb".into()),
        ("PYTHONHASHSEED".into(), "0".into()),
        ("PERL_HASH_SEED".into(), "0".into()),
    ]
}

/// A sandbox that outlived its time limit (killed, with everything in it).
#[derive(Debug, thiserror::Error)]
#[error("timed out after {}: the sandbox and every process in it were killed", reprovm_fs::progress::human_duration(*.0))]
pub struct Timeout(pub Duration);

/// A sandbox its caller stopped (killed, with everything in it): another part of the build
/// failed.
#[derive(Debug, thiserror::Error)]
#[error("stopped: another node of the build failed")]
pub struct Stopped;

/// A started sandbox: the lease of its host id and the trees handed to that id.
struct Prepared {
    lease: Option<ids::Lease>,
    writable: Vec<PathBuf>,
}

impl Prepared {
    /// Check the root, lease an id when root, hand the writable trees to it, write the spec.
    fn new(spec: &Spec, spec_path: &Path) -> Result<Prepared> {
        preflight::check()?;
        for m in MOUNT_POINTS {
            let p = spec.root.join(m);
            anyhow::ensure!(
                p.is_dir(),
                "sandbox root {} lacks the mount point /{m}; rematerialise it",
                spec.root.display()
            );
        }
        let mut writable: Vec<PathBuf> =
            spec.binds.iter().filter(|b| b.rw).map(|b| b.src.clone()).collect();
        if spec.root_rw {
            writable.push(spec.root.clone());
        }
        let lease = if ids::is_root() { Some(ids::lease()?) } else { None };
        if let Some(l) = &lease {
            for w in &writable {
                ids::chown_tree(w, l.id, l.id)
                    .with_context(|| format!("handing {} to the sandbox's id", w.display()))?;
            }
        }
        let init = InitSpec { spec: spec.clone(), host_id: lease.as_ref().map(|l| l.id) };
        std::fs::write(spec_path, serde_json::to_vec_pretty(&init)?)
            .with_context(|| format!("writing {}", spec_path.display()))?;
        Ok(Prepared { lease, writable })
    }

    /// Take the writable trees back for root (they are the host's files again).
    fn finish(self) -> Result<()> {
        if self.lease.is_some() {
            for w in &self.writable {
                ids::chown_tree(w, 0, 0).with_context(|| format!("taking back {}", w.display()))?;
            }
        }
        Ok(())
    }
}

fn init_command(spec_path: &Path, jobserver: Option<&Jobserver>) -> Command {
    // /proc/self/exe works even if the binary was replaced on disk while a build runs.
    let mut c = Command::new("/proc/self/exe");
    c.env_clear().env(INIT_ENV, spec_path);
    if let Some(js) = jobserver {
        // The token pipe, and nothing else of the xtask's, stays open through the init into
        // the build, as the numbers its `MAKEFLAGS` names (dup2 leaves them open on exec).
        let (read, write) = js.fds();
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only dup2, which is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                for (from, to) in [(read, jobserver::READ_FD), (write, jobserver::WRITE_FD)] {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    c
}

/// Wait for the init, killing it (and so the whole sandbox) when `timeout` passes or `stop`
/// is set.
fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
    stop: Option<&AtomicBool>,
) -> Result<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Stopped.into());
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            // The init is the parent of the namespace's PID 1, which dies with it
            // (PR_SET_PDEATHSIG); with PID 1 gone the kernel kills every process inside.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Timeout(timeout.unwrap_or_default()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn code_of(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(9))
}

/// Run `spec` in a fresh sandbox; stdout and stderr go to `log`. Returns the exit code.
pub fn run(spec: &Spec, spec_path: &Path, log: &Path, timeout: Option<Duration>) -> Result<i32> {
    run_stoppable(spec, spec_path, log, timeout, None, None)
}

/// Like `run`, killing the sandbox (the error is [`Stopped`]) once `stop` is set, with the
/// pipe of `jobserver` open in it (the caller holds one of its tokens for the phase and puts
/// its `makeflags` in the environment).
pub fn run_stoppable(
    spec: &Spec,
    spec_path: &Path,
    log: &Path,
    timeout: Option<Duration>,
    stop: Option<&AtomicBool>,
    jobserver: Option<&Jobserver>,
) -> Result<i32> {
    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
        return Err(Stopped.into());
    }
    let prepared = Prepared::new(spec, spec_path)?;
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = init_command(spec_path, jobserver)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .context("starting the sandbox")?;
    let status = wait(&mut child, timeout, stop);
    // Why the phase ended (a timeout, a stop) comes before a failure to take the trees back.
    let finished = prepared.finish();
    let code = code_of(status?);
    finished?;
    Ok(code)
}

/// Like `run`, but with the terminal attached (menuconfig).
pub fn run_interactive(spec: &Spec, spec_path: &Path) -> Result<i32> {
    let prepared = Prepared::new(spec, spec_path)?;
    let status = init_command(spec_path, None).status().context("starting the sandbox");
    prepared.finish()?;
    Ok(code_of(status?))
}

/// What a command run in the sandbox for a caller did: its exit code and what it wrote
/// (stdout and stderr, in order), for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRun {
    pub code: i32,
    pub output: String,
}

/// Run `cmd` over `root` with empty /build and /out and SOURCE_DATE_EPOCH `epoch`.
pub fn exec_capture(root: &Path, cmd: &[String], epoch: i64) -> Result<ProgramRun> {
    let t = tempfile::tempdir()?;
    let (b, o) = (t.path().join("build"), t.path().join("out"));
    std::fs::create_dir_all(&b)?;
    std::fs::create_dir_all(&o)?;
    exec_in(root, (&b, &o), &[], cmd, epoch)
}

/// Run `cmd` in the sandbox over `root` with the host directories `build` at /build (the
/// working directory) and `out` at /out, both writable, and `env` added to the fixed
/// environment (replacing a variable of the same name).
pub fn exec_in(
    root: &Path,
    (build, out): (&Path, &Path),
    env: &[(String, String)],
    cmd: &[String],
    epoch: i64,
) -> Result<ProgramRun> {
    let t = tempfile::tempdir()?;
    let mut environment = base_env(epoch, 1);
    environment.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    environment.extend(env.iter().cloned());
    let spec = Spec {
        root: root.to_path_buf(),
        binds: vec![
            Bind { src: build.to_path_buf(), dest: BUILD_DIR.into(), rw: true },
            Bind { src: out.to_path_buf(), dest: "/out".into(), rw: true },
        ],
        env: environment,
        cwd: BUILD_DIR.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "exec \"$@\"".into(), "sh".into()]
            .into_iter()
            .chain(cmd.iter().cloned())
            .collect(),
        root_rw: false,
    };
    let log = t.path().join("log");
    let code = run(&spec, &t.path().join("spec.json"), &log, None)?;
    let output =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    Ok(ProgramRun { code, output })
}
