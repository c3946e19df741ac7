//! The sandbox's [`ScriptRunner`]: each phase of a node (`configure`, the steps' scripts,
//! `build`) run as `sh -eu` in a fresh sandbox over the pinned toolchain, its output appended
//! to the node's log; with the build's jobserver, each phase takes one of the build's `-j`
//! tokens and its makes share the rest.

use crate::steps::runner::ScriptRunner;
use crate::steps::toolchain::Toolchain;
use anyhow::{bail, Result};
use reprovm_fs::beneath::Dir;
use reprovm_sandbox::{self as sandbox, Bind, Spec};
use std::path::Path;
use std::time::Duration;

/// Runs phases of one node in the sandbox over the toolchain.
pub(crate) struct SandboxRunner<'a> {
    pub tc: &'a Toolchain,
    pub binds: &'a [Bind],
    pub env: &'a [(String, String)],
    pub work: &'a Path,
    pub log: &'a Path,
    pub timeout: Duration,
    /// Stop the phase (killing the sandbox) when this is set: another node failed.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// The build's shared jobserver: each phase waits for a token, and its makes join it.
    pub jobserver: Option<&'a sandbox::Jobserver>,
}

/// `make` as a phase sharing the build's jobserver finds it first in `PATH`: GNU make 4.3
/// leaves an inherited jobserver for one of its own when given `-jN`, and recipes say
/// `make -j"$JOBS"`; so `-jN`, `-j N`, `--jobs=N` and `--jobs N` are dropped, and the real
/// make runs with the phase's `PATH` without this directory, wherever a script put it (no make
/// below sees the wrapper, none loops back to it, and `$(MAKE)` stays `make`).
fn make_wrapper() -> String {
    let bin = Path::new(sandbox::BUILD_DIR).join(MAKE_WRAPPER_DIR);
    format!(
        r#"#!/bin/sh
# reprovm: this phase takes its jobs from the build's jobserver (MAKEFLAGS names it; decision
# 0077), which make 4.3 leaves for one of its own when given -jN: drop -jN, then run make
# with this directory out of PATH, wherever a script put it.
d={}
p=:$PATH:
while :; do
  case $p in
    *:$d:*) p=${{p%%:$d:*}}:${{p#*:$d:}} ;;
    *) break ;;
  esac
done
p=${{p#:}}
PATH=${{p%:}}
skip=
for a do
  shift
  if [ -n "$skip" ]; then
    skip=
    case $a in [0-9]*) continue ;; esac
  fi
  case $a in
    -j|--jobs) skip=1; continue ;;
    -j[0-9]*|--jobs=*) continue ;;
  esac
  set -- "$@" "$a"
done
exec make "$@"
"#,
        bin.display()
    )
}

/// Where the wrapper lives in the sandbox (beside the phase scripts).
const MAKE_WRAPPER_DIR: &str = ".reprovm/jobserver";

impl ScriptRunner for SandboxRunner<'_> {
    fn build_dir(&self) -> &Path {
        Path::new(sandbox::BUILD_DIR)
    }

    fn run_script(&self, phase: &str, script: &str) -> Result<()> {
        let dir = Dir::open(&self.work.join("build"))?;
        let rel = Path::new(".reprovm").join(format!("{phase}.sh"));
        dir.write_atomic(&rel, script.as_bytes(), 0o644)?;
        let argv = vec![
            "/bin/sh".into(),
            "-eu".into(),
            Path::new(sandbox::BUILD_DIR).join(&rel).display().to_string(),
        ];
        let mut env = self.env.to_vec();
        // The phase's starting slot first (`Jobserver`): held until its sandbox has ended.
        let token = match self.jobserver {
            Some(js) => {
                let token = js.acquire(self.stop)?;
                let wrapper = Path::new(MAKE_WRAPPER_DIR).join("make");
                dir.write_atomic(&wrapper, make_wrapper().as_bytes(), 0o755)?;
                let bin = Path::new(sandbox::BUILD_DIR).join(MAKE_WRAPPER_DIR);
                for (k, v) in env.iter_mut() {
                    match k.as_str() {
                        "PATH" => *v = format!("{}:{v}", bin.display()),
                        "MAKEFLAGS" => *v = format!("{v} {}", js.makeflags()),
                        _ => {}
                    }
                }
                if !env.iter().any(|(k, _)| k == "MAKEFLAGS") {
                    env.push(("MAKEFLAGS".into(), js.makeflags()));
                }
                Some(token)
            }
            None => None,
        };
        use std::io::Write;
        let mut lf = std::fs::OpenOptions::new().create(true).append(true).open(self.log)?;
        writeln!(lf, "==== reprovm phase {phase}: {}", argv.join(" "))?;
        drop(lf);
        let spec = Spec {
            root: self.tc.root.clone(),
            binds: self.binds.to_vec(),
            env,
            cwd: Path::new(sandbox::BUILD_DIR).join("src"),
            argv,
            root_rw: false,
        };
        let code = sandbox::run_stoppable(
            &spec,
            &self.work.join(format!("sandbox-{phase}.json")),
            self.log,
            Some(self.timeout),
            self.stop,
            self.jobserver,
        );
        drop(token);
        let code = code?;
        if code != 0 {
            bail!("phase `{phase}` exited with status {code}");
        }
        Ok(())
    }
}
