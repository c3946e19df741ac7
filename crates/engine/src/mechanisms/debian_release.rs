//! A suite's Release text (what `InRelease` signs): which suite it is, when it was made and
//! until when it may be used, and the size and sha256 of every index it lists. apt trusts an
//! index only through this: its hash must be the one listed here, and this text must carry a
//! valid signature (`steps::archive` checks that part) and be within its `Valid-Until`.

use crate::mechanisms::deb822;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// A parsed Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub suite: String,
    pub codename: String,
    /// `Date`, seconds since the epoch.
    pub date: Option<i64>,
    /// `Valid-Until`, seconds since the epoch (the security archive sets it; the main
    /// archive's stable suites do not).
    pub valid_until: Option<i64>,
    /// Every file of the `SHA256` field: path -> (sha256, size).
    pub files: BTreeMap<String, (String, u64)>,
}

/// Parse a Release text (the first paragraph; the `SHA256` field is required).
pub(crate) fn parse(text: &str) -> Result<Release> {
    let p = deb822::paragraphs(text).into_iter().next().context("an empty Release")?;
    let date = |field: &str| -> Result<Option<i64>> {
        match p.get(field) {
            "" => Ok(None),
            v => Ok(Some(parse_date(v).with_context(|| format!("{field}: `{v}` is not a date"))?)),
        }
    };
    let mut files = BTreeMap::new();
    for line in p.get("SHA256").lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha, size, path] = parts[..] else {
            bail!("SHA256: `{line}` is not `HASH SIZE PATH`");
        };
        anyhow::ensure!(reprovm_fs::hash::is_sha256_hex(sha), "SHA256: `{sha}` is not a sha256");
        let size: u64 = size.parse().with_context(|| format!("SHA256: `{size}` is not a size"))?;
        files.insert(path.to_string(), (sha.to_string(), size));
    }
    anyhow::ensure!(!files.is_empty(), "it lists no SHA256 of any index");
    Ok(Release {
        suite: p.get("Suite").to_string(),
        codename: p.get("Codename").to_string(),
        date: date("Date")?,
        valid_until: date("Valid-Until")?,
        files,
    })
}

impl Release {
    /// Whether this Release is the one of `suite`, by its codename (`bookworm-security`) or
    /// its suite name (`oldstable-security`): a Release of another suite served under this
    /// one's name is a replay.
    pub(crate) fn is_suite(&self, suite: &str) -> bool {
        self.codename == suite || self.suite == suite
    }

    /// Refuse a Release past its `Valid-Until` at `now` (seconds since the epoch).
    pub(crate) fn check_valid_at(&self, now: i64) -> Result<(), String> {
        match self.valid_until {
            Some(until) if now > until => Err(format!(
                "it was valid until {} and is {} days older than that (a mirror that stopped, or a replay)",
                format_date(until),
                (now - until) / 86_400
            )),
            _ => Ok(()),
        }
    }
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Sat, 11 Jul 2026 10:16:37 UTC` (the archive's form of RFC 2822; `+0000` or `GMT` too).
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.split_once(',').map_or(s, |(_, rest)| rest).trim();
    let mut it = s.split_whitespace();
    let day: i64 = it.next()?.parse().ok()?;
    let month_name = it.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let offset = match it.next().unwrap_or("UTC") {
        "UTC" | "GMT" | "Z" => 0,
        o if o.len() == 5 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let hh: i64 = o[1..3].parse().ok()?;
            let mm: i64 = o[3..5].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    let days = reprovm_fs::util::UtcTime::days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// Seconds since the epoch as the archive writes dates.
pub(crate) fn format_date(secs: i64) -> String {
    let t = reprovm_fs::util::UtcTime::from_unix(secs.max(0) as u64);
    format!(
        "{:02} {} {} {:02}:{:02}:{:02} UTC",
        t.day,
        MONTHS[(t.month as usize).saturating_sub(1) % 12],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Debian\nSuite: oldstable-security\nCodename: bookworm-security\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 18 Jul 2026 10:16:37 UTC\nSHA256:\n 0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8     1234 main/binary-amd64/Packages.xz\n aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 99 main/source/Sources.xz\n";

    #[test]
    fn release_fields_hashes_and_validity() {
        let r = parse(RELEASE).unwrap();
        assert!(r.is_suite("bookworm-security") && r.is_suite("oldstable-security"));
        assert!(!r.is_suite("bookworm"));
        assert_eq!(r.files["main/source/Sources.xz"].1, 99);
        let date = r.date.unwrap();
        assert_eq!(format_date(date), "11 Jul 2026 10:16:37 UTC");
        assert_eq!(r.valid_until.unwrap() - date, 7 * 86_400);
        assert!(r.check_valid_at(date + 86_400).is_ok());
        let e = r.check_valid_at(date + 30 * 86_400).unwrap_err();
        assert!(e.contains("valid until 18 Jul 2026 10:16:37 UTC") && e.contains("23 days"), "{e}");
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_date("Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert!(parse_date("yesterday").is_none());
        assert!(parse("Suite: x\n").unwrap_err().to_string().contains("no SHA256"));
    }
}
