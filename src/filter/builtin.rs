//! The built-in filter library, compiled into the binary from `src/filter/builtin/*.yaml`.
//!
//! Each filter is a YAML file in the same [`FilterSpec`] format users write, so
//! `logjail filters --show NAME` can print it as a starting point for a custom filter. Their
//! samples (typical lines, every envelope, IPv6, and forged-address injections) are under
//! `tests/fixtures/filters/`, and `tests/fail2ban_samples.rs` checks them against Fail2Ban's
//! own annotated sample logs.

use super::FilterSpec;

/// Name and YAML text of every built-in filter, sorted by name.
const FILTERS: &[(&str, &str)] = &[
    ("apache-auth", include_str!("builtin/apache-auth.yaml")),
    ("asterisk", include_str!("builtin/asterisk.yaml")),
    ("dovecot", include_str!("builtin/dovecot.yaml")),
    (
        "nginx-botsearch",
        include_str!("builtin/nginx-botsearch.yaml"),
    ),
    (
        "nginx-http-auth",
        include_str!("builtin/nginx-http-auth.yaml"),
    ),
    ("postfix", include_str!("builtin/postfix.yaml")),
    ("proftpd", include_str!("builtin/proftpd.yaml")),
    ("recidive", include_str!("builtin/recidive.yaml")),
    ("sshd", include_str!("builtin/sshd.yaml")),
    ("traefik-auth", include_str!("builtin/traefik-auth.yaml")),
    ("vsftpd", include_str!("builtin/vsftpd.yaml")),
    ("wordpress", include_str!("builtin/wordpress.yaml")),
];

/// Names of the built-in filters, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILTERS.iter().map(|(name, _)| *name)
}

/// The parsed spec of a built-in filter; `None` for an unknown name. The unit tests prove every
/// embedded file parses, so `None` never hides a broken built-in.
pub fn spec(name: &str) -> Option<FilterSpec> {
    serde_yaml::from_str(source(name)?).ok()
}

/// The raw YAML of a built-in filter, comments included, for `logjail filters --show`.
pub fn source(name: &str) -> Option<&'static str> {
    FILTERS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    #[test]
    fn names_are_sorted_and_unique() {
        let names: Vec<_> = names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert!(names.contains(&"sshd"));
    }

    #[test]
    fn every_builtin_parses_compiles_and_describes_itself() {
        for name in names() {
            let text = source(name).unwrap();
            let parsed: FilterSpec = serde_yaml::from_str(text)
                .unwrap_or_else(|e| panic!("built-in filter {name} does not parse: {e}"));
            assert_eq!(spec(name).as_ref(), Some(&parsed));
            assert!(
                parsed.description.as_deref().is_some_and(|d| !d.is_empty()),
                "{name} has no description"
            );
            assert!(!parsed.failregex.is_empty(), "{name} has no failregex");
            let filter = Filter::compile(name, &parsed)
                .unwrap_or_else(|errors| panic!("built-in filter {name}: {errors:?}"));
            // Built-ins run on every line of busy logs: none may need the backtracking engine.
            assert!(
                filter.fallbacks().is_empty(),
                "{name} needs fancy-regex: {:?}",
                filter.fallbacks()
            );
        }
    }

    #[test]
    fn every_failregex_is_anchored() {
        // Log lines are attacker-controlled: an unanchored pattern lets text injected anywhere
        // in a line decide the address.
        for name in names() {
            let parsed = spec(name).unwrap();
            for (index, pattern) in parsed.failregex.iter().enumerate() {
                assert!(
                    pattern.starts_with('^'),
                    "{name} failregex[{index}] is not anchored at the start"
                );
            }
            if let Some(prefregex) = &parsed.prefregex {
                assert!(prefregex.starts_with('^') && prefregex.ends_with('$'));
            }
        }
    }

    #[test]
    fn unknown_name_has_no_spec() {
        assert_eq!(source("no-such-filter"), None);
        assert_eq!(spec("no-such-filter"), None);
    }
}
