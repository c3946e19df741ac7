//! `audit --against`: the binary cache's entry for the rebuilt node, read once, bounded when
//! unsigned, unpacked into a tree of this process's that the next audit or gc sweeps, and
//! explained against the rebuild.

use super::*;

/// Fetch the cache's entry for the rebuilt node (every registry document read once; integrity
/// checked as for a substitution; the signature on that same document reported) and explain
/// how it differs from this machine's rebuild. It matches only when the bytes are the same and
/// a trusted key signed it: an unsigned entry is what a substituter would refuse.
pub(super) fn compare_with_cache(
    ctx: &RunContext,
    cache: &crate::steps::substitution::Cache,
    l: &crate::model::recipe::Loaded,
    toolchain: &str,
    rebuilt: &Manifest,
    rebuilt_out: &Path,
    tools: &Tools,
) -> Result<CacheComparison> {
    use crate::steps::substitution::{entry, keys};
    let r = &l.recipe;
    let node = l.node();
    let want = entry::Wanted {
        name: &node,
        version: &r.version,
        input_hash: &rebuilt.input_hash,
        toolchain,
        source_date_epoch: r.source_date_epoch(),
    };
    let project = &ctx.project;
    let trusted = keys::load_trusted(&ctx.substitution.trusted_keys)?;
    // Beside the audit's other trees, named by process: the next audit or `gc` removes it
    // when this process was killed before it could.
    let work_name = format!("{node}-cache-{}", std::process::id());
    let work = AuditTree::create(&project.out.join("audit").join(work_name))?;
    let mut c = CacheComparison {
        repository: cache.text.clone(),
        output_hash: None,
        signed_by: None,
        untrusted: None,
        matches: false,
        differences: Vec::new(),
        document: None,
        refused: None,
    };
    let limit = entry::tar_limit(&rebuilt.files);
    let fetched = entry::fetch(
        &cache.registry,
        &cache.repo,
        &want,
        entry::Trust::CompareOnly { keys: &trusted, limit },
        work.path(),
    );
    let taken = match fetched {
        Ok(Some(t)) => t,
        Ok(None) => {
            c.differences.push(FileDiff {
                path: node.clone(),
                kind: DiffKind::OnlyInB,
                explanation: vec![format!(
                    "{} has no entry for input hash {}",
                    cache.text, rebuilt.input_hash
                )],
            });
            return Ok(c);
        }
        Err(entry::Refusal::Mismatch(why)) => {
            c.refused = Some(why);
            return Ok(c);
        }
        Err(e) => bail!("{}: {e}", cache.text),
    };
    match &taken.signature {
        Ok(key) => c.signed_by = Some(key.to_string()),
        Err(why) => c.untrusted = Some(why.to_string()),
    }
    let same = taken.manifest.output_hash == rebuilt.output_hash;
    c.matches = same && c.signed_by.is_some();
    c.output_hash = Some(taken.manifest.output_hash.clone());
    c.document = Some(taken.document.clone());
    if !same {
        let sides = Sides { a: "the cache", b: "this machine" };
        c.differences = explain::compare(
            &taken.manifest.files,
            &rebuilt.files,
            &store::out_dir(work.path()),
            rebuilt_out,
            tools,
            &sides,
        );
    }
    Ok(c)
}

/// A directory removed when dropped (and, if this process is killed first, by the next audit
/// or `gc`, which remove every `out/audit/NAME-PID` whose process has exited).
pub(super) struct AuditTree(PathBuf);

impl AuditTree {
    fn create(path: &Path) -> Result<AuditTree> {
        remove(path)?;
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(AuditTree(path.to_path_buf()))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for AuditTree {
    fn drop(&mut self) {
        // Left behind, it is swept by the next audit or gc; said, so that nobody wonders.
        if let Err(e) = remove(&self.0) {
            reprovm_fs::progress::say(&format!(
                "warning: could not remove {} ({e:#}); the next audit or gc will",
                self.0.display()
            ));
        }
    }
}
