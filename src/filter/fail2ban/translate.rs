//! Fail2Ban's regex dialect (Python `re`, with `<tag>` substitution) rewritten into what
//! logjail's filter compiles: the `regex` crate's syntax, with Fail2Ban's address and field
//! tags (`<HOST>`, `<F-USER>`, …) left for [`crate::filter::pattern`] to expand.

use std::collections::HashMap;

use crate::config::ini::{self, Tag, TagError};

/// Tags that are Fail2Ban's own, never an option's name: left in place for the filter engine.
fn is_engine_tag(name: &str) -> bool {
    matches!(
        name,
        "HOST" | "ADDR" | "IP4" | "IP6" | "DNS" | "CIDR" | "SUBNET" | "SKIPLINES"
    ) || name.starts_with("F-")
        || name.starts_with("/F-")
}

/// How deep `<tag>` substitution goes before it is taken for a loop (Fail2Ban stops too).
const MAX_TAG_ROUNDS: usize = 50;

/// Replaces `<name>` by the value of option `name` from `lookup`, innermost first, so that
/// `<lt_<logtype>/__prefix_line>` becomes `<lt_file/__prefix_line>` and then its value. Tags
/// that name no option (`<HOST>`, a `(?P<group>` name) are left as they are.
pub fn substitute_tags(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    let substituted = ini::substitute_tags(text, MAX_TAG_ROUNDS, |name, before| {
        let group_name = before.ends_with("(?P") || before.ends_with("(?");
        let plain = name
            .chars()
            .all(|c| c.is_alphanumeric() || "_-/.".contains(c));
        if group_name || !plain || is_engine_tag(name) {
            return Ok::<Tag, std::convert::Infallible>(Tag::Keep);
        }
        let value = cache
            .entry(name.to_string())
            .or_insert_with(|| lookup(name))
            .clone();
        Ok(match value {
            Some(value) => Tag::Value(value),
            // An uppercase tag that is neither an option nor the engine's is literal text to
            // Fail2Ban; the engine would refuse it as a tag.
            None if name.starts_with(|c: char| c.is_ascii_uppercase()) => {
                Tag::Literal(format!("[<]{name}>"))
            }
            None => Tag::Keep,
        })
    });
    match substituted {
        Ok(text) => Ok(text),
        Err(TagError::Lookup(never)) => match never {},
        Err(TagError::Unsettled(_)) => Err(format!(
            "`<tag>` substitution did not settle after {MAX_TAG_ROUNDS} rounds (a tag refers to itself)"
        )),
    }
}

/// Rewrites a Python `re` pattern into the `regex` crate's syntax where the two differ:
/// `{,n}` is `{0,n}`; a `{` or `}` that is no repetition is a literal; inside a class `[` and
/// the doubled `&&`, `--`, `~~` are literals (the `regex` crate reads them as nested classes and
/// set operations); `\Z` is `\z`; `\<` and `\>` are literal angle brackets (the `regex` crate
/// reads them as word boundaries). Lookaround, backreferences and conditionals are left as
/// they are: the filter engine runs those patterns on fancy-regex and says so.
pub fn python_to_rust(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    // Whether the last thing written can take a repetition.
    let mut repeatable = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    out.push_str("\\\\");
                    break;
                };
                match next {
                    'Z' => out.push_str("\\z"),
                    '<' => out.push_str("[<]"),
                    '>' => out.push_str("[>]"),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                i += 2;
                repeatable = true;
            }
            '[' => {
                i = copy_class(&chars, i, &mut out);
                repeatable = true;
            }
            '{' => {
                match repetition(&chars, i) {
                    Some((text, end)) if repeatable => {
                        out.push_str(&text);
                        i = end;
                    }
                    _ => {
                        out.push_str("\\{");
                        i += 1;
                    }
                }
                repeatable = false;
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
                repeatable = true;
            }
            // Python's `(?(name)yes|no)` tests a named group; fancy-regex reads a bare name
            // there as a pattern to look for, and spells the group test `(?(<name>)…)`.
            '(' if chars[i..].starts_with(&['(', '?', '('])
                && let Some(name_len) = conditional_name(&chars[i + 3..]) =>
            {
                let name: String = chars[i + 3..i + 3 + name_len].iter().collect();
                out.push_str("(?(<");
                out.push_str(&name);
                out.push_str(">)");
                i += 3 + name_len + 1;
                repeatable = false;
            }
            '(' | '|' => {
                out.push(c);
                i += 1;
                repeatable = false;
            }
            '*' | '+' | '?' => {
                out.push(c);
                i += 1;
                // `a*?` is lazy, not a second repetition; `(?` opens a group.
                repeatable = false;
            }
            _ => {
                out.push(c);
                i += 1;
                repeatable = c != '^';
            }
        }
    }
    out
}

/// The length of a group name closed by `)` at the start of `chars` (`cond_user)`), when it
/// is a name: a group number (`1)`) fancy-regex reads as Python does.
fn conditional_name(chars: &[char]) -> Option<usize> {
    let len = chars.iter().position(|&c| c == ')')?;
    let name = &chars[..len];
    let is_name = name.first().is_some_and(|c| c.is_alphabetic() || *c == '_')
        && name.iter().all(|c| c.is_alphanumeric() || *c == '_');
    is_name.then_some(len)
}

/// A `{m}`, `{m,}`, `{m,n}` or `{,n}` at `start`, rewritten, and the index after it.
fn repetition(chars: &[char], start: usize) -> Option<(String, usize)> {
    let close = chars[start..].iter().position(|&c| c == '}')? + start;
    let inner: String = chars[start + 1..close].iter().collect();
    let (low, high) = match inner.split_once(',') {
        Some((low, high)) => (low, Some(high)),
        None => (inner.as_str(), None),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(low)
        || !high.is_none_or(digits)
        || (low.is_empty() && high.is_none_or(str::is_empty))
    {
        return None;
    }
    let low = if low.is_empty() { "0" } else { low };
    let text = match high {
        None => format!("{{{low}}}"),
        Some(high) => format!("{{{low},{high}}}"),
    };
    Some((text, close + 1))
}

/// Copies the class opening at `start` with Python's meaning kept; returns the index after it.
fn copy_class(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` right at the start is a literal in Python.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => {
                out.push(']');
                return i + 1;
            }
            '\\' => {
                out.push('\\');
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
            }
            '[' => {
                out.push_str("\\[");
                i += 1;
            }
            '&' | '~' | '-' if chars.get(i + 1) == Some(&c) => {
                out.push(c);
                out.push('\\');
                out.push(c);
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Unclosed: leave it to the regex compiler to say so.
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_syntax_becomes_rust_syntax() {
        for (python, rust) in [
            (r"\d{,3}", r"\d{0,3}"),
            (r"a{2}b{1,}c{1,2}", r"a{2}b{1,}c{1,2}"),
            (r"^{DATE} x", r"^\{DATE\} x"),
            (r"x{y}", r"x\{y\}"),
            (r"(?P<u>x)?(?(u): |$)", r"(?P<u>x)?(?(<u>): |$)"),
            (r"(b)?(?(1)c|d)", r"(b)?(?(1)c|d)"),
            (r"[^[]+", r"[^\[]+"),
            (r"[]a]", r"[\]a]"),
            (r"[a&&b]", r"[a&\&b]"),
            (r"[\w.-]", r"[\w.-]"),
            (r"end\Z", r"end\z"),
            (r"\<b\>", r"[<]b[>]"),
            (r"(?P<x>a)(?P=x)", r"(?P<x>a)(?P=x)"),
            (r"a*?{", r"a*?\{"),
        ] {
            assert_eq!(python_to_rust(python), rust, "{python}");
            assert!(
                regex::Regex::new(rust).is_ok()
                    || (rust.contains("(?P=") || rust.contains("(?("))
                        && fancy_regex::Regex::new(rust).is_ok(),
                "{rust}"
            );
        }
    }

    #[test]
    fn tags_substitute_innermost_first() {
        let options: HashMap<&str, &str> = HashMap::from([
            ("logtype", "file"),
            ("lt_file/__prefix_line", "P:"),
            ("__prefix_line", "<lt_<logtype>/__prefix_line>"),
            ("loop", "<loop>"),
        ]);
        let lookup = |name: &str| options.get(name).map(|v| v.to_string());
        assert_eq!(
            substitute_tags("^<__prefix_line>x <HOST> (?P<logtype>y)", &lookup).unwrap(),
            "^P:x <HOST> (?P<logtype>y)"
        );
        assert_eq!(
            substitute_tags("<F-USER>\\S+</F-USER> <nope> <CODE>", &lookup).unwrap(),
            "<F-USER>\\S+</F-USER> <nope> [<]CODE>"
        );
        assert!(substitute_tags("<loop>", &lookup).is_err());
    }
}
