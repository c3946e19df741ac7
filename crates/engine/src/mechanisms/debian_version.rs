//! Debian version numbers (`[EPOCH:]UPSTREAM[-REVISION]`): their order, as dpkg compares them
//! (deb-version(7)), and the parts `update` reads (the upstream version and its series).

use std::cmp::Ordering;

/// A version split into its three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DebianVersion<'a> {
    pub epoch: u64,
    pub upstream: &'a str,
    pub revision: &'a str,
}

/// Split `v` (the epoch is the part before the first `:`, the revision after the last `-`).
pub(crate) fn parse(v: &str) -> DebianVersion<'_> {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) && !e.is_empty() => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    DebianVersion { epoch, upstream, revision }
}

/// dpkg's order of two versions: epochs as numbers, then upstream and revision each by
/// dpkg's rules (non-digits compared with `~` before everything, even the end, and letters
/// before other characters; digit runs as numbers).
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse(a), parse(b));
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| compare_part(a.upstream, b.upstream))
        .then_with(|| compare_part(a.revision, b.revision))
}

/// The weight of a non-digit character in dpkg's order.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit prefixes, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            i += usize::from(ca.is_some());
            j += usize::from(cb.is_some());
        }
        // The digit runs, as numbers.
        let start_a = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let start_b = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let da = trim_zeros(&a[start_a..i]);
        let db = trim_zeros(&b[start_b..j]);
        let o = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().take_while(|&&c| c == b'0').count();
    &d[k..]
}

/// The series of an upstream version: its first two numeric components (`6.1.176` -> `6.1`,
/// `1.35.0` -> `1.35`, `2022.83` -> `2022.83`). `update` never leaves a series.
pub(crate) fn series(upstream: &str) -> String {
    let nums: Vec<&str> =
        upstream.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).take(2).collect();
    nums.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_order() {
        // deb-version(7)'s own examples and the archive's usual shapes.
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1-1", "1.0-1", Less),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("6.18.15-1~bpo13+1", "6.18.16-1~bpo13+1", Less),
            ("6.1.176-1", "6.1.178-1", Less),
            ("1:1.35.0-4+deb12u1", "1:1.35.0-4+deb12u2", Less),
            ("1:1.35.0-4", "1.36.0-1", Greater),
            ("2.41-12+deb13u5", "2.41-12+deb13u10", Less),
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0a", Less),
            ("1.07.1-3+b1", "1.07.1-3+b2", Less),
            ("3:6.04~git20190206.bf6db5b4+dfsg1-3", "3:6.04~git20190206.bf6db5b4+dfsg1-3+b1", Less),
            ("1.2.3", "1.2.03", Equal),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn parts_and_series() {
        let v = parse("1:1.35.0-4+deb12u1");
        assert_eq!((v.epoch, v.upstream, v.revision), (1, "1.35.0", "4+deb12u1"));
        assert_eq!(parse("6.18.15-1~bpo13+1").upstream, "6.18.15");
        assert_eq!(parse("1.0").revision, "");
        assert_eq!(series("6.1.176"), "6.1");
        assert_eq!(series("6.18.15"), "6.18");
        assert_eq!(series("2022.83"), "2022.83");
        assert_eq!(series("6.04~git20190206.bf6db5b4+dfsg1"), "6.04");
    }
}
