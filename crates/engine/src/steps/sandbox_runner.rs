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
/// given `-jN` on its command line. The last `-j` decides, as in make: asked for parallel jobs
/// (`-jN` with N above 1, `-j`, `-j N`, `--jobs[=N]`, or a `j` in a group of short options
/// such as `-sj8`), the wrapper drops every `-j` and make takes its jobs from the jobserver;
/// asked for one (`-j1`), or for none at the top level (no `-j`, `MAKELEVEL` unset or 0), make
/// runs one job at a time as it would without a jobserver (the jobserver taken out of its
/// `MAKEFLAGS`). What make 4.3 would refuse (`-j0`, `-j2k`, `--jo`) is passed on for it to
/// refuse; words after `--`, or after an option that takes the next word, are left alone; a make
/// that cannot join (`MAKEFLAGS` without the jobserver, its descriptors closed) gets its
/// words unchanged. The real make runs with the phase's `PATH` minus this directory (nothing
/// below sees the wrapper, and `$(MAKE)` stays `make`), or by the path of the first other
/// `make` on `PATH` if a script put the directory there in another spelling.
fn make_wrapper(js: &sandbox::Jobserver) -> String {
    let bin = Path::new(sandbox::BUILD_DIR).join(MAKE_WRAPPER_DIR);
    let (read, write) = sandbox::Jobserver::SANDBOX_FDS;
    format!(
        r#"#!/bin/sh
# reprovm: make joins the build's jobserver (MAKEFLAGS names it; decision 0077). GNU make 4.3
# leaves it for one of its own when given -jN, so a parallel -j is dropped here.
d={dir}
auth='{auth}'
real=
rest=$PATH:
while [ -n "$rest" ]; do
  e=${{rest%%:*}}
  rest=${{rest#*:}}
  m=${{e:-.}}/make
  if [ -z "$real" ] && [ -f "$m" ] && [ -x "$m" ] && ! [ "$m" -ef "$0" ]; then
    real=$m
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
run() {{
  found=$(command -v make) || found=
  if [ -z "$found" ] || [ "$found" -ef "$0" ]; then
    exec "$real" "$@"
  fi
  exec make "$@"
}}
case " ${{MAKEFLAGS-}} " in
  *" $auth "*) [ -e /proc/self/fd/{read} ] && [ -e /proc/self/fd/{write} ] || run "$@" ;;
  *) run "$@" ;;
esac
# The last -j decides: parallel, serial, or none.
mode=
number=
verbatim=
ended=
jobs() {{
  case $1 in
    ''|*[!0-9]*) return 1 ;;
  esac
  if [ "$1" -eq 0 ]; then
    return 1
  elif [ "$1" -eq 1 ]; then
    mode=serial
  else
    mode=parallel
  fi
}}
for a do
  shift
  if [ -n "$ended$verbatim" ]; then
    verbatim=
    set -- "$@" "$a"
    continue
  fi
  if [ -n "$number" ]; then
    number=
    jobs "$a" && continue
  fi
  case $a in
    --) ended=1 ;;
    --jobs) mode=parallel; number=1; continue ;;
    --jobs=*) jobs "${{a#--jobs=}}" && continue ;;
    --file|--makefile|--directory|--include-dir|--old-file|--assume-old|--what-if|--new-file|--assume-new|--eval) verbatim=1 ;;
    --*|-) ;;
    -*)
      # A group of short options: a letter taking an argument ends it (the rest, or the next
      # word, is that argument).
      flags=${{a#-}}
      kept=
      group=
      while [ -n "$flags" ]; do
        c=${{flags%"${{flags#?}}"}}
        flags=${{flags#?}}
        case $c in
          j)
            if [ -z "$flags" ]; then
              mode=parallel
              number=1
            elif jobs "$flags"; then
              :
            else
              kept=; group=invalid
            fi
            break
            ;;
          [CfIoWE])
            kept=$kept$c$flags
            [ -n "$flags" ] || verbatim=1
            break
            ;;
          [lO]) kept=$kept$c$flags; break ;;
          *) kept=$kept$c ;;
        esac
      done
      if [ "$group" = invalid ]; then
        set -- "$@" "$a"
      elif [ -n "$kept" ]; then
        set -- "$@" "-$kept"
      fi
      continue
      ;;
  esac
  set -- "$@" "$a"
done
if [ "$mode" = serial ] || {{ [ -z "$mode" ] && [ "${{MAKELEVEL:-0}}" = 0 ]; }}; then
  [ "$mode" = serial ] && set -- -j1 "$@"
  m=" $MAKEFLAGS "
  m="${{m%%" $auth "*}} ${{m#*" $auth "}}"
  m=${{m# }}
  m=${{m% }}
  MAKEFLAGS=$m
  [ -n "$MAKEFLAGS" ] || unset MAKEFLAGS
fi
run "$@"
"#,
        dir = bin.display(),
        auth = js.makeflags(),
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
                dir.write_atomic(&wrapper, make_wrapper(js).as_bytes(), 0o755)?;
                let bin = Path::new(sandbox::BUILD_DIR).join(MAKE_WRAPPER_DIR);
                for (k, v) in env.iter_mut() {
                    match k.as_str() {
                        "PATH" => *v = format!("{}:{v}", bin.display()),
                        // First: after a recipe's `--`, it would be no option.
                        "MAKEFLAGS" => *v = format!("{} {v}", js.makeflags()),
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
