//! `pins/outputs.toml`: the expected output hash of each target (and of each of its files),
//! written by `cargo xtask pin outputs` and compared by `audit`.

use crate::model::graph::Graph;
use crate::model::manifest::Manifest;
use crate::model::project::Project;
use crate::model::recipe::Cell;
use anyhow::{Context, Result};
use reprovm_fs::util;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Targets audited and pinned when none are named: every output the project publishes.
pub const DEFAULT_TARGETS: [&str; 15] = [
    "kernel",
    "busybox",
    "dropbear",
    "iproute2",
    "grow-rootfs",
    "syslinux-bios",
    "rootfs",
    "hd-image",
    "krata-kernel-oci",
    "firecracker-kernel-bin-oci",
    "firecracker-kernel-modules-oci",
    "hd-image-oci",
    "initramfs",
    "efi-image",
    "iso",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinnedOutput {
    pub version: String,
    pub input_hash: String,
    pub output_hash: String,
    /// OCI layouts: the digest of each manifest in index.json, by tag (or by artifact type
    /// for untagged referrers): what a registry and `skopeo inspect` show.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oci_manifests: BTreeMap<String, String>,
    /// sha256 of its provenance (the in-toto Statement) and of its CycloneDX SBOM, as
    /// `cargo xtask attest` writes them: functions of the pinned inputs and these outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
    pub files: BTreeMap<String, String>,
}

/// The targets a command is about: those named, or every published output:
/// [`DEFAULT_TARGETS`] (those the architecture can build), and for each other cell of one of
/// them (`kernel@6.18`, `kernel+kvm`, `kernel@6.18+kvm`: `[versions]` × `[flavours]`) that
/// cell and the published OCI images built directly over it (`firecracker-kernel-bin-oci+kvm`),
/// as Liquid Metal and edera publish an image per kernel version and flavour.
pub(crate) fn targets_or_default(graph: &Graph, targets: &[String]) -> Vec<String> {
    if !targets.is_empty() {
        return targets.to_vec();
    }
    let mut out: Vec<String> = DEFAULT_TARGETS
        .iter()
        .filter(|t| graph.recipes.get(**t).is_some_and(|l| l.recipe.unavailable.is_none()))
        .map(|s| s.to_string())
        .collect();
    out.extend(other_cells(graph));
    out
}

/// The published outputs at another cell than the default (see [`targets_or_default`]),
/// leaving out what this architecture cannot build and what `[matrix] exclude` leaves out.
pub(crate) fn other_cells(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for (node, l) in &graph.recipes {
        let (base, cell) = Cell::of(node);
        if cell.is_default() || !DEFAULT_TARGETS.contains(&base) || l.cell != cell {
            continue;
        }
        if l.recipe.unavailable.is_some() {
            continue;
        }
        let has_cell = |n: &str| {
            graph.recipes.get(n).is_some_and(|r| {
                let t = &r.template;
                cell.version.as_ref().is_none_or(|k| t.versions.contains_key(k))
                    && cell.flavour.as_ref().is_none_or(|f| t.flavours.contains_key(f))
            })
        };
        if has_cell(base) || (l.recipe.oci.is_some() && l.recipe.deps.iter().any(|d| has_cell(d))) {
            out.push(node.clone());
        }
    }
    out
}

/// The lock of a recipe's `[rootfs] debian` packages: `pins/debian/NAME.lock` (x86_64),
/// `pins/debian/NAME-aarch64.lock`.
pub(crate) fn debian_lock(
    pins: &std::path::Path,
    recipe: &str,
    arch: crate::model::arch::Arch,
) -> std::path::PathBuf {
    let name = if arch.is_default() {
        format!("{recipe}.lock")
    } else {
        format!("{recipe}-{}.lock", arch.name())
    };
    pins.join("debian").join(name)
}

/// The pins; a missing file means no pins, an unreadable or malformed one is an error.
pub(crate) fn read_pins(project: &Project) -> Result<BTreeMap<String, PinnedOutput>> {
    let p = project.outputs_pin();
    let text = match std::fs::read_to_string(&p) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    toml::from_str(&text).map_err(|e| anyhow::format_err!("{}: {}", p.display(), e.message()))
}

/// The pin of a built node (`out` is its output directory).
pub(crate) fn pin_of(m: &Manifest, out: &std::path::Path) -> Result<PinnedOutput> {
    let files =
        m.files.iter().filter_map(|f| f.sha256.clone().map(|s| (f.path.clone(), s))).collect();
    Ok(PinnedOutput {
        version: m.version.clone(),
        input_hash: m.input_hash.clone(),
        output_hash: m.output_hash.clone(),
        oci_manifests: oci_manifests(out)?,
        provenance: None,
        sbom: None,
        files,
    })
}

/// The manifests of an OCI layout by tag (referrers by artifact type); empty for other outputs.
pub(crate) fn oci_manifests(out: &std::path::Path) -> Result<BTreeMap<String, String>> {
    if !out.join("oci-layout").is_file() {
        return Ok(BTreeMap::new());
    }
    let layout = reprovm_oci::layout::Layout::open(out)?;
    let mut map = BTreeMap::new();
    for (tag, d) in layout.manifests() {
        let key = match (tag, d.artifact_type) {
            (Some(t), _) => t,
            (None, Some(at)) => format!("referrer {at}"),
            (None, None) => "untagged".to_string(),
        };
        map.insert(key, d.digest.clone());
    }
    Ok(map)
}

/// Lines describing how `new` differs from `old` (empty when nothing changed).
pub(crate) fn changes(
    old: &BTreeMap<String, PinnedOutput>,
    new: &BTreeMap<String, PinnedOutput>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, n) in new {
        if let Some(o) = old.get(name) {
            for (what, a, b) in
                [("provenance", &o.provenance, &n.provenance), ("sbom", &o.sbom, &n.sbom)]
            {
                if a != b {
                    let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "none".into());
                    out.push(format!("~ {name} {what}: {} -> {}", show(a), show(b)));
                }
            }
        }
        match old.get(name) {
            None => out.push(format!("+ {name}: {}", n.output_hash)),
            Some(o) if o.output_hash != n.output_hash => {
                out.push(format!("~ {name}: {} -> {}", o.output_hash, n.output_hash));
                for (tag, d) in &n.oci_manifests {
                    match o.oci_manifests.get(tag) {
                        Some(od) if od == d => {}
                        Some(od) => out.push(format!("    manifest {tag}: {od} -> {d}")),
                        None => out.push(format!("    + manifest {tag}: {d}")),
                    }
                }
                for (f, h) in &n.files {
                    match o.files.get(f) {
                        None => out.push(format!("    + {f} {h}")),
                        Some(oh) if oh != h => out.push(format!("    ~ {f} {oh} -> {h}")),
                        _ => {}
                    }
                }
                for f in o.files.keys().filter(|f| !n.files.contains_key(*f)) {
                    out.push(format!("    - {f}"));
                }
            }
            _ => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(format!("- {name} (its recipe is gone)"));
    }
    out
}

/// Write the pins (the whole file, atomically).
pub(crate) fn write_pins(project: &Project, pins: &BTreeMap<String, PinnedOutput>) -> Result<()> {
    // x86_64's header is as it always was; another architecture's names its flag and set.
    let header = if project.arch.is_default() {
        "# Expected output hashes, written by `cargo xtask pin outputs`. `cargo xtask audit` compares\n\
         # fresh rebuilds with these; they are produced with the pinned toolchain (pins/toolchain.lock).\n"
            .to_string()
    } else {
        format!(
            "# Expected output hashes of the {arch} build, written by `cargo xtask --arch {arch} pin outputs`.\n\
             # `cargo xtask --arch {arch} audit` compares fresh rebuilds with these; they are produced with\n\
             # the pinned toolchain and its {arch} set (pins/toolchain.lock, pins/{arch}.lock).\n",
            arch = project.arch
        )
    };
    let body = format!("{header}{}", toml::to_string(pins)?);
    util::write_atomic(&project.outputs_pin(), body.as_bytes())
}

/// `pins/multiarch.toml`: per target, per tag, the digest of its image index.
pub(crate) type MultiarchPins = BTreeMap<String, BTreeMap<String, String>>;

/// `pins/multiarch.toml` (written by `multiarch --pin`); a missing file means no pins.
pub(crate) fn read_multiarch_pins(path: &std::path::Path) -> Result<MultiarchPins> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| anyhow::format_err!("{}: {}", path.display(), e.message())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_architecture_publishes_what_it_can_build_and_pins_apart() {
        let t = tempfile::tempdir().unwrap();
        for name in DEFAULT_TARGETS {
            let extra = if name == "iso" {
                "\n[arch.aarch64]\nunavailable = \"x86 boot loaders\"\n"
            } else {
                ""
            };
            let text =
                format!("name = \"{name}\"\nversion = \"1\"\n[build]\nscript = \"true\"\n{extra}");
            std::fs::write(t.path().join(format!("{name}.toml")), text).unwrap();
        }
        let x86 = Graph::load(t.path()).unwrap();
        assert_eq!(targets_or_default(&x86, &[]).len(), DEFAULT_TARGETS.len());
        let arm = Graph::load_for(t.path(), crate::model::arch::Arch::Aarch64).unwrap();
        let published = targets_or_default(&arm, &[]);
        assert_eq!(published.len(), DEFAULT_TARGETS.len() - 1);
        assert!(!published.iter().any(|t| t == "iso"));
        let mut p = Project::new(None, Some(t.path().join("out")), None);
        p.pins = t.path().join("pins");
        assert!(p.outputs_pin().ends_with("pins/outputs.toml"));
        p.arch = crate::model::arch::Arch::Aarch64;
        assert!(p.outputs_pin().ends_with("pins/outputs-aarch64.toml"));
        assert!(p.results_dir().ends_with("out/aarch64"));
    }

    #[test]
    fn unreadable_pins_are_an_error_and_missing_pins_are_none() {
        let t = tempfile::tempdir().unwrap();
        let mut p = Project::new(None, Some(t.path().join("out")), None);
        p.pins = t.path().join("pins");
        assert!(read_pins(&p).unwrap().is_empty());
        std::fs::create_dir_all(p.outputs_pin()).unwrap(); // a directory: unreadable as a file
        assert!(format!("{:#}", read_pins(&p).unwrap_err()).contains("reading"));
        std::fs::remove_dir(p.outputs_pin()).unwrap();
        std::fs::write(p.outputs_pin(), "[kernel]\nversion = 1\n").unwrap();
        assert!(read_pins(&p).is_err());
    }

    #[test]
    fn changes_name_changed_added_and_removed_files() {
        let pin = |h: &str, files: &[(&str, &str)]| PinnedOutput {
            version: "1".into(),
            input_hash: "i".into(),
            output_hash: h.into(),
            oci_manifests: BTreeMap::new(),
            provenance: None,
            sbom: None,
            files: files.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        };
        let old = BTreeMap::from([
            ("k".to_string(), pin("o1", &[("a", "1"), ("b", "2")])),
            ("gone".to_string(), pin("o0", &[])),
        ]);
        let new = BTreeMap::from([
            ("k".to_string(), pin("o2", &[("a", "1"), ("c", "3")])),
            ("n".to_string(), pin("o3", &[])),
        ]);
        expect_test::expect![[r#"
            ~ k: o1 -> o2
                + c 3
                - b
            + n: o3
            - gone (its recipe is gone)"#]]
        .assert_eq(&changes(&old, &new).join("\n"));
    }
}
