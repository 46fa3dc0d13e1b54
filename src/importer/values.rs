//! Fail2Ban's value spellings (time abbreviations, booleans, word lists, `name[key=value]`
//! entries) read into plain values; nothing here knows about logjail.

/// Seconds in one unit of Fail2Ban's time abbreviations (a month is a twelfth of an average
/// year, as Fail2Ban counts it).
fn unit_seconds(unit: &str) -> Option<f64> {
    let unit = unit.to_ascii_lowercase();
    let seconds = match unit.as_str() {
        "s" | "ss" | "se" | "sec" | "second" | "seconds" => 1.0,
        "m" | "mm" | "mi" | "min" | "minute" | "minutes" => 60.0,
        "h" | "hh" | "ho" | "hou" | "hour" | "hours" => 3_600.0,
        "d" | "dd" | "da" | "day" | "days" => 86_400.0,
        "w" | "ww" | "we" | "wee" | "week" | "weeks" => 604_800.0,
        "mo" | "mon" | "month" | "months" => 2_629_800.0,
        "y" | "yy" | "ye" | "yea" | "year" | "years" => 31_557_600.0,
        _ => return None,
    };
    Some(seconds)
}

/// A Fail2Ban time (`600`, `10m`, `1h 30m`, `1d12h`, `-1`, `1year-6mo`) in whole seconds, or
/// `None` when it is not one (Fail2Ban evaluates these as arithmetic; only sums and differences
/// of `NUMBER[UNIT]` terms are taken here).
pub fn seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut total = 0.0f64;
    let mut index = 0;
    let mut sign = 1.0;
    let mut terms = 0;
    while index < bytes.len() {
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        if index >= bytes.len() {
            break;
        }
        match bytes[index] {
            b'+' => {
                sign = 1.0;
                index += 1;
                continue;
            }
            b'-' => {
                sign = -1.0;
                index += 1;
                continue;
            }
            _ => {}
        }
        let start = index;
        while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.') {
            index += 1;
        }
        if start == index {
            return None;
        }
        let number: f64 = text[start..index].parse().ok()?;
        while index < bytes.len() && bytes[index] == b' ' {
            index += 1;
        }
        let unit_start = index;
        while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
            index += 1;
        }
        let multiplier = if unit_start == index {
            1.0
        } else {
            unit_seconds(&text[unit_start..index])?
        };
        total += sign * number * multiplier;
        sign = 1.0;
        terms += 1;
    }
    if terms == 0 || !total.is_finite() || total.abs() > 9.0e15 {
        return None;
    }
    Some(total.round() as i64)
}

/// Fail2Ban's truth values (`true`, `yes`, `on`, `1`, case-insensitive); anything else is false,
/// as Fail2Ban reads it. `None` for an empty value.
pub fn boolean(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    Some(matches!(text.as_str(), "1" | "on" | "true" | "yes"))
}

/// Words separated by blanks, commas or new lines (Fail2Ban's `splitwords`, for `ignoreip`).
pub fn words(text: &str) -> Vec<&str> {
    text.split([' ', ',', '\n', '\t'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect()
}

/// `name[key=value, key="value, with commas"][more=1]`: a filter or action with the options a
/// jail gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub options: Vec<(String, String)>,
}

impl Entry {
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one `name[options]` (Fail2Ban's `extractOptions`); `Err` names what is wrong.
pub fn entry(text: &str) -> Result<Entry, String> {
    let text = text.trim();
    let (name, rest) = match text.find('[') {
        Some(open) => (&text[..open], &text[open..]),
        None => (text, ""),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` has no name before its options"));
    }
    let mut options = Vec::new();
    let mut rest = rest.trim();
    while let Some(inner) = rest.strip_prefix('[') {
        let (parsed, after) = option_group(inner)?;
        options.extend(parsed);
        rest = after.trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("unexpected `{rest}` after the options of `{name}`"));
    }
    Ok(Entry {
        name: name.to_string(),
        options,
    })
}

/// The inside of one `[…]` group: `key=value` pairs, values plain (up to `,` or `]`) or
/// quoted; returns them and what follows the closing `]`.
/// `key=value` pairs in the order written.
type Pairs = Vec<(String, String)>;

fn option_group(text: &str) -> Result<(Pairs, &str), String> {
    let mut options = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(']') {
            return Ok((options, after));
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        let key_end = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after_key) = rest[key_end..].strip_prefix('=') else {
            return Err(format!(
                "expected `key=value` in the options, found `{}`",
                rest.chars().take(25).collect::<String>()
            ));
        };
        if key.is_empty() {
            return Err("an option without a name".to_string());
        }
        let (value, after) = match after_key.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let body = &after_key[1..];
                let Some(end) = body.find(quote) else {
                    return Err(format!("the value of `{key}` has no closing {quote}"));
                };
                (&body[..end], &body[end + 1..])
            }
            _ => {
                let end = after_key.find([',', ']']).unwrap_or(after_key.len());
                (&after_key[..end], &after_key[end..])
            }
        };
        if !after.trim_start().starts_with([',', ']']) {
            return Err(format!("options of `{key}` are not closed with `]`"));
        }
        options.push((key.to_string(), value.trim().to_string()));
        rest = after;
    }
}

/// Splits an `action` value into its entries: each `name[options]` (options may span lines)
/// or a bare word, separated by blanks or new lines (Fail2Ban's `splitWithOptions`).
pub fn split_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        while index < chars.len() && chars[index].is_whitespace() {
            index += 1;
        }
        if index >= chars.len() {
            break;
        }
        let start = index;
        while index < chars.len() && !chars[index].is_whitespace() && chars[index] != '[' {
            index += 1;
        }
        // Options directly after the name, or after blanks: `name [opts]` is one entry too.
        let mut look = index;
        while look < chars.len() && chars[look].is_whitespace() {
            look += 1;
        }
        if look < chars.len() && chars[look] == '[' && look > start {
            index = look;
            while index < chars.len() && chars[index] == '[' {
                let mut quote: Option<char> = None;
                index += 1;
                while index < chars.len() {
                    let c = chars[index];
                    match quote {
                        Some(q) if c == q => quote = None,
                        Some(_) => {}
                        None if c == '"' || c == '\'' => quote = Some(c),
                        None if c == ']' => break,
                        None => {}
                    }
                    index += 1;
                }
                index += 1;
                // `][` continues with another group.
                let mut next = index;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                if next < chars.len() && chars[next] == '[' && next == index {
                    index = next;
                }
            }
        }
        let end = index.min(chars.len());
        entries.push(
            chars[start..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_string(),
        );
    }
    entries.retain(|e| !e.is_empty());
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_fail2ban_counts_them() {
        for (text, want) in [
            ("600", Some(600)),
            ("10m", Some(600)),
            ("1h 30m", Some(5_400)),
            ("1d12h", Some(129_600)),
            ("0d 1h 30m", Some(5_400)),
            ("1hour+30min", Some(5_400)),
            ("-1", Some(-1)),
            ("2592000", Some(2_592_000)),
            ("1w", Some(604_800)),
            ("1mo", Some(2_629_800)),
            ("1year-6mo", Some(15_778_800)),
            ("48h", Some(172_800)),
            ("", None),
            ("soon", None),
            ("10x", None),
        ] {
            assert_eq!(seconds(text), want, "{text:?}");
        }
    }

    #[test]
    fn booleans_and_words() {
        assert_eq!(boolean("True"), Some(true));
        assert_eq!(boolean("on"), Some(true));
        assert_eq!(boolean("false"), Some(false));
        assert_eq!(boolean("maybe"), Some(false));
        assert_eq!(boolean(" "), None);
        assert_eq!(
            words("127.0.0.1/8 ::1,192.168.9.0/24\n10.0.0.1"),
            ["127.0.0.1/8", "::1", "192.168.9.0/24", "10.0.0.1"]
        );
    }

    #[test]
    fn entries_with_options() {
        let parsed =
            entry(r#"iptables-multiport[name=sshd, port="ssh,2222", protocol='tcp']"#).unwrap();
        assert_eq!(parsed.name, "iptables-multiport");
        assert_eq!(parsed.option("port"), Some("ssh,2222"));
        assert_eq!(parsed.option("protocol"), Some("tcp"));
        let grouped = entry("act[a=1][b=2, a=3]").unwrap();
        assert_eq!(grouped.option("a"), Some("3"));
        assert_eq!(grouped.option("b"), Some("2"));
        assert_eq!(entry("sshd").unwrap().options, []);
        assert!(entry("[x=1]").is_err());
        assert!(entry("a[x]").is_err());
        assert!(entry("a[x=\"1]").is_err());
    }

    #[test]
    fn action_values_split_into_entries() {
        let text = "iptables-multiport[name=sshd, port=\"ssh\",\n   protocol=\"tcp\"]\n  sendmail-whois[name=sshd, dest=\"root\"]\ndummy";
        assert_eq!(
            split_entries(text),
            [
                "iptables-multiport[name=sshd, port=\"ssh\",\n   protocol=\"tcp\"]",
                "sendmail-whois[name=sshd, dest=\"root\"]",
                "dummy"
            ]
        );
        assert_eq!(
            split_entries("a[x=1][y=2] b [z=\"] [\"]"),
            ["a[x=1][y=2]", "b [z=\"] [\"]"]
        );
    }
}
