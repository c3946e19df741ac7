//! Explaining how two OCI layouts differ, in their own terms: which manifest (by tag), which
//! annotation or config field, which blob, and for tar layers which file inside the layer
//! and why (the file comparison of `explain.rs`, run on both unpacked layers). A raw file
//! comparison would only say that differently named blobs exist on each side.

use crate::steps::explain::{self, DiffKind, FileDiff, Sides, Tools};
use anyhow::{Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::Dir;
use reprovm_oci::layout::Layout;
use reprovm_oci::spec::{self, Descriptor, ImageManifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Both directories are OCI layouts.
pub(crate) fn both_layouts(a: &Path, b: &Path) -> bool {
    a.join("oci-layout").is_file() && b.join("oci-layout").is_file()
}

/// Every difference between the layouts at `a` and `b`.
pub(crate) fn explain_layouts(
    a: &Path,
    b: &Path,
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<FileDiff>> {
    let (la, lb) = (Layout::open(a)?, Layout::open(b)?);
    let key = |i: usize, tag: &Option<String>, d: &Descriptor| match (tag, &d.artifact_type) {
        (Some(t), _) => format!("tag {t}"),
        (None, Some(at)) => format!("referrer {at}"),
        (None, None) => format!("manifest #{i}"),
    };
    let ma: BTreeMap<String, Descriptor> =
        la.manifests().into_iter().enumerate().map(|(i, (t, d))| (key(i, &t, &d), d)).collect();
    let mb: BTreeMap<String, Descriptor> =
        lb.manifests().into_iter().enumerate().map(|(i, (t, d))| (key(i, &t, &d), d)).collect();
    let mut out = Vec::new();
    for (k, da) in &ma {
        let Some(db) = mb.get(k) else {
            out.push(diff(k, DiffKind::OnlyInA, format!("only in {}", sides.a)));
            continue;
        };
        if da.digest != db.digest {
            out.extend(manifests(&la, &lb, k, da, db, tools, sides)?);
        }
    }
    for k in mb.keys().filter(|k| !ma.contains_key(*k)) {
        out.push(diff(k, DiffKind::OnlyInB, format!("only in {}", sides.b)));
    }
    Ok(out)
}

fn diff(path: &str, kind: DiffKind, line: String) -> FileDiff {
    FileDiff { path: path.to_string(), kind, explanation: vec![line] }
}

fn manifests(
    la: &Layout,
    lb: &Layout,
    k: &str,
    da: &Descriptor,
    db: &Descriptor,
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<FileDiff>> {
    let parse = |l: &Layout, d: &Descriptor| -> Result<ImageManifest> {
        serde_json::from_slice(&l.blob(d)?).with_context(|| format!("manifest {}", d.digest))
    };
    let (a, b) = (parse(la, da)?, parse(lb, db)?);
    let mut out =
        vec![diff(k, DiffKind::Content, format!("manifest {} vs {}", da.digest, db.digest))];
    let (aa, ab) = (a.annotations.clone(), b.annotations.clone());
    let keys: std::collections::BTreeSet<&String> = aa.keys().chain(ab.keys()).collect();
    for key in keys {
        if aa.get(key) != ab.get(key) {
            out.push(diff(
                &format!("{k}: annotation {key}"),
                DiffKind::Content,
                format!("{:?} vs {:?}", aa.get(key), ab.get(key)),
            ));
        }
    }
    if a.config.digest != b.config.digest {
        let (ca, cb) = (la.blob(&a.config)?, lb.blob(&b.config)?);
        out.push(FileDiff {
            path: format!("{k}: config"),
            kind: DiffKind::Content,
            explanation: text_diff(&pretty(&ca), &pretty(&cb), sides),
        });
    }
    if a.layers.len() != b.layers.len() {
        out.push(diff(
            &format!("{k}: layers"),
            DiffKind::Content,
            format!("{} layers vs {}", a.layers.len(), b.layers.len()),
        ));
    }
    for (n, (x, y)) in a.layers.iter().zip(&b.layers).enumerate() {
        if x.digest == y.digest {
            continue;
        }
        let title =
            x.annotations.get(reprovm_oci::TITLE).map(|t| format!(" ({t})")).unwrap_or_default();
        let at = format!("{k}: layer {n}{title} {}", x.media_type);
        out.extend(layers(la, lb, &at, x, y, tools, sides)?);
    }
    Ok(out)
}

fn pretty(json: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(json).into_owned())
}

fn text_diff(a: &str, b: &str, sides: &Sides) -> Vec<String> {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(1)
        .header(sides.a, sides.b)
        .to_string()
        .lines()
        .take(60)
        .map(str::to_string)
        .collect()
}

/// Two versions of one layer: for tar layers, the files inside that differ; otherwise the
/// blobs themselves, explained like any file.
fn layers(
    la: &Layout,
    lb: &Layout,
    at: &str,
    x: &Descriptor,
    y: &Descriptor,
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<FileDiff>> {
    let work = tempfile::tempdir()?;
    let blob = |l: &Layout, d: &Descriptor, name: &str| -> Result<PathBuf> {
        let p = work.path().join(name);
        std::fs::write(&p, l.blob(d)?)?;
        Ok(p)
    };
    let (pa, pb) = (blob(la, x, "a.blob")?, blob(lb, y, "b.blob")?);
    let format = match x.media_type.as_str() {
        spec::LAYER_GZIP => Some(archive::Format::TarGz),
        spec::LAYER_TAR => Some(archive::Format::Tar),
        spec::LAYER_ZSTD => Some(archive::Format::TarZst),
        _ => None,
    };
    let Some(format) = format.filter(|_| x.media_type == y.media_type) else {
        let explanation =
            explain::explain_contents(&std::fs::read(&pa)?, &std::fs::read(&pb)?, tools, sides)?;
        return Ok(vec![FileDiff { path: at.to_string(), kind: DiffKind::Content, explanation }]);
    };
    let unpack = |blob: &Path, name: &str| -> Result<PathBuf> {
        let dest = work.path().join(name);
        let dir = Dir::create(&dest)?;
        let r = archive::decoder(format, std::fs::File::open(blob)?)?;
        archive::extract_tar(r, &dir, 0, &|p| p.to_path_buf(), archive::Links::RootFileSystem)?;
        Ok(dest)
    };
    let (ta, tb) = (unpack(&pa, "a")?, unpack(&pb, "b")?);
    let (fa, fb) = (crate::model::manifest::scan(&ta)?, crate::model::manifest::scan(&tb)?);
    let mut inner = explain::compare(&fa, &fb, &ta, &tb, tools, sides);
    if inner.is_empty() {
        return Ok(vec![diff(
            at,
            DiffKind::Content,
            format!(
                "the same files, different blobs ({} vs {}): tar headers (times, owners, order) or the compression differ",
                x.digest,
                y.digest
            ),
        )]);
    }
    for d in &mut inner {
        d.path = format!("{at}: {}", d.path);
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprovm_oci::layout::{descriptor, LayoutWriter, REF_NAME};

    /// A one-layer image layout whose layer holds `files`.
    fn layout(dir: &Path, files: &[(&str, &[u8])]) {
        let t = tempfile::tempdir().unwrap();
        let tree = Dir::create(t.path()).unwrap();
        for (p, data) in files {
            tree.write_atomic(Path::new(p), data, 0o644).unwrap();
        }
        let w = LayoutWriter::create(dir).unwrap();
        let (hex, size, _) = w
            .blob_stream(|o| {
                reprovm_oci::layer::write_gzip_tar(
                    &tree,
                    0,
                    reprovm_oci::layer::Modes::Normalize,
                    o,
                )
            })
            .unwrap();
        let layer = descriptor(spec::LAYER_GZIP, &hex, size, BTreeMap::new());
        let config = w
            .blob_json(
                spec::CONFIG,
                &serde_json::json!({"architecture": "amd64", "os": "linux"}),
                BTreeMap::new(),
            )
            .unwrap();
        let m = ImageManifest::new(config, vec![layer]);
        let tag = BTreeMap::from([(REF_NAME.to_string(), "v1".to_string())]);
        let d = w.blob_json(spec::MANIFEST, &m, tag).unwrap();
        w.finish(vec![d]).unwrap();
    }

    #[test]
    fn names_the_file_inside_the_layer() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        layout(&a, &[("kernel/metadata", b"KERNEL_FLAVOR=zone\n"), ("kernel/image", b"same")]);
        layout(&b, &[("kernel/metadata", b"KERNEL_FLAVOR=host\n"), ("kernel/image", b"same")]);
        let sides = Sides { a: "A", b: "B" };
        assert!(explain_layouts(&a, &a, &Tools::Path, &sides).unwrap().is_empty());
        let d = explain_layouts(&a, &b, &Tools::Path, &sides).unwrap();
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tag v1",
                "tag v1: layer 0 application/vnd.oci.image.layer.v1.tar+gzip: kernel/metadata"
            ]
        );
        let text = d[1].explanation.join("\n");
        assert!(
            text.contains("-KERNEL_FLAVOR=zone") && text.contains("+KERNEL_FLAVOR=host"),
            "{text}"
        );
    }
}
