//! `update` (full tier): pins that stay current, read through authenticated indexes.
//!
//! 1. Against the configured (real) Debian archive, read only: the table goes to the CI log.
//! 2. Against a stand-in archive on 127.0.0.1 that serves the real archive's files (fetched
//!    through it) plus one crafted newer version of a source (iproute2 6.1.1 in bookworm's
//!    Sources) and of a toolchain package (bc in bookworm's Packages), every InRelease re-signed
//!    by a key made for the test and trusted only through `--keyring`: `update` lists exactly
//!    what the real archive has moved past and those two; `--check` fails; the pinned keyring
//!    refuses the stand-in; `--write iproute2 build` edits the recipe and writes the lock as
//!    expected, and `plan` shows the nodes changed.
//! 3. A stand-in serving a tampered file, an index whose hash is not its InRelease's, an
//!    InRelease signed by another key, one past its Valid-Until: each is a one-line error
//!    naming what failed, and no file of the project changes.

use crate::support;

use crate::support::registry::{FakeRegistry, Request, Response};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The suites `update` reads for this project (its sources' groups and its locks' specs).
const SUITES: [&str; 8] = [
    "bookworm",
    "bookworm-security",
    "bookworm-updates",
    "bookworm-backports",
    "trixie",
    "trixie-security",
    "trixie-updates",
    "trixie-backports",
];

/// The crafted source: a newer iproute2 in bookworm's series 6.1.
const NEW_IPROUTE2: &str = "6.1.1-1";
const NEW_ORIG: &str = "iproute2_6.1.1.orig.tar.xz";
/// The crafted toolchain package.
const NEW_BC: &str = "1.07.1-3+b9";
const NEW_BC_FILE: &str = "pool/main/b/bc/bc_1.07.1-3+b9_amd64.deb";

fn sha256(b: &[u8]) -> String {
    support::registry::sha256_hex(b)
}

/// How a stand-in misbehaves.
#[derive(Clone, Default)]
struct Faults {
    /// Serve the crafted orig tarball with other bytes than the index lists.
    tampered_orig: bool,
    /// Serve bookworm's Sources with other bytes than its InRelease lists.
    tampered_index: bool,
    /// Sign with this key instead of the trusted one.
    other_key: Option<PathBuf>,
    /// Add this `Valid-Until` to every Release.
    valid_until: Option<&'static str>,
    /// Serve every Release unsigned, as its InRelease.
    unsigned: bool,
    /// Serve trixie's (signed) InRelease as bookworm's: a replay of another suite.
    other_suite: bool,
}

/// Files fetched from the real mirrors, shared by every stand-in of the test.
type Downloads = Arc<Mutex<BTreeMap<String, Option<Vec<u8>>>>>;

fn real_get(url: &str, cache: &Downloads) -> Option<Vec<u8>> {
    if let Some(b) = cache.lock().unwrap().get(url) {
        return b.clone();
    }
    let got = match ureq::get(url).call() {
        Ok(r) => {
            let mut b = Vec::new();
            r.into_reader().read_to_end(&mut b).unwrap();
            Some(b)
        }
        Err(ureq::Error::Status(404, _)) => None,
        Err(e) => panic!("{url}: {e}"),
    };
    cache.lock().unwrap().insert(url.to_string(), got.clone());
    got
}

/// The text a cleartext-signed message signs (dash-escaping undone).
fn cleartext(signed: &[u8]) -> String {
    let text = String::from_utf8_lossy(signed);
    let body = text.split_once("\n\n").expect("an armor header").1;
    let body = body.split("-----BEGIN PGP SIGNATURE-----").next().unwrap();
    body.lines().map(|l| l.strip_prefix("- ").unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

/// `sq ARGS` of the pinned archive set.
fn sq(args: &[&str]) {
    let o = support::tool("sq").args(["--home", "none", "--batch"]).args(args).output().unwrap();
    assert!(o.status.success(), "sq {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

/// A key pair made for the test: (secret key, certificate).
fn make_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join(format!("{name}.pgp")), dir.join(format!("{name}.cert")));
    let rev = dir.join(format!("{name}.rev"));
    let (k, r) = (key.to_str().unwrap(), rev.to_str().unwrap());
    sq(&[
        "key",
        "generate",
        "--own-key",
        "--without-password",
        "--name",
        name,
        "--output",
        k,
        "--rev-cert",
        r,
    ]);
    sq(&[
        "key",
        "delete",
        "--cert-file",
        key.to_str().unwrap(),
        "--output",
        cert.to_str().unwrap(),
    ]);
    (key, cert)
}

fn sign(text: &str, key: &Path, dir: &Path) -> Vec<u8> {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (input, output) = (dir.join(format!("rel-{n}")), dir.join(format!("signed-{n}")));
    std::fs::write(&input, text).unwrap();
    sq(&[
        "sign",
        "--cleartext",
        "--signer-file",
        key.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    std::fs::read(output).unwrap()
}

/// A Release with the index `stem` replaced by its plain form `bytes` (its compressed forms
/// dropped, its SHA256 entry the new bytes'), and `extra` fields added.
fn release_with(text: &str, stems: &[(&str, &[u8])], extra: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            if line.starts_with("SHA256:") {
                out.push_str(extra);
            }
            out.push_str(line);
            out.push('\n');
            if line.starts_with("SHA256:") {
                for (stem, bytes) in stems {
                    out.push_str(&format!(" {} {} {stem}\n", sha256(bytes), bytes.len()));
                }
            }
            continue;
        }
        let path = line.split_whitespace().nth(2).unwrap_or("");
        if stems.iter().any(|(stem, _)| {
            path == *stem || path == format!("{stem}.xz") || path == format!("{stem}.gz")
        }) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn decompress_xz(b: &[u8]) -> String {
    let mut s = String::new();
    xz2::read::XzDecoder::new(b).read_to_string(&mut s).unwrap();
    s
}

/// The stand-in archive: one base per real mirror (`/m0`, `/m1`, ...), real files fetched
/// through it, bookworm's Sources and amd64 Packages with the crafted paragraphs, the crafted
/// files in the pool, every InRelease signed by `key`.
struct StandIn {
    reg: FakeRegistry,
    bases: Vec<String>,
    /// The crafted orig tarball's bytes and the crafted .deb's, as the indexes list them.
    orig: Vec<u8>,
    deb: Vec<u8>,
}

impl StandIn {
    fn start(real: &[String], key: &Path, dir: &Path, downloads: &Downloads, f: Faults) -> StandIn {
        let orig = b"a crafted newer iproute2 orig tarball".to_vec();
        let deb = b"a crafted newer bc .deb".to_vec();
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (i, base) in real.iter().enumerate() {
            for suite in SUITES {
                let Some(signed) = real_get(&format!("{base}/dists/{suite}/InRelease"), downloads)
                else {
                    continue;
                };
                let text = cleartext(&signed);
                let extra =
                    f.valid_until.map(|v| format!("Valid-Until: {v}\n")).unwrap_or_default();
                let mut stems: Vec<(&str, Vec<u8>)> = Vec::new();
                if suite == "bookworm" {
                    // The real index, decompressed, with one more paragraph after its last.
                    let with = |stem: &str, paragraph: String| -> Vec<u8> {
                        let url = format!("{base}/dists/{suite}/{stem}.xz");
                        let xz = real_get(&url, downloads).unwrap();
                        format!("{}\n\n{paragraph}", decompress_xz(&xz).trim_end()).into_bytes()
                    };
                    let (o, d) = ((sha256(&orig), orig.len()), (sha256(&deb), deb.len()));
                    stems.push(("main/source/Sources", with("main/source/Sources", format!(
                        "Package: iproute2\nVersion: {NEW_IPROUTE2}\nDirectory: pool/main/i/iproute2\nChecksums-Sha256:\n {} {} {NEW_ORIG}\n",
                        o.0, o.1
                    ))));
                    stems.push(("main/binary-amd64/Packages", with("main/binary-amd64/Packages", format!(
                        "Package: bc\nVersion: {NEW_BC}\nArchitecture: amd64\nFilename: {NEW_BC_FILE}\nSize: {}\nSHA256: {}\n",
                        d.1, d.0
                    ))));
                }
                let refs: Vec<(&str, &[u8])> =
                    stems.iter().map(|(s, b)| (*s, b.as_slice())).collect();
                let release = release_with(&text, &refs, &extra);
                let signer = f.other_key.as_deref().unwrap_or(key);
                let served =
                    if f.unsigned { release.into_bytes() } else { sign(&release, signer, dir) };
                files.insert(format!("/m{i}/dists/{suite}/InRelease"), served);
                for (stem, mut bytes) in stems {
                    if f.tampered_index && stem == "main/source/Sources" {
                        // The same size, one byte other than the InRelease's hash covers.
                        let last = bytes.len() - 2;
                        bytes[last] ^= 0x01;
                    }
                    files.insert(format!("/m{i}/dists/{suite}/{stem}"), bytes);
                }
            }
            if f.other_suite {
                if let Some(trixie) = files.get(&format!("/m{i}/dists/trixie/InRelease")).cloned() {
                    files.insert(format!("/m{i}/dists/bookworm/InRelease"), trixie);
                }
            }
            let orig_served = if f.tampered_orig { b"other bytes".to_vec() } else { orig.clone() };
            files.insert(format!("/m{i}/pool/main/i/iproute2/{NEW_ORIG}"), orig_served);
            files.insert(format!("/m{i}/{NEW_BC_FILE}"), deb.clone());
        }
        let reg = FakeRegistry::start();
        let count = real.len();
        let (real, downloads) = (real.to_vec(), downloads.clone());
        reg.hostile(move |req: &Request, _| {
            let path = req.path().to_string();
            if let Some(b) = files.get(&path) {
                return Some(Response::new(200, b.clone()));
            }
            let (i, rest) = path.strip_prefix("/m")?.split_once('/')?;
            let base = real.get(i.parse::<usize>().ok()?)?;
            Some(match real_get(&format!("{base}/{rest}"), &downloads) {
                Some(b) => Response::new(200, b),
                None => Response::new(404, Vec::new()),
            })
        });
        let bases = (0..count).map(|i| format!("http://{}/m{i}", reg.addr)).collect();
        StandIn { reg, bases, orig, deb }
    }
}

/// `xtask ARGS` over the project at `root` and the stand-in's mirrors, with the download
/// cache `out/cache` of the checkout unless a `cache` directory is beside `root`.
fn x(root: &Path, out: &Path, mirrors: &[String], args: &[&str]) -> (bool, i32, String, String) {
    let cache = match root.with_file_name("cache") {
        own if own.is_dir() => own,
        _ => support::repo().join("out/cache"),
    };
    let o = support::xtask()
        .env("REPROVM_ROOT", root)
        .env("REPROVM_DEBIAN_MIRROR", mirrors.join(" "))
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A copy of the project's recipes, pins and toolchain specs.
fn project_copy(dir: &Path) -> PathBuf {
    let root = dir.join("project");
    for d in ["recipes", "pins", "toolchain"] {
        support::copy_tree(&support::repo().join(d), &root.join(d));
    }
    root
}

/// (node, state, newest) of each source row, and (set, [(name, new)]) of each lock row.
type Summary = (Vec<(String, String, String)>, BTreeMap<String, Vec<(String, String)>>);

fn summary(report: &serde_json::Value) -> Summary {
    let sources = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["newest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let locks = report["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let changes = l["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["new"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            (l["set"].as_str().unwrap().to_string(), changes)
        })
        .collect();
    (sources, locks)
}

#[test]
#[ignore = "full tier: update against the real archive and a stand-in archive"]
fn update_reads_signed_indexes_lists_what_moved_and_moves_it() {
    let _full = support::full_tier();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let real_mirrors = reprovm::mechanisms::debian::mirrors();
    assert!(!real_mirrors.is_empty(), "no Debian mirror configured");

    // 1. The real archive, read only.
    let (ok, _, json, err) = x(&support::repo(), &out, &real_mirrors, &["update", "--json"]);
    assert!(ok, "update against the configured archive failed:\n{err}");
    let real: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}\n{err}"));
    let (real_sources, real_locks) = summary(&real);
    eprintln!("update against the configured archive (read only):");
    for (node, state, newest) in &real_sources {
        eprintln!("  {node:<16} {state:<10} newest in series {newest}");
    }
    for (set, changes) in &real_locks {
        eprintln!("  lock {set:<10} {} to move: {changes:?}", changes.len());
    }

    // 2. The stand-in.
    let keys = t.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, cert) = make_key(&keys, "stand-in");
    let downloads: Downloads = Arc::default();
    let stand = StandIn::start(&real_mirrors, &key, &keys, &downloads, Faults::default());
    let root = project_copy(t.path());
    let keyring = ["--keyring", cert.to_str().unwrap()];
    let (ok, code, json, err) =
        x(&root, &out, &stand.bases, &[&["update", "--check", "--json"][..], &keyring].concat());
    assert!(!ok && code == 1, "--check passed an out-of-date project:\n{err}");
    let (sources, locks) = summary(&serde_json::from_str(&json).unwrap());
    let mut expected_sources = real_sources.clone();
    for row in &mut expected_sources {
        if row.0 == "iproute2" {
            *row = ("iproute2".into(), "newer".into(), NEW_IPROUTE2.into());
        }
    }
    assert_eq!(sources, expected_sources, "the stand-in's sources are the real ones plus iproute2");
    let mut expected_locks = real_locks.clone();
    let build = expected_locks.get_mut("build").unwrap();
    build.push(("bc".into(), NEW_BC.into()));
    build.sort();
    for (set, changes) in &expected_locks {
        assert_eq!(&locks[set], changes, "{set}: the stand-in's changes are the real ones plus bc");
    }
    assert_eq!(locks.len(), expected_locks.len());
    // Without the keyring, the pinned Debian keyring refuses the stand-in's signature.
    let (ok, code, _, err) = x(&root, &out, &stand.bases, &["update", "--check"]);
    assert!(
        !ok && err.contains("InRelease: its signature does not verify with debian-archive-keyring"),
        "{err}"
    );
    assert_eq!(code, 2, "--check that could not read the archive says so apart from 1:\n{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");

    // --write: the recipe and the lock, as expected; plan sees the new nodes.
    let plan = |root: &Path| -> BTreeMap<String, String> {
        let (ok, _, json, err) = x(root, &out, &stand.bases, &["plan", "hd-image", "--json"]);
        assert!(ok, "{err}");
        let p: serde_json::Value = serde_json::from_str(&json).unwrap();
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().into(), n["input_hash"].as_str().unwrap().into()))
            .collect()
    };
    let before_plan = plan(&root);
    let recipe_before = std::fs::read_to_string(root.join("recipes/iproute2.toml")).unwrap();
    let lock_before = std::fs::read_to_string(root.join("pins/toolchain.lock")).unwrap();
    let (ok, _, text, err) = x(
        &root,
        &out,
        &stand.bases,
        &[&["update", "--write", "iproute2", "build"][..], &keyring].concat(),
    );
    assert!(ok, "{text}\n{err}");
    eprintln!("{text}");
    let recipe_after = std::fs::read_to_string(root.join("recipes/iproute2.toml")).unwrap();
    let snapshot = recipe_after.split("snapshot = \"").nth(1).unwrap()[..16].to_string();
    let expected = recipe_before
        .replace("version = \"6.1.0\"", "version = \"6.1.1\"")
        .replace("iproute2-6.1.0.tar.xz", "iproute2-6.1.1.tar.xz")
        .replace(
            "5ce12a0fec6b212725ef218735941b2dab76244db7e72646a76021b0537b43ab",
            &sha256(&stand.orig),
        )
        .replace("size = 905512", &format!("size = {}", stand.orig.len()))
        .replace("version = \"6.1.0-3\"", &format!("version = \"{NEW_IPROUTE2}\""))
        .replace("iproute2_6.1.0.orig.tar.xz", NEW_ORIG)
        .replace("20261123T132506Z", &snapshot);
    assert_eq!(recipe_after, expected, "the recipe edit");
    let deb = |text: &str| -> BTreeMap<String, toml::Value> {
        let v: toml::Value = toml::from_str(text).unwrap();
        v["package"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
            .collect()
    };
    let (old_lock, new_lock) = (
        deb(&lock_before),
        deb(&std::fs::read_to_string(root.join("pins/toolchain.lock")).unwrap()),
    );
    let bc = &new_lock["bc"];
    assert_eq!(
        (
            bc["version"].as_str(),
            bc["filename"].as_str(),
            bc["size"].as_integer(),
            bc["sha256"].as_str()
        ),
        (
            Some(NEW_BC),
            Some(NEW_BC_FILE),
            Some(stand.deb.len() as i64),
            Some(sha256(&stand.deb).as_str())
        ),
    );
    for (name, entry) in &new_lock {
        if old_lock.get(name) != Some(entry) && name != "bc" {
            let new = entry["version"].as_str().unwrap().to_string();
            assert!(
                real_locks["build"].contains(&(name.clone(), new.clone())),
                "{name} {new} moved, but not in the real archive's list"
            );
        }
    }
    let after_plan = plan(&root);
    for node in ["iproute2", "rootfs", "hd-image", "busybox", "kernel"] {
        assert_ne!(before_plan[node], after_plan[node], "{node}'s input hash did not change");
    }
    assert!(
        text.contains("published outputs to build and pin again") && text.contains("hd-image"),
        "{text}"
    );

    // 3. Each fault leaves every file as it was, with one line naming what failed.
    let cases: [(&str, Faults, &[&str], &str); 6] = [
        (
            "a tampered file",
            Faults { tampered_orig: true, ..Faults::default() },
            &["update", "--write", "iproute2"],
            "no origin had the pinned bytes",
        ),
        (
            "an index that is not its InRelease's",
            Faults { tampered_index: true, ..Faults::default() },
            &["update"],
            ", the InRelease lists ",
        ),
        (
            "another key",
            Faults { other_key: Some(make_key(&keys, "other").0), ..Faults::default() },
            &["update"],
            "its signature does not verify with --keyring",
        ),
        (
            "past Valid-Until",
            Faults { valid_until: Some("Thu, 01 Jan 2026 00:00:00 UTC"), ..Faults::default() },
            &["update"],
            "it was valid until 01 Jan 2026",
        ),
        (
            "an unsigned InRelease",
            Faults { unsigned: true, ..Faults::default() },
            &["update"],
            "bookworm/InRelease: it is not signed (no cleartext signature): refused",
        ),
        (
            "another suite's InRelease",
            Faults { other_suite: true, ..Faults::default() },
            &["update"],
            "bookworm/InRelease: it is the Release of trixie",
        ),
    ];
    for (what, faults, args, says) in cases {
        let root = project_copy(&t.path().join(what.replace(' ', "-")));
        // A download cache of its own: the honest run above cached the crafted files.
        std::fs::create_dir_all(root.with_file_name("cache")).unwrap();
        let before = support::snapshot(&root);
        let stand = StandIn::start(&real_mirrors, &key, &keys, &downloads, faults);
        let (ok, _, _, err) = x(&root, &out, &stand.bases, &[args, &keyring[..]].concat());
        assert!(!ok && err.contains(says), "{what}: {err}");
        // One line: the error is the last line of the output, and the only one.
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{what}: {err}");
        assert_eq!(err.trim_end().lines().last(), Some(errors[0]), "{what}: not one line: {err}");
        eprintln!("{what}: {}", errors[0]);
        assert!(support::snapshot(&root) == before, "{what}: a file of the project changed");
        drop(stand.reg);
    }
}
