//! OCI artifacts: the `[oci]` step that writes a recipe's `$OUT` as an OCI image layout
//! (`layer.rs` makes the tar layer, `layout.rs` the blobs and documents), and moving layouts
//! through registries (`registry.rs`: `push`, `pull`).
//!
//! Everything that goes into a layout is a function of the build's inputs: the files the
//! recipe prepared, SOURCE_DATE_EPOCH (`created`), the recipe's version and the content of the
//! recipes that define it (`revision`), so the manifest digest is the same on every machine
//! and for every builder, and `pins/outputs.toml` pins it.

use crate::model::graph::Graph;
use crate::model::recipe::{Loaded, OciFile, OciSpec};
use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::Hasher;
use reprovm_oci::layout::{descriptor, LayoutWriter, REF_NAME};
use reprovm_oci::spec::{self, Descriptor, ImageConfig, ImageManifest, RootFs};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub(crate) use reprovm_oci::{CREATED, RECIPES, REVISION, TITLE, VERSION};

/// Content digest of the recipes that define `name`: the TOML of every recipe in its closure
/// and every file, fragment and overlay they list. Both builders see exactly these (Nix gives
/// each derivation that slice of recipes/), so both compute the same value; it is the
/// layouts' `revision`: what defines the artifact, independent of where it was built.
pub(crate) fn recipes_digest(recipes: &Path, graph: &Graph, name: &str) -> Result<String> {
    let dir = Dir::open(recipes)?;
    let mut h = Hasher::new("reprovm-recipes-v1");
    let mut files = BTreeSet::new();
    let mut names = graph.closure(name)?;
    names.sort();
    for n in &names {
        let l = graph.get(n)?;
        h.field(
            "recipe",
            format!("{n} {}", reprovm_fs::hash::sha256_bytes(l.identity.as_bytes())).as_bytes(),
        );
        let r = &l.recipe;
        files.extend(r.files.iter().cloned());
        files.extend(r.kconfig.iter().flat_map(|k| k.fragments.iter().cloned()));
        files.extend(r.rootfs.iter().flat_map(|f| f.overlays.iter().cloned()));
    }
    for f in &files {
        content_digest(&dir, Path::new(f), &mut h).with_context(|| format!("recipe file `{f}`"))?;
    }
    Ok(format!("sha256:{}", h.finish()))
}

/// Feed a file or directory tree to `h` by what every copy of it keeps: paths, types, the
/// executable bit, contents and link targets; not write bits or times (Nix's store makes
/// everything read-only, a checkout is writable).
fn content_digest(base: &Dir, rel: &Path, h: &mut Hasher) -> Result<()> {
    use reprovm_fs::beneath::Kind;
    let meta = base
        .metadata(rel)?
        .with_context(|| format!("{} does not exist", base.path().join(rel).display()))?;
    let mut entries = vec![(rel.to_path_buf(), meta.kind, meta.mode)];
    if meta.kind == Kind::Dir {
        let sub = base.open_dir(rel)?;
        entries.extend(sub.walk()?.into_iter().map(|e| (rel.join(&e.path), e.kind, e.mode)));
    }
    for (path, kind, mode) in entries {
        let shown = path.display().to_string();
        match kind {
            Kind::Dir => h.field("dir", shown.as_bytes()),
            Kind::File => {
                let (sha, _) = reprovm_fs::hash::sha256_reader(&mut base.open_file(&path)?)?;
                let x = if mode & 0o111 != 0 { "x" } else { "-" };
                h.field("file", format!("{shown} {x} {sha}").as_bytes());
            }
            Kind::Symlink => {
                let target = base.read_link(&path)?;
                h.field("symlink", format!("{shown} {}", target.display()).as_bytes());
            }
            Kind::Special => {
                anyhow::bail!("{shown}: a recipe file is a file, directory or symlink")
            }
        }
    }
    Ok(())
}

/// What the `[oci]` step reads.
pub(crate) struct OciInputs<'a> {
    pub recipe: &'a Loaded,
    pub spec: &'a OciSpec,
    /// The build directory the spec's paths are relative to.
    pub build: &'a Path,
    /// Output directories of the dependencies: `deps/NAME/...` paths resolve into these.
    pub deps: &'a BTreeMap<String, std::path::PathBuf>,
    pub source_date_epoch: i64,
    /// [`recipes_digest`] of the recipe.
    pub revision: String,
}

impl OciInputs<'_> {
    /// A path of the spec: `deps/NAME/REST` is REST in that dependency's output, anything else
    /// is in the build directory. Returns the directory to resolve beneath and the rest.
    fn resolve(&self, path: &str) -> Result<(Dir, std::path::PathBuf)> {
        let p = Path::new(path);
        let mut parts = p.components();
        if parts.next().is_some_and(|c| c.as_os_str() == "deps") {
            if let Some(name) = parts.next().and_then(|c| c.as_os_str().to_str()) {
                let out = self.deps.get(name).with_context(|| {
                    format!(
                        "{}: `{path}` names `{name}`, which is not in `deps`",
                        self.recipe.path.display()
                    )
                })?;
                return Ok((Dir::open(out)?, parts.as_path().to_path_buf()));
            }
        }
        Ok((Dir::open(self.build)?, p.to_path_buf()))
    }
}

/// Write the layout into `out`.
pub(crate) fn write_layout(i: &OciInputs, out: &Path) -> Result<()> {
    let r = &i.recipe.recipe;
    let oci = i.spec;
    let w = LayoutWriter::create(out)?;
    let epoch = u64::try_from(i.source_date_epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let created = reprovm_fs::util::UtcTime::from_unix(epoch).rfc3339();
    let mut annotations = BTreeMap::from([
        (CREATED.to_string(), created.clone()),
        (VERSION.to_string(), r.version.clone()),
        (REVISION.to_string(), i.revision.clone()),
        (TITLE.to_string(), r.name.clone()),
    ]);
    annotations.extend(oci.annotations.clone());
    annotations.insert(RECIPES.to_string(), i.revision.clone());

    let main = match (&oci.layer, &oci.artifact_type) {
        (Some(layer_dir), _) => {
            let (base, rel) = i.resolve(layer_dir)?;
            let tree = base
                .open_dir(&rel)
                .with_context(|| format!("{}: oci.layer `{layer_dir}`", i.recipe.path.display()))?;
            let (hex, size, digests) = w.blob_stream(|out| {
                reprovm_oci::layer::write_gzip_tar(
                    &tree,
                    i.source_date_epoch,
                    reprovm_oci::layer::Modes::Normalize,
                    out,
                )
            })?;
            debug_assert_eq!(
                (hex.as_str(), size),
                (digests.blob_sha256.as_str(), digests.blob_size)
            );
            let layer = descriptor(spec::LAYER_GZIP, &hex, size, BTreeMap::new());
            let arch = oci.architecture.as_deref().unwrap_or("amd64");
            let config = ImageConfig {
                created: Some(created.clone()),
                architecture: arch.to_string(),
                os: "linux".into(),
                variant: oci.variant.clone(),
                config: BTreeMap::new(),
                rootfs: RootFs {
                    typ: "layers".into(),
                    diff_ids: vec![format!("sha256:{}", digests.diff_id_sha256)],
                },
            };
            let config = w.blob_json(spec::CONFIG, &config, BTreeMap::new())?;
            let mut manifest = ImageManifest::new(config, vec![layer]);
            manifest.annotations = annotations.clone();
            w.blob_json(spec::MANIFEST, &manifest, BTreeMap::new())?
        }
        (None, Some(artifact_type)) => {
            artifact(&w, i, artifact_type, &oci.files, annotations.clone(), None)?
        }
        (None, None) => unreachable!("recipe validation requires layer or artifact-type"),
    };

    let mut index = Vec::new();
    if oci.tags.is_empty() {
        index.push(main.clone());
    }
    for tag in &oci.tags {
        index.push(with_annotations(&main, BTreeMap::from([(REF_NAME.into(), tag.clone())])));
    }
    for rf in &oci.referrers {
        let ann = BTreeMap::from([(CREATED.to_string(), created.clone())]);
        index.push(artifact(&w, i, &rf.artifact_type, &rf.files, ann, Some(main.clone()))?);
    }
    w.finish(index)
}

/// An artifact manifest: the empty config, one layer per file (titled with its name), and
/// optionally a subject. Returns its descriptor (with its artifactType).
fn artifact(
    w: &LayoutWriter,
    i: &OciInputs,
    artifact_type: &str,
    files: &[OciFile],
    annotations: BTreeMap<String, String>,
    subject: Option<Descriptor>,
) -> Result<Descriptor> {
    let empty_hex = w.blob_bytes(b"{}")?;
    let config = descriptor(spec::EMPTY, &empty_hex, 2, BTreeMap::new());
    let mut layers = Vec::new();
    for f in files {
        let (base, rel) = i.resolve(&f.path)?;
        let mut src = base.open_file(&rel)?;
        let (hex, size) = w.blob_file(&mut src)?;
        let title = Path::new(&f.path).file_name().map(|n| n.to_string_lossy().into_owned());
        let ann = BTreeMap::from([(TITLE.to_string(), title.unwrap_or_default())]);
        layers.push(descriptor(&f.media_type, &hex, size, ann));
    }
    let mut manifest = ImageManifest::new(config, layers);
    manifest.artifact_type = Some(artifact_type.to_string());
    manifest.annotations = annotations;
    manifest.subject = subject;
    let mut d = w.blob_json(spec::MANIFEST, &manifest, BTreeMap::new())?;
    d.artifact_type = Some(artifact_type.to_string());
    Ok(d)
}

/// `d` with `extra` annotations added.
fn with_annotations(d: &Descriptor, extra: BTreeMap<String, String>) -> Descriptor {
    let mut out = d.clone();
    out.annotations.extend(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_digest_follows_content_not_write_bits() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("recipes");
        std::fs::create_dir_all(r.join("img/overlay/etc")).unwrap();
        std::fs::write(r.join("img/overlay/etc/motd"), "hello\n").unwrap();
        std::fs::write(r.join("img/conf"), "x=1\n").unwrap();
        std::fs::write(
            r.join("img.toml"),
            "name = \"img\"\nversion = \"1\"\nfiles = [\"img/conf\"]\n[rootfs]\noverlays = [\"img/overlay\"]\n[build]\n",
        )
        .unwrap();
        std::fs::write(
            r.join("other.toml"),
            "name = \"other\"\nversion = \"1\"\n[build]\nscript = \"true\"\n",
        )
        .unwrap();
        let digest = || recipes_digest(&r, &Graph::load(&r).unwrap(), "img").unwrap();
        let first = digest();
        // A read-only copy (as in Nix's store) and an unrelated recipe change nothing.
        for p in ["img/overlay/etc/motd", "img/conf", "img.toml"] {
            let mut perms = std::fs::metadata(r.join(p)).unwrap().permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(r.join(p), perms).unwrap();
        }
        std::fs::write(
            r.join("other.toml"),
            "name = \"other\"\nversion = \"2\"\n[build]\nscript = \"true\"\n",
        )
        .unwrap();
        assert_eq!(digest(), first);
        // Content does.
        std::fs::remove_file(r.join("img/overlay/etc/motd")).unwrap();
        std::fs::write(r.join("img/overlay/etc/motd"), "hello!\n").unwrap();
        assert_ne!(digest(), first);
    }
}
