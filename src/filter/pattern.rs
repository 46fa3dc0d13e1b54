//! Fail2Ban's tags (`<HOST>`, `<F-USER>…</F-USER>`, …) expanded into plain regex syntax.
//!
//! `<HOST>` only ever captures an IP address: Fail2Ban also accepts host names and resolves
//! them, which lets whoever controls a log line (or a PTR record) choose what gets banned.

use std::fmt;

/// Capture group that holds the failure's address.
pub const HOST_GROUP: &str = "host";
/// Capture group of the other family's tag when a pattern has both `<IP4>` and `<IP6>` (as
/// Fail2Ban's `(?:IPv6:<IP6>|<IP4>)` does, where each names its own group).
pub const OTHER_FAMILY_HOST_GROUP: &str = "host_other_family";
/// Capture group of `<F-USER>`.
pub const USER_GROUP: &str = "user";
/// Capture group of `<F-ID>`.
pub const ID_GROUP: &str = "fid";
/// Capture group of `<F-CONTENT>` in a prefregex.
pub const CONTENT_GROUP: &str = "content";
/// Capture group of Fail2Ban's `<F-NOFAIL>`: a line whose match takes part in it is no failure.
pub const NOFAIL_GROUP: &str = "nofail";
/// Capture group of Fail2Ban's `<F-MLFID>`: the session a line belongs to.
pub const MLFID_GROUP: &str = "mlfid";
/// Capture group of Fail2Ban's `<F-MLFFORGET>`: the session ends with this line.
pub const MLFFORGET_GROUP: &str = "mlfforget";
/// Capture group of Fail2Ban's `<F-MLFGAINED>`: the session logged in; no failure.
pub const MLFGAINED_GROUP: &str = "mlfgained";
/// Capture group of Fail2Ban's `<F-ALT_USER>`: the user when `<F-USER>` captured none.
pub const ALT_USER_GROUP: &str = "alt_user";
/// Capture group of `<SKIPLINES>`: the lines of a multi-line match (`maxlines` above 1) that
/// are not part of the failure, and stay for later matches.
pub const SKIPLINES_GROUP: &str = "skiplines";

/// Dotted quad; the address is checked by parsing after the match, so the regex may be loose.
const IPV4: &str = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}";
/// Any run of hex groups with at least two colons, optionally ending in a dotted quad
/// (`::ffff:1.2.3.4`). Loose on purpose, parsing rejects what is not an address.
const IPV6: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?";

/// What a tag expansion found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// `%(name)s` from Fail2Ban's ini files.
    Interpolation(String),
    UnsupportedTag(String),
    UnclosedField(String),
    RepeatedTag(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Interpolation(name) => write!(
                f,
                "Fail2Ban interpolation `%({name})s` is not supported: logjail removes syslog \
                 prefixes and timestamps itself, write the pattern against the bare message"
            ),
            PatternError::UnsupportedTag(tag) => write!(f, "tag `<{tag}>` is not supported"),
            PatternError::UnclosedField(name) => {
                write!(f, "`<F-{name}>` is not closed by `</F-{name}>`")
            }
            PatternError::RepeatedTag(tag) => {
                write!(f, "`{tag}` appears more than once; one address per pattern")
            }
        }
    }
}

/// A pattern with its tags expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub regex: String,
    /// Whether the pattern captures an address (`<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>`).
    pub has_host: bool,
}

/// Expands the tags of one failregex, ignoreregex or prefregex.
pub fn expand(pattern: &str) -> Result<Expanded, PatternError> {
    if let Some(start) = pattern.find("%(") {
        let name: String = pattern[start + 2..]
            .chars()
            .take_while(|&c| c != ')')
            .collect();
        return Err(PatternError::Interpolation(name));
    }
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut has_host = false;
    let mut host_tags: Vec<&'static str> = Vec::new();
    let mut open_fields: Vec<String> = Vec::new();
    let mut skiplines = false;
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        // A `<` escaped with a backslash is a literal; tags are only recognised in their exact
        // uppercase spellings, so `(?P<name>…)` passes through.
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let tag = &after[..close];
        let preceded_by_backslash = rest[..open].ends_with('\\');
        // `(?P<USER>…)` is a group name, however it is spelled.
        let group_name = rest[..open].ends_with("(?P") || rest[..open].ends_with("(?");
        let replacement = if preceded_by_backslash || group_name || !is_tag_name(tag) {
            None
        } else if tag == "SKIPLINES" {
            // Fail2Ban's: the lines between two parts of a multi-line match, as few as
            // will do. Only a filter with `maxlines` above 1 gives it several lines.
            if std::mem::replace(&mut skiplines, true) {
                return Err(PatternError::RepeatedTag("<SKIPLINES>".to_string()));
            }
            Some(format!(r"\n(?P<{SKIPLINES_GROUP}>(?:.*\n)*?)"))
        } else {
            Some(expand_tag(tag, &mut host_tags, &mut open_fields)?)
        };
        match replacement {
            Some(text) => {
                out.push_str(&text);
                rest = &after[close + 1..];
            }
            None => {
                // Only the `<` is literal: a tag may follow right after it (`user=<<F-USER>`).
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    has_host |= !host_tags.is_empty();
    if let Some(name) = open_fields.pop() {
        return Err(PatternError::UnclosedField(name));
    }
    Ok(Expanded {
        regex: out,
        has_host,
    })
}

fn is_tag_name(tag: &str) -> bool {
    let name = tag.strip_prefix('/').unwrap_or(tag);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
}

fn expand_tag(
    tag: &str,
    host_tags: &mut Vec<&'static str>,
    open_fields: &mut Vec<String>,
) -> Result<String, PatternError> {
    // One address per pattern, so that which one is banned never depends on what else a line
    // holds. The exception is one `<IP4>` with one `<IP6>`, Fail2Ban's way of writing
    // alternatives (`(?:IPv6:<IP6>|<IP4>)`); should both take part, the first written wins.
    let mut host = |kind: &'static str, body: String| -> Result<String, PatternError> {
        let group = match host_tags.as_slice() {
            [] => HOST_GROUP,
            ["IP4"] if kind == "IP6" => OTHER_FAMILY_HOST_GROUP,
            ["IP6"] if kind == "IP4" => OTHER_FAMILY_HOST_GROUP,
            _ => return Err(PatternError::RepeatedTag(format!("<{tag}>"))),
        };
        host_tags.push(kind);
        Ok(format!("(?P<{group}>{body})"))
    };
    match tag {
        // Fail2Ban's `<HOST>` takes an address in brackets whatever its family (asterisk's
        // `(TCP:[192.0.2.1]:5060)`), each bracket optional as there (monitorix's `<ADDR>\b`
        // ends before the `]`); they are dropped when the capture is parsed.
        "HOST" | "ADDR" => host("HOST", format!(r"\[?(?:{IPV4}|{IPV6})\]?")),
        "IP4" => host("IP4", IPV4.to_string()),
        "IP6" => host("IP6", format!(r"\[{IPV6}\]|{IPV6}")),
        _ => {
            if let Some(name) = tag.strip_prefix("F-") {
                open_fields.push(name.to_string());
                let group = field_group(name);
                if group == HOST_GROUP {
                    return Err(PatternError::UnsupportedTag(format!("F-{name}")));
                }
                Ok(format!("(?P<{group}>"))
            } else if let Some(name) = tag.strip_prefix("/F-") {
                match open_fields.pop() {
                    Some(open) if open == name => Ok(")".to_string()),
                    _ => Err(PatternError::UnsupportedTag(tag.to_string())),
                }
            } else {
                Err(PatternError::UnsupportedTag(tag.to_string()))
            }
        }
    }
}

/// `<F-USER>` → `user`, `<F-ID>` → `fid`, `<F-ALT_USER>` → `alt_user`.
fn field_group(name: &str) -> String {
    match name {
        "USER" => USER_GROUP.to_string(),
        "ID" => ID_GROUP.to_string(),
        "CONTENT" => CONTENT_GROUP.to_string(),
        other => other.to_ascii_lowercase().replace('-', "_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn host_of(pattern: &str, line: &str) -> Option<String> {
        let expanded = expand(pattern).unwrap();
        let regex = Regex::new(&expanded.regex).unwrap();
        regex
            .captures(line)
            .and_then(|c| c.name(HOST_GROUP))
            .map(|m| m.as_str().to_string())
    }

    #[test]
    fn host_matches_both_families_and_brackets() {
        let pattern = r"^from <HOST> port \d+$";
        assert_eq!(
            host_of(pattern, "from 1.2.3.4 port 22").as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            host_of(pattern, "from 2001:db8::1 port 22").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(host_of(pattern, "from ::1 port 22").as_deref(), Some("::1"));
        assert_eq!(
            host_of(pattern, "from [2001:db8::1] port 22").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(
            host_of(pattern, "from [1.2.3.4] port 22").as_deref(),
            Some("[1.2.3.4]")
        );
        assert_eq!(
            host_of(r"^\(<HOST>\b", "(1.2.3.4]").as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            host_of(pattern, "from ::ffff:10.0.0.1 port 22").as_deref(),
            Some("::ffff:10.0.0.1")
        );
        assert_eq!(host_of(pattern, "from evil.example.com port 22"), None);
        assert_eq!(host_of(r"^<IP4>$", "2001:db8::1"), None);
        assert_eq!(host_of(r"^<IP6>$", "1.2.3.4"), None);
    }

    #[test]
    fn fields_become_named_groups() {
        let expanded = expand(
            r"^user <F-USER>\S+</F-USER> id <F-ID>\d+</F-ID> <F-ALT_USER>x</F-ALT_USER> <ADDR>$",
        )
        .unwrap();
        assert!(expanded.has_host);
        let regex = Regex::new(&expanded.regex).unwrap();
        let caps = regex.captures("user bob id 42 x 1.2.3.4").unwrap();
        assert_eq!(&caps[USER_GROUP], "bob");
        assert_eq!(&caps[ID_GROUP], "42");
        assert_eq!(&caps["alt_user"], "x");
    }

    #[test]
    fn literals_and_named_groups_pass_through() {
        let upper = expand(r"^(?P<USER>\w+) (?<CODE>\d) (?P=USER) <HOST>$").unwrap();
        assert!(
            upper
                .regex
                .starts_with(r"^(?P<USER>\w+) (?<CODE>\d) (?P=USER) (?P<host>")
        );
        let expanded = expand(r"^(?P<word>\w+) \<HOST> <html> <HOST>$").unwrap();
        assert_eq!(expanded.regex.matches("(?P<host>").count(), 1);
        assert!(
            expanded
                .regex
                .starts_with(r"^(?P<word>\w+) \<HOST> <html> ")
        );
    }

    #[test]
    fn a_tag_right_after_a_literal_angle_bracket() {
        let expanded = expand(r"^user=<<F-USER>[^>]*</F-USER>> rip=<HOST>$").unwrap();
        let regex = Regex::new(&expanded.regex).unwrap();
        let caps = regex.captures("user=<bob> rip=192.0.2.1").unwrap();
        assert_eq!(&caps[USER_GROUP], "bob");
        assert_eq!(&caps[HOST_GROUP], "192.0.2.1");
    }

    #[test]
    fn errors() {
        assert!(
            matches!(expand("%(__prefix_line)s x <HOST>"), Err(PatternError::Interpolation(n)) if n == "__prefix_line")
        );
        assert!(matches!(
            expand("<HOST> <HOST>"),
            Err(PatternError::RepeatedTag(_))
        ));
        assert!(matches!(
            expand("<IP4> <IP4>"),
            Err(PatternError::RepeatedTag(_))
        ));
        assert!(matches!(
            expand("(?:<IP6>|<IP4>) <IP6>"),
            Err(PatternError::RepeatedTag(_))
        ));
        assert!(matches!(
            expand("<F-USER>x <HOST>"),
            Err(PatternError::UnclosedField(_))
        ));
        let skipping = expand(r"^a\d<SKIPLINES>b <HOST>$").unwrap();
        let regex = Regex::new(&format!("(?m){}", skipping.regex)).unwrap();
        let caps = regex.captures("a1\nx\ny\nb 192.0.2.1\n").unwrap();
        assert_eq!(&caps[SKIPLINES_GROUP], "x\ny\n");
        assert_eq!(&caps[HOST_GROUP], "192.0.2.1");
        assert!(matches!(
            expand("<SKIPLINES>a<SKIPLINES><HOST>"),
            Err(PatternError::RepeatedTag(_))
        ));
        assert!(matches!(
            expand("<DNS>"),
            Err(PatternError::UnsupportedTag(_))
        ));
        assert!(!expand("no host here").unwrap().has_host);
    }
}
