//! `{DEP.version}` and `{DEP.debian-version}`: a dependency's version, or the Debian version
//! of its first source from the Debian archive, inside a recipe's `version`, `[env]` values,
//! `[oci] tags` and `[oci.annotations]` values. They let one recipe serve every version of
//! what it packages: `firecracker-kernel-bin-oci@6.18` is tagged with kernel@6.18's version.
//!
//! Only `{NAME.FIELD}` with FIELD one of `FIELDS` is a placeholder; other braces are text
//! (a shell's `${X}` has no dot). A placeholder naming something that is not a dependency is
//! an error.

/// The fields a placeholder may name.
pub(crate) const FIELDS: [&str; 2] = ["version", "debian-version"];

/// One `{DEP.FIELD}` found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    pub dep: String,
    pub field: &'static str,
    /// Byte range of the whole `{…}` in the value.
    pub range: std::ops::Range<usize>,
}

/// The placeholders in `value`, in order.
pub(crate) fn find(value: &str) -> Vec<Placeholder> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = value[from..].find('{').map(|i| i + from) {
        let Some(close) = value[open..].find('}').map(|i| i + open) else { break };
        let inner = &value[open + 1..close];
        // The innermost `{`: in `{{a.version}` the placeholder starts at the second brace.
        if let Some(nested) = inner.rfind('{') {
            from = open + 1 + nested;
            continue;
        }
        if let Some((dep, field)) = inner.rsplit_once('.') {
            let named = FIELDS.iter().find(|f| **f == field);
            let dep_ok = !dep.is_empty()
                && dep.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
            if let (Some(field), true) = (named, dep_ok) {
                found.push(Placeholder { dep: dep.to_string(), field, range: open..close + 1 });
            }
        }
        from = close + 1;
    }
    found
}

/// `value` with every placeholder replaced by `lookup(dep, field)`; the first error of
/// `lookup` (an unknown dependency, a dependency without a Debian source) is returned.
pub(crate) fn expand(
    value: &str,
    mut lookup: impl FnMut(&str, &str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    for p in find(value) {
        out.push_str(&value[last..p.range.start]);
        out.push_str(&lookup(&p.dep, p.field)?);
        last = p.range.end;
    }
    out.push_str(&value[last..]);
    Ok(out)
}

/// Whether `value` holds a placeholder.
pub(crate) fn has_any(value: &str) -> bool {
    !find(value).is_empty()
}

/// The order of two versions, comparing runs of digits as numbers and everything else as
/// text (`6.1.176` < `6.18.15` < `6.18.15a`); for choosing the newest of a recipe's versions.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn placeholders_are_dep_dot_known_field_and_nothing_else() {
        let shown: Vec<(String, &str)> =
            find("a{kernel.version}b${X}{x.other}{{k.debian-version}{.version}")
                .into_iter()
                .map(|p| (p.dep, p.field))
                .collect();
        assert_eq!(shown, [("kernel".to_string(), "version"), ("k".to_string(), "debian-version")]);
        let v = expand("debian/{kernel.debian-version} {kernel.version}", |d, f| {
            Ok(format!("<{d}:{f}>"))
        });
        assert_eq!(v.unwrap(), "debian/<kernel:debian-version> <kernel:version>");
        assert_eq!(expand("{nope.version}", |d, _| Err(format!("no {d}"))).unwrap_err(), "no nope");
        assert_eq!(
            expand("plain ${HOME} {a}", |_, _| Err("x".into())).unwrap(),
            "plain ${HOME} {a}"
        );
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(compare_versions("6.1.176", "6.18.15"), Less);
        assert_eq!(compare_versions("6.18.15", "6.18.9"), Greater);
        assert_eq!(compare_versions("6.18", "6.18.1"), Less);
        assert_eq!(compare_versions("6.18.015", "6.18.15"), Equal);
        assert_eq!(compare_versions("7.0-rc1", "7.0"), Greater);
        assert_eq!(compare_versions("2022.83", "2022.83"), Equal);
    }
}
