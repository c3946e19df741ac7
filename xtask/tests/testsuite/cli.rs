//! Fast tier: the command line refuses a bad invocation before any work. Each case runs the
//! binary over the repository's recipes with a fresh, empty out/ and a mirror that does not
//! answer: it must exit 2 with one error line that says what to do, and leave out/ empty
//! (no toolchain materialised, no source fetched, nothing built).

use crate::support::xtask;
use std::time::Instant;

/// Run `args` with an empty out/; (exit code, stderr's lines, what out/ holds afterwards).
fn refused(args: &[&str]) -> (i32, Vec<String>, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let o = xtask()
        .arg("--out")
        .arg(&out)
        .args(args)
        .env("REPROVM_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .output()
        .unwrap();
    eprintln!("cargo xtask {}: {:.2} s", args.join(" "), started.elapsed().as_secs_f64());
    let stderr: Vec<String> =
        String::from_utf8_lossy(&o.stderr).lines().map(String::from).collect();
    let left: Vec<String> = walkdir::WalkDir::new(&out)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    (o.status.code().unwrap_or(-1), stderr, left)
}

/// The case fails with exit 2, one `error:` line containing `says` (after any warnings of
/// old spellings), and nothing written.
fn check(args: &[&str], says: &str) {
    let (code, stderr, left) = refused(args);
    // One `error:` line; clap adds its usage hints after its own (a blank line, "For more
    // information, try '--help'.").
    let errors: Vec<&String> = stderr.iter().filter(|l| l.starts_with("error: ")).collect();
    let other = stderr.iter().filter(|l| {
        !(l.starts_with("error: ")
            || l.starts_with("warning: ")
            || l.is_empty()
            || l.starts_with("For more information"))
    });
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr {stderr:?}");
    assert!(
        errors.len() == 1 && errors[0].contains(says) && other.count() == 0,
        "{args:?}: expected one error line saying {says:?}, got {stderr:?}"
    );
    assert!(left.is_empty(), "{args:?} wrote {left:?}");
}

#[test]
fn a_cluster_of_no_nodes_is_refused_before_the_tools() {
    check(&["cluster", "run", "--nodes", "0"], "--nodes 0: 1 to 99");
    check(&["cluster", "test", "--nodes", "1"], "needs at least 2");
}

#[test]
fn an_old_spelling_warns_and_is_checked_the_same() {
    let (code, stderr, left) = refused(&["run", "--nodes", "0"]);
    assert_eq!(code, 2);
    assert!(stderr[0].contains("`run --nodes` is now `cluster run --nodes`"), "{stderr:?}");
    assert!(stderr[1].contains("--nodes 0: 1 to 99"), "{stderr:?}");
    assert!(left.is_empty());
}

#[test]
fn diff_of_a_missing_path_is_refused_before_the_toolchain() {
    check(&["diff", "/nonexistent/a", "/nonexistent/b"], "/nonexistent/a: No such file");
}

#[test]
fn a_target_that_is_not_an_oci_recipe_is_refused_before_building() {
    check(&["--offline", "multiarch", "hd-image"], "hd-image makes no OCI layout");
    check(&["push", "busybox", "127.0.0.1:5000/x"], "busybox makes no OCI layout");
    check(&["push", "krata-kernel-oci", "no reference"], "no reference");
}

#[test]
fn booting_nothing_built_names_the_build() {
    check(&["run"], "bzImage not found: run `cargo xtask build hd-image`");
    check(&["boot-test", "--target", "iso"], "reprovm.iso not found: run `cargo xtask build iso`");
    check(&["cluster", "run"], "hd.img not found: run `cargo xtask build hd-image`");
}

#[test]
fn errors_spell_values_as_the_command_line_does() {
    check(&["boot-test", "--target", "iso", "--append", "x"], "--target iso boots");
    check(&["boot-test", "--firmware", "bios"], "`hd-image` is started by QEMU");
    check(&["boot-test", "--firmware", "/nonexistent.fd", "--target", "iso"], "no such file");
}

#[test]
fn every_target_is_checked_before_any_is_built() {
    check(&["build", "busybox", "nosuch"], "unknown target `nosuch`");
    check(&["plan", "busybox", "nosuch"], "unknown target `nosuch`");
}

/// A file of the user's that is not what it is given as: refused before the image it would
/// boot is touched (a `--persist --disk-size` boot grows its image).
#[test]
fn a_wrong_kernel_is_refused_before_the_image_grows() {
    let t = tempfile::tempdir().unwrap();
    let (kernel, image) = (t.path().join("bzImage"), t.path().join("hd.img"));
    std::fs::write(&kernel, b"not a kernel").unwrap();
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let (k, i) = (kernel.to_str().unwrap(), image.to_str().unwrap());
    check(&["run", "--persist", "--disk-size", "1T", "--kernel", k, "--image", i], "not a bzImage");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1 << 20, "the image grew");
    check(&["run", "--kernel", "/typo/bzImage"], "--kernel /typo/bzImage: no such file");
    check(&["boot-test", "--target", "iso", "--kernel", k], "--kernel: `--target iso` boots");
    check(&["run", "--memory", "0", "--kernel", k], "--memory 0");
    check(&["run", "--ssh-key", "/nonexistent.pub", "--kernel", k], "--ssh-key /nonexistent.pub");
    check(&["cluster", "run", "--nodes", "99", "--ssh-port", "65500"], "--ssh-port 65500");
    check(&["cluster", "run", "--lifetime", "0"], "give 1 or more seconds");
}

#[test]
fn files_and_directories_are_checked_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let f = file.to_str().unwrap();
    check(&["diff", t.path().to_str().unwrap(), f], "is a directory and");
    check(&["--cache", f, "build", "busybox"], "--cache");
    check(&["--trusted-cache-key", "/nonexistent.pub", "build", "busybox"], "no such file");
    check(&["audit", "nosuch"], "unknown target `nosuch`");
    check(&["attest", "busybox", "nosuch"], "unknown target `nosuch`");
    check(&["plan", "busybox@6.18"], "busybox has no version 6.18");
    check(&["plan", "busybox+kvm"], "busybox has no flavour kvm");
    check(
        &["build", "kernel+btf"],
        "no recipe has a flavour btf (NAME+FLAVOUR: FLAVOUR one of bpf, kvm)",
    );
    check(&["plan", "--matrix", "kernel@6.18"], "name a recipe");
    check(
        &["multiarch", "--matrix", "firecracker-kernel-bin-oci", "127.0.0.1:5000/p"],
        "multiarch --matrix takes no TARGET",
    );
    check(&["--use", "kernel=busybox", "build", "hd-image"], "substitute a kernel");
    check(
        &["--use", "kernel=kernel@6.18", "--use", "kernel=kernel", "plan", "hd-image"],
        "already substituted",
    );
    // A secret key is never written where its public key goes.
    let secret = t.path().join("k.pub");
    check(&["cache", "keygen", secret.to_str().unwrap()], "its own public key");
    assert!(!secret.exists(), "a secret key was written to k.pub");
    // cosign's key and image checks: bad input is one line, before any request.
    let not_a_key = t.path().join("not-a-key");
    std::fs::write(&not_a_key, "ci:AAAA\n").unwrap();
    check(
        &["cache", "cosign-key", not_a_key.to_str().unwrap()],
        "neither a secret key (64) nor a public key (32)",
    );
    check(&["cache", "cosign-key", "/no/such.key"], "reading /no/such.key");
    check(
        &["verify", "--image", "127.0.0.1:9/r:t", "--trusted-attestation-key", "/no/such.pub"],
        "reading /no/such.pub",
    );
    let public = t.path().join("v.pub");
    std::fs::write(&public, "v:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    check(
        &[
            "verify",
            "--image",
            "http://registry.example/r:t",
            "--trusted-attestation-key",
            public.to_str().unwrap(),
        ],
        "plain HTTP is only for registries on this machine",
    );
    // A pull creates no directory but its layout.
    let into = t.path().join("no/such/dir");
    check(
        &["pull", "--plain-http", "127.0.0.1:9/r:t", into.to_str().unwrap()],
        "no such directory to pull into",
    );
    assert!(!t.path().join("no").exists());
    check(&["pull", "--max-size", "0", "127.0.0.1:9/r:t", f], "--max-size 0");
}

#[test]
fn a_registry_a_push_cannot_reach_is_refused_before_building() {
    check(&["push", "krata-kernel-oci", "example.invalid/x", "--plain-http"], "plain HTTP");
    check(&["push", "krata-kernel-oci", "127.0.0.1:9/r@sha256:".to_string().as_str()], "");
    check(&["multiarch", "krata-kernel-oci", "--plain-http"], "--plain-http is for the push");
    check(&["bench", "substitute", "--registry", "no/slash:", "busybox"], "");
}

#[test]
fn a_wrong_flag_is_a_usage_error() {
    let (code, stderr, left) = refused(&["build", "--no-such-flag", "busybox"]);
    assert_eq!(code, 2, "{stderr:?}");
    assert!(stderr[0].contains("unexpected argument '--no-such-flag'"), "{stderr:?}");
    assert!(left.is_empty());
}

/// `cargo xtask completions bash | head -c 10` (138 kB, more than a pipe holds) and the same
/// of `targets --json` read by nobody: the closed pipe ends the command with 141 (SIGPIPE's
/// status), quietly, not with a panic (101).
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    let mut child = xtask()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout's read end is dropped here: the rest of the list goes to a closed pipe.
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // A result printed with println! to a pipe closed before it starts.
    let mut child = xtask()
        .args(["targets", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "{status:?}: {err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn targets_lists_every_recipe_with_its_kind() {
    let o = xtask().args(["targets", "--json"]).output().unwrap();
    assert!(o.status.success());
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = list.as_array().unwrap();
    let recipes = std::fs::read_dir(crate::support::repo().join("recipes"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "toml"))
        .count();
    assert_eq!(list.len(), recipes);
    let kernel = list.iter().find(|t| t["name"] == "kernel").unwrap();
    assert_eq!(kernel["kind"], "kernel");
    assert_eq!(kernel["architectures"], serde_json::json!(["x86_64", "aarch64"]));
    assert!(kernel["versions"].as_array().unwrap().len() >= 2, "{kernel}");
    let syslinux = list.iter().find(|t| t["name"] == "syslinux-bios").unwrap();
    assert_eq!(syslinux["architectures"], serde_json::json!(["x86_64"]));
    let image = list.iter().find(|t| t["name"] == "hd-image").unwrap();
    assert!(image["outputs"].as_array().unwrap().contains(&serde_json::json!("hd.img")));
}

#[test]
fn version_names_the_commit_and_the_toolchain() {
    let o = xtask().arg("--version").output().unwrap();
    let v = String::from_utf8(o.stdout).unwrap();
    assert!(v.contains(" (commit ") && v.contains(", toolchain "), "{v}");
}

/// `build` of several targets with `--json` and `-v`: both built, the report lists each with
/// its hashes, and `-v` shows each build's log lines after the node's name as they are
/// written; `-q` shows no status line; `plan` of several targets is their closures' union.
#[test]
fn several_targets_json_verbose_and_quiet() {
    let tiny = crate::support::Tiny::new("cache");
    let o = tiny.command("out", &["-v", "build", "--json", "slowish", "top"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let built: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> =
        built.as_array().unwrap().iter().map(|b| b["target"].as_str().unwrap()).collect();
    assert_eq!(names, ["slowish", "top"]);
    assert_eq!(built[1]["output_hash"].as_str().unwrap().len(), 64, "{built}");
    // The script's own lines, from its log, while it ran.
    assert!(stderr.lines().any(|l| l == "slowish: started"), "{stderr}");
    assert!(
        stderr.lines().position(|l| l == "slowish: started")
            < stderr.lines().position(|l| l.starts_with("build top")),
        "{stderr}"
    );
    let o = tiny.command("out", &["-q", "build", "top"]).output().unwrap();
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tiny.command("out", &["plan", "--json", "slowish", "top"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes: Vec<&str> =
        plan["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["slowish", "base", "top"]);
}
