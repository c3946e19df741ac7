//! Why do two builds differ? File-by-file comparison of two output trees, and per-format
//! explanations: ELF sections and symbols, the bzImage setup header versus its compressed
//! payload, ext4 superblocks and files (read with dumpe2fs/debugfs), unified diffs for text.
//! Used by `audit` (store versus rebuild) and by `diff` (any two trees, e.g. in a Nix check).

pub(crate) mod media;
pub(crate) mod oci;

use crate::model::manifest::{self, FileEntry};
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::elf;
use reprovm_fs::util;
use reprovm_sandbox::{self as sandbox, Bind, Spec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the e2fsprogs used to look inside ext4 images come from.
pub(crate) enum Tools<'a> {
    /// The sandbox over this root (the pinned toolchain): the xtask's own audits.
    Sandbox(&'a Path),
    /// The sandbox over the root this gives, asked for only when an image is to be read:
    /// `diff` of two files or trees with no ext4 image in them needs no toolchain.
    Later(&'a dyn Fn() -> Result<PathBuf>),
    /// `debugfs`/`dumpe2fs` from PATH: inside a Nix build, which is already a sandbox.
    Path,
}

/// What the two sides are called in explanations ("store"/"rebuild", or the two paths).
pub struct Sides<'a> {
    pub a: &'a str,
    pub b: &'a str,
}

/// How a path differs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    Content,
    Mode,
    Type,
    /// Present only on the first side (the store, or A).
    OnlyInA,
    /// Present only on the second side (the rebuild, or B).
    OnlyInB,
    /// Differs from pins/outputs.toml.
    Pin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileDiff {
    pub path: String,
    pub kind: DiffKind,
    pub explanation: Vec<String>,
}

/// Compare two file lists (manifests) file by file and explain each difference. Files are
/// read beneath `dir_a` and `dir_b` by directory handle, never through a symlink: a tree from
/// a registry (or a build) whose file list says "file" where it holds a link to a host file
/// gets "could not explain", not that host file's content.
pub(crate) fn compare(
    a: &[FileEntry],
    b: &[FileEntry],
    dir_a: &Path,
    dir_b: &Path,
    tools: &Tools,
    sides: &Sides,
) -> Vec<FileDiff> {
    let ma: BTreeMap<&str, &FileEntry> = a.iter().map(|f| (f.path.as_str(), f)).collect();
    let mb: BTreeMap<&str, &FileEntry> = b.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut out = Vec::new();
    let diff =
        |path: &str, kind, explanation| FileDiff { path: path.to_string(), kind, explanation };
    for (p, fa) in &ma {
        match mb.get(p) {
            None => out.push(diff(p, DiffKind::OnlyInA, vec![format!("only in {}", sides.a)])),
            Some(fb) if fa.kind != fb.kind => {
                out.push(diff(p, DiffKind::Type, vec![format!("{} vs {}", fa.kind, fb.kind)]))
            }
            Some(fb) if fa.sha256 != fb.sha256 || fa.target != fb.target => {
                let explanation = if fa.target != fb.target {
                    vec![format!("symlink to {:?} vs {:?}", fa.target, fb.target)]
                } else {
                    let read = |dir: &Path| Dir::open(dir).and_then(|d| d.read(Path::new(p)));
                    (|| explain_contents(&read(dir_a)?, &read(dir_b)?, tools, sides))()
                        .unwrap_or_else(|e| vec![format!("could not explain: {e:#}")])
                };
                out.push(diff(p, DiffKind::Content, explanation));
            }
            // Write permission is not compared: stores take it away (Nix makes everything
            // 0444/0555), and no file in an output is meant to be written.
            Some(fb) if fa.mode & !0o222 != fb.mode & !0o222 => {
                out.push(diff(p, DiffKind::Mode, vec![format!("{:o} vs {:o}", fa.mode, fb.mode)]))
            }
            _ => {}
        }
    }
    for p in mb.keys().filter(|p| !ma.contains_key(*p)) {
        out.push(diff(p, DiffKind::OnlyInB, vec![format!("only in {}", sides.b)]));
    }
    // OCI layouts: blobs are named by their digests, so a changed blob shows as one only in A
    // and one only in B. Say instead which manifest, blob and file inside a layer differ.
    let in_layout = |d: &FileDiff| d.path == "index.json" || d.path.starts_with("blobs/");
    if out.iter().any(in_layout) && crate::steps::explain::oci::both_layouts(dir_a, dir_b) {
        let explained = crate::steps::explain::oci::explain_layouts(dir_a, dir_b, tools, sides);
        match explained {
            Ok(layout_diffs) => {
                out.retain(|d| !in_layout(d));
                out.extend(layout_diffs);
            }
            Err(e) => out.push(diff(
                "index.json",
                DiffKind::Content,
                vec![format!("could not compare the OCI layouts: {e:#}")],
            )),
        }
    }
    out
}

/// Explain why two files, named by the user, differ.
pub(crate) fn explain(a: &Path, b: &Path, tools: &Tools, sides: &Sides) -> Result<Vec<String>> {
    let da = std::fs::read(a).with_context(|| format!("reading {}", a.display()))?;
    let db = std::fs::read(b).with_context(|| format!("reading {}", b.display()))?;
    explain_contents(&da, &db, tools, sides)
}

/// Explain why two versions of one file's content differ.
pub(crate) fn explain_contents(
    da: &[u8],
    db: &[u8],
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<String>> {
    let (da, db) = (da.to_vec(), db.to_vec());
    if elf::is_elf(&da) && elf::is_elf(&db) {
        return explain_elf(&da, &db, sides);
    }
    if is_bzimage(&da) && is_bzimage(&db) {
        return Ok(explain_bzimage(&da, &db));
    }
    if is_ext4(&da) && is_ext4(&db) {
        return explain_ext4(&da, &db, tools, sides);
    }
    if let Some(lines) = crate::steps::explain::media::explain(&da, &db) {
        return Ok(lines);
    }
    if da.starts_with(b"QFI\xfb") && db.starts_with(b"QFI\xfb") {
        // qemu-img output is a function of the raw image: the reason is there.
        return Ok(vec![
            "qcow2: a conversion of the raw image; compare the raw images for the reason".into(),
            binary_summary(&da, &db),
        ]);
    }
    if let (Ok(ja), Ok(jb)) = (
        serde_json::from_slice::<serde_json::Value>(&da),
        serde_json::from_slice::<serde_json::Value>(&db),
    ) {
        use crate::model::attestation::{field_differences, is_attestation};
        if is_attestation(&ja) && is_attestation(&jb) {
            let mut lines = vec!["attestation: differs by field".to_string()];
            lines.extend(field_differences(&ja, &jb).into_iter().take(80));
            return Ok(lines);
        }
    }
    if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&da), std::str::from_utf8(&db)) {
        if !ta.contains('\0') && !tb.contains('\0') {
            let diff = similar::TextDiff::from_lines(ta, tb)
                .unified_diff()
                .context_radius(2)
                .header(sides.a, sides.b)
                .to_string();
            return Ok(diff.lines().take(80).map(str::to_string).collect());
        }
    }
    Ok(vec![binary_summary(&da, &db)])
}

fn binary_summary(a: &[u8], b: &[u8]) -> String {
    let first = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let count = a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
    format!(
        "binary: sizes {} vs {}, first difference at offset {first:#x}, {count} bytes differ",
        a.len(),
        b.len()
    )
}

pub(crate) fn explain_elf(a: &[u8], b: &[u8], sides: &Sides) -> Result<Vec<String>> {
    let sa = elf::section_hashes(a)?;
    let sb = elf::section_hashes(b)?;
    let mut out = vec![format!("ELF: sizes {} vs {}", a.len(), b.len())];
    for (name, (off, size, h)) in &sa {
        match sb.get(name) {
            Some((ob, sizeb, hb)) if hb != h => {
                let first = a
                    .get(*off as usize..(*off + *size) as usize)
                    .zip(b.get(*ob as usize..(*ob + *sizeb) as usize))
                    .and_then(|(x, y)| x.iter().zip(y).position(|(p, q)| p != q));
                let at = first
                    .map(|f| {
                        format!(
                            ", first difference at section offset {f:#x} (file offset {:#x})",
                            *off as usize + f
                        )
                    })
                    .unwrap_or_default();
                out.push(format!(
                    "section {name} differs (offset {off:#x}, size {size} vs {sizeb}{at})"
                ));
            }
            None => out.push(format!("section {name} only in {}", sides.a)),
            _ => {}
        }
    }
    for name in sb.keys().filter(|n| !sa.contains_key(*n)) {
        out.push(format!("section {name} only in {}", sides.b));
    }
    let (ya, yb) = (elf::symbols(a)?, elf::symbols(b)?);
    let moved: Vec<String> = ya
        .iter()
        .filter_map(|(n, v)| yb.get(n).filter(|w| *w != v).map(|w| format!("{n} {v:#x} -> {w:#x}")))
        .take(20)
        .collect();
    if !moved.is_empty() {
        out.push(format!("symbols at different addresses: {}", moved.join(", ")));
    }
    Ok(out)
}

fn is_bzimage(d: &[u8]) -> bool {
    d.len() > 0x260 && &d[0x202..0x206] == b"HdrS"
}

/// Setup header of an x86 boot image: where the (compressed) payload lies.
pub(crate) fn explain_bzimage(a: &[u8], b: &[u8]) -> Vec<String> {
    use reprovm_fs::fields::le_u32;
    let setup = |d: &[u8]| (d[0x1f1].max(4) as usize + 1) * 512;
    let (Ok(pa), Ok(la)) = (le_u32(a, 0x248), le_u32(a, 0x24c)) else {
        return vec!["bzImage: too short for a setup header".into(), binary_summary(a, b)];
    };
    let (sa, pa, la) = (setup(a), pa as usize, la as usize);
    let start = sa + pa;
    let first = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let region = if first < sa {
        "in the real-mode setup code/header".to_string()
    } else if first >= start && first < start + la {
        format!("in the compressed kernel payload (payload at {start:#x}, {la} bytes): the vmlinux inside differs; compare vmlinux")
    } else {
        "in the protected-mode decompressor stub".to_string()
    };
    vec![
        format!("bzImage: setup {sa} bytes; first difference at {first:#x}, {region}"),
        binary_summary(a, b),
    ]
}

fn is_ext4(d: &[u8]) -> bool {
    d.len() > 0x43a && d[0x438] == 0x53 && d[0x439] == 0xef
}

/// List both images with dumpe2fs (superblock) and debugfs (every file, extracted), then name
/// the superblock fields and the files that differ, on either side.
pub(crate) fn explain_ext4(
    a: &[u8],
    b: &[u8],
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<String>> {
    let work = tempfile::tempdir()?;
    let outd = work.path().join("out");
    let build = work.path().join("build");
    for d in [&outd, &build.join("img")] {
        std::fs::create_dir_all(d)?;
    }
    for (data, name) in [(a, "a.img"), (b, "b.img")] {
        std::fs::write(build.join("img").join(name), data)?;
    }
    // $1: directory holding img/{a,b}.img; $2: where the listings and extracted trees go. Every
    // step must succeed, and debugfs (which exits 0 on most errors) must print no error.
    let script = "set -eu\nfor x in a b; do\n  dumpe2fs -h \"$1/img/$x.img\" > \"$2/$x.super\" 2> \"$2/$x.err\"\n  \
                  mkdir \"$2/$x\"\n  debugfs -R \"rdump / $2/$x\" \"$1/img/$x.img\" >> \"$2/$x.err\" 2>&1\n  \
                  if grep -v '^debugfs ' \"$2/$x.err\" | grep -q .; then cat \"$2/$x.err\" >&2; exit 3; fi\ndone\n";
    std::fs::write(build.join("explain.sh"), script)?;
    let later;
    let tools = match tools {
        Tools::Later(root) => {
            later = root()?;
            &Tools::Sandbox(&later)
        }
        other => other,
    };
    match tools {
        Tools::Later(_) => unreachable!("resolved above"),
        Tools::Sandbox(root) => {
            let spec = Spec {
                root: root.to_path_buf(),
                binds: vec![
                    Bind { src: build.clone(), dest: "/build".into(), rw: true },
                    Bind { src: outd.clone(), dest: "/out".into(), rw: true },
                ],
                env: sandbox::base_env(0, 1),
                cwd: "/build".into(),
                argv: vec![
                    "/bin/sh".into(),
                    "/build/explain.sh".into(),
                    "/build".into(),
                    "/out".into(),
                ],
                root_rw: false,
            };
            let log = work.path().join("log");
            let code = sandbox::run(&spec, &work.path().join("spec.json"), &log, None)?;
            if code != 0 {
                bail!(
                    "reading the images with dumpe2fs/debugfs failed (status {code}): {}",
                    util::tail_lines(&log, 10)
                );
            }
        }
        Tools::Path => {
            util::output_checked(
                Command::new("sh").arg(build.join("explain.sh")).arg(&build).arg(&outd),
            )?;
        }
    }
    let mut out = Vec::new();
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let (sa, sb) = (read(outd.join("a.super"))?, read(outd.join("b.super"))?);
    let fields = |s: &str| -> BTreeMap<String, String> {
        s.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let (fa, fb) = (fields(&sa), fields(&sb));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    for k in keys {
        let (x, y) = (
            fa.get(k).map(String::as_str).unwrap_or("-"),
            fb.get(k).map(String::as_str).unwrap_or("-"),
        );
        if x != y {
            out.push(format!("superblock {k}: `{x}` vs `{y}`"));
        }
    }
    let files_a = manifest::scan_dir(&Dir::open(&outd.join("a"))?)?;
    let files_b = manifest::scan_dir(&Dir::open(&outd.join("b"))?)?;
    let inner = compare(&files_a, &files_b, &outd.join("a"), &outd.join("b"), tools, sides);
    for d in inner {
        let what = match d.kind {
            DiffKind::OnlyInA => format!("only in {}'s image", sides.a),
            DiffKind::OnlyInB => format!("only in {}'s image", sides.b),
            _ => "differs inside the image".to_string(),
        };
        out.push(format!("file /{} {what}", d.path));
    }
    if out.is_empty() {
        out.push("same files and superblock summary: the difference is in inode/bitmap/journal metadata (times, allocation order)".into());
    }
    out.push(binary_summary(a, b));
    Ok(out)
}

/// `diff A B`: compare two output directories (or two files) and explain every difference.
pub(crate) fn diff_paths(
    a: &Path,
    b: &Path,
    tools: &Tools,
    sides: &Sides,
) -> Result<Vec<FileDiff>> {
    let meta =
        |p: &Path| std::fs::metadata(p).with_context(|| format!("{} does not exist", p.display()));
    let (ma, mb) = (meta(a)?, meta(b)?);
    if ma.is_file() && mb.is_file() {
        if std::fs::read(a)? == std::fs::read(b)? {
            return Ok(Vec::new());
        }
        let explanation = explain(a, b, tools, sides)
            .unwrap_or_else(|e| vec![format!("could not explain: {e:#}")]);
        return Ok(vec![FileDiff {
            path: a.display().to_string(),
            kind: DiffKind::Content,
            explanation,
        }]);
    }
    let fa = manifest::scan(a).with_context(|| format!("reading {}", a.display()))?;
    let fb = manifest::scan(b).with_context(|| format!("reading {}", b.display()))?;
    Ok(compare(&fa, &fb, a, b, tools, sides))
}

/// Human-readable lines for a list of differences.
pub fn render(diffs: &[FileDiff], sides: &Sides) -> String {
    let mut s = String::new();
    for d in diffs {
        let kind = match d.kind {
            DiffKind::OnlyInA => format!("only in {}", sides.a),
            DiffKind::OnlyInB => format!("only in {}", sides.b),
            k => serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        s.push_str(&format!("  {} ({kind})\n", d.path));
        for e in &d.explanation {
            s.push_str(&format!("      {e}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDES: Sides = Sides { a: "A", b: "B" };

    #[test]
    fn text_and_binary_explanations() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "line1\nline2 2024-01-01\n").unwrap();
        std::fs::write(t.path().join("b"), "line1\nline2 2026-11-22\n").unwrap();
        let e = explain(&t.path().join("a"), &t.path().join("b"), &Tools::Path, &SIDES).unwrap();
        assert!(
            e.contains(&"-line2 2024-01-01".to_string())
                && e.contains(&"+line2 2026-11-22".to_string()),
            "{e:?}"
        );
        assert!(e.iter().any(|l| l == "--- A"), "{e:?}");
        assert!(binary_summary(&[0, 1, 2], &[0, 9, 2]).contains("offset 0x1, 1 bytes differ"));
    }

    #[test]
    fn diff_of_trees_names_changed_missing_and_extra_files() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
            std::fs::write(d.join("same"), "x").unwrap();
        }
        std::fs::write(a.join("etc/motd"), "built 2024-01-01\n").unwrap();
        std::fs::write(b.join("etc/motd"), "built 2026-11-22\n").unwrap();
        std::fs::write(a.join("gone"), "1").unwrap();
        std::fs::write(b.join("new"), "2").unwrap();
        // Read-only copies (as in /nix/store) are not a difference; a lost execute bit is.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(b.join("same"), std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::write(a.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(b.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(a.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = diff_paths(&a, &b, &Tools::Path, &SIDES).unwrap();
        let kinds: Vec<(&str, DiffKind)> = d.iter().map(|d| (d.path.as_str(), d.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("etc/motd", DiffKind::Content),
                ("gone", DiffKind::OnlyInA),
                ("tool", DiffKind::Mode),
                ("new", DiffKind::OnlyInB)
            ]
        );
        assert!(
            d[0].explanation.iter().any(|l| l == "+built 2026-11-22"),
            "{:?}",
            d[0].explanation
        );
        // (A header line keeps the indentation of the rendered lines visible to expect-test.)
        expect_test::expect![[r#"
            differences:
              etc/motd (content)
                  --- A
                  +++ B
                  @@ -1 +1 @@
                  -built 2024-01-01
                  +built 2026-11-22
              gone (only in A)
                  only in A
              tool (mode)
                  755 vs 644
              new (only in B)
                  only in B
        "#]]
        .assert_eq(&format!("differences:\n{}", render(&d, &SIDES)));
        assert!(diff_paths(&a.join("same"), &b.join("same"), &Tools::Path, &SIDES)
            .unwrap()
            .is_empty());
        assert!(format!(
            "{:#}",
            diff_paths(&a, &t.path().join("nope"), &Tools::Path, &SIDES).unwrap_err()
        )
        .contains("does not exist"));
    }

    /// A tree whose file list says "file" where the tree holds a symlink to a host file (what
    /// a registry's forged list once made `audit --against` print): the host file is never read.
    #[test]
    fn a_symlink_where_the_list_says_file_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host-secret");
        std::fs::write(&host, "TOP SECRET host bytes\n").unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("f"), "mine\n").unwrap();
        std::os::unix::fs::symlink(&host, b.join("f")).unwrap();
        let listed = |sha: &str| FileEntry {
            path: "f".into(),
            kind: manifest::FileKind::File,
            mode: 0o644,
            size: Some(5),
            sha256: Some(sha.into()),
            target: None,
        };
        let d = compare(&[listed("aa")], &[listed("bb")], &a, &b, &Tools::Path, &SIDES);
        let text = format!("{d:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("could not explain"), "{text}");
    }

    #[test]
    fn a_failing_image_reader_is_an_error_not_an_empty_explanation() {
        let mut img = vec![0u8; 0x500];
        img[0x438] = 0x53;
        img[0x439] = 0xef;
        let a = img.clone();
        img[0x4ff] = 1;
        // Not real ext4: dumpe2fs fails, and that is reported, not read as "no difference".
        let e = explain_ext4(&a, &img, &Tools::Path, &SIDES);
        match e {
            Err(e) => assert!(format!("{e:#}").contains("failed"), "{e:#}"),
            Ok(lines) => panic!("a broken image was explained as {lines:?}"),
        }
    }
}
