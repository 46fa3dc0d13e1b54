//! The built-in filter library, compiled into the binary from `src/filter/builtin/*.yaml`.
// Placeholder interface until the library lands from the `filters` branch.

use super::FilterSpec;

/// Names of the built-in filters, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    std::iter::empty()
}

/// The parsed spec of a built-in filter.
pub fn spec(_name: &str) -> Option<FilterSpec> {
    None
}

/// The raw YAML of a built-in filter.
pub fn source(_name: &str) -> Option<&'static str> {
    None
}
