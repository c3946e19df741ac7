//! The kernel matrix on a build farm (docs/guide/build-farm.md).
//!
//! Fast tier: the CI files pass the third-party checkers (actionlint; check-jsonschema's
//! GitHub-workflow and GitLab-CI schemas), pinned by hash in tests/python/requirements.txt, and
//! refuse a broken copy; GitLab's static cells are `plan --matrix`'s; every cell of the real
//! kernel matrix has the input hash its pin was made from (the cheap check CI makes for the
//! cells it does not build); a malformed matrix entry is one line naming it; an excluded cell
//! is listed and refused.
//!
//! Full tier: the farm rehearsed on one machine. tests/fixtures/farm is a matrix of the real
//! kernel's shape (two versions × two architectures × three flavours, one cell excluded) whose
//! builds take a second, over the pinned toolchains. Its jobs (`plan --matrix`) run as
//! `ci/farm-job cell …`, the script the GitHub and GitLab files run, in worker processes two at
//! a time, each with its own out/ and download cache, sharing nothing but a registry on
//! 127.0.0.1; one job's worker is killed in the middle of its push and the job run again; then
//! a fresh worker runs `ci/farm-job indexes`. Every cell is built by exactly one worker, the
//! indexes worker builds nothing and substitutes every image, the indexes equal the pins a
//! single process made, and the killed push left nothing its rerun replaced with other bytes.

use crate::support::{self, repo, validators};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn checker(venv: &Path, program: &str, args: &[&str]) -> (bool, String) {
    support::captured(Command::new(venv.join("bin").join(program)).args(args))
}

/// actionlint and check-jsonschema's built-in schema on `file`: (actionlint, schema) verdicts.
fn check_github(venv: &Path, file: &Path) -> ((bool, String), (bool, String)) {
    let f = file.to_str().unwrap();
    (
        // ShellCheck and pyflakes are not pinned here: actionlint's own checks only.
        checker(venv, "actionlint", &["-shellcheck=", "-pyflakes=", "-no-color", f]),
        checker(venv, "check-jsonschema", &["--builtin-schema", "vendor.github-workflows", f]),
    )
}

#[test]
fn the_farm_ci_files_pass_actionlint_and_the_schemas_and_a_broken_copy_does_not() {
    let venv = validators();
    let github = repo().join(".github/workflows/kernel-matrix.yml");
    let gitlab = repo().join("ci/kernel-matrix.gitlab-ci.yml");
    let ((lint, lint_text), (schema, schema_text)) = check_github(&venv, &github);
    assert!(lint, "actionlint refuses {}:\n{lint_text}", github.display());
    assert!(schema, "the GitHub-workflow schema refuses {}:\n{schema_text}", github.display());
    let (good, text) = checker(
        &venv,
        "check-jsonschema",
        &["--builtin-schema", "vendor.gitlab-ci", gitlab.to_str().unwrap()],
    );
    assert!(good, "the GitLab-CI schema refuses {}:\n{text}", gitlab.display());

    // The checkers can fail: a typo in an expression (actionlint), a key GitHub does not have
    // (the schema), a GitLab job key GitLab does not have.
    let t = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&github).unwrap();
    let typo = t.path().join("typo.yml");
    std::fs::write(&typo, text.replace("needs.plan.outputs.matrix", "needs.plan.outputs.matrices"))
        .unwrap();
    let ((lint, lint_text), _) = check_github(&venv, &typo);
    assert!(!lint, "actionlint accepted an output the plan job does not have:\n{lint_text}");
    let bad_key = t.path().join("bad-key.yml");
    std::fs::write(&bad_key, text.replace("runs-on: ubuntu-24.04", "runs-upon: ubuntu-24.04"))
        .unwrap();
    let (_, (schema, schema_text)) = check_github(&venv, &bad_key);
    assert!(!schema, "the schema accepted `runs-upon`:\n{schema_text}");
    let bad_gitlab = t.path().join("bad.gitlab-ci.yml");
    std::fs::write(
        &bad_gitlab,
        std::fs::read_to_string(&gitlab).unwrap().replace("  script:", "  scripts:"),
    )
    .unwrap();
    let (good, text) = checker(
        &venv,
        "check-jsonschema",
        &["--builtin-schema", "vendor.gitlab-ci", bad_gitlab.to_str().unwrap()],
    );
    assert!(!good, "the GitLab-CI schema accepted `scripts:`:\n{text}");
}

/// `plan --matrix --json` of the project at `root` (the repository when None).
fn matrix(root: Option<&Path>) -> serde_json::Value {
    let mut c = support::xtask();
    if let Some(r) = root {
        c.env("REPROVM_ROOT", r);
    }
    let o = c.args(["plan", "--matrix", "--json"]).output().unwrap();
    assert!(o.status.success(), "plan --matrix: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_cell_of_the_kernel_matrix_has_its_pinned_input_hash_and_gitlab_lists_them_all() {
    let m = matrix(None);
    let jobs = m["include"].as_array().unwrap();
    // 2 versions × 2 architectures × 3 flavours, nothing excluded.
    assert_eq!(jobs.len(), 12, "{m:#}");
    let mut unpinned = Vec::new();
    for j in jobs {
        for (target, pinned) in j["pinned"].as_object().unwrap() {
            if !pinned.as_bool().unwrap() {
                unpinned.push(format!("{target} ({})", j["arch"].as_str().unwrap()));
            }
        }
    }
    assert!(
        unpinned.is_empty(),
        "cells whose inputs changed without a new pin: {unpinned:?}; `cargo xtask pin outputs` (and --arch aarch64) after building them"
    );
    for i in m["indexes"].as_array().unwrap() {
        assert!(i["pinned"].as_bool().unwrap(), "{} is not in pins/multiarch.toml", i["target"]);
    }
    assert_eq!(m["indexes"].as_array().unwrap().len(), 3 * 6, "an index per image and cell");

    // GitLab's parallel:matrix is static: ARCH × CELL, each job's targets the recipe names at
    // CELL. They must be plan --matrix's jobs.
    let gitlab = std::fs::read_to_string(repo().join("ci/kernel-matrix.gitlab-ci.yml")).unwrap();
    let line = |key: &str| {
        gitlab.lines().find_map(|l| l.trim().strip_prefix(key)).unwrap_or_else(|| panic!("{key}"))
    };
    let list = |s: &str| -> Vec<String> {
        s.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|x| x.trim().trim_matches('"').to_string())
            .collect()
    };
    let arches = list(line("- ARCH:"));
    let cells = list(line("CELL:"));
    let script: String = gitlab
        .split("ci/farm-job cell \"$ARCH\"")
        .nth(1)
        .unwrap()
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let recipes: Vec<String> = script
        .split_whitespace()
        .map(|w| w.trim_matches('"'))
        .filter_map(|w| w.strip_suffix("$CELL"))
        .map(str::to_string)
        .collect();
    let mut from_gitlab = BTreeSet::new();
    for a in &arches {
        for c in &cells {
            let targets: Vec<String> = recipes.iter().map(|r| format!("{r}{c}")).collect();
            from_gitlab.insert((a.clone(), targets));
        }
    }
    let from_plan: BTreeSet<(String, Vec<String>)> = jobs
        .iter()
        .map(|j| (j["arch"].as_str().unwrap().to_string(), strings(&j["targets"])))
        .collect();
    assert_eq!(
        from_gitlab, from_plan,
        "ci/kernel-matrix.gitlab-ci.yml's cells are not plan --matrix's"
    );
}

/// A copy of tests/fixtures/farm as a project: its recipes and the repository's toolchain
/// locks and archive keys.
fn farm_project(dir: &Path) -> PathBuf {
    let root = dir.join("project");
    support::copy_tree(&repo().join("tests/fixtures/farm/recipes"), &root.join("recipes"));
    support::copy_tree(&repo().join("toolchain"), &root.join("toolchain"));
    std::fs::create_dir_all(root.join("pins")).unwrap();
    for lock in ["toolchain.lock", "aarch64.lock", "archive.lock"] {
        std::fs::copy(repo().join("pins").join(lock), root.join("pins").join(lock)).unwrap();
    }
    root
}

#[test]
fn a_malformed_matrix_entry_is_one_line_naming_it_and_an_excluded_cell_is_listed_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = farm_project(t.path());
    let recipe = root.join("recipes/kernel.toml");
    let good = std::fs::read_to_string(&recipe).unwrap();

    // The excluded cell is listed with its reason, and a build of it is refused at once.
    let m = matrix(Some(&root));
    let excluded = m["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 1, "{m:#}");
    assert_eq!(excluded[0]["node"], "kernel@2+bpf");
    assert_eq!(excluded[0]["arch"], "aarch64");
    assert!(excluded[0]["reason"].as_str().unwrap().contains("a cell left out"));
    assert_eq!(m["include"].as_array().unwrap().len(), 11);
    let out = t.path().join("out");
    let (ok, text) = support::captured(
        support::xtask()
            .env("REPROVM_ROOT", &root)
            .args(["--arch", "aarch64", "--out", out.to_str().unwrap()])
            .args(["build", "kernel@2+bpf"]),
    );
    assert!(!ok && text.contains("excluded from the matrix"), "{text}");
    assert!(
        !out.join("store").exists() || std::fs::read_dir(out.join("store")).unwrap().count() == 0
    );

    for (from, to, says) in [
        (
            "flavour = \"bpf\", arch",
            "flavour = \"btf\", arch",
            "has no flavour `btf` (one of default, bpf, kvm)",
        ),
        (
            "version = \"2\", flavour",
            "version = \"3\", flavour",
            "has no version `3` (one of 1.0, 2)",
        ),
        (
            "arch = \"aarch64\", reason",
            "arch = \"arm64\", reason",
            "no architecture `arm64` (one of x86_64, aarch64)",
        ),
        ("[flavours.kvm]", "[flavours.KVM]", "flavour `KVM`: 1 to 32 of a-z 0-9 -"),
        (
            "fragments = [\"kernel/kvm.config\"]",
            "fragments = []",
            "flavours.kvm.fragments is empty",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        std::fs::write(&recipe, good.replace(from, to)).unwrap();
        let (ok, text) = support::captured(
            support::xtask().env("REPROVM_ROOT", &root).args(["plan", "--matrix"]),
        );
        assert!(!ok, "{to}: accepted");
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{to}: not one line:\n{text}");
        assert!(
            lines[0].starts_with("error: recipes/kernel.toml:") && lines[0].contains(says),
            "{to}: {text}"
        );
    }
    std::fs::write(&recipe, &good).unwrap();

    // A cell that cannot have an option its flavour asks for (here the stand-in's configure
    // drops it, as olddefconfig drops what a version or architecture lacks) fails its check,
    // named.
    std::fs::write(
        &recipe,
        good.replace(
            "for f in $FRAGMENTS; do cat \"$REPROVM_BUILD/files/$f\"; done >",
            "for f in $FRAGMENTS; do grep -v LACKED \"$REPROVM_BUILD/files/$f\" || true; done >",
        ),
    )
    .unwrap();
    std::fs::write(root.join("recipes/kernel/bpf.config"), "CONFIG_BPF=y\nCONFIG_LACKED=y\n")
        .unwrap();
    let (ok, text) = support::captured(
        support::on_host(&root.join("recipes"), &out)
            .env("REPROVM_ROOT", &root)
            .args(["build", "kernel+bpf"]),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("kernel configuration check of kernel+bpf for x86_64 at version 1.0")
            && text.contains("CONFIG_LACKED"),
        "{text}"
    );
    std::fs::write(&recipe, &good).unwrap();
    for (target, says) in [
        ("kernel+btf", "no recipe has a flavour btf (NAME+FLAVOUR: FLAVOUR one of bpf, kvm)"),
        ("kernel@3", "no recipe has a version 3 (NAME@KEY: KEY one of 2)"),
    ] {
        let (ok, text) =
            support::captured(support::xtask().env("REPROVM_ROOT", &root).args(["plan", target]));
        assert!(!ok && text.contains(says), "{target}: {text}");
    }
}

/// A registry proxy that passes every request until the `nth` manifest PUT, then calls `hit`
/// (which kills the worker) and drops that request: a push cut in the middle.
fn killing_proxy(upstream: String, nth: usize, hit: Box<dyn Fn() + Send>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut puts = 0;
        for mut client in listener.incoming().flatten() {
            let Ok(request) = read_request(&mut client) else { continue };
            let head = String::from_utf8_lossy(&request[..request.len().min(200)]).to_string();
            if head.starts_with("PUT ") && head.contains("/manifests/") {
                puts += 1;
                if puts == nth {
                    hit();
                    return;
                }
            }
            let _ = forward(&upstream, &request, &mut client);
        }
    });
    addr
}

/// One HTTP/1.1 request: its head and its body (Content-Length).
fn read_request(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    c.read_exact(&mut body)?;
    buf.extend(body);
    Ok(buf)
}

/// Send one request to `upstream` on a connection of its own (`Connection: close`) and copy
/// the whole answer back.
fn forward(upstream: &str, request: &[u8], client: &mut TcpStream) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(request);
    let split = text.find("\r\n\r\n").unwrap();
    let mut head: Vec<String> = text[..split]
        .lines()
        .filter(|l| !l.to_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    head.push("Connection: close".into());
    let mut u = TcpStream::connect(upstream)?;
    u.write_all(format!("{}\r\n\r\n", head.join("\r\n")).as_bytes())?;
    u.write_all(&request[split + 4..])?;
    let mut answer = Vec::new();
    u.read_to_end(&mut answer)?;
    let answer =
        String::from_utf8_lossy(&answer).replace("Connection: keep-alive", "Connection: close");
    client.write_all(answer.as_bytes())?;
    Ok(())
}

/// Every tag of every repository in the registry's storage, with the digest it points to.
fn registry_tags(storage: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let repos = storage.join("docker/registry/v2/repositories");
    for e in walkdir::WalkDir::new(&repos).into_iter().flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "link")
            && p.parent().is_some_and(|d| d.ends_with("current"))
        {
            let rel = p.strip_prefix(&repos).unwrap().to_string_lossy().to_string();
            out.insert(rel, std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

/// One worker of the farm: its own out/ and download cache, and the program `ci/farm-job`
/// runs as the xtask (the binary under test with them).
struct Worker {
    name: String,
    xtask: PathBuf,
}

impl Worker {
    fn new(dir: &Path, name: &str, seed: &Path) -> Worker {
        let home = dir.join(name);
        let cache = home.join("cache/sha256");
        std::fs::create_dir_all(&cache).unwrap();
        // The pinned toolchains' .debs, as a runner's download cache warmed from the archive:
        // inputs by sha256, verified on use, no store entry among them.
        for e in std::fs::read_dir(seed).unwrap().flatten() {
            let to = cache.join(e.file_name());
            if std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).unwrap();
            }
        }
        let xtask = home.join("xtask");
        std::fs::write(
            &xtask,
            format!(
                "#!/bin/sh\nexec {} --out {} --cache {} \"$@\"\n",
                env!("CARGO_BIN_EXE_xtask"),
                home.join("out").display(),
                home.join("cache").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&xtask, std::fs::Permissions::from_mode(0o755)).unwrap();
        Worker { name: name.into(), xtask }
    }

    /// `ci/farm-job ARGS` as this worker, in its own process group.
    fn job(&self, root: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
        let mut c = Command::new(repo().join("ci/farm-job"));
        c.args(args).env("REPROVM_XTASK", &self.xtask).env("REPROVM_ROOT", root);
        for (k, v) in env {
            c.env(k, v);
        }
        for k in ["REPROVM_RECIPES", "REPROVM_OUT", "REPROVM_CACHE", "REPROVM_USE"] {
            c.env_remove(k);
        }
        use std::os::unix::process::CommandExt;
        c.process_group(0);
        c
    }
}

/// What a worker's output says it did: (built, substituted) nodes, each `NODE ARCH`.
fn did(text: &str, arch: &str) -> (Vec<String>, Vec<String>) {
    let (mut built, mut substituted) = (Vec::new(), Vec::new());
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("build ") {
            built.push(format!("{} {arch}", rest.split_whitespace().next().unwrap()));
        } else if let Some(rest) = l.strip_prefix("substituted ") {
            substituted.push(format!("{} {arch}", rest.split_whitespace().next().unwrap()));
        }
    }
    (built, substituted)
}

#[test]
#[ignore = "full tier: the farm rehearsed: workers, a registry on 127.0.0.1, a killed push"]
fn the_farm_builds_each_cell_once_and_its_indexes_equal_the_pins() {
    let _full = support::full_tier();
    support::host_tools("the pinned docker-registry");
    let t = tempfile::tempdir().unwrap();
    let root = farm_project(t.path());
    // 1. One process builds every cell and pins them: the reference, and its time. Its
    //    download cache is warmed from the repository's (whatever earlier tests fetched); it
    //    fetches the rest of the toolchains' .debs, and warms the workers' caches in turn.
    let repo_cache = repo().join("out/cache/sha256");
    std::fs::create_dir_all(&repo_cache).unwrap();
    let reference = Worker::new(t.path(), "reference", &repo_cache);
    for arch in ["x86_64", "aarch64"] {
        let o = Command::new(&reference.xtask)
            .env("REPROVM_ROOT", &root)
            .args(["--arch", arch, "toolchain"])
            .output()
            .unwrap();
        assert!(o.status.success(), "toolchain {arch}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let seed = t.path().join("reference/cache/sha256");
    let m = matrix(Some(&root));
    let jobs: Vec<serde_json::Value> = m["include"].as_array().unwrap().clone();
    let run = |w: &Worker, args: &[&str]| {
        let o = Command::new(&w.xtask).env("REPROVM_ROOT", &root).args(args).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{} {}:\n{text}", w.name, args.join(" "));
        text
    };
    let started = Instant::now();
    for j in &jobs {
        let mut args = vec!["--arch", j["arch"].as_str().unwrap(), "build"];
        let targets = strings(&j["targets"]);
        args.extend(targets.iter().map(String::as_str));
        run(&reference, &args);
    }
    let one_process = started.elapsed();
    run(&reference, &["pin", "outputs"]);
    run(&reference, &["--arch", "aarch64", "pin", "outputs"]);
    run(&reference, &["multiarch", "--matrix", "--pin"]);
    let pins = std::fs::read_to_string(root.join("pins/multiarch.toml")).unwrap();
    let m = matrix(Some(&root));
    assert!(m["include"].as_array().unwrap().iter().all(|j| j["pinned"]
        .as_object()
        .unwrap()
        .values()
        .all(|p| p == true)));

    // 2. The farm: a registry, a key, two workers taking the jobs in order, two at a time.
    let registry = support::LocalRegistry::start();
    let cache = format!("http://{}/farm/cache", registry.addr);
    let keys = t.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("ci.key");
    support::xtask_ok(&["cache", "keygen", key.to_str().unwrap()]);
    let env = vec![
        ("REPROVM_SUBSTITUTERS", cache.clone()),
        ("REPROVM_TRUSTED_KEYS", keys.join("ci.pub").to_str().unwrap().to_string()),
        ("REPROVM_SIGN_KEY", key.to_str().unwrap().to_string()),
        ("REPROVM_PUBLISH", format!("http://{}/farm", registry.addr)),
    ];
    let workers =
        [Worker::new(t.path(), "worker-1", &seed), Worker::new(t.path(), "worker-2", &seed)];
    // Each worker's toolchains first, as a runner's image would have them: the farm's time is
    // its builds and pushes, as the single process's is its builds.
    let prepared = Instant::now();
    for w in &workers {
        for arch in ["x86_64", "aarch64"] {
            run(w, &["--arch", arch, "toolchain"]);
        }
    }
    let toolchains = prepared.elapsed();

    // The first job is run first alone on worker-1, and the worker killed when its push sends
    // its second manifest; what the registry then holds is compared with what the rerun
    // leaves. The rerun goes to worker-2, whose store has nothing of it: it substitutes what
    // the killed push had finished and builds only the rest.
    let first = &jobs[0];
    let first_arch = first["arch"].as_str().unwrap().to_string();
    let first_targets = strings(&first["targets"]);
    let pid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p, k) = (pid.clone(), killed.clone());
    let proxy = killing_proxy(
        registry.addr.clone(),
        2,
        Box::new(move || {
            let pgid = p.load(std::sync::atomic::Ordering::SeqCst);
            // Never 0 (the test's own group): the worker's pid is stored before it can push.
            if pgid > 0 {
                // SAFETY: kill(2) on the worker's own process group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                k.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }),
    );
    let mut cut_env = env.clone();
    cut_env[0].1 = format!("http://{proxy}/farm/cache");
    let mut args = vec!["cell", first_arch.as_str()];
    args.extend(first_targets.iter().map(String::as_str));
    let mut child = workers[0]
        .job(&root, &cut_env, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    pid.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    let mut cut_text = String::new();
    child.stderr.take().unwrap().read_to_string(&mut cut_text).unwrap();
    child.stdout.take().unwrap().read_to_string(&mut cut_text).unwrap();
    let status = child.wait().unwrap();
    assert!(
        killed.load(std::sync::atomic::Ordering::SeqCst) && !status.success(),
        "the push was not cut:\n{cut_text}"
    );
    let after_kill = registry_tags(&registry.storage);
    assert!(!after_kill.is_empty(), "the push was cut before any entry was complete");

    let started = Instant::now();
    // (worker, arch, what it printed); the killed run's first.
    let mut logs: Vec<(String, String, String)> =
        vec![(workers[0].name.clone(), first_arch.clone(), cut_text)];
    let mut queue: Vec<&serde_json::Value> = jobs.iter().collect();
    while !queue.is_empty() {
        let batch: Vec<&serde_json::Value> = queue.drain(..queue.len().min(2)).collect();
        let handles: Vec<_> = batch
            .iter()
            // The first batch's first job (the killed one) goes to worker-2.
            .zip(workers.iter().rev())
            .map(|(j, w)| {
                let arch = j["arch"].as_str().unwrap().to_string();
                let mut args = vec!["cell".to_string(), arch.clone()];
                args.extend(strings(&j["targets"]));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let child = w
                    .job(&root, &env, &args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (w.name.clone(), arch, child)
            })
            .collect();
        for (name, arch, child) in handles {
            let o = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.status.success(), "{name}: ci/farm-job cell {arch}:\n{text}");
            logs.push((name, arch, text));
        }
    }
    let farm = started.elapsed();

    // The killed push left nothing the rerun replaced with other bytes.
    let after = registry_tags(&registry.storage);
    for (tag, digest) in &after_kill {
        assert_eq!(
            after.get(tag),
            Some(digest),
            "{tag}: the rerun moved what the killed push left"
        );
    }

    // 3. A fresh worker: every image substituted, nothing built, indexes checked and pushed.
    let last = Worker::new(t.path(), "indexes", &seed);
    let o = last.job(&root, &env, &["indexes"]).output().unwrap();
    let index_text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "ci/farm-job indexes:\n{index_text}");
    assert_eq!(std::fs::read_to_string(root.join("pins/multiarch.toml")).unwrap(), pins);
    let (built, substituted) = did(&index_text, "");
    assert!(built.is_empty(), "the indexes job built {built:?}");
    // Every image of every index substituted, once per architecture.
    for i in m["indexes"].as_array().unwrap() {
        let target = format!("{} ", i["target"].as_str().unwrap());
        let times = substituted.iter().filter(|s| **s == target).count();
        assert_eq!(times, 2, "{target}substituted {times} times:\n{index_text}");
    }

    // Every cell built by exactly one worker.
    let mut built_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut per_worker: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, arch, text) in &logs {
        let (b, s) = did(text, arch);
        let e = per_worker.entry(name.clone()).or_default();
        e.0 += b.len();
        e.1 += s.len();
        for n in b {
            built_by.entry(n).or_default().push(name.clone());
        }
    }
    // The rerun of the killed job substituted what the killed push had finished; those nodes
    // were built once (by the killed run), what it had not pushed twice (killed run, rerun).
    let (rerun_built, rerun_substituted) = did(&logs[1].2, &first_arch);
    assert_eq!(logs[1].0, "worker-2", "the rerun");
    assert!(!rerun_substituted.is_empty(), "the rerun substituted nothing:\n{}", logs[1].2);
    for j in &jobs {
        for target in strings(&j["targets"]) {
            let cell = format!("{target} {}", j["arch"].as_str().unwrap());
            let by = built_by.get(&cell).cloned().unwrap_or_default();
            let expected = if rerun_built.contains(&cell) { 2 } else { 1 };
            assert_eq!(by.len(), expected, "{cell} built by {by:?}");
            assert!(!(rerun_substituted.contains(&cell) && rerun_built.contains(&cell)));
        }
    }
    // The published tags: a tag per cell in the image's repository, indexes as pinned, and
    // no other tag.
    let tags = registry_tags(&registry.storage);
    let pinned: toml::Table = pins.parse().unwrap();
    let prefix = "farm/firecracker-kernel-bin/_manifests/tags/";
    let mut want = BTreeMap::new();
    for by_tag in pinned.values() {
        for (tag, digest) in by_tag.as_table().unwrap() {
            want.insert(
                format!("{prefix}{tag}/current/link"),
                digest.as_str().unwrap().to_string(),
            );
        }
    }
    // cosign's signature tags (`sha256-HEX.sig`) beside them: one per index and per image.
    let (signatures, published): (BTreeMap<String, String>, BTreeMap<String, String>) = tags
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .partition(|(k, _)| k[prefix.len()..].starts_with("sha256-"));
    assert_eq!(published, want, "the published tags are not the pinned indexes");
    let indexes: BTreeSet<&String> = want.values().collect();
    assert!(
        signatures.len() == 3 * indexes.len()
            && signatures.keys().all(|k| k[prefix.len()..].contains(".sig/")),
        "a cosign signature per index and per platform image ({} indexes), nothing else: {signatures:?}",
        indexes.len()
    );
    // The pinned cosign accepts a published tag with the key, and refuses another key;
    // `verify --image --signature-only` agrees.
    let pem = keys.join("ci.pub.pem");
    let other = keys.join("other.key");
    support::xtask_ok(&["cache", "keygen", other.to_str().unwrap()]);
    let published_tags: Vec<&str> =
        want.keys().map(|k| k[prefix.len()..].trim_end_matches("/current/link")).collect();
    // The first and the last tag: two cells, each its own index (cosign takes a second each).
    for tag in [published_tags[0], published_tags[published_tags.len() - 1]] {
        let reference = format!("{}/farm/firecracker-kernel-bin:{tag}", registry.addr);
        for (pem, public, accepted) in [
            (pem.clone(), keys.join("ci.pub"), true),
            (keys.join("other.pub.pem"), keys.join("other.pub"), false),
        ] {
            let by_cosign = support::tool("cosign")
                .args(["verify", "--insecure-ignore-tlog", "--allow-http-registry", "--key"])
                .arg(&pem)
                .arg(&reference)
                .output()
                .unwrap();
            let by_xtask = support::xtask_in_repo(&[
                "verify",
                "--image",
                &format!("http://{reference}"),
                "--signature-only",
                "--trusted-attestation-key",
                public.to_str().unwrap(),
            ]);
            assert_eq!(
                by_cosign.status.success(),
                accepted,
                "cosign verify {reference}: {}",
                support::stderr(&by_cosign)
            );
            assert_eq!(
                by_xtask.status.success(),
                accepted,
                "verify --image {reference}: {}",
                support::stderr(&by_xtask)
            );
        }
    }
    eprintln!(
        "farm: {} jobs; per worker (built, substituted): {per_worker:?}; the indexes worker built \
         nothing and substituted {} store entries; one process built the cells in {:.1} s, two workers \
         built and pushed them in {:.1} s (after {:.1} s making their toolchains)",
        jobs.len(),
        substituted.len(),
        one_process.as_secs_f64(),
        farm.as_secs_f64(),
        toolchains.as_secs_f64()
    );
}
