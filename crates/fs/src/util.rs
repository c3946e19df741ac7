//! Small general helpers shared by unrelated modules (nothing here knows about recipes).

use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// A point in time as UTC calendar fields (for timestamps that must come from a given epoch,
/// never from the clock: snapshot times, OCI `created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// Seconds since 1970-01-01T00:00:00Z (Howard Hinnant's civil_from_days).
    pub fn from_unix(secs: u64) -> UtcTime {
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (hour, minute, second) =
            ((rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32);
        UtcTime { year, month, day, hour, minute, second }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (days_from_civil, the inverse of
    /// the algorithm in [`UtcTime::from_unix`]).
    pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// RFC 3339, as OCI's `created` fields use: `2024-01-01T00:00:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Seconds since the epoch, now (0 on a clock set before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Path relative to `base` for messages, falling back to the full path.
pub fn display_rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// The slowest average rate a download may keep (after its first byte) before it is
/// abandoned: [`transfer_deadline`].
pub const MIN_TRANSFER_RATE: u64 = 32 << 10;

/// The overall deadline of a transfer of at most `bytes`: the per-read timeout (which also
/// covers connecting and the first byte) plus the bytes at [`MIN_TRANSFER_RATE`]. A peer that
/// sends one byte per read timeout never trips the per-read timeout; it trips this.
pub fn transfer_deadline(read_timeout: std::time::Duration, bytes: u64) -> std::time::Duration {
    read_timeout.saturating_add(std::time::Duration::from_secs(bytes / MIN_TRANSFER_RATE))
}

/// Parallel jobs when none are given: the CPU count.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Write `data` to `path` through a temp file in the same directory, fsync and rename, so a
/// reader sees the old bytes or the new ones and never half of them.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The last `n` lines of a text file ("" when it cannot be read: for error messages only).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command line for messages: the program and its arguments, quoted where needed. Never
/// executed: commands are always built argument by argument.
pub fn display_command(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    std::iter::once(quote(cmd.get_program()))
        .chain(cmd.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` to completion; a failure to start or a non-zero exit is an error naming the
/// command line and the exit status.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status =
        cmd.status().with_context(|| format!("could not start `{}`", display_command(cmd)))?;
    anyhow::ensure!(status.success(), "`{}` failed ({status})", display_command(cmd));
    Ok(())
}

/// Run `cmd` and return its stdout; errors name the command line, the exit status and the
/// end of its stderr.
pub fn output_checked(cmd: &mut Command) -> Result<Vec<u8>> {
    let out =
        cmd.output().with_context(|| format!("could not start `{}`", display_command(cmd)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!("`{}` failed ({}): {}", display_command(cmd), out.status, tail.join(" | "));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_both_ways() {
        for secs in [0u64, 951_782_400, 1_704_067_200, 4_102_444_800 + 86_399] {
            let t = UtcTime::from_unix(secs);
            let days = UtcTime::days_from_civil(t.year, t.month.into(), t.day.into());
            assert_eq!(
                days * 86_400 + i64::from(t.hour * 3600 + t.minute * 60 + t.second),
                secs as i64
            );
        }
        assert_eq!(UtcTime::days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn command_lines_are_quoted_for_display() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo 'hi there'", "/a b/c"]);
        assert_eq!(display_command(&c), "sh -c 'echo '\\''hi there'\\''' '/a b/c'");
    }

    #[test]
    fn failing_commands_name_argv_and_status() {
        let e = run_checked(Command::new("sh").args(["-c", "exit 3"])).unwrap_err().to_string();
        assert!(e.contains("`sh -c 'exit 3'` failed") && e.contains("exit status: 3"), "{e}");
        let e = output_checked(Command::new("sh").args(["-c", "echo oops >&2; exit 4"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status: 4") && e.contains("oops"), "{e}");
        let e = run_checked(&mut Command::new("/nonexistent/tool")).unwrap_err().to_string();
        assert!(e.contains("could not start `/nonexistent/tool`"), "{e}");
    }
}
