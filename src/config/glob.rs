//! Shell-style wildcards (`*`, `?`, `[a-z]`, `[!0-9]`) for container names, images and log paths.

use std::fmt;

use regex::Regex;

/// A compiled wildcard pattern that matches a whole name.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

impl Glob {
    /// A pattern for names where `*` and `?` match any character (container names, images:
    /// `ghcr.io/acme/*` matches `ghcr.io/acme/shop:1.2`).
    pub fn new(pattern: &str) -> Result<Self, String> {
        Self::compile(pattern, false)
    }

    /// A pattern for file paths, where `*` and `?` never match `/`, as in a shell.
    pub fn for_path(pattern: &str) -> Result<Self, String> {
        Self::compile(pattern, true)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// Whether the pattern has any wildcard, i.e. names more than one thing.
    pub fn has_wildcards(&self) -> bool {
        self.pattern.contains(['*', '?', '['])
    }

    fn compile(pattern: &str, path_aware: bool) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty pattern".to_string());
        }
        let any = if path_aware { "[^/]" } else { "." };
        let mut source = String::from("^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    source.push_str(any);
                    source.push('*');
                }
                '?' => source.push_str(any),
                '[' => {
                    let mut class = String::from("[");
                    if matches!(chars.peek(), Some('!' | '^')) {
                        chars.next();
                        class.push('^');
                    }
                    let mut closed = false;
                    let mut first = true;
                    for member in chars.by_ref() {
                        // A `]` right after the opening bracket is a member, as in shells.
                        if member == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        if member == '-' {
                            class.push('-');
                        } else {
                            class.push_str(&regex::escape(&member.to_string()));
                        }
                    }
                    if !closed {
                        return Err(format!("`{pattern}`: `[` without a closing `]`"));
                    }
                    class.push(']');
                    source.push_str(&class);
                }
                other => source.push_str(&regex::escape(&other.to_string())),
            }
        }
        source.push('$');
        let regex = Regex::new(&source)
            .map_err(|error| format!("`{pattern}` is not a valid pattern: {error}"))?;
        Ok(Glob {
            pattern: pattern.to_string(),
            regex,
        })
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.regex.as_str() == other.regex.as_str()
    }
}

impl Eq for Glob {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark_match_whole_names() {
        let glob = Glob::new("wp-*").unwrap();
        assert!(glob.matches("wp-blog"));
        assert!(glob.matches("wp-"));
        assert!(!glob.matches("my-wp-blog"));
        assert!(Glob::new("web?").unwrap().matches("web1"));
        assert!(!Glob::new("web?").unwrap().matches("web12"));
        assert!(
            Glob::new("ghcr.io/acme/*")
                .unwrap()
                .matches("ghcr.io/acme/shop:1.2")
        );
    }

    #[test]
    fn regex_characters_are_literal() {
        let glob = Glob::new("a.b+(c)").unwrap();
        assert!(glob.matches("a.b+(c)"));
        assert!(!glob.matches("axbb(c)"));
    }

    #[test]
    fn classes_and_negated_classes() {
        let glob = Glob::new("node[0-9]").unwrap();
        assert!(glob.matches("node7"));
        assert!(!glob.matches("nodex"));
        let negated = Glob::new("node[!0-9]").unwrap();
        assert!(negated.matches("nodex"));
        assert!(!negated.matches("node7"));
        assert!(Glob::new("x[]]").unwrap().matches("x]"));
    }

    #[test]
    fn path_globs_stay_within_one_directory() {
        let glob = Glob::for_path("/var/log/nginx/*.log").unwrap();
        assert!(glob.matches("/var/log/nginx/access.log"));
        assert!(!glob.matches("/var/log/nginx/old/access.log"));
        assert!(glob.has_wildcards());
        assert!(!Glob::for_path("/var/log/auth.log").unwrap().has_wildcards());
    }

    #[test]
    fn refuses_unclosed_classes_and_empty_patterns() {
        assert!(Glob::new("wp-[abc").unwrap_err().contains("closing"));
        assert!(Glob::new("").is_err());
        assert!(Glob::new("[z-a]").is_err());
    }
}
