//! `cache push`: a target's closure as signed store entries in a binary cache on an OCI
//! registry, and every pinned source and toolchain .deb beside them as blobs whose digests are
//! their pins, listed by one artifact so that no registry garbage collection takes them.

use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use crate::steps::substitution::{entry, keys, Cache, SOURCES_TYPE};
use anyhow::{Context, Result};
use reprovm_fs::progress;
use reprovm_oci::client::{rate, MANIFEST_TYPE};
use reprovm_oci::layout::{canonical_json, descriptor};
use reprovm_oci::spec::{self, ImageManifest};
use std::collections::BTreeMap;
use std::time::Instant;

/// `cache keygen FILE --name NAME`: a new signing key, its secret half in `file` and its
/// public half beside it (`.pub`, and `.pub.pem` for cosign); returns the public key's text.
pub fn keygen(name: &str, file: &std::path::Path) -> Result<String> {
    keys::generate(name, file)
}

/// `cache cosign-key FILE`: the PEM public key cosign reads (`cosign verify --key`) of a secret
/// or public key file written by `cache keygen`.
pub fn cosign_key(file: &std::path::Path) -> Result<String> {
    keys::public_pem(file)
}

/// `cache push`: TARGET's closure (built where missing) and its sources and .debs, signed
/// with the secret key in `sign_key` when one is given.
pub fn push(
    ctx: &RunContext,
    repository: &str,
    targets: &[String],
    sign_key: Option<&std::path::Path>,
) -> Result<()> {
    let key = sign_key.map(keys::SecretKey::load).transpose()?;
    let key = key.as_ref();
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let cache = Cache::connect(repository)?;
    let graph = ctx.graph()?;
    // Every target's closure, each node once, dependencies first.
    let mut closure: Vec<String> = Vec::new();
    for t in targets {
        for n in graph.closure(t)? {
            if !closure.contains(&n) {
                closure.push(n);
            }
        }
    }
    let started = Instant::now();
    // Entries: build (or find) every node of the closure, then push each.
    let opts = BuildOptions { quiet: true, ..Default::default() };
    let mut sent = 0u64;
    let (mut pushed, mut present) = (0, 0);
    for name in closure {
        let res = build::build(ctx, &graph, &name, &opts)?;
        let sde = graph.get(&name)?.recipe.source_date_epoch();
        let t = Instant::now();
        let p = entry::push(&cache.registry, &cache.repo, &res.entry, sde, key)
            .with_context(|| format!("pushing {name} to {repository}"))?;
        if p.already_there {
            present += 1;
            progress::say(&format!(
                "cache: {name} [{}] already there",
                &res.manifest.input_hash[..16]
            ));
        } else {
            pushed += 1;
            sent += p.bytes_sent;
            progress::say(&format!(
                "cache: {name} [{}] pushed{}, {} in {}",
                &res.manifest.input_hash[..16],
                if key.is_some() { " and signed" } else { "" },
                progress::human_bytes(p.bytes_sent),
                rate(p.bytes_sent, t)
            ));
        }
    }
    // Sources and .debs, by pin, and one artifact that lists them (so that no registry garbage
    // collection takes them, and `skopeo`/`oras` can list them).
    let mut wants = Vec::new();
    for t in targets {
        for w in crate::steps::sources::wants(&graph, Some(t), project)? {
            if !wants.iter().any(|x: &crate::mechanisms::fetch::Want| x.sha256 == w.sha256) {
                wants.push(w);
            }
        }
    }
    let locks = crate::steps::toolchain::read_locks(
        project,
        crate::steps::toolchain::PackageSet::for_arch(project.arch),
    )?;
    for lock in &locks {
        wants.extend(
            lock.packages.iter().map(|p| crate::steps::toolchain::deb_want(project, lock, p)),
        );
    }
    let mut layers = Vec::new();
    let mut blobs_sent = 0;
    for w in &wants {
        let path = fetcher.fetch(w).with_context(|| format!("fetching {} to push it", w.file))?;
        let digest = format!("sha256:{}", w.sha256);
        let mut data = std::fs::File::open(&path)?;
        if cache.registry.send_blob(&cache.repo, &digest, w.size, &mut data)? {
            blobs_sent += 1;
            sent += w.size;
        }
        let title = BTreeMap::from([(reprovm_oci::TITLE.to_string(), w.file.clone())]);
        layers.push(descriptor("application/octet-stream", &w.sha256, w.size, title));
    }
    layers.sort_by_key(|l| l.digest.clone());
    layers.dedup_by(|a, b| a.digest == b.digest);
    let list = reprovm_fs::hash::sha256_bytes(
        layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>().join("\n").as_bytes(),
    );
    let empty = b"{}".to_vec();
    let empty_hex = reprovm_fs::hash::sha256_bytes(&empty);
    let mut manifest =
        ImageManifest::new(descriptor(spec::EMPTY, &empty_hex, 2, BTreeMap::new()), layers.clone());
    manifest.artifact_type = Some(SOURCES_TYPE.into());
    let tag = format!("sources-{}", &list[..32]);
    cache.registry.send_blob(&cache.repo, &format!("sha256:{empty_hex}"), 2, &mut &empty[..])?;
    cache.registry.put_manifest(
        &cache.repo.at_tag(&tag),
        &canonical_json(&manifest)?,
        MANIFEST_TYPE,
    )?;
    progress::say(&format!(
        "cache {repository}: {pushed} entries pushed, {present} already there; {} sources and .debs ({blobs_sent} sent) listed as {tag}; {} sent in {}",
        layers.len(),
        progress::human_bytes(sent),
        progress::human_duration(started.elapsed())
    ));
    Ok(())
}
