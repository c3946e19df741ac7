//! The binary cache on an OCI registry (Debian's docker-registry on 127.0.0.1) and `gc`.
//!
//! Tiny recipes from tests/fixtures/cache over `--host-toolchain`. Fast tier: gc frees exactly
//! the unreachable entries and waits for a running build; a damaged store entry is named by
//! build, push and `store verify`, and repaired. Full tier (the pinned docker-registry): a
//! signed push substitutes a whole closure in a fresh out dir; every refusal (untrusted key, no
//! signature, tampered layer, output hash mismatch, a transfer cut mid-blob, an unreachable
//! registry) is named and the node built locally, leaving nothing half-written;
//! `--substitute-only` fails instead; and the real closure of hd-image substituted on a fresh
//! out dir with no compile and no toolchain, every source and .deb fetched from the registry
//! alone.

use crate::support;

use crate::support::{host_tools, snapshot, store_out, LocalRegistry};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// Fixture recipes copied to `dir/recipes`.
fn recipes(dir: &Path) -> PathBuf {
    let r = dir.join("recipes");
    support::copy_tree(&support::repo().join("tests/fixtures/cache"), &r);
    r
}

/// `xtask --host-toolchain --recipes R --out OUT ARGS`: (success, stdout + stderr).
fn x(recipes: &Path, out: &Path, args: &[&str]) -> (bool, String) {
    support::captured(support::on_host(recipes, out).args(args))
}

fn ok(recipes: &Path, out: &Path, args: &[&str]) -> String {
    let (good, text) = x(recipes, out, args);
    assert!(good, "xtask {} failed:\n{text}", args.join(" "));
    text
}

fn registry() -> LocalRegistry {
    host_tools("a real registry for the binary cache: the pinned docker-registry");
    LocalRegistry::start()
}

/// A proxy to `upstream` that cuts the transfer of one blob halfway (after its headers and
/// half its body) and passes everything else, one request per connection.
fn cutting_proxy(upstream: String, cut_digest: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            let cut = cut_digest.clone();
            std::thread::spawn(move || {
                let _ = serve_one(client, &upstream, &cut);
            });
        }
    });
    addr
}

fn serve_one(mut client: TcpStream, upstream: &str, cut: &str) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let body_len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; body_len];
    client.read_exact(&mut body)?;
    let mut up = TcpStream::connect(upstream)?;
    // One request per connection: the upstream closes after answering.
    let head = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let first_line = text.lines().next().unwrap_or("");
    if first_line.starts_with("GET ") && first_line.contains(&format!("/blobs/{cut}")) {
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(0);
        let half = split + (response.len() - split) / 2;
        client.write_all(&response[..half])?;
        return Ok(()); // the connection closes mid-body
    }
    client.write_all(&response)
}

#[test]
#[ignore = "full tier: a real registry for the binary cache (the pinned docker-registry)"]
fn substitutes_verify_refuse_and_fall_back() {
    let _full = support::full_tier();
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let r = recipes(t.path());
    let out = |n: &str| t.path().join(n);
    let repo = |name: &str| format!("http://{}/{name}", reg.addr);
    let (ci, other) = (t.path().join("ci.key"), t.path().join("other.key"));
    ok(&r, &out("a"), &["cache", "keygen", ci.to_str().unwrap()]);
    ok(&r, &out("a"), &["cache", "keygen", other.to_str().unwrap(), "--name", "other"]);
    let (ci_pub, other_pub) = (ci.with_extension("pub"), other.with_extension("pub"));
    let trust =
        |key: &Path| vec!["--trusted-cache-key".to_string(), key.to_str().unwrap().to_string()];
    let build_from = |o: &str, repo: &str, extra: &[String]| {
        let mut args: Vec<String> = vec!["--substituter".into(), repo.into()];
        args.extend(extra.iter().cloned());
        args.extend(["build".into(), "top".into()]);
        x(&r, &out(o), &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Machine A builds and pushes, signed; a second push sends nothing.
    ok(&r, &out("a"), &["build", "top"]);
    let pushed = ok(
        &r,
        &out("a"),
        &["cache", "push", "top", &repo("cache"), "--sign-key", ci.to_str().unwrap()],
    );
    assert!(pushed.contains("2 entries pushed, 0 already there"), "{pushed}");
    let again = ok(
        &r,
        &out("a"),
        &["cache", "push", "top", &repo("cache"), "--sign-key", ci.to_str().unwrap()],
    );
    assert!(again.contains("0 entries pushed, 2 already there"), "{again}");

    // Machine B substitutes the whole closure: the same bytes, nothing built.
    let (good, text) = build_from("b", &repo("cache"), &trust(&ci_pub));
    assert!(good && text.contains("top: 2 substituted, 0 built"), "{text}");
    for node in ["base", "top"] {
        assert_eq!(
            snapshot(&store_out(&out("a"), node).join("out")),
            snapshot(&store_out(&out("b"), node).join("out")),
            "{node}"
        );
    }
    support::store_is_clean(&out("b"));

    // Refusals: each named, then the node is built here.
    let (good, text) = build_from("c", &repo("cache"), &trust(&other_pub));
    assert!(good, "{text}");
    assert!(text.contains("untrusted: it is signed by `ci`, which is not a trusted key"), "{text}");
    assert!(text.contains("top: 0 substituted, 2 built"), "{text}");
    let (good, text) = build_from(
        "d",
        &repo("cache"),
        &[trust(&other_pub), vec!["--substitute-only".into()]].concat(),
    );
    assert!(!good && text.contains("--substitute-only"), "{text}");

    ok(&r, &out("a"), &["cache", "push", "top", &repo("unsigned")]);
    let (good, text) = build_from("e", &repo("unsigned"), &trust(&ci_pub));
    assert!(
        good && text.contains("untrusted: it is not signed")
            && text.contains("0 substituted, 2 built"),
        "{text}"
    );

    // A tampered layer in the registry's storage: refused by digest; top still substitutes.
    let ih_base =
        std::fs::read_to_string(store_out(&out("a"), "base").join("manifest.json")).unwrap();
    let ih_base: serde_json::Value = serde_json::from_str(&ih_base).unwrap();
    let ih_base = ih_base["input_hash"].as_str().unwrap().to_string();
    ok(
        &r,
        &out("a"),
        &["cache", "push", "top", &repo("tampered"), "--sign-key", ci.to_str().unwrap()],
    );
    let layer =
        reg.manifest("tampered", &ih_base)["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = reg.blob_file(&layer);
    let original = std::fs::read(&blob).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let (good, text) = build_from("f", &repo("tampered"), &trust(&ci_pub));
    assert!(
        good && text.contains(&format!("blob {layer}")) && text.contains("refused base"),
        "{text}"
    );
    assert!(text.contains("top: 1 substituted, 1 built"), "{text}");
    support::store_is_clean(&out("f"));
    // The registry shares blobs between repositories: put the original back.
    std::fs::write(&blob, original).unwrap();

    // A store altered after the build: push refuses the entry with the file named, and the
    // registry gets nothing of it (the registry suite checks that a substituter refuses such
    // an entry all the same, signed or not: `a_signed_layer_that_is_not_its_output_is_refused`).
    let altered = store_out(&out("a"), "base").join("out/share/data");
    let honest = std::fs::read(&altered).unwrap();
    support::scribble(&altered, b"altered\n");
    let (good, text) = x(
        &r,
        &out("a"),
        &["cache", "push", "base", &repo("mismatch"), "--sign-key", ci.to_str().unwrap()],
    );
    assert!(!good && text.contains("is damaged: out/share/data"), "{text}");
    assert!(
        !reg.storage.join("docker/registry/v2/repositories/mismatch").exists(),
        "a damaged entry reached the registry"
    );
    support::scribble(&altered, &honest);

    // The registry goes away in the middle of a blob: refused, built here, nothing left over.
    ok(&r, &out("b"), &["cache", "push", "top", &repo("cut"), "--sign-key", ci.to_str().unwrap()]);
    let ih_top: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store_out(&out("b"), "top").join("manifest.json")).unwrap(),
    )
    .unwrap();
    let top_layer = reg.manifest("cut", ih_top["input_hash"].as_str().unwrap())["layers"][0]
        ["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = cutting_proxy(reg.addr.clone(), top_layer.clone());
    let (good, text) = build_from("h", &format!("http://{proxy}/cut"), &trust(&ci_pub));
    assert!(
        good && text.contains("refused top") && text.contains("top: 1 substituted, 1 built"),
        "{text}"
    );
    support::store_is_clean(&out("h"));

    // Nobody listening: refused, built.
    let (good, text) = build_from("i", "http://127.0.0.1:1/cache", &trust(&ci_pub));
    assert!(good && text.contains("refused") && text.contains("0 substituted, 2 built"), "{text}");
}

#[test]
fn gc_frees_the_unreachable_and_waits_for_builds() {
    let t = tempfile::tempdir().unwrap();
    let r = recipes(t.path());
    let out = t.path().join("out");
    ok(&r, &out, &["build", "top"]);
    let old: Vec<PathBuf> = ["base", "top"].iter().map(|n| store_out(&out, n)).collect();
    // A new version of base makes the first two entries stale.
    let base = std::fs::read_to_string(r.join("base.toml")).unwrap();
    std::fs::write(r.join("base.toml"), base.replace("base 1", "base 2")).unwrap();
    ok(&r, &out, &["build", "top"]);
    // Audit rebuild trees: one whose audit has exited (no process can have that id: it is
    // above the kernel's largest pid_max), one of a running audit (this test's own id), and the
    // last logs, which stay.
    let audit = out.join("audit");
    let (exited, running, logs) = (
        audit.join("top-999999999"),
        audit.join(format!("top-{}", std::process::id())),
        audit.join("top-last-logs"),
    );
    for d in [&exited, &running, &logs] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/file"), b"rebuilt").unwrap();
    }
    // Hostile: a finished audit's "tree" that is a symlink to a directory outside out/. gc
    // removes the link and never what it points at.
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep").unwrap();
    let link = audit.join("top-999999998");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let listed = ok(&r, &out, &["gc", "--keep-last", "1", "--dry-run"]);
    assert!(listed.contains("would remove audit tree top-999999998 ("), "{listed}");
    assert!(listed.contains("would remove audit tree top-999999999 ("), "{listed}");
    assert!(!listed.contains("audit tree top-last-logs"), "{listed}");
    assert!(!listed.contains(&format!("audit tree top-{}", std::process::id())), "{listed}");
    assert!(exited.exists(), "--dry-run removed {}", exited.display());
    for e in &old {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(listed.contains(&format!("would remove store entry {name}")), "{listed}");
        assert!(e.exists(), "--dry-run removed {name}");
    }
    assert!(listed.contains("would free 2 store entries"), "{listed}");
    let freed = ok(&r, &out, &["gc", "--keep-last", "1"]);
    assert!(freed.contains("freed 2 store entries"), "{freed}");
    // The audit trees under this out/ (gc also takes any exited audit's root in /dev/shm,
    // named by its whole path, which this test does not own).
    let trees: BTreeSet<&str> = freed
        .lines()
        .filter_map(|l| l.strip_prefix("removed audit tree "))
        .filter(|n| !n.starts_with('/'))
        .filter_map(|n| n.split(" (").next())
        .collect();
    assert_eq!(trees, BTreeSet::from(["top-999999998", "top-999999999"]), "{freed}");
    assert!(!exited.exists() && running.is_dir() && logs.is_dir(), "{freed}");
    assert!(link.symlink_metadata().is_err(), "the symlinked audit tree survived gc");
    assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
    for e in &old {
        assert!(!e.exists(), "{} survived gc", e.display());
    }
    // The current closure is intact and still a cache hit.
    let again = ok(&r, &out, &["build", "top"]);
    assert!(again.contains("cached top") && again.contains("cached base"), "{again}");

    // A build running during gc: gc waits for it, the build completes and is kept.
    let mut held = support::xtask()
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .args(["build", "held"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = out.join("logs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_dir(&log)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("held")))
        .unwrap_or(false)
    {
        assert!(std::time::Instant::now() < deadline, "held never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // gc starts while held runs (held waits for `go` in its output directory), and
    // held is let go only once gc says it waits.
    let mut gc = support::on_host(&r, &out)
        .args(["gc", "--keep-last", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(gc.stderr.take().unwrap()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("waiting for another reprovm process") {
            break;
        }
    }
    assert!(said.contains("waiting for another reprovm process"), "gc did not wait: {said}");
    let pid = format!("-{}", held.id());
    let tmp = std::fs::read_dir(out.join("store"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(".tmp-") && n.contains("held") && n.ends_with(&pid))
        .expect("held's temp entry");
    std::fs::write(out.join("store").join(tmp).join("out/go"), b"").unwrap();
    let status = held.wait().unwrap();
    assert!(status.success(), "the build beside gc failed");
    for line in lines {
        said.push_str(&line.unwrap());
        said.push('\n');
    }
    assert!(gc.wait().unwrap().success(), "gc failed: {said}");
    assert!(store_out(&out, "held").join("out/done").is_file());
}

/// `xtask ARGS` in the repository's project with `out` as its output directory and the Debian
/// archive unreachable: (success, stdout + stderr).
fn x_repo(out: &Path, args: &[&str]) -> (bool, String) {
    let o = support::xtask()
        .arg("--out")
        .arg(out)
        .args(args)
        .env("REPROVM_DEBIAN_MIRROR", "http://127.0.0.1:1/debian")
        .env("REPROVM_DEBIAN_SNAPSHOT", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

#[test]
#[ignore = "full tier: the hd-image closure and its sources through a real registry"]
fn a_fresh_machine_takes_hd_image_and_its_sources_from_the_cache() {
    let _full = support::full_tier();
    let reg = registry();
    // This test may run first on a fresh checkout: build what it pushes (a store hit when
    // another test already built it), which also creates out/ and out/hd.img.
    support::xtask_ok(&["build", "hd-image"]);
    let t = tempfile::tempdir_in(support::repo().join("out")).unwrap();
    let key = t.path().join("ci.key");
    support::xtask_ok(&["cache", "keygen", key.to_str().unwrap()]);
    let repo = format!("http://{}/reprovm", reg.addr);
    let pushed = support::xtask_ok(&[
        "cache",
        "push",
        "hd-image",
        &repo,
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    eprintln!("{pushed}");
    let sub = ["--substituter", repo.as_str(), "--trusted-cache-key"];
    let trusted = key.with_extension("pub");

    // The whole closure from the cache: nothing compiled, no toolchain, the same image.
    let fresh = t.path().join("fresh");
    let mut args: Vec<&str> = sub.to_vec();
    args.extend([trusted.to_str().unwrap(), "build", "hd-image"]);
    let (good, text) = x_repo(&fresh, &args);
    assert!(good, "{text}");
    // Every node of the closure, as `plan` lists it.
    let plan: serde_json::Value =
        serde_json::from_str(&support::xtask_ok(&["plan", "hd-image", "--json"])).unwrap();
    let nodes = plan["nodes"].as_array().unwrap().len();
    assert!(nodes >= 6, "hd-image's closure: {plan}");
    assert!(text.contains(&format!("hd-image: {nodes} substituted, 0 built")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("build ")), "something was built:\n{text}");
    assert!(!fresh.join("toolchain").exists(), "the toolchain was materialised");
    assert_eq!(
        std::fs::read(fresh.join("hd.img")).unwrap(),
        std::fs::read(support::repo().join("out/hd.img")).unwrap(),
        "the substituted hd.img differs from the one built here"
    );

    // Sources and .debs by digest from the registry alone (the Debian archive unreachable).
    let sources = t.path().join("sources");
    let mut args: Vec<&str> = sub.to_vec();
    args.extend([trusted.to_str().unwrap(), "fetch", "hd-image"]);
    let (good, text) = x_repo(&sources, &args);
    let from_cache = text
        .lines()
        .filter(|l| l.starts_with("fetched ") && l.contains(&format!("from cache {repo}")))
        .count();
    assert!(good && from_cache == 4, "{text}");
    let mut args: Vec<&str> = sub.to_vec();
    args.extend([trusted.to_str().unwrap(), "toolchain"]);
    let (good, text) = x_repo(&sources, &args);
    assert!(good, "{text}");
    let root = text
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .find(|p| p.ends_with("root") && p.is_dir())
        .unwrap_or_else(|| panic!("no toolchain root printed:\n{text}"));
    let here = support::xtask_ok(&["toolchain"]);
    let manifest =
        |root: &Path| std::fs::read(root.parent().unwrap().join("manifest.json")).unwrap();
    assert_eq!(
        manifest(&root),
        manifest(Path::new(here.trim())),
        "a toolchain from the cache's .debs differs"
    );
}

/// The store keeps what it committed (fast tier). Entries are sealed read-only. One byte
/// changed in a store file (same size: only its change time shows it) is named by the build of
/// a dependent target, by `cache push` (which sends nothing of it) and by `store verify`;
/// `store verify --repair` makes the entry again, to its recorded bytes, and then all is as
/// before: the build is a cache hit and the push goes through.
#[test]
fn a_damaged_store_entry_is_named_never_used_nor_published_and_repaired() {
    let t = tempfile::tempdir().unwrap();
    let r = recipes(t.path());
    let out = t.path().join("out");
    ok(&r, &out, &["build", "top"]);
    let entry = store_out(&out, "base");
    for p in ["", "manifest.json", "out", "out/share", "out/share/data"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(entry.join(p)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o222, 0, "{p} of a committed entry is writable ({mode:o})");
    }
    let data = entry.join("out/share/data");
    let honest = std::fs::read(&data).unwrap();
    let mut damaged = honest.clone();
    damaged[0] ^= 0x20;
    support::scribble(&data, &damaged);

    let (good, text) = x(&r, &out, &["build", "top"]);
    assert!(!good, "a damaged dependency was used:\n{text}");
    assert!(
        text.contains("is damaged: out/share/data: hashes to") && text.contains("--repair"),
        "{text}"
    );

    let reg = support::registry::FakeRegistry::start();
    let key = t.path().join("ci.key");
    ok(&r, &out, &["cache", "keygen", key.to_str().unwrap()]);
    let (good, text) = x(
        &r,
        &out,
        &["cache", "push", "top", &reg.repo("cache"), "--sign-key", key.to_str().unwrap()],
    );
    assert!(!good && text.contains("is damaged: out/share/data"), "{text}");
    let writes = reg.requests.lock().unwrap().iter().filter(|q| q.method != "GET").count();
    assert_eq!(writes, 0, "a damaged entry reached the registry");

    let (good, text) = x(&r, &out, &["store", "verify"]);
    assert!(!good, "store verify passed a damaged entry:\n{text}");
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(text.contains(&format!("DAMAGED {name}")), "{text}");
    assert!(text.contains("out/share/data: hashes to"), "{text}");
    assert!(text.contains("1 DAMAGED"), "{text}");
    let o = support::xtask()
        .args(["--host-toolchain", "--recipes"])
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .args(["store", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["entries"], 2, "{report}");
    assert_eq!(report["damaged"][0]["problems"][0]["path"], "out/share/data", "{report}");

    let repaired = ok(&r, &out, &["store", "verify", "--repair"]);
    assert!(
        repaired.contains("repaired: base (x86_64) made again, to the bytes its manifest recorded")
            && repaired.contains("1 damaged, all repaired"),
        "{repaired}"
    );
    assert_eq!(std::fs::read(store_out(&out, "base").join("out/share/data")).unwrap(), honest);
    assert!(ok(&r, &out, &["store", "verify"]).contains("all intact"));
    let again = ok(&r, &out, &["build", "top"]);
    assert!(again.contains("cached base") && again.contains("cached top"), "{again}");
    let pushed = ok(
        &r,
        &out,
        &["cache", "push", "top", &reg.repo("cache"), "--sign-key", key.to_str().unwrap()],
    );
    assert!(pushed.contains("2 entries pushed"), "{pushed}");
}
