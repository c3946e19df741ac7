//! The audit's report as text (each difference explained, the verdict naming which check
//! failed) and its deterministic zip bundle.

use super::*;

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    for t in &r.targets {
        let pin = match t.matches_pin {
            Some(true) => "matches pins/outputs.toml",
            Some(false) => "DIFFERS from pins/outputs.toml",
            None => "no pin",
        };
        let store =
            if t.matches_store { "identical to the store" } else { "DIFFERS from the store" };
        s.push_str(&format!(
            "{:<10} {} rebuild {store}; {pin}\n",
            t.name,
            &t.rebuild_output_hash[..16]
        ));
        if let (Some(p), Some(b)) = (&t.provenance, &t.sbom) {
            s.push_str(&format!(
                "  provenance {} sbom {} (regenerated over the rebuild)\n",
                &p[..16],
                &b[..16]
            ));
        }
        let skipped: Vec<&str> =
            t.variations.iter().filter(|v| !v.applied).map(|v| v.name.as_str()).collect();
        if !skipped.is_empty() {
            s.push_str(&format!("  not varied here: {}\n", skipped.join(", ")));
        }
        s.push_str(&explain::render(&t.differences, &SIDES));
        if let Some(c) = &t.cache {
            let trust = match (&c.signed_by, &c.untrusted) {
                (Some(k), _) => format!("signed by {k}"),
                (None, Some(why)) => why.clone(),
                (None, None) => String::new(),
            };
            let verdict = match (&c.output_hash, &c.refused, c.matches) {
                (None, Some(why), _) => format!("has an entry for these inputs, refused: {why}"),
                (None, None, _) => "has no entry for these inputs".to_string(),
                (Some(_), _, true) => format!("holds the same bytes ({trust})"),
                (Some(h), _, false) if *h == t.rebuild_output_hash => {
                    format!("holds the same bytes, but {trust}: a substituter would not use it")
                }
                (Some(h), _, false) => format!("holds OTHER bytes: {} ({trust})", &h[..16]),
            };
            s.push_str(&format!("  cache {} {verdict}\n", c.repository));
            s.push_str(&explain::render(
                &c.differences,
                &Sides { a: "the cache", b: "this machine" },
            ));
        }
        if let Some(dir) = &t.rebuild_dir {
            s.push_str(&format!("  rebuilt outputs kept in {dir}\n"));
        }
    }
    s.push_str(&verdict(r));
    s
}

/// The last line of the report: which of the three checks failed, each named apart. A rebuild
/// that matches the store but not the pins is reproducible on this machine, and the pins are
/// what differ (a change not re-pinned, or another machine's bytes); only a rebuild that
/// differs from the store is not reproducible.
pub(super) fn verdict(r: &Report) -> String {
    if r.ok {
        return "audit: all outputs reproduced bit for bit\n".into();
    }
    let names = |f: &dyn Fn(&TargetReport) -> bool| -> Vec<&str> {
        r.targets.iter().filter(|t| f(t)).map(|t| t.name.as_str()).collect()
    };
    let rebuilt_differently = names(&|t| !t.matches_store);
    let pins_differ = names(&|t| t.matches_store && t.matches_pin == Some(false));
    let cache = |t: &TargetReport, f: &dyn Fn(&CacheComparison) -> bool| {
        t.cache.as_ref().is_some_and(|c| !c.matches && f(c))
    };
    let cache_differs = names(&|t| {
        cache(t, &|c| c.output_hash.as_ref().is_some_and(|h| *h != t.rebuild_output_hash))
    });
    let cache_untrusted = names(&|t| {
        cache(t, &|c| c.output_hash.as_ref().is_some_and(|h| *h == t.rebuild_output_hash))
    });
    let cache_refused = names(&|t| cache(t, &|c| c.refused.is_some()));
    let cache_missing = names(&|t| cache(t, &|c| c.output_hash.is_none() && c.refused.is_none()));
    let mut lines = String::new();
    if !rebuilt_differently.is_empty() {
        lines.push_str(&format!(
            "audit: NOT reproducible: {} rebuilt to other bytes than the store's\n",
            rebuilt_differently.join(", ")
        ));
    }
    if !pins_differ.is_empty() {
        lines.push_str(&format!(
            "audit: {} reproduced bit for bit here, but differ from pins/outputs.toml (an unpinned change: `cargo xtask pin outputs`; or the pins come from bytes this machine does not make)\n",
            pins_differ.join(", ")
        ));
    }
    for (list, what) in [
        (cache_differs, "the cache holds other bytes than this machine makes for"),
        (cache_untrusted, "the cache holds the same bytes, signed by no trusted key, for"),
        (cache_refused, "the cache's entry was refused (not what it claims) for"),
        (cache_missing, "the cache has no entry for"),
    ] {
        if !list.is_empty() {
            lines.push_str(&format!("audit: {what} {}\n", list.join(", ")));
        }
    }
    lines
}

/// Read a file that may legitimately be absent (a log of a build made elsewhere).
pub(super) fn read_optional(p: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// A zip whose bytes depend only on its contents: sorted names, fixed times, fixed method.
pub(crate) fn write_bundle(project: &Project, report: &Report, path: &Path) -> Result<()> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("report.json".into(), serde_json::to_vec_pretty(report)?);
    files.insert("report.txt".into(), render(report).into_bytes());
    let graph = project.graph()?;
    for t in &report.targets {
        let node = graph.resolve(&t.name);
        let l = graph.get(node)?;
        let entry = store::entry_dir(project, node, &l.recipe.version, &t.input_hash);
        let log_name = format!("{node}-{}.log", &t.input_hash[..16]);
        let mut add = |name: String, p: PathBuf| -> Result<()> {
            if let Some(b) = read_optional(&p)? {
                files.insert(name, b);
            }
            Ok(())
        };
        add(format!("{}/store-manifest.json", t.name), entry.join("manifest.json"))?;
        add(format!("{}/store-build.log", t.name), project.logs().join(&log_name))?;
        let logs = match &t.rebuild_dir {
            Some(d) => {
                add(
                    format!("{}/rebuild-manifest.json", t.name),
                    Path::new(d).join("manifest.json"),
                )?;
                Path::new(d).parent().context("rebuild directory without a parent")?.join("logs")
            }
            None => project.out.join("audit").join(format!("{}-last-logs", t.name)),
        };
        add(format!("{}/rebuild.log", t.name), logs.join(&log_name))?;
    }
    reprovm_fs::archive_write::write_zip(path, &files)
}
