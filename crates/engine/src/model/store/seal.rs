//! A store entry stays what it was when it was committed: sealed read-only, checked cheaply
//! where a build uses it, verified in full where it leaves this machine (`cache push`, `push`),
//! where an audit reads it, and by `store verify`.
//!
//! **Sealing.** Once an entry is committed (by rename), every file and directory in it loses its
//! write bits (the manifest keeps the modes the output hash covers: a sealed mode is the
//! recorded one without `0o222`), and `ENTRY/.seal` records the newest change time (ctime) of
//! the entry's inodes. Only the kernel sets a ctime, to the clock's present, when an inode is
//! written, truncated, renamed, chmod-ed, chown-ed or linked: an inode whose ctime is newer than
//! the seal has been touched since.
//!
//! **The check at use** ([`check`]): one walk of the entry (a readdir and an lstat per name, a
//! readlink per symlink; no file is read) compared with its manifest: the same names, kinds,
//! sizes, modes (write bits aside) and link targets, and no ctime after the seal. A file
//! touched since the seal is hashed: the same bytes (a chmod and back, a copy of `out/` with
//! `cp -a`) renew the seal, other bytes are damage. An entry without a seal (committed before
//! seals existed) is verified in full once, then sealed. Cost: `bench plan` reports it for the
//! hd-image closure beside the plan itself.
//!
//! A directory touched since the seal makes every file beneath it suspect (a directory of
//! other files renamed in keeps their old change times), and `.seal` records the sha256 of
//! `manifest.json` (a manifest edited into agreement with edited files is damage too).
//!
//! **What it does not catch**: a change that keeps the size and leaves no newer ctime (bits
//! rotting under the file system, or a clock set back), and a write racing the check itself
//! (between its hashing and its sealing again). [`verify`] hashes every file.

use crate::model::manifest::{self, FileKind, Manifest};
use anyhow::{Context, Result};
use reprovm_fs::beneath::{Dir, Entry, Kind};
use reprovm_fs::hash::sha256_reader;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The seal's file in an entry directory (beside `out/` and `manifest.json`).
const SEAL: &str = ".seal";
const OUT: &str = "out";
const MANIFEST: &str = "manifest.json";

/// What `.seal` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealFile {
    /// The newest ctime of the entry's inodes when it was sealed, in nanoseconds (decimal).
    newest_change_ns: String,
    /// The sha256 of `manifest.json` when it was sealed: a manifest edited since (even into
    /// agreement with edited files) is damage.
    manifest_sha256: String,
}

/// A seal read back.
struct Sealed {
    newest: i128,
    manifest_sha256: String,
}

/// One way an entry differs from its manifest; `path` is relative to the entry directory
/// (`out/usr/sbin/dropbear`, `manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// An entry that is not what its manifest says (callers that branch downcast to it).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) struct Damaged {
    pub entry: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let more = match self.problems.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        let first = self.problems.first().map(|p| p.to_string()).unwrap_or_default();
        write!(
            f,
            "store entry {} is damaged: {first}{more}; `cargo xtask store verify --repair` restores it",
            self.entry.display()
        )
    }
}

/// What the check at use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Nothing touched since the seal.
    Sealed,
    /// Some inodes were touched (or there was no seal): these many files were hashed, all
    /// matched, and the entry was sealed again.
    Resealed { hashed: usize },
}

/// What a full verification read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verified {
    pub problems: Vec<Problem>,
    pub files: u64,
    pub bytes: u64,
}

fn problem(path: impl Into<String>, what: impl Into<String>) -> Problem {
    Problem { path: path.into(), what: what.into() }
}

/// The path of an output file as problems name it.
fn out_path(p: &str) -> String {
    format!("{OUT}/{p}")
}

/// A mode on disk is the recorded one, or the recorded one sealed (its write bits cleared).
fn mode_matches(on_disk: u32, recorded: u32) -> bool {
    on_disk & !0o222 == recorded & !0o222 && on_disk & 0o222 & !recorded == 0
}

/// Compare a walk of `out/` with the manifest's file list: names, kinds, modes, sizes, link
/// targets. Returns the problems, and the indexes (in both lists) of the files whose bytes
/// have to be read to know (`touched` decides which: all, or those changed since the seal).
fn compare_listing(
    out: &Dir,
    walked: &[Entry],
    m: &Manifest,
    touched: &dyn Fn(&Entry) -> bool,
) -> Result<(Vec<Problem>, Vec<usize>)> {
    let mut problems = Vec::new();
    let mut to_hash = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < walked.len() || j < m.files.len() {
        let disk = walked.get(i);
        let rec = m.files.get(j);
        let disk_path = disk.map(|e| e.path.to_string_lossy().into_owned());
        match (disk_path.as_deref(), rec) {
            (Some(d), Some(r)) if d == r.path => {
                let e = disk.context("walk entry")?;
                let kind = match e.kind {
                    Kind::File => Some(FileKind::File),
                    Kind::Dir => Some(FileKind::Dir),
                    Kind::Symlink => Some(FileKind::Symlink),
                    Kind::Special => None,
                };
                if kind != Some(r.kind) {
                    let found =
                        kind.map_or("device, FIFO or socket".to_string(), |k| k.to_string());
                    problems.push(problem(
                        out_path(d),
                        format!("is a {found}, the manifest says {}", r.kind),
                    ));
                } else if r.kind == FileKind::Symlink {
                    let target = out.read_link(&e.path)?.to_string_lossy().into_owned();
                    if Some(target.as_str()) != r.target.as_deref() {
                        problems.push(problem(
                            out_path(d),
                            format!(
                                "points to `{target}`, the manifest says `{}`",
                                r.target.as_deref().unwrap_or("")
                            ),
                        ));
                    }
                } else if !mode_matches(e.mode, r.mode) {
                    problems.push(problem(
                        out_path(d),
                        format!("has mode {:o}, the manifest says {:o}", e.mode, r.mode),
                    ));
                } else if r.kind == FileKind::File && Some(e.size) != r.size {
                    problems.push(problem(
                        out_path(d),
                        format!("is {} bytes, the manifest says {}", e.size, r.size.unwrap_or(0)),
                    ));
                } else if r.kind == FileKind::File && touched(e) {
                    to_hash.push(j);
                }
                i += 1;
                j += 1;
            }
            // Both lists are in the walk's order (byte order, each directory before its
            // contents): the smaller name is the one the other list lacks.
            (Some(d), Some(r)) if walk_order(d, &r.path) == std::cmp::Ordering::Less => {
                problems.push(problem(out_path(d), "is not in the manifest"));
                i += 1;
            }
            (Some(d), None) => {
                problems.push(problem(out_path(d), "is not in the manifest"));
                i += 1;
            }
            (_, Some(r)) => {
                problems.push(problem(out_path(&r.path), "is missing"));
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok((problems, to_hash))
}

/// The order of [`Dir::walk`]: component by component, bytewise.
fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    Path::new(a).components().cmp(Path::new(b).components())
}

/// Hash the files `indexes` of the manifest; a problem for each whose bytes differ.
fn hash_files(out: &Dir, m: &Manifest, indexes: &[usize]) -> Result<(Vec<Problem>, u64)> {
    let mut problems = Vec::new();
    let mut bytes = 0;
    for &j in indexes {
        let r = &m.files[j];
        let mut f = out.open_file(Path::new(&r.path))?;
        let (sha, size) = sha256_reader(&mut f)
            .with_context(|| format!("reading {}", out.path().join(&r.path).display()))?;
        bytes += size;
        if Some(sha.as_str()) != r.sha256.as_deref() {
            problems.push(problem(
                out_path(&r.path),
                format!(
                    "hashes to {}, the manifest says {}",
                    &sha[..16],
                    r.sha256.as_deref().map_or("nothing", |s| &s[..s.len().min(16)])
                ),
            ));
        }
    }
    Ok((problems, bytes))
}

/// The manifest's own consistency: its output hash is the one its file list gives.
fn manifest_problems(m: &Manifest) -> Vec<Problem> {
    let computed = manifest::output_hash(&m.files);
    if computed == m.output_hash {
        Vec::new()
    } else {
        vec![problem(
            MANIFEST,
            format!(
                "its file list hashes to {}, its output_hash says {}",
                &computed[..16],
                &m.output_hash[..m.output_hash.len().min(16)]
            ),
        )]
    }
}

/// Verify the entry at `entry` against `m` in full: every name, kind, mode, size and link
/// target, every file's sha256, the manifest's own output hash, and (when the entry is
/// sealed) the manifest's bytes against the seal's. Reads only.
pub(crate) fn verify(entry: &Path, m: &Manifest) -> Result<Verified> {
    let top = Dir::open(entry).with_context(|| format!("store entry {}", entry.display()))?;
    let mut own = manifest_problems(m);
    if let Some(sealed) = read_seal(&top)? {
        own.extend(manifest_changed(&top, &sealed)?);
    }
    // `out/` beneath the entry's handle: a symlink there is not followed.
    let out = match top.open_dir(Path::new(OUT)) {
        Ok(d) => d,
        Err(e) => {
            own.insert(0, problem(OUT, format!("cannot be read: {e}")));
            return Ok(Verified { problems: own, files: 0, bytes: 0 });
        }
    };
    let walked = out.walk()?;
    let (mut problems, all) = compare_listing(&out, &walked, m, &|_| true)?;
    let (bad, bytes) = hash_files(&out, m, &all)?;
    problems.extend(bad);
    problems.extend(own);
    Ok(Verified { problems, files: all.len() as u64, bytes })
}

/// The manifest's bytes against the seal's hash of them.
fn manifest_changed(top: &Dir, sealed: &Sealed) -> Result<Vec<Problem>> {
    let sha = reprovm_fs::hash::sha256_bytes(&top.read(Path::new(MANIFEST))?);
    Ok(if sha == sealed.manifest_sha256 {
        Vec::new()
    } else {
        vec![problem(MANIFEST, "changed since the entry was sealed")]
    })
}

/// [`verify`], as an error naming the first problem when there is one.
pub(crate) fn verify_or_refuse(entry: &Path, m: &Manifest) -> Result<Verified> {
    let v = verify(entry, m)?;
    if !v.problems.is_empty() {
        return Err(Damaged { entry: entry.to_path_buf(), problems: v.problems }.into());
    }
    Ok(v)
}

/// The newest ctime among the entry's manifest and output tree.
fn newest_change(top: &Dir, walked: &[Entry]) -> Result<i128> {
    let mut newest = i128::MIN;
    for rel in [MANIFEST, OUT] {
        if let Some(e) = top.metadata(Path::new(rel))? {
            newest = newest.max(e.ctime_ns);
        }
    }
    Ok(walked.iter().map(|e| e.ctime_ns).fold(newest, i128::max))
}

fn read_seal(top: &Dir) -> Result<Option<Sealed>> {
    if top.metadata(Path::new(SEAL))?.is_none() {
        return Ok(None);
    }
    // A seal that cannot be read is no seal: the entry is verified in full and sealed again.
    let Ok(s) = serde_json::from_slice::<SealFile>(&top.read(Path::new(SEAL))?) else {
        return Ok(None);
    };
    Ok(s.newest_change_ns
        .parse()
        .ok()
        .map(|newest| Sealed { newest, manifest_sha256: s.manifest_sha256 }))
}

/// Seal the committed entry at `entry`: clear every write bit in it, then record the newest
/// ctime. The entry directory itself is read-only too, but for the moment `.seal` is written.
pub(crate) fn seal(entry: &Path) -> Result<()> {
    let top = Dir::open(entry)?;
    top.set_mode(Path::new(""), 0o755)?;
    for rel in [MANIFEST, OUT] {
        if let Some(e) = top.metadata(Path::new(rel))? {
            if e.kind != Kind::Symlink && e.mode & 0o222 != 0 {
                top.set_mode(Path::new(rel), e.mode & !0o222)?;
            }
        }
    }
    let out = top.open_dir(Path::new(OUT))?;
    for e in out.walk()? {
        if e.kind != Kind::Symlink && e.mode & 0o222 != 0 {
            out.set_mode(&e.path, e.mode & !0o222)?;
        }
    }
    // Read back after the last chmod: the seal is at least every inode's change time.
    let newest = newest_change(&top, &out.walk()?)?;
    let manifest_sha256 = reprovm_fs::hash::sha256_bytes(&top.read(Path::new(MANIFEST))?);
    let seal =
        serde_json::to_vec(&SealFile { newest_change_ns: newest.to_string(), manifest_sha256 })?;
    // The clock must have moved past the seal before anyone can write: a write within the
    // same tick as the last chmod would carry the seal's own ctime and pass for sealed. The
    // seal file's own ctime shows the clock; it is written again until it is newer (a tick
    // of the kernel's coarse clock, or a second on file systems with coarse times).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        top.write_atomic(Path::new(SEAL), &seal, 0o444)?;
        let written = top.metadata(Path::new(SEAL))?.context("the seal vanished")?;
        if written.ctime_ns > newest || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    top.set_mode(Path::new(""), 0o555)?;
    Ok(())
}

/// The check at use (see the module's text): cheap when nothing was touched since the seal,
/// the touched files hashed when something was, a full verification when there is no seal.
/// Damage is a [`Damaged`] error naming the first problem.
pub(crate) fn check(entry: &Path, m: &Manifest) -> Result<Checked> {
    let top = Dir::open(entry)?;
    let Some(sealed) = read_seal(&top)? else {
        let v = verify_or_refuse(entry, m)?;
        seal(entry)?;
        return Ok(Checked::Resealed { hashed: v.files as usize });
    };
    let damaged = |problems| Damaged { entry: entry.to_path_buf(), problems };
    let changed = manifest_changed(&top, &sealed)?;
    if !changed.is_empty() {
        return Err(damaged(changed).into());
    }
    let sealed_at = sealed.newest;
    let out_touched = top.metadata(Path::new(OUT))?.is_some_and(|e| e.ctime_ns > sealed_at);
    let out = top.open_dir(Path::new(OUT))?;
    let walked = out.walk()?;
    // A directory touched since the seal (renamed in, an entry added or removed) makes every
    // file beneath it suspect, whatever their own change times say.
    let touched_dirs: std::collections::BTreeSet<&Path> = walked
        .iter()
        .filter(|e| e.kind == Kind::Dir && e.ctime_ns > sealed_at)
        .map(|e| e.path.as_path())
        .collect();
    let touched = |e: &Entry| {
        out_touched
            || e.ctime_ns > sealed_at
            || e.path.ancestors().skip(1).any(|a| touched_dirs.contains(a))
    };
    let (problems, to_hash) = compare_listing(&out, &walked, m, &touched)?;
    if !problems.is_empty() {
        return Err(damaged(problems).into());
    }
    if !out_touched && !walked.iter().any(|e| e.ctime_ns > sealed_at) {
        return Ok(Checked::Sealed);
    }
    let (bad, _) = hash_files(&out, m, &to_hash)?;
    if !bad.is_empty() {
        return Err(damaged(bad).into());
    }
    seal(entry)?;
    Ok(Checked::Resealed { hashed: to_hash.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A committed entry: out/ with a file, an executable, a directory and a symlink.
    fn entry(t: &Path) -> (PathBuf, Manifest) {
        let e = t.join("abc-node-1");
        let out = e.join("out");
        std::fs::create_dir_all(out.join("bin")).unwrap();
        std::fs::write(out.join("data"), "data\n").unwrap();
        std::fs::write(out.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(out.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("../data", out.join("bin/link")).unwrap();
        manifest::normalize(&out, 1).unwrap();
        let files = manifest::scan(&out).unwrap();
        let m = Manifest {
            name: "node".into(),
            version: "1".into(),
            input_hash: "i".repeat(64),
            toolchain: "t".into(),
            output_hash: manifest::output_hash(&files),
            files,
        };
        std::fs::write(e.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        (e, m)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Write `data` into `p` whatever its mode (as a careless owner would).
    fn scribble(p: &Path, data: &[u8]) {
        let m = mode(p);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m | 0o200)).unwrap();
        std::fs::write(p, data).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    fn damage(r: Result<Checked>) -> Vec<Problem> {
        let e = r.expect_err("damage passed the check");
        e.downcast_ref::<Damaged>().unwrap_or_else(|| panic!("not Damaged: {e:#}")).problems.clone()
    }

    #[test]
    fn a_sealed_entry_is_read_only_and_passes_untouched() {
        let t = tempfile::tempdir().unwrap();
        let (e, m) = entry(t.path());
        seal(&e).unwrap();
        for p in ["", "manifest.json", "out", "out/data", "out/bin", "out/bin/tool"] {
            assert_eq!(mode(&e.join(p)) & 0o222, 0, "{p} kept a write bit");
        }
        assert_eq!(mode(&e.join("out/bin/tool")), 0o555);
        assert_eq!(check(&e, &m).unwrap(), Checked::Sealed);
        assert!(verify(&e, &m).unwrap().problems.is_empty());
        assert_eq!(verify(&e, &m).unwrap().files, 2);
    }

    #[test]
    fn one_byte_changed_is_named_by_the_check_and_by_verify() {
        let t = tempfile::tempdir().unwrap();
        let (e, m) = entry(t.path());
        seal(&e).unwrap();
        // Same size, new bytes: only the ctime shows it, and the hash names it.
        scribble(&e.join("out/data"), b"dat4\n");
        let p = damage(check(&e, &m));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "out/data");
        assert!(p[0].what.starts_with("hashes to "), "{}", p[0]);
        let v = verify(&e, &m).unwrap();
        assert_eq!(v.problems, p);
        let text = format!("{:#}", check(&e, &m).unwrap_err());
        assert!(
            text.contains("out/data: hashes to") && text.contains("store verify --repair"),
            "{text}"
        );
    }

    #[test]
    fn sizes_modes_links_and_names_are_caught_without_reading_files() {
        let t = tempfile::tempdir().unwrap();
        let (e, m) = entry(t.path());
        seal(&e).unwrap();
        let out = e.join("out");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(out.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
        scribble(&out.join("bin/tool"), b"#!/bin/sh\nrm -rf /\n");
        std::fs::set_permissions(out.join("data"), std::fs::Permissions::from_mode(0o4444))
            .unwrap();
        std::fs::remove_file(out.join("bin/link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.join("bin/link")).unwrap();
        std::fs::write(out.join("extra"), "x").unwrap();
        let p: Vec<String> = damage(check(&e, &m)).iter().map(|p| p.to_string()).collect();
        assert_eq!(
            p,
            [
                "out/bin/link: points to `/etc/passwd`, the manifest says `../data`",
                "out/bin/tool: is 19 bytes, the manifest says 10",
                "out/data: has mode 4444, the manifest says 644",
                "out/extra: is not in the manifest",
            ]
        );
        std::fs::remove_file(out.join("data")).unwrap();
        let p = damage(check(&e, &m));
        assert!(p.iter().any(|p| p.to_string() == "out/data: is missing"), "{p:?}");
    }

    #[test]
    fn touched_but_equal_renews_the_seal_and_no_seal_means_a_full_check() {
        let t = tempfile::tempdir().unwrap();
        let (e, m) = entry(t.path());
        // Not sealed yet (an entry from before seals): verified in full, then sealed.
        assert_eq!(check(&e, &m).unwrap(), Checked::Resealed { hashed: 2 });
        assert_eq!(mode(&e.join("out/data")), 0o444);
        assert_eq!(check(&e, &m).unwrap(), Checked::Sealed);
        // A chmod and back: the bytes are hashed, they match, the seal is renewed.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(e.join("out/data"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(check(&e, &m).unwrap(), Checked::Resealed { hashed: 1 });
        assert_eq!(mode(&e.join("out/data")), 0o444, "resealing left the write bit");
        assert_eq!(check(&e, &m).unwrap(), Checked::Sealed);
    }

    #[test]
    fn a_manifest_that_disagrees_with_itself_is_damage() {
        let t = tempfile::tempdir().unwrap();
        let (e, mut m) = entry(t.path());
        seal(&e).unwrap();
        m.output_hash = "0".repeat(64);
        let v = verify(&e, &m).unwrap();
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].to_string().starts_with("manifest.json: its file list hashes to"));
    }

    /// A directory of other files (same names and sizes) renamed into a sealed entry keeps
    /// its files' old change times; the directory's own shows it, and every file beneath is
    /// hashed. The same for `out/` swapped as a whole, and for a manifest edited into
    /// agreement with edited files; a missing `out/` is a problem `verify` names.
    #[test]
    fn moved_in_directories_swapped_trees_and_edited_manifests_are_damage() {
        let t = tempfile::tempdir().unwrap();
        // Made before the entry (and so before its seal): older change times.
        let older = t.path().join("older");
        std::fs::create_dir_all(older.join("bin")).unwrap();
        std::fs::write(older.join("bin/tool"), "#!/bin/sx\n").unwrap();
        std::fs::set_permissions(older.join("bin/tool"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        std::os::unix::fs::symlink("../data", older.join("bin/link")).unwrap();
        std::fs::set_permissions(older.join("bin"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (e, m) = entry(t.path());
        seal(&e).unwrap();
        let out = e.join("out");
        for d in [&e, &out] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::rename(out.join("bin"), t.path().join("bin.old")).unwrap();
        std::fs::rename(older.join("bin"), out.join("bin")).unwrap();
        let p = damage(check(&e, &m));
        assert!(
            p.iter().any(|p| p.path == "out/bin/tool" && p.what.starts_with("hashes to")),
            "{p:?}"
        );

        // The manifest edited into agreement with an edited file.
        let t = tempfile::tempdir().unwrap();
        let (e, mut m) = entry(t.path());
        seal(&e).unwrap();
        scribble(&e.join("out/data"), b"dat4\n");
        let f = m.files.iter_mut().find(|f| f.path == "data").unwrap();
        f.sha256 = Some(reprovm_fs::hash::sha256_bytes(b"dat4\n"));
        m.output_hash = manifest::output_hash(&m.files);
        scribble(&e.join("manifest.json"), &serde_json::to_vec_pretty(&m).unwrap());
        let p = damage(check(&e, &m));
        assert_eq!(p[0].to_string(), "manifest.json: changed since the entry was sealed");
        assert!(verify(&e, &m).unwrap().problems.iter().any(|p| p.path == "manifest.json"));

        // out/ gone: a problem named, not an error.
        let t = tempfile::tempdir().unwrap();
        let (e, m) = entry(t.path());
        seal(&e).unwrap();
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(e.join("out"), t.path().join("elsewhere")).unwrap();
        let v = verify(&e, &m).unwrap();
        assert!(v.problems[0].to_string().starts_with("out: cannot be read"), "{:?}", v.problems);
    }

    #[test]
    fn walk_order_matches_the_walk() {
        // `a/b` sorts before `a-c` in a walk (a's contents come right after a), not bytewise.
        assert_eq!(walk_order("a/b", "a-c"), std::cmp::Ordering::Less);
        assert_eq!(walk_order("a", "a/b"), std::cmp::Ordering::Less);
    }
}
