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

/// `make` as every phase finds it first in `PATH`, so that the recipes' `make -j"$JOBS"` joins
/// the build's jobserver: GNU make 4.3 leaves an inherited jobserver for one of its own when
/// given `-jN` on its command line. A make asked for parallel jobs (`-jN` with N above 1, `-j`,
/// `--jobs[=N]`, its abbreviations, or a `j` in a group of short options such as `-sj8`) has
/// that option dropped and takes its jobs from the jobserver; a make asked for one job (`-j1`)
/// or for none (no `-j`) runs as before, serially, with the jobserver taken out of its
/// `MAKEFLAGS`. The real make is run with `PATH` as the phase had it minus this directory (so
/// no make below sees the wrapper, and `$(MAKE)` stays `make`), or, if a script put the
/// directory there another way, by the path of the first other `make` on `PATH`.
fn make_wrapper(auth: &str) -> String {
    let bin = Path::new(sandbox::BUILD_DIR).join(MAKE_WRAPPER_DIR);
    format!(
        r#"#!/bin/sh
# reprovm: make joins the build's jobserver (MAKEFLAGS names it; decision 0077); GNU make 4.3
# leaves it for one of its own when given -jN, so a parallel -j is dropped here.
d={dir}
auth='{auth}'
real=
rest=$PATH:
while [ -n "$rest" ]; do
  e=${{rest%%:*}}
  rest=${{rest#*:}}
  if [ -z "$real" ] && [ -x "${{e:-.}}/make" ] && ! [ "${{e:-.}}/make" -ef "$0" ]; then
    real=${{e:-.}}/make
  fi
done
if [ -z "$real" ]; then
  echo "make: not found (only reprovm's jobserver wrapper, $0, is on PATH)" >&2
  exit 127
fi
p=:$PATH:
while :; do
  case $p in
    *:$d:*) p=${{p%%:$d:*}}:${{p#*:$d:}} ;;
    *) break ;;
  esac
done
p=${{p#:}}
PATH=${{p%:}}
parallel=
serial=
skip=
for a do
  shift
  if [ -n "$skip" ]; then
    skip=
    case $a in
      1) set -- "$@" -j1; serial=1; continue ;;
      [0-9]*) continue ;;
    esac
  fi
  case $a in
    --jo|--job|--jobs|-j) parallel=1; skip=1; continue ;;
    --jo=1|--job=1|--jobs=1|-j1) serial=1 ;;
    --jo=*|--job=*|--jobs=*|-j[0-9]*) parallel=1; continue ;;
    --*|-) ;;
    -*j*)
      # A group of short options: the first letter taking an argument ends the group.
      flags=${{a#-}}
      kept=
      while [ -n "$flags" ]; do
        c=${{flags%"${{flags#?}}"}}
        flags=${{flags#?}}
        case $c in
          j)
            case $flags in
              1) kept=${{kept}}j1; serial=1 ;;
              '') parallel=1; skip=1 ;;
              *) parallel=1 ;;
            esac
            flags=
            ;;
          [CfIoWlEO]) kept=$kept$c$flags; flags= ;;
          *) kept=$kept$c ;;
        esac
      done
      [ -n "$kept" ] && set -- "$@" "-$kept"
      continue
      ;;
  esac
  set -- "$@" "$a"
done
if [ -n "$serial" ] || [ -z "$parallel" ]; then
  MAKEFLAGS=${{MAKEFLAGS%"$auth"}}
  MAKEFLAGS=${{MAKEFLAGS% }}
  [ -n "$MAKEFLAGS" ] || unset MAKEFLAGS
fi
found=$(command -v make) || found=
if [ -z "$found" ] || [ "$found" -ef "$0" ]; then
  exec "$real" "$@"
fi
exec make "$@"
"#,
        dir = bin.display(),
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
                dir.write_atomic(&wrapper, make_wrapper(&js.makeflags()).as_bytes(), 0o755)?;
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
