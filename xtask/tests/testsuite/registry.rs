//! A registry is untrusted (fast tier): a hostile registry on 127.0.0.1
//! (`support::registry::FakeRegistry`) serves altered copies of honestly pushed, signed store
//! entries and crafted documents, 401 challenges and redirects, to `--substituter` builds,
//! `audit --against` and `pull`. One test per way it tried to get through: each is refused
//! with what was expected and what came, nothing it sent reaches the store or `out/`, no
//! credential leaves for another origin, and memory stays bounded whatever it streams.

use crate::support;

use crate::support::registry::{Body, FakeRegistry, Request, Response};
use crate::support::store_out;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Tiny recipes (base, top) built over host programs, pushed honestly to a fresh registry.
struct Fixture {
    tiny: support::Tiny,
    reg: FakeRegistry,
    key: PathBuf,
}

impl Fixture {
    /// Build top (and base) in out `a` and push the closure to `cache`, signed unless not.
    fn new(signed: bool) -> Fixture {
        let tiny = support::Tiny::new("cache");
        let (reg, key) = (FakeRegistry::start(), tiny.path("ci.key"));
        let f = Fixture { tiny, reg, key };
        f.ok("a", &["cache", "keygen", f.key.to_str().unwrap()]);
        f.ok("a", &["build", "top"]);
        let (repo, key) = (f.reg.repo("cache"), f.key.to_str().unwrap().to_string());
        let mut push = vec!["cache", "push", "top", repo.as_str()];
        if signed {
            push.extend(["--sign-key", key.as_str()]);
        }
        f.ok("a", &push);
        f
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tiny.path(name)
    }

    fn command(&self, out: &str, args: &[&str]) -> Command {
        let mut c = self.tiny.command(out, args);
        c.env("DOCKER_CONFIG", self.tiny.path("no-docker-config")).env_remove(REALMS);
        c
    }

    fn x(&self, out: &str, args: &[&str]) -> (bool, String) {
        support::captured(&mut self.command(out, args))
    }

    fn ok(&self, out: &str, args: &[&str]) -> String {
        let (good, text) = self.x(out, args);
        assert!(good, "xtask {} failed:\n{text}", args.join(" "));
        text
    }

    /// `--substituter cache --trusted-cache-key ci.pub build top` into a fresh out dir.
    fn substitute(&self, out: &str) -> (bool, String) {
        let (repo, key) = (self.reg.repo("cache"), self.key.with_extension("pub"));
        self.x(
            out,
            &["--substituter", &repo, "--trusted-cache-key", key.to_str().unwrap(), "build", "top"],
        )
    }

    /// The input hash of `node` as built in out `a`.
    fn input_hash(&self, node: &str) -> String {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store_out(&self.out("a"), node).join("manifest.json")).unwrap(),
        )
        .unwrap();
        m["input_hash"].as_str().unwrap().to_string()
    }

    /// The registry's document for `node`, parsed.
    fn document(&self, node: &str) -> serde_json::Value {
        let st = self.reg.state.lock().unwrap();
        serde_json::from_slice(&st.manifest("cache", &self.input_hash(node)).unwrap()).unwrap()
    }
}

const REALMS: &str = "REPROVM_REGISTRY_TOKEN_REALMS";

/// Run `c` to completion, sampling its peak RSS (VmHWM) as it runs; (success, text, peak KiB).
fn with_peak_rss(c: &mut Command) -> (bool, String, u64) {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text, peak)
}

/// An honest push substitutes (the harness itself works), with every document read once.
#[test]
fn the_honest_registry_substitutes() {
    let f = Fixture::new(true);
    let (good, text) = f.substitute("b");
    assert!(good && text.contains("top: 2 substituted, 0 built"), "{text}");
    support::store_is_clean(&f.out("b"));
}

/// 1. A forged config (the entry's manifest.json) on an honestly signed entry: the signature
///    covers the config's digest, so the altered document is untrusted, and nothing is stored.
#[test]
fn a_forged_config_breaks_the_signature() {
    let f = Fixture::new(true);
    let ih = f.input_hash("base");
    let mut doc = f.document("base");
    let config_digest = doc["config"]["digest"].as_str().unwrap().to_string();
    let forged = {
        let st = f.reg.state.lock().unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&st.blobs[&config_digest]).unwrap();
        m["files"].as_array_mut().unwrap().push(serde_json::json!({
            "path": "share/extra", "kind": "file", "mode": 420, "size": 1,
            "sha256": "0".repeat(64)
        }));
        serde_json::to_vec_pretty(&m).unwrap()
    };
    let forged_digest = f.reg.state.lock().unwrap().put_blob(forged.clone());
    doc["config"]["digest"] = forged_digest.into();
    doc["config"]["size"] = forged.len().into();
    let doc_bytes = serde_json::to_vec(&doc).unwrap();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, doc_bytes);
    let (good, text) = f.substitute("b");
    assert!(good, "{text}");
    assert!(
        text.contains("refused base")
            && text.contains("untrusted: its signature by `ci` does not verify"),
        "{text}"
    );
    assert!(text.contains("top: 1 substituted, 1 built"), "{text}");
    support::store_is_clean(&f.out("b"));
}

/// 1. A config that lies although the signature holds (a signer whose key signs whatever it
///    is given): the manifest.json stored is computed from the verified tree, and the
///    registry's copy must be it, so the lie is refused. The signer's own `cache push` would not
///    have sent it: its store's manifest.json, altered, is refused there with the file named.
#[test]
fn a_signed_config_that_lies_about_the_tree_is_refused() {
    let f = Fixture::new(false);
    let entry = store_out(&f.out("a"), "base");
    let path = entry.join("manifest.json");
    let honest = std::fs::read(&path).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&honest).unwrap();
    m["files"].as_array_mut().unwrap().push(serde_json::json!({
        "path": "share/extra", "kind": "file", "mode": 420, "size": 1, "sha256": "0".repeat(64)
    }));
    let lie = serde_json::to_vec_pretty(&m).unwrap();
    // The store's copy altered: push refuses it, naming the manifest, and sends nothing.
    support::scribble(&path, &lie);
    let repo = f.reg.repo("lies");
    let before = f.reg.requests.lock().unwrap().len();
    let (good, text) =
        f.x("a", &["cache", "push", "base", &repo, "--sign-key", f.key.to_str().unwrap()]);
    assert!(
        !good && text.contains("is damaged: manifest.json: changed since the entry was sealed"),
        "{text}"
    );
    let puts = f.reg.requests.lock().unwrap()[before..]
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "POST")
        .count();
    assert_eq!(puts, 0, "a damaged entry reached the registry");
    support::scribble(&path, &honest);
    // A registry document signed over the lying config, as a careless signer would make it.
    let ih = f.input_hash("base");
    let mut doc = f.document("base");
    let lie_digest = f.reg.state.lock().unwrap().put_blob(lie.clone());
    doc["config"]["digest"] = lie_digest.clone().into();
    doc["config"]["size"] = lie.len().into();
    let a = doc["annotations"].clone();
    let get = |k: &str| a[k].as_str().unwrap().to_string();
    let key = reprovm::steps::substitution::keys::SecretKey::load(&f.key).unwrap();
    let (name, version, output_hash) =
        (get("dev.reprovm.name"), get("dev.reprovm.version"), get("dev.reprovm.output-hash"));
    let (layer_digest, layer_size) = (
        doc["layers"][0]["digest"].as_str().unwrap().to_string(),
        doc["layers"][0]["size"].as_u64().unwrap(),
    );
    use reprovm::steps::substitution::entry::{signed_message, Signed, SIGNATURE};
    let message = signed_message(&Signed {
        name: &name,
        version: &version,
        input_hash: &ih,
        output_hash: &output_hash,
        config_digest: &lie_digest,
        config_size: lie.len() as u64,
        layer_digest: &layer_digest,
        layer_size,
        tar_size: get("dev.reprovm.tar-size").parse().unwrap(),
    });
    doc["annotations"][SIGNATURE] = key.sign(&message).into();
    f.reg.state.lock().unwrap().put_manifest("lies", &ih, serde_json::to_vec(&doc).unwrap());
    let key = f.key.with_extension("pub");
    let (good, text) = f.x(
        "b",
        &["--substituter", &repo, "--trusted-cache-key", key.to_str().unwrap(), "build", "base"],
    );
    assert!(good, "{text}");
    assert!(
        text.contains("is not the one its verified tree gives: it lists `share/extra`"),
        "{text}"
    );
    assert!(text.contains("base: 0 substituted, 1 built"), "{text}");
    support::store_is_clean(&f.out("b"));
}

/// 3 and 4. `audit --against` reads the registry's document once, and an unsigned entry never
///    counts as a match, however equal its bytes.
#[test]
fn audit_against_reads_once_and_wants_a_signature() {
    let f = Fixture::new(false);
    let ih = f.input_hash("base");
    let before = f.reg.requests_to(&format!("/manifests/{ih}")).len();
    let o = f
        .command("a", &["audit", "base", "--json", "--against", &f.reg.repo("cache")])
        .output()
        .unwrap();
    let gets = f.reg.requests_to(&format!("/manifests/{ih}")).len() - before;
    assert_eq!(gets, 1, "the audit read the entry's document {gets} times");
    assert!(!o.status.success(), "an unsigned entry passed the audit");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cache = &report["targets"][0]["cache"];
    assert_eq!(cache["matches"], false, "{cache}");
    assert_eq!(cache["untrusted"], "it is not signed", "{cache}");
    assert_eq!(cache["output_hash"], report["targets"][0]["rebuild_output_hash"], "{cache}");
    assert!(cache["document"].as_str().unwrap().starts_with("sha256:"), "{cache}");
}

/// 5. Credentials go to the registry's own origin only: a Bearer challenge naming a realm on
///    another origin gets an anonymous token request, unless that realm is allowed; a blob
///    redirected to another origin is fetched without them.
#[test]
fn credentials_stay_with_the_registry() {
    let f = Fixture::new(true);
    let realm = FakeRegistry::start();
    realm.hostile(|req: &Request, _| {
        req.path().starts_with("/token").then(|| Response::new(200, br#"{"token":"t0k"}"#.to_vec()))
    });
    let storage = FakeRegistry::start();
    let layer = f.document("base")["layers"][0]["digest"].as_str().unwrap().to_string();
    let layer_bytes = f.reg.state.lock().unwrap().blobs[&layer].clone();
    storage.hostile(move |req: &Request, _| {
        Some(Response::new(
            200,
            if req.path() == "/layer" { layer_bytes.clone() } else { Vec::new() },
        ))
    });
    let (realm_addr, storage_addr) = (realm.addr.clone(), storage.addr.clone());
    let layer_path = format!("/blobs/{layer}");
    f.reg.hostile(move |req: &Request, _| {
        if req.path() == "/v2/" {
            return None;
        }
        if req.header("Authorization") != Some("Bearer t0k") {
            return Some(Response::new(401, Vec::new()).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{realm_addr}/token",service="fake",scope="repository:cache:pull""#),
            ));
        }
        if req.method == "GET" && req.path().ends_with(&layer_path) {
            return Some(Response::new(307, Vec::new()).header("Location", &format!("http://{storage_addr}/layer")));
        }
        None
    });
    let config = f.tiny.path("docker");
    std::fs::create_dir_all(&config).unwrap();
    let auth = base64_encode(b"user:s3cret");
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, f.reg.addr),
    )
    .unwrap();
    let (repo, key) = (f.reg.repo("cache"), f.key.with_extension("pub"));
    let args = [
        "--substituter",
        repo.as_str(),
        "--trusted-cache-key",
        key.to_str().unwrap(),
        "build",
        "top",
    ];
    let (good, text) = support::captured(f.command("b", &args).env("DOCKER_CONFIG", &config));
    assert!(good && text.contains("top: 2 substituted, 0 built"), "{text}");
    let leaked = |reg: &FakeRegistry| {
        reg.requests.lock().unwrap().iter().filter(|r| r.header("Authorization").is_some()).count()
    };
    assert_eq!(leaked(&realm), 0, "credentials went to a realm on another origin");
    assert!(!realm.requests_to("/token").is_empty(), "no token was asked for");
    assert_eq!(leaked(&storage), 0, "credentials followed a redirect to another origin");
    assert!(!storage.requests_to("/layer").is_empty(), "the redirect was not followed");
    // Allowed, the realm gets them (Basic, over loopback).
    let (good, text) = support::captured(
        f.command("c", &args)
            .env("DOCKER_CONFIG", &config)
            .env(REALMS, format!("http://{}/token", realm.addr)),
    );
    assert!(good && text.contains("top: 2 substituted"), "{text}");
    let basic = format!("Basic {auth}");
    assert!(
        realm
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.header("Authorization") == Some(basic.as_str())),
        "an allowed realm did not get the credentials"
    );
}

/// 5. A redirect off this machine over plain HTTP is refused before any connection.
#[test]
fn plain_http_never_leaves_the_machine() {
    let f = Fixture::new(true);
    let layer = f.document("base")["layers"][0]["digest"].as_str().unwrap().to_string();
    f.reg.hostile(move |req: &Request, _| {
        (req.method == "GET" && req.path().ends_with(&layer)).then(|| {
            Response::new(302, Vec::new()).header("Location", "http://192.0.2.1:5000/layer")
        })
    });
    let (good, text) = f.substitute("b");
    assert!(good && text.contains("refusing plain HTTP to 192.0.2.1"), "{text}");
    assert!(text.contains("top: 1 substituted, 1 built"), "{text}");
}

/// 6. A 400 MiB manifest is refused at the 4 MiB limit, with memory to match.
#[test]
fn a_huge_manifest_is_refused_at_its_limit() {
    let f = Fixture::new(true);
    let ih = f.input_hash("base");
    f.reg.hostile(move |req: &Request, _| {
        (req.method == "GET" && req.path().ends_with(&format!("/manifests/{ih}"))).then(|| {
            Response {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                body: Body::Endless { byte: b' ', len: 400 << 20 },
                content_length: None,
            }
        })
    });
    let (repo, key) = (f.reg.repo("cache"), f.key.with_extension("pub"));
    let started = Instant::now();
    let (good, text, peak_kib) = with_peak_rss(&mut f.command(
        "b",
        &["--substituter", &repo, "--trusted-cache-key", key.to_str().unwrap(), "build", "base"],
    ));
    eprintln!(
        "a 400 MiB manifest: refused in {:.1}s, peak RSS {peak_kib} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(good && text.contains("is larger than the limit of 4194304 bytes"), "{text}");
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
    support::store_is_clean(&f.out("b"));
}

/// 6. A blob that sends more than its descriptor declares is cut off while it streams, whether
///    it announces the size (refused before a byte) or not (refused at the first byte over).
#[test]
fn a_blob_that_lies_about_its_size_is_cut_off() {
    let f = Fixture::new(true);
    let doc = f.document("base");
    let (config, layer) = (
        doc["config"]["digest"].as_str().unwrap().to_string(),
        doc["layers"][0]["digest"].as_str().unwrap().to_string(),
    );
    let announce = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = announce.clone();
    f.reg.hostile(move |req: &Request, _| {
        let lie =
            req.method == "GET" && (req.path().ends_with(&config) || req.path().ends_with(&layer));
        lie.then(|| Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Endless { byte: 0, len: 1 << 30 },
            content_length: if flag.load(std::sync::atomic::Ordering::SeqCst) {
                None
            } else {
                Some(None)
            },
        })
    });
    let started = Instant::now();
    let (repo, key) = (f.reg.repo("cache"), f.key.with_extension("pub"));
    let args = [
        "--substituter",
        repo.as_str(),
        "--trusted-cache-key",
        key.to_str().unwrap(),
        "build",
        "base",
    ];
    let (good, text, peak_kib) = with_peak_rss(&mut f.command("b", &args));
    eprintln!(
        "a 1 GiB blob declared small: refused in {:.1}s, peak RSS {peak_kib} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        good && text.contains("it sends more than the")
            && text.contains("bytes its descriptor declares"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "the lie was streamed to the end");
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
    support::store_is_clean(&f.out("b"));
    announce.store(true, std::sync::atomic::Ordering::SeqCst);
    let (good, text) = f.x("c", &args);
    assert!(
        good && text.contains("the registry announces 1073741824 bytes, the descriptor declares"),
        "{text}"
    );
    support::store_is_clean(&f.out("c"));
}

/// 7. A layer that unpacks to more than the entry declared is refused while it unpacks
///    (here an unsigned entry compared by `audit --against`, whose tar size says 10 bytes).
#[test]
fn a_layer_that_unpacks_beyond_its_declared_size_is_refused() {
    let f = Fixture::new(false);
    let ih = f.input_hash("base");
    let mut doc = f.document("base");
    doc["annotations"]["dev.reprovm.tar-size"] = "10".into();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    let (good, text) = f.x("a", &["audit", "base", "--against", &f.reg.repo("cache")]);
    assert!(!good && text.contains("it unpacks to more than the 10 bytes declared"), "{text}");
}

/// 8. `pull` keeps only the referrers whose subject is the image, under their own
///    artifactType, once each.
#[test]
fn pull_keeps_only_true_referrers() {
    let reg = FakeRegistry::start();
    let (main, good_ref) = {
        let mut st = reg.state.lock().unwrap();
        let config = st.put_blob(b"{}".to_vec());
        let layer = st.put_blob(b"layer bytes".to_vec());
        let manifest = |subject: Option<&str>, artifact: Option<&str>| {
            let mut m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
                "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": 11}],
            });
            if let Some(s) = subject {
                m["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": s, "size": 1});
            }
            if let Some(a) = artifact {
                m["artifactType"] = a.into();
            }
            serde_json::to_vec(&m).unwrap()
        };
        let main = st.put_manifest("img", "v1", manifest(None, None));
        let good =
            st.put_manifest("img", "good", manifest(Some(&main), Some("application/x.good")));
        let no_subject =
            st.put_manifest("img", "nosub", manifest(None, Some("application/x.nosub")));
        let other = st.put_manifest(
            "img",
            "other",
            manifest(Some(&format!("sha256:{}", "0".repeat(64))), Some("application/x.other")),
        );
        let entry = |d: &str, a: &str| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1, "artifactType": a});
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                entry(&good, "application/x.relabelled"),
                entry(&good, "application/x.good"),
                entry(&no_subject, "application/x.nosub"),
                entry(&other, "application/x.other"),
            ],
        });
        st.put_manifest("img", &main.replace(':', "-"), serde_json::to_vec(&index).unwrap());
        (main, good)
    };
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("pulled");
    let (good, text) = support::captured(support::xtask().args([
        "pull",
        &format!("{}/img:v1", reg.addr),
        dest.to_str().unwrap(),
        "--plain-http",
    ]));
    assert!(good, "{text}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["artifactType"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(main, String::new()), (good_ref, "application/x.good".to_string())],
        "{text}"
    );
}

/// 9. `pull` of a multi-architecture tag (an image index) takes every platform's manifest
///    with its blobs, each checked, and the index's own referrers, and refuses an index that lists a nested index, more than
///    16 manifests, or a manifest of another size than it says; a refused pull leaves nothing.
#[test]
fn pull_takes_an_image_index_and_refuses_a_lying_one() {
    let reg = FakeRegistry::start();
    let (amd, arm) = {
        let mut st = reg.state.lock().unwrap();
        let mut image = |arch: &str| {
            let config = format!("{{\"architecture\":\"{arch}\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}");
            let (clen, llen) = (config.len(), 5 + arch.len());
            let config = st.put_blob(config.into_bytes());
            let layer = st.put_blob(format!("kern {arch}").into_bytes());
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": clen},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": llen}],
            });
            let bytes = serde_json::to_vec(&m).unwrap();
            let len = bytes.len();
            (st.put_manifest("img", arch, bytes), len)
        };
        (image("amd64"), image("arm64"))
    };
    let entry = |(d, size): &(String, usize), arch: &str, media: &str| serde_json::json!({"mediaType": media, "digest": d, "size": size, "platform": {"architecture": arch, "os": "linux"}});
    let manifest = "application/vnd.oci.image.manifest.v1+json";
    let put_index = |tag: &str, manifests: Vec<serde_json::Value>| {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        reg.state.lock().unwrap().put_manifest("img", tag, serde_json::to_vec(&index).unwrap())
    };
    let good =
        put_index("multi", vec![entry(&amd, "amd64", manifest), entry(&arm, "arm64", manifest)]);
    // An artifact about the index as a whole (a signature, say), in the index's referrers.
    let about_index = {
        let mut st = reg.state.lock().unwrap();
        let empty = st.put_blob(b"{}".to_vec());
        let sig = st.put_blob(b"signature".to_vec());
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest,
            "artifactType": "application/x.index-signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
            "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": good, "size": 1},
        });
        let d = st.put_manifest("img", "sig", serde_json::to_vec(&m).unwrap());
        let referrers = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": manifest, "digest": d, "size": 1, "artifactType": "application/x.index-signature"},
        ]});
        st.put_manifest("img", &good.replace(':', "-"), serde_json::to_vec(&referrers).unwrap());
        d
    };
    put_index(
        "nested",
        vec![entry(&(good.clone(), 1), "amd64", "application/vnd.oci.image.index.v1+json")],
    );
    put_index("many", (0..17).map(|_| entry(&amd, "amd64", manifest)).collect());
    put_index("size", vec![entry(&(amd.0.clone(), amd.1 + 1), "amd64", manifest)]);
    let t = tempfile::tempdir().unwrap();
    let pull = |tag: &str| {
        let dest = t.path().join(tag);
        let (ok, text) = support::captured(support::xtask().args([
            "pull",
            &format!("{}/img:{tag}", reg.addr),
            dest.to_str().unwrap(),
            "--plain-http",
        ]));
        (ok, text, dest)
    };
    let (ok, text, dest) = pull("multi");
    assert!(ok, "{text}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], good.as_str(), "{text}");
    assert_eq!(index["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(index["manifests"][1]["digest"], about_index.as_str(), "{text}");
    assert_eq!(index["manifests"][1]["artifactType"], "application/x.index-signature");
    for (d, _) in [&amd, &arm] {
        assert!(dest.join("blobs/sha256").join(d.trim_start_matches("sha256:")).is_file(), "{d}");
    }
    for (tag, says) in [
        ("nested", "only image manifests are pulled"),
        ("many", "lists 17 manifests, more than 16"),
        ("size", "is not the"),
    ] {
        let (ok, text, dest) = pull(tag);
        assert!(!ok && text.contains(says), "{tag}: {text}");
        assert!(!dest.exists(), "{tag}: a refused pull left {}", dest.display());
    }
}

/// 6. A pull of a 1 GiB layer streams it to disk: memory stays bounded, the digest is checked,
///    and a refused pull leaves nothing, nor does a killed one after the next pull.
#[test]
fn pull_streams_large_blobs_and_sweeps_what_killed_pulls_left() {
    let reg = FakeRegistry::start();
    let big = 1u64 << 30;
    image_declaring(&reg, "big", &format!("sha256:{}", "1".repeat(64)), big);
    reg.hostile(move |req: &Request, _| {
        req.path().contains("/blobs/sha256:1111").then(|| Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Endless { byte: 7, len: big },
            content_length: None,
        })
    });
    let t = tempfile::tempdir().unwrap();
    let stale = t.path().join(".pull-999999999-old");
    std::fs::create_dir_all(stale.join("blobs")).unwrap();
    let dest = t.path().join("pulled");
    let started = Instant::now();
    let (good, text, peak_kib) = with_peak_rss(support::xtask().args([
        "pull",
        &format!("{}/img:big", reg.addr),
        dest.to_str().unwrap(),
        "--plain-http",
    ]));
    eprintln!(
        "pull of a 1 GiB layer: {:.1}s, peak RSS {peak_kib} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(!good && text.contains(&format!("its {big} bytes hash to sha256:")), "{text}");
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
    let left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left beside the layout: {left:?}");
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The size in bytes of every file below `dir` (a sample of how much a command has written).
fn tree_bytes(dir: &Path) -> u64 {
    // The tree changes while it is walked (a pull writes and removes files): what vanished
    // in between is not counted.
    let entries = walkdir::WalkDir::new(dir).into_iter().flatten();
    entries.filter_map(|e| e.metadata().ok()).filter(|m| !m.is_dir()).map(|m| m.len()).sum()
}

/// Run `c`, sampling how many bytes `watched` holds as it runs: (success, text, peak growth).
fn with_peak_growth(c: &mut Command, watched: &Path) -> (bool, String, u64) {
    let before = tree_bytes(watched);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, dir) = (done.clone(), watched.to_path_buf());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            peak = peak.max(tree_bytes(&dir));
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let o = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text, peak.saturating_sub(before))
}

/// A gzip'd tar holding one file `share/data` of `len` zero bytes (a decompression bomb).
fn bomb(len: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "share/data", std::io::Read::take(std::io::repeat(0), len)).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// 2. `audit --against` bounds an unsigned entry like substitution bounds a signed one: a
///    layer or tar declaring more than this machine's rebuild could take is refused before a
///    byte of it is read, and a bomb that declares a small tar is stopped at that size while
///    it streams; out/ grows by at most the limit, and nothing is left.
#[test]
fn audit_against_bounds_what_an_unsigned_entry_may_write() {
    let f = Fixture::new(false);
    let ih = f.input_hash("base");
    let honest = f.document("base");
    let against = ["audit", "base", "--against", &f.reg.repo("cache")];
    let audit_dir = f.out("a").join("audit");

    // A layer declaring 4 GiB (served endlessly, were it asked for).
    let mut doc = honest.clone();
    let big = format!("sha256:{}", "4".repeat(64));
    doc["layers"][0]["digest"] = big.clone().into();
    doc["layers"][0]["size"] = (4u64 << 30).into();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    f.reg.hostile(move |req: &Request, _| {
        req.path().ends_with(&format!("/blobs/{}", "4".repeat(64))).then(|| Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Endless { byte: 0, len: 4 << 30 },
            content_length: None,
        })
    });
    let (good, text, grew) = with_peak_growth(&mut f.command("a", &against), &audit_dir);
    eprintln!("a layer declaring 4 GiB: out/audit grew by at most {grew} bytes");
    assert!(!good, "{text}");
    assert!(text.contains("its layer declares 4294967296 bytes, more than the"), "{text}");
    assert!(text.contains("not downloaded") && text.contains("refused:"), "{text}");
    assert!(!text.contains("has no entry"), "{text}");
    assert!(f.reg.requests_to(&big).is_empty(), "the oversized layer was asked for");
    f.reg.honest();

    // A bomb: 512 MiB of zeros in a ~0.5 MB layer, whose tar size says 1 MiB.
    let layer = bomb(512 << 20);
    let layer_len = layer.len() as u64;
    let digest = f.reg.state.lock().unwrap().put_blob(layer);
    let mut doc = honest.clone();
    doc["layers"][0]["digest"] = digest.into();
    doc["layers"][0]["size"] = layer_len.into();
    doc["annotations"]["dev.reprovm.tar-size"] = (1u64 << 20).to_string().into();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    let (good, text, grew) = with_peak_growth(&mut f.command("a", &against), &audit_dir);
    eprintln!(
        "a {layer_len}-byte layer unpacking to 512 MiB, declared 1 MiB: out/audit grew by at most {grew} bytes"
    );
    assert!(!good && text.contains("it unpacks to more than the 1048576 bytes declared"), "{text}");
    assert!(grew < (2 << 20) + (256 << 10), "out/audit grew by {grew} bytes");

    // And the tar declared as it is: refused before it is read.
    doc["annotations"]["dev.reprovm.tar-size"] = ((512u64 << 20) + 2048).to_string().into();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    let (good, text) = f.x("a", &against);
    assert!(!good && text.contains("its tar declares 536872960 bytes, more than the"), "{text}");
    let left: Vec<String> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("-last-logs"))
        .collect();
    assert!(left.is_empty(), "left in out/audit: {left:?}");
}

/// 4. kill -9 while `audit --against` downloads leaves its temporary tree under out/audit,
///    named by the process; `gc` lists it, and the next audit removes it.
#[test]
fn a_killed_audit_download_is_swept_by_the_next_run() {
    let f = Fixture::new(false);
    let layer = f.document("base")["layers"][0]["digest"].as_str().unwrap().to_string();
    let bytes = f.reg.state.lock().unwrap().blobs[&layer].clone();
    f.reg.hostile(move |req: &Request, _| {
        (req.method == "GET" && req.path().ends_with(&layer)).then(|| Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Drip { data: bytes.clone(), every: Duration::from_millis(500) },
            content_length: None,
        })
    });
    let mut child = f
        .command("a", &["audit", "base", "--against", &f.reg.repo("cache")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tree = f.out("a").join(format!("audit/base-cache-{}", child.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tree.exists() {
        assert!(Instant::now() < deadline, "the audit never started its download");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(tree.exists(), "nothing to sweep: the test did not kill it mid-download");
    let listed = f.ok("a", &["gc", "--dry-run"]);
    let name = tree.file_name().unwrap().to_string_lossy().into_owned();
    assert!(listed.contains(&format!("would remove audit tree {name} (")), "{listed}");
    f.reg.honest();
    let (_, text) = f.x("a", &["audit", "base", "--against", &f.reg.repo("cache")]);
    assert!(text.contains("left by an interrupted audit"), "{text}");
    assert!(!tree.exists(), "the next audit left {}", tree.display());
}

/// An image `img:TAG` in `reg`: an empty config and one layer that declares `digest` and
/// `size` (whatever the registry holds for it); the image's digest.
fn image_declaring(reg: &FakeRegistry, tag: &str, digest: &str, size: u64) -> String {
    let mut st = reg.state.lock().unwrap();
    let config = st.put_blob(b"{}".to_vec());
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": digest, "size": size}],
    });
    st.put_manifest("img", tag, serde_json::to_vec(&m).unwrap())
}

/// An image `img:TAG` in `reg` (an empty config and one small layer); its digest.
fn small_image(reg: &FakeRegistry, tag: &str) -> String {
    let layer = reg.state.lock().unwrap().put_blob(b"layer bytes".to_vec());
    image_declaring(reg, tag, &layer, 11)
}

fn pull(reg: &FakeRegistry, tag: &str, dest: &Path, extra: &[&str]) -> (bool, String) {
    support::captured(
        support::xtask()
            .args(["pull", &format!("{}/img:{tag}", reg.addr)])
            .arg(dest)
            .arg("--plain-http")
            .args(extra),
    )
}

/// 8. A referrers list that repeats one unrelated digest 3,000 times costs one fetch of it;
///    one that names 3,000 digests costs at most the cap of 64 fetches, with a warning; a
///    listed referrer the registry cannot serve is skipped with a warning; the pull succeeds
///    with the true referrer kept.
#[test]
fn referrers_are_fetched_once_each_and_capped() {
    let reg = FakeRegistry::start();
    let main = small_image(&reg, "v1");
    let entry = |d: &str| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1});
    let (unrelated, good) = {
        let mut st = reg.state.lock().unwrap();
        let config = st.put_blob(b"{}".to_vec());
        let referrer = |subject: &str, st: &mut support::registry::State, tag: &str| {
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/x.sig",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
                "layers": [],
                "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
            });
            st.put_manifest("img", tag, serde_json::to_vec(&m).unwrap())
        };
        let unrelated = referrer(&format!("sha256:{}", "0".repeat(64)), &mut st, "unrelated");
        let good = referrer(&main, &mut st, "good");
        (unrelated, good)
    };
    let missing = format!("sha256:{}", "9".repeat(64));
    let mut list: Vec<serde_json::Value> = (0..3000).map(|_| entry(&unrelated)).collect();
    list.push(entry(&missing));
    list.push(entry(&good));
    let index = |manifests: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})).unwrap()
    };
    reg.state.lock().unwrap().put_manifest("img", &main.replace(':', "-"), index(list));
    let t = tempfile::tempdir().unwrap();
    let (ok, text) = pull(&reg, "v1", &t.path().join("a"), &[]);
    assert!(ok, "{text}");
    assert_eq!(reg.requests_to(&format!("/manifests/{unrelated}")).len(), 1, "{text}");
    assert!(text.contains(&format!("skipped referrer {missing}: the registry lists")), "{text}");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("a/index.json")).unwrap()).unwrap();
    assert_eq!(kept["manifests"][1]["digest"], good.as_str(), "{kept}");

    // 3,000 distinct candidates (none served): at most 64 fetched.
    let many: Vec<serde_json::Value> =
        (0..3000).map(|i| entry(&format!("sha256:{:064x}", i + 1))).collect();
    reg.state.lock().unwrap().put_manifest("img", &main.replace(':', "-"), index(many));
    let before = reg.requests_to("/manifests/sha256:").len();
    let (ok, text) = pull(&reg, "v1", &t.path().join("b"), &[]);
    let fetched = reg.requests_to("/manifests/sha256:").len() - before;
    eprintln!("a list of 3,000 referrer candidates: {fetched} fetched");
    assert!(ok, "{text}");
    assert!(fetched <= 64, "{fetched} candidates fetched");
    assert!(text.contains("more than 64 referrer candidates"), "{text}");
}

/// 6. A pull has a total bound: a layer declaring 10^12 bytes is refused before it is asked
///    for, naming the option that raises the bound; a small bound refuses a small image.
#[test]
fn pull_refuses_more_than_its_size_bound_before_fetching() {
    let reg = FakeRegistry::start();
    let huge = format!("sha256:{}", "7".repeat(64));
    image_declaring(&reg, "huge", &huge, 1_000_000_000_000);
    small_image(&reg, "small");
    let t = tempfile::tempdir().unwrap();
    let (ok, text) = pull(&reg, "huge", &t.path().join("a"), &[]);
    assert!(!ok && text.contains("declares 1000000000000 bytes"), "{text}");
    assert!(text.contains("more than its limit of 4294967296 (pass --max-size"), "{text}");
    assert!(reg.requests_to(&huge).is_empty(), "the huge layer was asked for");
    assert!(!t.path().join("a").exists());
    let (ok, text) = pull(&reg, "small", &t.path().join("b"), &["--max-size", "100"]);
    assert!(!ok && text.contains("more than its limit of 100"), "{text}");
    let (ok, text) = pull(&reg, "small", &t.path().join("c"), &["--max-size", "1K"]);
    assert!(ok, "{text}");
}

/// 6. A registry that drips one byte per 2 s never trips the 4 s per-read timeout; the
///    transfer's overall deadline (4 s for 11 bytes) ends it, long before the 22 s the drip
///    would take.
#[test]
fn a_dripping_registry_is_abandoned_at_the_deadline() {
    let reg = FakeRegistry::start();
    small_image(&reg, "drip");
    let layer = support::registry::sha256_hex(b"layer bytes");
    reg.hostile(move |req: &Request, _| {
        (req.method == "GET" && req.path().ends_with(&layer)).then(|| Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Drip { data: vec![b'x'; 11], every: Duration::from_secs(2) },
            content_length: None,
        })
    });
    let t = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (ok, text) = support::captured(
        support::xtask()
            .args(["pull", &format!("{}/img:drip", reg.addr)])
            .arg(t.path().join("a"))
            .arg("--plain-http")
            .env("REPROVM_REGISTRY_TIMEOUT", "4"),
    );
    let took = started.elapsed();
    eprintln!("a dripping blob (a byte per 2 s, 4 s per-read timeout): abandoned after {took:?}");
    assert!(!ok && text.contains("the transfer broke off"), "{text}");
    assert!(took < Duration::from_secs(15), "abandoned only after {took:?}");
    assert!(!t.path().join("a").exists());
}

/// 9. Two trusted keys named alike are warned about, and "signed by" names the key that
///    verified by its fingerprint.
#[test]
fn signed_by_names_the_key_and_same_name_keys_are_warned_about() {
    let f = Fixture::new(true);
    let other = f.tiny.path("other/ci.key");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    f.ok("a", &["cache", "keygen", other.to_str().unwrap()]);
    let (repo, key) = (f.reg.repo("cache"), f.key.with_extension("pub"));
    let (good, text) = f.x(
        "b",
        &[
            "--substituter",
            &repo,
            "--trusted-cache-key",
            other.with_extension("pub").to_str().unwrap(),
            "--trusted-cache-key",
            key.to_str().unwrap(),
            "build",
            "top",
        ],
    );
    assert!(good && text.contains("top: 2 substituted"), "{text}");
    assert!(text.contains("warning: two trusted keys are named `ci`"), "{text}");
    let public = std::fs::read_to_string(&key).unwrap();
    let (_, b64) = public.trim().split_once(':').unwrap();
    let raw = base64_decode(b64);
    let fingerprint = format!("sha256:{}", &support::registry::sha256_hex(&raw)[..16]);
    assert!(text.contains(&format!("signed by `ci` (key {fingerprint})")), "{text}");
}

/// 3. An unsigned entry with the same bytes is said to hold the same bytes (not OTHER ones),
///    unusable for want of a signature; a document without an artifactType says so.
#[test]
fn audit_against_says_what_happened() {
    let f = Fixture::new(false);
    let (good, text) = f.x("a", &["audit", "base", "--against", &f.reg.repo("cache")]);
    assert!(!good, "{text}");
    assert!(
        text.contains("holds the same bytes, but it is not signed: a substituter would not use it"),
        "{text}"
    );
    assert!(
        text.contains("the cache holds the same bytes, signed by no trusted key, for base"),
        "{text}"
    );
    let ih = f.input_hash("base");
    let mut doc = f.document("base");
    doc.as_object_mut().unwrap().remove("artifactType");
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    let (good, text) = f.x("a", &["audit", "base", "--against", &f.reg.repo("cache")]);
    assert!(!good && text.contains("has no artifactType: it is not a store entry"), "{text}");
    assert!(text.contains("refused:") && !text.contains("has no entry"), "{text}");
}

/// 1. A signed entry whose layer is not the output its signature names (a signer whose store
///    was altered, or a key that signs whatever it is given): the unpacked tree is hashed and
///    refused, whatever the signature says.
#[test]
fn a_signed_layer_that_is_not_its_output_is_refused() {
    use std::io::Read;
    let f = Fixture::new(true);
    let ih = f.input_hash("base");
    let mut doc = f.document("base");
    let layer_digest = doc["layers"][0]["digest"].as_str().unwrap().to_string();
    let gz = f.reg.state.lock().unwrap().blobs[&layer_digest].clone();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
    let at = tar.windows(6).position(|w| w == b"base 1").expect("the file's bytes in the tar");
    tar[at + 5] = b'X';
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    let altered = enc.finish().unwrap();
    let altered_digest = f.reg.state.lock().unwrap().put_blob(altered.clone());
    doc["layers"][0]["digest"] = altered_digest.clone().into();
    doc["layers"][0]["size"] = altered.len().into();
    let a = doc["annotations"].clone();
    let get = |k: &str| a[k].as_str().unwrap().to_string();
    use reprovm::steps::substitution::entry::{signed_message, Signed, SIGNATURE};
    let message = signed_message(&Signed {
        name: &get("dev.reprovm.name"),
        version: &get("dev.reprovm.version"),
        input_hash: &ih,
        output_hash: &get("dev.reprovm.output-hash"),
        config_digest: doc["config"]["digest"].as_str().unwrap(),
        config_size: doc["config"]["size"].as_u64().unwrap(),
        layer_digest: &altered_digest,
        layer_size: altered.len() as u64,
        tar_size: get("dev.reprovm.tar-size").parse().unwrap(),
    });
    let key = reprovm::steps::substitution::keys::SecretKey::load(&f.key).unwrap();
    doc["annotations"][SIGNATURE] = key.sign(&message).into();
    f.reg.state.lock().unwrap().put_manifest("cache", &ih, serde_json::to_vec(&doc).unwrap());
    let (good, text) = f.substitute("b");
    assert!(good && text.contains("the unpacked output hashes to"), "{text}");
    assert!(text.contains("top: 1 substituted, 1 built"), "{text}");
    support::store_is_clean(&f.out("b"));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
