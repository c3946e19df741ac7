//! Fast tier: the real sandbox, over a root made of host programs (`--host-toolchain`), so
//! these run in seconds without the pinned toolchain. The pinned-toolchain checks (gcc version,
//! identical materialisations) are in `full.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env_remove("REPROVM_RECIPES").env_remove("REPROVM_OUT");
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sandbox")
}

/// Copy the fixture recipes to `dir/recipes`.
fn recipes_in(dir: &Path) -> PathBuf {
    let r = dir.join("recipes");
    fs::create_dir_all(&r).unwrap();
    for e in fs::read_dir(fixtures()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), r.join(e.file_name())).unwrap();
    }
    r
}

fn build(recipes: &Path, out: &Path, target: &str, extra: &[&str]) -> Output {
    xtask()
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(recipes)
        .arg("--out")
        .arg(out)
        .arg("build")
        .arg(target)
        .args(extra)
        .output()
        .unwrap()
}

fn store_out(out: &Path, name: &str) -> PathBuf {
    let store = out.join("store");
    for e in fs::read_dir(&store).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().contains(&format!("-{name}-")) {
            return p;
        }
    }
    panic!("no store entry for {name} in {}", store.display());
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
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
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HOST TOOLCHAIN"),
        "host mode must name itself"
    );

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
    std::thread::sleep(std::time::Duration::from_millis(300));
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).contains(&marker),
                "a sandboxed process survived the build: pid {:?}",
                e.file_name()
            );
        }
    }
    let toolchain = fs::read_dir(out.join("toolchain"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("host-"))
        .unwrap()
        .path();
    assert!(
        !toolchain.join("root/escape-test").exists()
            && !toolchain.join("root/usr/escape-test").exists()
    );
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
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Second build: other umask, TZ, locale, parallelism, a leaked variable, and (as root) another hostname.
    let exe = env!("CARGO_BIN_EXE_xtask");
    let inner = format!(
        "umask 077; {} exec {exe} --host-toolchain --recipes {} --out {} build repro --jobs 7",
        if is_root() { "hostname other-host-name;" } else { "" },
        b.display(),
        out_b.display()
    );
    let mut c = if is_root() { Command::new("unshare") } else { Command::new("sh") };
    if is_root() {
        c.args(["--uts", "sh", "-c", &inner]);
    } else {
        c.args(["-c", &inner]);
    }
    let o = c
        .env("TZ", "Pacific/Auckland")
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "et_EE.UTF-8")
        .env("REPROVM_LEAK_CANARY", "1")
        .env("MAKEFLAGS", "-j9")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ma = fs::read_to_string(store_out(&out_a, "repro").join("manifest.json")).unwrap();
    let mb = fs::read_to_string(store_out(&out_b, "repro").join("manifest.json")).unwrap();
    let env = fs::read_to_string(store_out(&out_b, "repro").join("out/env")).unwrap();
    assert!(
        !env.contains("CANARY")
            && !env.contains("MAKEFLAGS")
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

#[test]
fn failing_build_shows_log_tail_and_leaves_no_store_entry() {
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    let o = build(&recipes, &out, "fail", &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fail-log-line-5"), "no log tail: {err}");
    assert!(err.contains(&out.join("logs").display().to_string()), "no log path: {err}");
    assert!(err.contains("exited with status 3"), "{err}");
    let entries: Vec<_> = fs::read_dir(out.join("store"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("fail"))
        .collect();
    assert!(entries.is_empty(), "a failed build left {entries:?}");
    assert!(
        fs::read_dir(out.join("work")).map(|r| r.count()).unwrap_or(0) == 0,
        "work tree left behind"
    );
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
    let err = String::from_utf8_lossy(&o.stderr);
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
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all outputs reproduced"));

    let bundle = t.path().join("report.zip");
    let o = audit("nondet", &["--json", "--bundle", bundle.to_str().unwrap()]);
    assert!(!o.status.success(), "a nondeterministic recipe passed the audit");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["schema"], "reprovm-audit/2");
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
    let z = zip::ZipArchive::new(fs::File::open(&bundle).unwrap()).unwrap();
    let names: Vec<&str> = z.file_names().collect();
    assert!(
        names.contains(&"report.json") && names.contains(&"nondet/store-manifest.json"),
        "{names:?}"
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
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = fs::read_to_string(store_out(&out, "overlaid").join("out/rootfs.list")).unwrap();
    assert!(list.contains("/etc/motd") && list.contains("/etc/build-env"), "{list}");

    // Missing overlay: a one-line error naming it, and no store entry.
    fs::remove_dir_all(recipes.join("overlay")).unwrap();
    let out2 = t.path().join("out2");
    let o = build(&recipes, &out2, "overlaid", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("overlay `overlay` refused")
            && err.contains("path traversal"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(out2.join("store"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("overlaid"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_user_namespaces_the_build_stops_and_names_the_fix() {
    if !is_root() {
        eprintln!(
            "skipped: needs root to lower user.max_user_namespaces inside a private user namespace"
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let recipes = recipes_in(t.path());
    let out = t.path().join("out");
    // Inside a fresh user namespace, forbid nested ones (per-namespace limit), then build.
    let inner = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} --host-toolchain --recipes {} --out {} build repro",
        env!("CARGO_BIN_EXE_xtask"),
        recipes.display(),
        out.display()
    );
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &inner])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
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
