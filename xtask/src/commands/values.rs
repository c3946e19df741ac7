//! The engine's enums as command-line values: each lists its values with their names and
//! help (`VALUES`), and this turns such a list into a clap value parser, so the engine does
//! not depend on clap and every name is spelled in one place.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// A parser accepting the names of `values` and yielding the value.
pub fn parser<T: Copy + Send + Sync + 'static>(
    values: &'static [(T, &'static str, &'static str)],
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        values.iter().map(|(_, name, help)| PossibleValue::new(name).help(help)),
    )
    .map(move |name| {
        values.iter().find(|(_, n, _)| *n == name).map(|(v, _, _)| *v).expect("a listed name")
    })
}

/// A count of at least one (`--jobs`, `--runs`): 0 is refused in words, not as Rust's
/// "number would be zero for non-zero type".
pub fn at_least_one(s: &str) -> Result<std::num::NonZeroUsize, String> {
    let n: usize =
        s.trim().parse().map_err(|_| format!("`{s}`: expected a whole number, 1 or more"))?;
    std::num::NonZeroUsize::new(n).ok_or_else(|| "0: give 1 or more".to_string())
}

/// Seconds, at least one.
pub fn seconds(s: &str) -> Result<u64, String> {
    let n: u64 = s.trim().parse().map_err(|_| format!("`{s}`: expected a number of seconds"))?;
    if n == 0 {
        return Err("0: give 1 or more seconds".to_string());
    }
    Ok(n)
}

/// A size: bytes, or a number with K, M, G or T (powers of 1024), e.g. `4G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: the unit is K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{s}`: expected a size like 4G or 512M"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("`{s}`: too large"))
}
