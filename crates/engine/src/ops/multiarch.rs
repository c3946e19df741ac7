//! `multiarch TARGET`: one OCI layout carrying an image for every architecture under each tag,
//! as Liquid Metal's and krata's users pull them (`docker pull` picks the host's platform).
//!
//! The recipes stay one set: TARGET is built for x86_64 and for aarch64 (each its own graph,
//! toolchain and pins), and the two layouts are merged into `out/multiarch/oci/TARGET`: per tag,
//! an image index listing the amd64 and the arm64/v8 manifests (the platforms are the images'
//! own configs'), and every referrer of either. The merge is a pure function of the two pinned
//! layouts, in canonical JSON, so the index's digest is pinned too, in `pins/multiarch.toml`
//! (`--pin` writes it; any other run compares and refuses a difference).

use crate::model::arch::Arch;
use crate::model::store;
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::progress;
use reprovm_fs::util;
use reprovm_oci::layout::{self, canonical_json, Layout, LayoutWriter, REF_NAME};
use reprovm_oci::spec::{self, Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The architectures a multi-architecture layout carries, in its indexes' order.
pub(crate) const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

use crate::model::pins::read_multiarch_pins as read_pins;

/// Where the multi-architecture layout of `target` is written.
pub(crate) fn layout_dir(out: &Path, target: &str) -> PathBuf {
    out.join("multiarch").join("oci").join(target)
}

/// Build `target` for every architecture, merge the layouts, compare the indexes' digests
/// with `pins/multiarch.toml` (or write them with `pin`). Returns the layout's directory.
pub fn write(ctx: &mut RunContext, target: &str, pin: bool) -> Result<PathBuf> {
    ctx.graph()?.require_oci(target, "multiarch")?;
    let before = ctx.project.arch;
    let mut layouts = Vec::new();
    for arch in ARCHES {
        ctx.project.arch = arch;
        let built = (|| -> Result<PathBuf> {
            let graph = ctx.graph()?;
            let res = build::build(ctx, &graph, target, &BuildOptions::default())?;
            Ok(store::out_dir(&res.entry))
        })();
        ctx.project.arch = before;
        let dir = built.with_context(|| format!("building {target} for {arch}"))?;
        anyhow::ensure!(
            dir.join("oci-layout").is_file(),
            "{target}'s output is not an OCI layout; multiarch merges recipes with [oci] (e.g. firecracker-kernel-bin-oci)"
        );
        layouts.push((arch, Layout::open(&dir)?));
    }
    let dest = layout_dir(&ctx.project.out, target);
    let pins_path = ctx.project.pins.join("multiarch.toml");
    let mut pins = read_pins(&pins_path)?;
    // Compared before the layout replaces the one there: a mismatch leaves the old in place.
    let digests = merge(&layouts, &dest, &|digests| {
        if pin {
            return Ok(());
        }
        let Some(pinned) = pins.get(target) else {
            bail!(
                "{target} has no multi-architecture pin in {}: check the layout and run `cargo xtask multiarch {target} --pin`",
                pins_path.display()
            );
        };
        anyhow::ensure!(
            pinned == digests,
            "{target}'s image indexes are {digests:?}, not the pinned {pinned:?} ({}); if the change is intended, `cargo xtask multiarch {target} --pin`",
            pins_path.display()
        );
        Ok(())
    })?;
    if pin {
        pins.insert(target.to_string(), digests);
        let body = format!(
            "# Digests of the multi-architecture image indexes, written by `cargo xtask multiarch TARGET --pin`.\n{}",
            toml::to_string(&pins)?
        );
        util::write_atomic(&pins_path, body.as_bytes())?;
        progress::say(&format!("pinned {target} in {}", pins_path.display()));
    } else {
        progress::say(&format!("{target}: every index matches {}", pins_path.display()));
    }
    Ok(dest)
}

/// One index of `multiarch --matrix`: the merged layout and the repository it is published to.
#[derive(Debug, Clone)]
pub struct MatrixIndex {
    /// `firecracker-kernel-bin-oci@6.18+kvm`.
    pub target: String,
    /// The image's repository name: the recipe's without `-oci` (`firecracker-kernel-bin`);
    /// every cell of the matrix is a tag in it (`6.18.15-kvm`).
    pub repository: String,
    pub tags: Vec<String>,
    pub dir: PathBuf,
}

/// `multiarch --matrix`: every multi-architecture index of the build matrix (`plan
/// --matrix`), each built (or, with `--substitute-only`, substituted) for every architecture,
/// merged and compared with its pin (or pinned). Refuses an unpinned index before building.
pub fn write_matrix(ctx: &mut RunContext, pin: bool) -> Result<Vec<MatrixIndex>> {
    let m = crate::ops::matrix::matrix(ctx, &[])?;
    anyhow::ensure!(
        !m.indexes.is_empty(),
        "the recipes' matrix has no multi-architecture index: no published OCI recipe over a recipe with [versions] or [flavours] builds on every architecture"
    );
    if !pin {
        let missing: Vec<&str> =
            m.indexes.iter().filter(|i| !i.pinned).map(|i| i.target.as_str()).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{} not in {}: check the layouts and run `cargo xtask multiarch --matrix --pin`",
            missing.join(", "),
            ctx.project.pins.join("multiarch.toml").display()
        );
    }
    let mut out = Vec::new();
    for i in m.indexes {
        let dir = write(ctx, &i.target, pin)?;
        out.push(MatrixIndex {
            repository: repository_of(&i.target),
            target: i.target,
            tags: i.tags,
            dir,
        });
    }
    Ok(out)
}

/// The repository an OCI target is published to: its recipe's name without `-oci`.
pub fn repository_of(target: &str) -> String {
    let (base, _) = crate::model::recipe::Cell::of(target);
    base.strip_suffix("-oci").unwrap_or(base).to_string()
}

/// The platform an image manifest says it is for (its config's architecture and variant).
fn platform_of(layout: &Layout, manifest: &Descriptor) -> Result<Platform> {
    let m: ImageManifest = serde_json::from_slice(&layout.blob(manifest)?)
        .with_context(|| format!("manifest {}", manifest.digest))?;
    anyhow::ensure!(
        m.config.media_type == spec::CONFIG,
        "manifest {} is an artifact, not an image: it has no platform",
        manifest.digest
    );
    let c: ImageConfig = serde_json::from_slice(&layout.blob(&m.config)?)
        .with_context(|| format!("the config of {}", manifest.digest))?;
    Ok(Platform { architecture: c.architecture, os: c.os, variant: c.variant })
}

/// Merge one single-architecture layout per entry of `layouts` into a new layout at `dest`
/// (written beside it, then renamed into place once `accept` has taken its digests; on any
/// error nothing is left and what was at `dest` stays). Every layout must carry the same tags
/// and be an image of its own architecture; each tag becomes an image index of the tagged
/// manifests, each with its platform; untagged entries (referrers) are kept. Returns each
/// tag's index digest.
pub(crate) fn merge(
    layouts: &[(Arch, Layout)],
    dest: &Path,
    accept: &dyn Fn(&BTreeMap<String, String>) -> Result<()>,
) -> Result<BTreeMap<String, String>> {
    let mut tags: Option<Vec<String>> = None;
    // Every blob of every layout, checked once here and copied from this list.
    let mut blobs = Vec::new();
    for (arch, l) in layouts {
        blobs.push(l.verify().with_context(|| format!("the {arch} layout does not verify"))?);
        let mine: Vec<String> = l.manifests().into_iter().filter_map(|(t, _)| t).collect();
        match &tags {
            None => tags = Some(mine),
            Some(t) if *t == mine => {}
            Some(t) => bail!("the {arch} layout's tags {mine:?} are not the others' {t:?}"),
        }
    }
    let tags = tags.context("no layout to merge")?;
    anyhow::ensure!(!tags.is_empty(), "the layouts carry no tag to make an index for");
    let parent = Dir::create(dest.parent().context("multiarch layout without a parent")?)?;
    let name = dest.file_name().context("multiarch layout without a name")?;
    let tmp_name = format!(".tmp-{}-{}", name.to_string_lossy(), std::process::id());
    parent.remove_all(Path::new(&tmp_name))?;
    let tmp = parent.path().join(&tmp_name);
    let written = write_merged(layouts, &blobs, &tags, &tmp).and_then(|digests| {
        accept(&digests)?;
        Ok(digests)
    });
    let digests = match written {
        Ok(d) => d,
        Err(e) => {
            parent.remove_all(Path::new(&tmp_name))?;
            return Err(e);
        }
    };
    // A directory cannot be renamed over another: the old one goes first, just before.
    parent.remove_all(Path::new(name))?;
    parent.rename(Path::new(&tmp_name), Path::new(name))?;
    progress::say(&format!(
        "wrote {} ({} tags, {} platforms)",
        dest.display(),
        tags.len(),
        layouts.len()
    ));
    Ok(digests)
}

fn write_merged(
    layouts: &[(Arch, Layout)],
    blobs: &[Vec<Descriptor>],
    tags: &[String],
    tmp: &Path,
) -> Result<BTreeMap<String, String>> {
    let w = LayoutWriter::create(tmp)?;
    for ((_, l), verified) in layouts.iter().zip(blobs) {
        for d in verified {
            let mut f = l.dir.open_file(&layout::blob_path(d.hex()))?;
            let (hex, size) = w.blob_file(&mut f)?;
            anyhow::ensure!(
                hex == d.hex() && size == d.size,
                "blob {} changed while copied",
                d.digest
            );
        }
    }
    let mut entries = Vec::new();
    let mut digests = BTreeMap::new();
    for tag in tags {
        let mut images: Vec<Descriptor> = Vec::new();
        for (arch, l) in layouts {
            let (_, d) = l
                .manifests()
                .into_iter()
                .find(|(t, _)| t.as_deref() == Some(tag.as_str()))
                .context("a tag vanished")?;
            let platform = platform_of(l, &d)?;
            anyhow::ensure!(
                platform.architecture == arch.debian() && platform.os == "linux",
                "the {arch} layout's image {} says it is for {}/{}: set `[arch.{arch}.oci] architecture` in its recipe",
                d.digest,
                platform.os,
                platform.architecture
            );
            let mut image = d.clone();
            image.annotations.remove(REF_NAME);
            image.platform = Some(platform);
            images.push(image);
        }
        let bytes = canonical_json(&ImageIndex::new(images))?;
        let hex = w.blob_bytes(&bytes)?;
        let d = layout::descriptor(
            spec::INDEX,
            &hex,
            bytes.len() as u64,
            BTreeMap::from([(REF_NAME.to_string(), tag.clone())]),
        );
        digests.insert(tag.clone(), d.digest.clone());
        entries.push(d);
    }
    for (_, l) in layouts {
        for (t, d) in l.manifests() {
            if t.is_none() && !entries.iter().any(|e| e.digest == d.digest) {
                entries.push(d);
            }
        }
    }
    w.finish(entries)?;
    Layout::open(tmp)?.verify().context("the merged layout does not verify")?;
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprovm_oci::spec::RootFs;

    /// A one-layer image layout for `arch` tagged `tags`.
    fn image(dir: &Path, arch: &str, variant: Option<&str>, tags: &[&str]) -> Layout {
        let w = LayoutWriter::create(dir).unwrap();
        let data = format!("layer of {arch}");
        let hex = w.blob_bytes(data.as_bytes()).unwrap();
        let layer = layout::descriptor(spec::LAYER_TAR, &hex, data.len() as u64, BTreeMap::new());
        let config = ImageConfig {
            created: None,
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
            config: BTreeMap::new(),
            rootfs: RootFs { typ: "layers".into(), diff_ids: vec![layer.digest.clone()] },
        };
        let config = w.blob_json(spec::CONFIG, &config, BTreeMap::new()).unwrap();
        let main = w
            .blob_json(spec::MANIFEST, &ImageManifest::new(config, vec![layer]), BTreeMap::new())
            .unwrap();
        let entries = tags
            .iter()
            .map(|t| {
                let mut d = main.clone();
                d.annotations.insert(REF_NAME.into(), t.to_string());
                d
            })
            .collect();
        w.finish(entries).unwrap();
        Layout::open(dir).unwrap()
    }

    #[test]
    fn layouts_merge_into_one_index_per_tag_with_each_platform() {
        let t = tempfile::tempdir().unwrap();
        let amd = image(&t.path().join("amd"), "amd64", None, &["1.0", "latest"]);
        let arm = image(&t.path().join("arm"), "arm64", Some("v8"), &["1.0", "latest"]);
        let dest = t.path().join("out/multi");
        let layouts = [(Arch::X86_64, amd), (Arch::Aarch64, arm)];
        let ok = |_: &BTreeMap<String, String>| Ok(());
        let digests = merge(&layouts, &dest, &ok).unwrap();
        assert_eq!(digests.keys().collect::<Vec<_>>(), ["1.0", "latest"]);
        let merged = Layout::open(&dest).unwrap();
        merged.verify().unwrap();
        let (tag, index) = merged.manifests().remove(0);
        assert_eq!((tag.as_deref(), index.media_type.as_str()), (Some("1.0"), spec::INDEX));
        let platforms: Vec<(String, Option<String>)> = merged
            .images_of(&index)
            .unwrap()
            .into_iter()
            .map(|d| {
                let p = d.platform.unwrap();
                (p.architecture, p.variant)
            })
            .collect();
        assert_eq!(platforms, [("amd64".into(), None), ("arm64".into(), Some("v8".into()))]);
        // The same inputs give the same bytes; different tags are refused.
        let again = t.path().join("out/again");
        assert_eq!(merge(&layouts, &again, &ok).unwrap(), digests);
        // A refused merge (a pin that differs) leaves what was there.
        let refuse = |_: &BTreeMap<String, String>| anyhow::bail!("not the pin");
        assert!(merge(&layouts, &again, &refuse).is_err());
        assert_eq!(Layout::open(&again).unwrap().manifests(), merged.manifests());
        assert_eq!(std::fs::read_dir(t.path().join("out")).unwrap().count(), 2);
        // An image that says it is for another machine is refused.
        let wrong = image(&t.path().join("wrong"), "amd64", None, &["1.0", "latest"]);
        let amd = Layout::open(&t.path().join("amd")).unwrap();
        let e = merge(&[(Arch::X86_64, amd), (Arch::Aarch64, wrong)], &t.path().join("out/w"), &ok)
            .unwrap_err()
            .to_string();
        assert!(e.contains("says it is for linux/amd64"), "{e}");
        let other = image(&t.path().join("other"), "arm64", Some("v8"), &["1.0"]);
        let e = merge(
            &[(Arch::X86_64, Layout::open(&t.path().join("amd")).unwrap()), (Arch::Aarch64, other)],
            &t.path().join("out/bad"),
            &ok,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tags [\"1.0\"] are not the others'"), "{e}");
        assert!(!t.path().join("out/bad").exists());
    }
}
