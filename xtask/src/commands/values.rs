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
