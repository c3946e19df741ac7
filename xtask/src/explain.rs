//! Why do two builds differ? File-by-file comparison of two output trees, and per-format
//! explanations: ELF sections and symbols, the bzImage setup header versus its compressed
//! payload, ext4 superblocks and files (read with debugfs/dumpe2fs), unified diffs for text.
//! Used by `audit` (store versus rebuild) and by `diff` (any two trees, e.g. inside a Nix check).

use crate::elf;
use crate::manifest::{self, FileEntry};
use crate::sandbox::{self, Bind, Spec};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Where the e2fsprogs used to look inside ext4 images come from.
pub enum Tools<'a> {
    /// The sandbox over this root (the pinned toolchain): the xtask's own audits.
    Sandbox(&'a Path),
    /// `debugfs`/`dumpe2fs` from PATH: inside a Nix build, which is already a sandbox.
    Path,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    /// "content", "mode", "type", "only-in-store", "only-in-rebuild".
    pub kind: String,
    pub explanation: Vec<String>,
}

/// Compare two file lists (manifests) file by file and explain each difference.
pub fn compare(
    a: &[FileEntry],
    b: &[FileEntry],
    dir_a: &Path,
    dir_b: &Path,
    tools: &Tools,
) -> Vec<FileDiff> {
    let ma: BTreeMap<&str, &FileEntry> = a.iter().map(|f| (f.path.as_str(), f)).collect();
    let mb: BTreeMap<&str, &FileEntry> = b.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut out = Vec::new();
    for (p, fa) in &ma {
        match mb.get(p) {
            None => out.push(FileDiff {
                path: p.to_string(),
                kind: "only-in-store".into(),
                explanation: vec![],
            }),
            Some(fb) if fa.kind != fb.kind => out.push(FileDiff {
                path: p.to_string(),
                kind: "type".into(),
                explanation: vec![format!("{} vs {}", fa.kind, fb.kind)],
            }),
            Some(fb) if fa.sha256 != fb.sha256 || fa.target != fb.target => {
                let explanation = explain(&dir_a.join(p), &dir_b.join(p), tools)
                    .unwrap_or_else(|e| vec![format!("could not explain: {e:#}")]);
                out.push(FileDiff { path: p.to_string(), kind: "content".into(), explanation });
            }
            // Write permission is not compared: stores take it away (Nix makes everything
            // 0444/0555), and no file in an output is meant to be written.
            Some(fb) if fa.mode & !0o222 != fb.mode & !0o222 => out.push(FileDiff {
                path: p.to_string(),
                kind: "mode".into(),
                explanation: vec![format!("{:o} vs {:o}", fa.mode, fb.mode)],
            }),
            _ => {}
        }
    }
    for p in mb.keys().filter(|p| !ma.contains_key(*p)) {
        out.push(FileDiff {
            path: p.to_string(),
            kind: "only-in-rebuild".into(),
            explanation: vec![],
        });
    }
    out
}

/// Explain why two versions of one file differ.
pub fn explain(a: &Path, b: &Path, tools: &Tools) -> Result<Vec<String>> {
    let da = fs::read(a)?;
    let db = fs::read(b)?;
    if elf::is_elf(&da) && elf::is_elf(&db) {
        return explain_elf(&da, &db);
    }
    if is_bzimage(&da) && is_bzimage(&db) {
        return Ok(explain_bzimage(&da, &db));
    }
    if is_ext4(&da) && is_ext4(&db) {
        return explain_ext4(a, b, tools);
    }
    if da.starts_with(b"QFI\xfb") && db.starts_with(b"QFI\xfb") {
        // qemu-img output is a function of the raw image: the reason is there.
        return Ok(vec![
            "qcow2: a conversion of the raw image; compare the raw images for the reason".into(),
            binary_summary(&da, &db),
        ]);
    }
    if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&da), std::str::from_utf8(&db)) {
        if !ta.contains('\0') && !tb.contains('\0') {
            let diff = similar::TextDiff::from_lines(ta, tb)
                .unified_diff()
                .context_radius(2)
                .header("store", "rebuild")
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

pub fn explain_elf(a: &[u8], b: &[u8]) -> Result<Vec<String>> {
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
            None => out.push(format!("section {name} only in the store build")),
            _ => {}
        }
    }
    for name in sb.keys().filter(|n| !sa.contains_key(*n)) {
        out.push(format!("section {name} only in the rebuild"));
    }
    let (ya, yb) = (elf::symbols(a).unwrap_or_default(), elf::symbols(b).unwrap_or_default());
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
pub fn explain_bzimage(a: &[u8], b: &[u8]) -> Vec<String> {
    let field = |d: &[u8], off: usize| {
        u32::from_le_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]]) as usize
    };
    let setup = |d: &[u8]| (d[0x1f1].max(4) as usize + 1) * 512;
    let (sa, pa, la) = (setup(a), field(a, 0x248), field(a, 0x24c));
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

/// Use the toolchain's debugfs/dumpe2fs in the sandbox to list inodes and superblocks of both
/// images, then report the superblock fields and files/inodes that differ.
pub fn explain_ext4(a: &Path, b: &Path, tools: &Tools) -> Result<Vec<String>> {
    let work = tempfile::tempdir()?;
    let outd = work.path().join("out");
    let build = work.path().join("build");
    fs::create_dir_all(&outd)?;
    fs::create_dir_all(build.join("img"))?;
    let ia = build.join("img/a.img");
    let ib = build.join("img/b.img");
    fs::hard_link(a, &ia).or_else(|_| fs::copy(a, &ia).map(|_| ()))?;
    fs::hard_link(b, &ib).or_else(|_| fs::copy(b, &ib).map(|_| ()))?;
    // $1: directory holding img/{a,b}.img; $2: where listings and extracted trees go.
    let script = "for x in a b; do dumpe2fs -h \"$1\"/img/$x.img > \"$2\"/$x.super 2>/dev/null; \
                  debugfs -R \"rdump / $2/$x\" \"$1\"/img/$x.img >/dev/null 2>&1 || true; \
                  debugfs -R 'ls -l -p /' \"$1\"/img/$x.img > \"$2\"/$x.root 2>/dev/null; done\n";
    fs::write(build.join("explain.sh"), script)?;
    fs::create_dir_all(outd.join("a"))?;
    fs::create_dir_all(outd.join("b"))?;
    match tools {
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
            sandbox::run(&spec, &work.path().join("spec.json"), &work.path().join("log"))?;
        }
        Tools::Path => {
            let st = std::process::Command::new("sh")
                .arg(build.join("explain.sh"))
                .arg(&build)
                .arg(&outd)
                .status()
                .context("running sh for debugfs")?;
            anyhow::ensure!(st.success(), "listing the images with debugfs/dumpe2fs failed");
        }
    }
    let mut out = Vec::new();
    let sa = fs::read_to_string(outd.join("a.super")).unwrap_or_default();
    let sb = fs::read_to_string(outd.join("b.super")).unwrap_or_default();
    for (x, y) in sa.lines().zip(sb.lines()) {
        if x != y {
            out.push(format!("superblock: `{x}` vs `{y}`"));
        }
    }
    let fa = manifest::scan(&outd.join("a")).unwrap_or_default();
    let fb = manifest::scan(&outd.join("b")).unwrap_or_default();
    let ma: BTreeMap<_, _> = fa.iter().map(|f| (f.path.clone(), f)).collect();
    for f in &fb {
        match ma.get(&f.path) {
            None => out.push(format!("file /{} only in the rebuild's image", f.path)),
            Some(g) if g.sha256 != f.sha256 || g.mode != f.mode || g.target != f.target => {
                out.push(format!("file /{} differs inside the image", f.path))
            }
            _ => {}
        }
    }
    let root_a = fs::read_to_string(outd.join("a.root")).unwrap_or_default();
    let root_b = fs::read_to_string(outd.join("b.root")).unwrap_or_default();
    for (x, y) in root_a.lines().zip(root_b.lines()) {
        if x != y {
            out.push(format!("root directory inode entry: `{x}` vs `{y}`"));
        }
    }
    if out.is_empty() {
        out.push("same files and superblock summary: the difference is in inode/bitmap/journal metadata (times, allocation order)".into());
    }
    out.push(binary_summary(&fs::read(a)?, &fs::read(b)?));
    Ok(out)
}

/// `diff A B`: compare two output directories (or two files) and explain every difference.
pub fn diff_paths(a: &Path, b: &Path, tools: &Tools) -> Result<Vec<FileDiff>> {
    let meta =
        |p: &Path| fs::metadata(p).with_context(|| format!("{} does not exist", p.display()));
    let (ma, mb) = (meta(a)?, meta(b)?);
    if ma.is_file() && mb.is_file() {
        if fs::read(a)? == fs::read(b)? {
            return Ok(Vec::new());
        }
        let explanation =
            explain(a, b, tools).unwrap_or_else(|e| vec![format!("could not explain: {e:#}")]);
        return Ok(vec![FileDiff {
            path: a.display().to_string(),
            kind: "content".into(),
            explanation,
        }]);
    }
    let fa = manifest::scan(a).with_context(|| format!("reading {}", a.display()))?;
    let fb = manifest::scan(b).with_context(|| format!("reading {}", b.display()))?;
    Ok(compare(&fa, &fb, a, b, tools))
}

/// Human-readable lines for a list of differences.
pub fn render(diffs: &[FileDiff]) -> String {
    let mut s = String::new();
    for d in diffs {
        s.push_str(&format!("  {} ({})\n", d.path, d.kind));
        for e in &d.explanation {
            s.push_str(&format!("      {e}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_explanations() {
        let a = b"line1\nline2 2024-01-01\n";
        let b = b"line1\nline2 2026-11-22\n";
        let d = similar::TextDiff::from_lines(
            std::str::from_utf8(a).unwrap(),
            std::str::from_utf8(b).unwrap(),
        )
        .unified_diff()
        .to_string();
        assert!(d.contains("-line2 2024-01-01") && d.contains("+line2 2026-11-22"));
        assert!(binary_summary(&[0, 1, 2], &[0, 9, 2]).contains("offset 0x1, 1 bytes differ"));
    }

    #[test]
    fn diff_of_trees_names_changed_missing_and_extra_files() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::write(d.join("same"), "x").unwrap();
        }
        fs::write(a.join("etc/motd"), "built 2024-01-01\n").unwrap();
        fs::write(b.join("etc/motd"), "built 2026-11-22\n").unwrap();
        fs::write(a.join("gone"), "1").unwrap();
        fs::write(b.join("new"), "2").unwrap();
        // Read-only copies (as in /nix/store) are not a difference; a lost execute bit is.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(b.join("same"), fs::Permissions::from_mode(0o444)).unwrap();
        fs::write(a.join("tool"), "#!/bin/sh\n").unwrap();
        fs::write(b.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(a.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let d = diff_paths(&a, &b, &Tools::Path).unwrap();
        let kinds: Vec<(&str, &str)> =
            d.iter().map(|d| (d.path.as_str(), d.kind.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("etc/motd", "content"),
                ("gone", "only-in-store"),
                ("tool", "mode"),
                ("new", "only-in-rebuild")
            ]
        );
        assert!(
            d[0].explanation.iter().any(|l| l == "+built 2026-11-22"),
            "{:?}",
            d[0].explanation
        );
        assert!(diff_paths(&a.join("same"), &b.join("same"), &Tools::Path).unwrap().is_empty());
        assert!(format!("{:#}", diff_paths(&a, &t.path().join("nope"), &Tools::Path).unwrap_err())
            .contains("does not exist"));
    }
}
