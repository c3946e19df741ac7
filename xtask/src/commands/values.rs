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
