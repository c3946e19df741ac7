//! Debian's control-file format (deb822): paragraphs of `Field: value` lines separated by
//! blank lines, continuation lines starting with a space or tab. Read by apt's `.sources`
//! files (`debian.rs`) and by Packages indices (`toolchain/resolve.rs`).

use std::collections::BTreeMap;

/// One paragraph: field name to value (continuation lines joined with `\n`, trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Paragraph {
    pub fields: BTreeMap<String, String>,
}

impl Paragraph {
    /// The field's value, "" when absent.
    pub(crate) fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }
}

/// Every non-empty paragraph of `text`. Comment lines (`#`) are skipped.
pub(crate) fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    let mut last: Option<String> = None;
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = last.as_ref().and_then(|k| cur.fields.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.fields.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_continuations_and_comments() {
        let p = paragraphs(
            "Package: a\nDescription: one\n two\n# comment\nSize: 3\n\n\n\nPackage: b\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("Description"), "one\ntwo");
        assert_eq!(p[0].get("Size"), "3");
        assert_eq!(p[1].get("Package"), "b");
        assert_eq!(p[1].get("Missing"), "");
    }
}
