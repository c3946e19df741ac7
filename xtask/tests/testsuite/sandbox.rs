//! Fast tier: the real sandbox, over a root made of host programs (`--host-toolchain`), so
//! these run in seconds without the pinned toolchain. The pinned-toolchain checks (gcc version,
//! identical materialisations) are in `full.rs`.

use crate::support;

use crate::support::*;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn host_toolchain_root(out: &Path) -> PathBuf {
    fs::read_dir(out.join("toolchain"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("host-"))
        .expect("no host toolchain root")
        .path()
        .join("root")
}

#[test]
fn sandbox_blocks_network_host_files_writes_processes() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = format!("reprovm-marker-{}", std::process::id());
    let planted_tmp = std::env::temp_dir().join(format!("{marker}-planted"));
    fs::write(&planted_tmp, "secret").unwrap();
    let planted_root = if is_root() {
        Path::new("/root").join(format!("{marker}-planted"))
    } else {
        planted_tmp.clone()
    };
    fs::write(&planted_root, "secret").unwrap();
    fs::write(
        recipes.join("params"),
        format!(
            "PORT={port}\nPLANTED_TMP={}\nPLANTED_ROOT={}\nMARKER={marker}\n",
            planted_tmp.display(),
            planted_root.display()
        ),
    )
    .unwrap();

    let out = t.path().join("out");
    let o = build(&recipes, &out, "escape", &[]);
    let _ = fs::remove_file(&planted_tmp);
    let _ = fs::remove_file(&planted_root);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("HOST TOOLCHAIN"), "host mode must name itself");

    let entry = store_out(&out, "escape");
    let results = fs::read_to_string(entry.join("out/results")).unwrap();
    for line in [
        "tcp-host-loopback",
        "read-host-tmp",
        "read-host-root",
        "write-root",
        "write-usr",
        "write-via-build-parent",
    ] {
        assert!(results.contains(&format!("{line}: blocked")), "{line} not blocked:\n{results}");
    }
    assert!(!results.contains("ESCAPED"), "{results}");
    assert!(results.contains("default-routes: 0"), "{results}");
    assert!(listener.accept().is_err(), "the host listener got a connection from the sandbox");
    // Only the sandbox's own processes are visible (a handful of PIDs, starting at 1).
    let pids: Vec<u32> = fs::read_to_string(entry.join("out/pids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(pids.contains(&1) && pids.len() < 10, "sandbox saw host processes: {pids:?}");
    // Nothing written inside reached the host's /tmp, and no process outlived the build.
    assert!(!std::env::temp_dir().join(&marker).exists());
    std::thread::sleep(Duration::from_millis(300));
    // The process looked for is the fixture's own sleep (its argv as the shell execs it).
    let fixture = fs::read_to_string(support::repo().join("tests/fixtures/sandbox/slow.toml"));
    assert!(fixture.unwrap().contains("\nsleep 60.0125\n"), "the fixture's marker changed");
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).contains(&marker),
                "a sandboxed process survived the build: pid {:?}",
                e.file_name()
            );
        }
    }
    let root = host_toolchain_root(&out);
    assert!(!root.join("escape-test").exists() && !root.join("usr/escape-test").exists());
}

/// A build script cannot change its sandbox: no remount of its read-only binds (the root,
/// /usr, a dependency), no namespaces, no mount API, no ptrace, no module or kexec, no sysctl;
/// it has no capabilities. The dependency's entry and the toolchain root are unchanged, and
/// the only mounts it sees are the sandbox's own.
#[test]
fn a_build_cannot_change_its_mounts_privileges_or_the_host() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    compile_static(&recipes.join("probe.c"), &recipes.join("probe"));
    let out = t.path().join("out");
    let o = build(&recipes, &out, "repro", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dep_before = snapshot(&store_out(&out, "repro"));
    let root_before = snapshot(&host_toolchain_root(&out));

    let o = build(&recipes, &out, "locked", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = fs::read_to_string(store_out(&out, "locked").join("out/results")).unwrap();
    eprintln!("{results}");
    assert!(!results.contains("ALLOWED"), "the build changed its sandbox:\n{results}");
    for attempt in [
        "remount-rw /:",
        "remount-rw /usr:",
        "remount-rw /build/deps/repro:",
        "umount dependency:",
        "write dependency:",
        "unshare user:",
        "clone user:",
        "clone3:",
        "open_tree:",
        "fsopen:",
        "pivot_root:",
        "setns to PID 1's mounts:",
        "add_key:",
        "bpf:",
        "ptrace pid 1:",
        "open /proc/1/mem:",
        "kexec_load:",
        "init_module:",
        "io_uring_setup:",
        "unshare tool: blocked",
        "perl remount: blocked",
    ] {
        assert!(
            results.lines().any(|l| l.starts_with(attempt) && l.contains("blocked")),
            "{attempt} missing:\n{results}"
        );
    }
    assert!(results.contains("effective capabilities: 0 0"), "{results}");
    // Every /proc/sys entry that could be read was written back, and none took the write.
    let tried: u32 = results
        .lines()
        .find_map(|l| l.strip_prefix("sysctls tried: "))
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(tried > 100, "{results}");
    assert!(results.contains(", written: 0"), "{results}");
    // The mounts in the sandbox are its own: the root, /build (+ the dependency), /out,
    // /proc (+ /proc/sys), /dev (+ its device binds and pts), /tmp. No other host path.
    let allowed = |m: &str| {
        m == "/"
            || m == "/build"
            || m == "/build/deps/repro"
            || m == "/out"
            || m == "/tmp"
            || m.starts_with("/proc")
            || m.starts_with("/dev")
    };
    let mounts: Vec<&str> = results.lines().filter_map(|l| l.strip_prefix("mount: ")).collect();
    assert!(
        mounts.contains(&"/build/deps/repro") && mounts.iter().all(|m| allowed(m)),
        "{mounts:?}"
    );
    assert_eq!(
        snapshot(&store_out(&out, "repro")),
        dep_before,
        "the dependency's store entry changed"
    );
    assert_eq!(snapshot(&host_toolchain_root(&out)), root_before, "the toolchain root changed");
}

/// Run as root, the build is never host root: its uid 0 is an unprivileged host id, which
/// owns nothing outside the sandbox's own trees.
#[test]
#[ignore = "full tier: root (the id mapping of a root invocation; CI runs as root)"]
fn as_root_the_build_runs_as_an_unprivileged_host_id() {
    let _full = support::full_tier();
    assert!(is_root(), "this checks the id mapping of a root invocation: run it as root");
    let t = tempfile::tempdir().unwrap();
    let o = xtask()
        .args(["--host-toolchain", "--out"])
        .arg(t.path().join("out"))
        .args(["sandbox-exec", "--", "/bin/cat", "/proc/self/uid_map", "/proc/self/status"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let map: Vec<u64> =
        text.lines().next().unwrap().split_whitespace().map(|f| f.parse().unwrap()).collect();
    // The build's own namespace maps 0 to the id below it, which is not 0 on the host.
    let uid_line = text.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(map[0], 0, "{text}");
    assert!(map[1] >= 1000 && map[2] == 1, "uid 0 of the build is host uid {}: {text}", map[1]);
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == "0"), "{uid_line}");
}

#[test]
fn outputs_do_not_depend_on_checkout_path_tz_umask_locale_hostname_or_jobs() {
    let t = tempfile::tempdir().unwrap();
    let a = recipes_in(&t.path().join("a"));
    let b = recipes_in(&t.path().join("a-much-longer-checkout-path/nested"));
    let out_a = t.path().join("out-a");
    let out_b = t.path().join("other-out-b");
    let o = xtask()
        .args(["--host-toolchain", "--recipes"])
        .arg(&a)
        .arg("--out")
        .arg(&out_a)
        .args(["build", "repro", "--jobs", "1"])
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Second build: other umask, TZ, locale, parallelism, a leaked variable, and (as root)
    // another hostname, set in the child before exec.
    let mut c = xtask();
    c.args(["--host-toolchain", "--recipes"])
        .arg(&b)
        .arg("--out")
        .arg(&out_b)
        .args(["build", "repro", "--jobs", "7"]);
    c.env("TZ", "Pacific/Auckland").env("LC_ALL", "C.UTF-8").env("LANG", "et_EE.UTF-8");
    c.env("REPROVM_LEAK_CANARY", "1").env("MAKEFLAGS", "-j9");
    let root = is_root();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::umask(0o077);
            if root
                && (libc::unshare(libc::CLONE_NEWUTS) != 0
                    || libc::sethostname(c"other-host-name".as_ptr(), 15) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ma = fs::read_to_string(store_out(&out_a, "repro").join("manifest.json")).unwrap();
    let mb = fs::read_to_string(store_out(&out_b, "repro").join("manifest.json")).unwrap();
    let env = fs::read_to_string(store_out(&out_b, "repro").join("out/env")).unwrap();
    assert!(
        !env.contains("CANARY")
            && !env.contains("-j9")
            && env.contains("\nMAKEFLAGS=--jobserver-auth=834,835\n")
            && env.contains("TZ=UTC")
            && env.contains("HOME=/homeless"),
        "{env}"
    );
    assert_eq!(
        fs::read_to_string(store_out(&out_b, "repro").join("out/hostname")).unwrap().trim(),
        "reprovm"
    );
    assert_eq!(
        fs::read_to_string(store_out(&out_b, "repro").join("out/pwd")).unwrap().trim(),
        "/build/src"
    );
    assert_eq!(ma, mb, "the same recipe built under different host conditions differs");
}

/// No temp entry, work tree or half-written result is left by a failing build.
fn assert_clean(out: &Path, name: &str) {
    let store: Vec<String> = fs::read_dir(out.join("store"))
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(
        store.iter().all(|n| !n.contains(name) && !n.starts_with(".tmp-")),
        "left in the store: {store:?}"
    );
    let work = fs::read_dir(out.join("work")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(work, 0, "work tree left behind");
}

#[test]
fn failing_build_shows_log_tail_and_leaves_no_store_entry() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    let o = build(&recipes, &out, "fail", &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("fail-log-line-5"), "no log tail: {err}");
    assert!(err.contains(&out.join("logs").display().to_string()), "no log path: {err}");
    assert!(err.contains("exited with status 3"), "{err}");
    assert_clean(&out, "fail");
    // A FIFO in $OUT: refused by name, and nothing is left either.
    let o = build(&recipes, &out, "fifo", &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("pipe: outputs may only hold files"),
        "{}",
        stderr(&o)
    );
    assert_clean(&out, "fifo");
}

#[test]
fn a_build_past_its_timeout_is_killed_whole() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    let start = Instant::now();
    let o = build(&recipes, &out, "slow", &[]);
    let took = start.elapsed();
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("timed out after 2.0s"), "{err}");
    assert!(err.contains("started"), "no log tail: {err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_clean(&out, "slow");
    std::thread::sleep(Duration::from_millis(300));
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).starts_with("sleep\u{0}60.0125\u{0}"),
                "the build's sleep survived"
            );
        }
    }
}

/// A declared result that is a symlink to a host file is refused, and no byte of the host file
/// reaches out/; a rootfs cannot install through a dependency's symlink either.
#[test]
fn symlinks_out_of_outputs_are_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let host = t.path().join("host");
    fs::create_dir(&host).unwrap();
    let secret = "host secret 3f9a";
    fs::write(host.join("secret"), secret).unwrap();
    fs::write(
        recipes.join("params"),
        format!("HOST_FILE={}\nHOST_DIR={}\n", host.join("secret").display(), host.display()),
    )
    .unwrap();
    let out = t.path().join("out");
    let o = build(&recipes, &out, "linkout", &[]);
    assert!(!o.status.success(), "a symlink result was accepted");
    assert!(stderr(&o).contains("declared output `hd.img` is a Symlink"), "{}", stderr(&o));
    assert!(!out.join("hd.img").exists());
    let o = build(&recipes, &out, "linkroot", &[]);
    assert!(!o.status.success(), "an install through a symlink was accepted");
    assert!(stderr(&o).contains("`etc` is a symlink"), "{}", stderr(&o));
    // The media steps read dependencies beneath their outputs too: an initramfs of a
    // rootfs.tar that is a symlink to a host file (here a tar, so that following it would
    // succeed) is refused.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(secret.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "secret", secret.as_bytes()).unwrap();
    fs::write(host.join("secret"), tar.into_inner().unwrap()).unwrap();
    let o = build(&recipes, &out, "linkinitramfs", &[]);
    assert!(!o.status.success(), "a rootfs.tar symlink was followed");
    assert!(stderr(&o).contains("rootfs.tar: is a symlink (never followed)"), "{}", stderr(&o));
    // Nothing anywhere under out/ holds the host file's bytes.
    for (p, (_, _, data)) in snapshot(&out) {
        assert!(
            !String::from_utf8_lossy(&data).contains(secret),
            "{} holds the host file",
            p.display()
        );
    }
}

/// `kill -9` of a fetch and of a build: the next run removes what they left.
#[test]
fn what_a_killed_run_leaves_is_swept_by_the_next() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    // The kill must land while the sandbox runs, however slow the machine: not after `slow`'s
    // own 2 s timeout has already cleaned up.
    let slow = recipes.join("slow.toml");
    let text = fs::read_to_string(&slow).unwrap();
    assert!(text.contains("timeout = \"2s\""), "slow.toml's timeout moved: {text}");
    fs::write(&slow, text.replace("timeout = \"2s\"", "timeout = \"300s\"")).unwrap();
    let out = t.path().join("out");
    let wait_for = |what: &str, found: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !found() {
            assert!(start.elapsed() < Duration::from_secs(30), "no {what} appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let count = |dir: PathBuf, f: &dyn Fn(&str) -> bool| {
        fs::read_dir(dir)
            .map(|r| r.flatten().filter(|e| f(&e.file_name().to_string_lossy())).count())
            .unwrap_or(0)
    };
    // A build: kill the xtask while the sandbox sleeps.
    let mut child = xtask()
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(&out)
        .args(["build", "slow"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("build log line", &|| {
        fs::read_dir(out.join("logs")).map(|r| r.count() > 0).unwrap_or(false)
            && count(out.join("store"), &|n| n.starts_with(".tmp-")) > 0
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(count(out.join("store"), &|n| n.starts_with(".tmp-")) > 0);
    assert!(count(out.join("work"), &|_| true) > 0);
    // A fetch: a source served slowly from 127.0.0.1, killed mid-download.
    let body = vec![7u8; 4 << 20];
    let sha = {
        let o =
            Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        let mut o = o;
        o.stdin.take().unwrap().write_all(&body).unwrap();
        String::from_utf8(o.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().take(1) {
            let mut s = s.unwrap();
            use std::io::{Read, Write};
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            for chunk in body.chunks(4096) {
                if s.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    fs::write(
        recipes.join("src.toml"),
        format!("name = \"src\"\nversion = \"1\"\n[[source]]\nfile = \"s.tar\"\nsha256 = \"{sha}\"\nsize = {}\nurls = [\"http://127.0.0.1:{port}/s.tar\"]\n[build]\nscript = \"true\"\n", 4 << 20),
    )
    .unwrap();
    let mut child = xtask()
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(&out)
        .args(["fetch", "src"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once bytes have arrived (the .part exists before the connection is made).
    let downloading = || {
        fs::read_dir(out.join("cache/tmp"))
            .map(|r| {
                r.flatten().any(|e| {
                    e.file_name().to_string_lossy().ends_with(".part")
                        && e.metadata().is_ok_and(|m| m.len() > 8192)
                })
            })
            .unwrap_or(false)
    };
    wait_for("partial download", &downloading);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(out.join("cache/tmp"), &|n| n.ends_with(".part")), 1);
    // The next run of each kind sweeps: a build of something else, a fetch that fails offline.
    let o = build(&recipes, &out, "repro", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("left by an interrupted run"), "{}", stderr(&o));
    assert_eq!(count(out.join("store"), &|n| n.starts_with(".tmp-")), 0);
    assert_eq!(count(out.join("work"), &|_| true), 0);
    let o = xtask()
        .arg("--offline")
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(&out)
        .args(["fetch", "src"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    // (--offline never writes the cache, so the sweep comes with the next online fetch.)
    let o = xtask()
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(&out)
        .args(["fetch", "src"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the server is gone; the fetch cannot succeed: {}", stderr(&o));
    assert!(stderr(&o).contains("left by an interrupted fetch"), "{}", stderr(&o));
    assert_eq!(count(out.join("cache/tmp"), &|n| n.ends_with(".part")), 0);
}

#[test]
fn command_line_mistakes_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    let run = |args: &[&str]| {
        let o = xtask()
            .arg("--host-toolchain")
            .arg("--recipes")
            .arg(&recipes)
            .arg("--out")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        stderr(&o)
    };
    let e = run(&["build", "repro", "-j", "0"]);
    assert!(e.contains("invalid value '0'"), "{e}");
    let e = run(&["--use", "typo=repro", "build", "overlaid"]);
    assert!(e.contains("no recipe depends on `typo`"), "{e}");
    let e = run(&["--mirror", "/nonexistent/mirror", "fetch"]);
    assert!(e.contains("--mirror /nonexistent/mirror: not a directory"), "{e}");
    let e = run(&["fetch", "--list", "no-such-target"]);
    assert!(e.contains("unknown target `no-such-target`"), "{e}");
}

#[test]
fn malformed_recipe_gives_one_line_error_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("recipes");
    fs::create_dir(&r).unwrap();
    fs::write(
        r.join("bad.toml"),
        "name = \"bad\"\nversion = \"1\"\ncolour = \"red\"\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    let o = xtask().arg("--recipes").arg(&r).args(["plan", "bad"]).output().unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("recipes/bad.toml:3:1: unknown field `colour`"), "{err}");
}

#[test]
fn audit_passes_for_a_reproducible_recipe_and_explains_a_nondeterministic_one() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let echo = fs::canonicalize("/bin/echo").unwrap();
    let data = fs::read(&echo).unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let rodata = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".rodata"))
        .unwrap();
    fs::write(recipes.join("params"), format!("RODATA_OFFSET={}\n", rodata.sh_offset + 8)).unwrap();
    let out = t.path().join("out");
    let audit = |target: &str, extra: &[&str]| {
        xtask()
            .arg("--host-toolchain")
            .arg("--recipes")
            .arg(&recipes)
            .arg("--out")
            .arg(&out)
            .args(["audit", target])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = audit("repro", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all outputs reproduced"));

    let bundle = t.path().join("report.zip");
    let o = audit("nondet", &["--json", "--bundle", bundle.to_str().unwrap()]);
    assert!(!o.status.success(), "a nondeterministic recipe passed the audit");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["schema"], "reprovm-audit/4");
    assert_eq!(report["ok"], false);
    let diffs = report["targets"][0]["differences"].as_array().unwrap();
    let by_path = |p: &str| {
        diffs
            .iter()
            .find(|d| d["path"] == p)
            .map(|d| d["explanation"].to_string())
            .unwrap_or_default()
    };
    assert!(by_path("prog").contains("section .rodata differs"), "{diffs:?}");
    assert!(by_path("stamp").contains("+++ the rebuild"), "{diffs:?}");
    assert!(diffs.iter().all(|d| d["path"] != "stable"), "{diffs:?}");
    let variations = report["targets"][0]["variations"].as_array().unwrap();
    let hostname = variations.iter().find(|v| v["name"] == "hostname").unwrap();
    assert_eq!(hostname["applied"], is_root(), "{hostname}");
    let z = zip::ZipArchive::new(fs::File::open(&bundle).unwrap()).unwrap();
    let names: Vec<&str> = z.file_names().collect();
    assert!(
        names.contains(&"report.json") && names.contains(&"nondet/store-manifest.json"),
        "{names:?}"
    );
}

/// The audit's rebuild is launched argument by argument: quotes and spaces in paths are just
/// characters (they broke the shell string it used to build), and an aliased target is
/// rebuilt as the recipe it stands for.
#[test]
fn audit_survives_odd_paths_and_aliases() {
    let t = tempfile::tempdir().unwrap();
    let odd = t.path().join("it's a \"dir\" $(x)");
    let recipes = recipes_in(&odd);
    fs::copy(recipes.join("repro.toml"), recipes.join("repro2.toml")).unwrap();
    let text = fs::read_to_string(recipes.join("repro2.toml"))
        .unwrap()
        .replace("name = \"repro\"", "name = \"repro2\"");
    fs::write(recipes.join("repro2.toml"), text).unwrap();
    let out = odd.join("out dir");
    let audit = |extra: &[&str]| {
        xtask()
            .arg("--host-toolchain")
            .arg("--recipes")
            .arg(&recipes)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = audit(&["audit", "repro"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = audit(&["--use", "repro=repro2", "audit", "repro"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("all outputs reproduced"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn menuconfig_with_an_unreadable_fragment_stops_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    fs::write(
        recipes.join("kcfg.toml"),
        "name = \"kcfg\"\nversion = \"1\"\nfiles = [\"frag.config\"]\n[kconfig]\nconfig = \"obj/.config\"\nfragments = [\"frag.config\"]\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    let o = xtask()
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(t.path().join("out"))
        .args(["menuconfig", "kcfg"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("frag.config"), "{}", stderr(&o));
    assert!(
        !t.path().join("out/work").exists(),
        "menuconfig started work before reading its fragment"
    );
}

#[test]
fn overlays_apply_in_order_and_bad_ones_stop_the_image() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    // A directory overlay works.
    fs::create_dir_all(recipes.join("overlay/etc")).unwrap();
    fs::write(recipes.join("overlay/etc/motd"), "hello\n").unwrap();
    let o = build(&recipes, &out, "overlaid", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = fs::read_to_string(store_out(&out, "overlaid").join("out/rootfs.list")).unwrap();
    assert!(list.contains("/etc/motd") && list.contains("/etc/build-env"), "{list}");

    // Missing overlay: a one-line error naming it, and no store entry.
    fs::remove_dir_all(recipes.join("overlay")).unwrap();
    let out2 = t.path().join("out2");
    let o = build(&recipes, &out2, "overlaid", &[]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("overlay `overlay`"), "{err}");

    // Hostile tarball overlay: refused, no image.
    let tarball = recipes.join("overlay");
    let mut b = tar::Builder::new(fs::File::create(&tarball).unwrap());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..14].copy_from_slice(b"../../etc/evil");
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    b.finish().unwrap();
    drop(b);
    let o = build(&recipes, &out2, "overlaid", &[]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("overlay `overlay` refused")
            && err.contains("path traversal"),
        "{err}"
    );
    assert_clean(&out2, "overlaid");
}

#[test]
#[ignore = "full tier: root (to lower user.max_user_namespaces in a private user namespace)"]
fn without_user_namespaces_the_build_stops_and_names_the_fix() {
    let _full = support::full_tier();
    assert!(is_root(), "lowering user.max_user_namespaces needs root: run it as root");
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    // Inside a fresh user namespace, forbid nested ones (per-namespace limit), then build.
    let o = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(&recipes)
        .arg("--out")
        .arg(&out)
        .args(["build", "repro"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "built without a sandbox: {err}");
    assert!(
        err.contains("user namespaces are unavailable")
            && err.contains("sysctl -w user.max_user_namespaces"),
        "{err}"
    );
    assert!(fs::read_dir(out.join("store"))
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains("repro")));
}
