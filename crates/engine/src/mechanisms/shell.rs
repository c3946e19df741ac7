//! Values in the shell scripts the sandbox runs: every value interpolated into a script goes
//! through [`word`] or [`path`], so that a label with a quote or a path with a space stays one
//! argument. The quoting is shlex's (POSIX `sh`): a value of safe characters is written as it
//! is, so the scripts of the pinned recipes read as before.

use anyhow::{anyhow, Result};

/// `value` as one shell word. A NUL byte cannot be in an argument, so it is an error.
pub(crate) fn word(value: &str) -> Result<String> {
    shlex::try_quote(value)
        .map(|w| w.into_owned())
        .map_err(|_| anyhow!("{value:?} holds a NUL byte, which no shell argument can carry"))
}

/// A path as one shell word, where a leading `$OUT/` (the output directory, set by the
/// sandbox) stays an expansion: `"$OUT"/'rest'`.
pub(crate) fn path(value: &str) -> Result<String> {
    match value.strip_prefix("$OUT/") {
        Some(rest) => Ok(format!("\"$OUT\"/{}", word(rest)?)),
        None => word(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_one_word_and_out_stays_an_expansion() {
        assert_eq!(word("/build/files/mke2fs.conf").unwrap(), "/build/files/mke2fs.conf");
        assert_eq!(word("a b").unwrap(), "'a b'");
        assert_eq!(word("").unwrap(), "''");
        assert_eq!(path("$OUT/efi.img").unwrap(), "\"$OUT\"/efi.img");
        assert_eq!(path("$OUT/a b").unwrap(), "\"$OUT\"/'a b'");
        assert_eq!(path("/x/$OUT/y").unwrap(), "'/x/$OUT/y'");
        assert!(word("a\0b").unwrap_err().to_string().contains("NUL"));
        // Split as a POSIX shell splits words, each value comes back whole, as it went in.
        let values = ["it's", "a b", "$HOME", "`id`", "a\nb", "-L", "\"q\"", "\\", "x;y|z&"];
        let line = values.iter().map(|v| word(v).unwrap()).collect::<Vec<_>>().join(" ");
        assert_eq!(shlex::split(&line).unwrap(), values);
    }
}
