//! Edits of a recipe's text in place, keeping its comments, order and layout (`update
//! --write`): a source pin moved to a newer file of the same series.

use anyhow::{bail, Context, Result};
use toml_edit::{DocumentMut, Item, Table, Value};

/// A source pin's new values. The source is found by its current `file`, in `[[source]]` or,
/// with `version_key`, in `[[versions."KEY".source]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceEdit {
    pub version_key: Option<String>,
    pub old_file: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The upstream version the old file had and the new one has: upstream URLs and the
    /// node's `version` naming the old one are rewritten to the new one.
    pub old_upstream: String,
    pub new_upstream: String,
    pub debian_version: String,
    pub debian_file: String,
    pub snapshot: String,
}

/// Replace a string value keeping its decoration (the spaces and comments around it).
fn set_str(t: &mut dyn toml_edit::TableLike, key: &str, new: &str) -> Result<()> {
    let item = t.get_mut(key).with_context(|| format!("no `{key}`"))?;
    let old = item.as_value().with_context(|| format!("`{key}` is not a value"))?;
    let mut v = Value::from(new);
    *v.decor_mut() = old.decor().clone();
    *item = Item::Value(v);
    Ok(())
}

fn set_int(t: &mut dyn toml_edit::TableLike, key: &str, new: i64) -> Result<()> {
    let item = t.get_mut(key).with_context(|| format!("no `{key}`"))?;
    let old = item.as_value().with_context(|| format!("`{key}` is not a value"))?;
    let mut v = Value::from(new);
    *v.decor_mut() = old.decor().clone();
    *item = Item::Value(v);
    Ok(())
}

/// The table holding the node's `version` and its `source` array: the recipe, or its
/// `versions."KEY"` entry.
fn node_table<'a>(doc: &'a mut DocumentMut, key: Option<&str>) -> Result<&'a mut Table> {
    match key {
        None => Ok(doc.as_table_mut()),
        Some(k) => doc
            .get_mut("versions")
            .and_then(Item::as_table_mut)
            .and_then(|v| v.get_mut(k))
            .and_then(Item::as_table_mut)
            .with_context(|| format!("no [versions.\"{k}\"] table")),
    }
}

/// Apply `edit` to the recipe `text`.
pub(crate) fn edit_source(text: &str, edit: &SourceEdit) -> Result<String> {
    let mut doc: DocumentMut = text.parse().context("the recipe does not parse")?;
    let node = node_table(&mut doc, edit.version_key.as_deref())?;
    if node.get("version").and_then(Item::as_str) == Some(edit.old_upstream.as_str()) {
        set_str(node, "version", &edit.new_upstream)?;
    }
    let sources = node
        .get_mut("source")
        .and_then(Item::as_array_of_tables_mut)
        .context("no [[source]] tables")?;
    let Some(source) =
        sources.iter_mut().find(|t| t.get("file").and_then(Item::as_str) == Some(&edit.old_file))
    else {
        bail!("no source with file = \"{}\"", edit.old_file);
    };
    set_str(source, "file", &edit.file)?;
    set_str(source, "sha256", &edit.sha256)?;
    set_int(source, "size", i64::try_from(edit.size).context("size")?)?;
    if let Some(urls) = source.get_mut("urls").and_then(Item::as_array_mut) {
        for u in urls.iter_mut() {
            let Some(s) = u.as_str() else { continue };
            if s.contains(&edit.old_upstream) {
                let mut v = Value::from(s.replace(&edit.old_upstream, &edit.new_upstream));
                *v.decor_mut() = u.decor().clone();
                *u = v;
            }
        }
    }
    let debian = source
        .get_mut("debian")
        .and_then(|d| d.as_table_like_mut())
        .context("the source has no `debian` origin")?;
    set_str(debian, "version", &edit.debian_version)?;
    set_str(debian, "file", &edit.debian_file)?;
    if debian.get("snapshot").is_some() {
        set_str(debian, "snapshot", &edit.snapshot)?;
    } else {
        debian.insert("snapshot", Item::Value(Value::from(edit.snapshot.as_str())));
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"name = "kernel"
version = "6.1.176" # the upstream release
description = "x"

[[source]]
file = "linux-6.1.176.tar.xz"
sha256 = "aa"
size = 1
urls = ["https://cdn.example/v6.x/linux-6.1.176.tar.xz"]
# a comment that stays
debian = { package = "linux", version = "6.1.176-1", file = "linux_6.1.176.orig.tar.xz", snapshot = "20261123T132506Z" }

[versions."6.18"]
version = "6.18.15"
[[versions."6.18".source]]
file = "linux-6.18.15.tar.xz"
sha256 = "bb"
size = 2
debian = { package = "linux", version = "6.18.15-1~bpo13+1", file = "linux_6.18.15.orig.tar.xz", snapshot = "20261201T000000Z" }
"#;

    #[test]
    fn a_source_moves_forward_and_nothing_else_changes() {
        let edit = SourceEdit {
            version_key: None,
            old_file: "linux-6.1.176.tar.xz".into(),
            file: "linux-6.1.178.tar.xz".into(),
            sha256: "cc".into(),
            size: 3,
            old_upstream: "6.1.176".into(),
            new_upstream: "6.1.178".into(),
            debian_version: "6.1.178-1".into(),
            debian_file: "linux_6.1.178.orig.tar.xz".into(),
            snapshot: "20261206T000000Z".into(),
        };
        let out = edit_source(RECIPE, &edit).unwrap();
        let expected = RECIPE
            .replacen("6.1.176\" # the", "6.1.178\" # the", 1)
            .replacen("linux-6.1.176.tar.xz\"\nsha256 = \"aa\"\nsize = 1", "linux-6.1.178.tar.xz\"\nsha256 = \"cc\"\nsize = 3", 1)
            .replacen("v6.x/linux-6.1.176", "v6.x/linux-6.1.178", 1)
            .replacen(
                "version = \"6.1.176-1\", file = \"linux_6.1.176.orig.tar.xz\", snapshot = \"20261123T132506Z\"",
                "version = \"6.1.178-1\", file = \"linux_6.1.178.orig.tar.xz\", snapshot = \"20261206T000000Z\"",
                1,
            );
        assert_eq!(out, expected);
        // The other version's table, by its key.
        let edit = SourceEdit {
            version_key: Some("6.18".into()),
            old_file: "linux-6.18.15.tar.xz".into(),
            file: "linux-6.18.16.tar.xz".into(),
            old_upstream: "6.18.15".into(),
            new_upstream: "6.18.16".into(),
            debian_version: "6.18.16-1~bpo13+1".into(),
            debian_file: "linux_6.18.16.orig.tar.xz".into(),
            ..edit
        };
        let out = edit_source(RECIPE, &edit).unwrap();
        assert!(out.contains("[versions.\"6.18\"]\nversion = \"6.18.16\"\n"), "{out}");
        assert!(out.contains("version = \"6.1.176\" # the upstream release"), "{out}");
        let missing = SourceEdit { old_file: "nope".into(), ..edit };
        assert!(edit_source(RECIPE, &missing).unwrap_err().to_string().contains("no source"));
    }
}
