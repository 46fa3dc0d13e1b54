//! The bans an import found (addresses a Fail2Ban action kept in a file), written as a small
//! text file that `logjail import-bans` applies once through the running daemon.
//!
//! One `JAIL ADDRESS` per line; `#` starts a comment. Applying goes through the control socket
//! like `logjail ban`, so each ban passes the jail's ignore list, reaches the firewall and the
//! store, and an address already banned is left as it is: applying the file again changes
//! nothing while its bans last.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::ImportedBan;

/// The file's text.
pub fn write(bans: &[ImportedBan]) -> String {
    let mut out = String::from(
        "# Bans imported from Fail2Ban by `logjail import-fail2ban`: JAIL ADDRESS, one per line.\n\
         # Apply them once logjail runs the imported configuration: logjail import-bans THIS-FILE\n",
    );
    for ban in bans {
        let _ = writeln!(out, "{} {}  # {}", ban.jail, ban.ip, ban.at);
    }
    out
}

/// A line that is not `JAIL ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct BanLineError {
    pub line: usize,
    pub message: String,
}

/// Reads the file's text: `(jail, address)` pairs, or every line at fault.
pub fn parse(text: &str) -> Result<Vec<(String, IpAddr)>, Vec<BanLineError>> {
    let mut bans = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        match words.as_slice() {
            [jail, address] => match crate::address::parse_client(address) {
                Ok(ip) => bans.push((jail.to_string(), ip)),
                Err(error) => errors.push(BanLineError {
                    line: line_number,
                    message: error.to_string(),
                }),
            },
            _ => errors.push(BanLineError {
                line: line_number,
                message: format!("expected `JAIL ADDRESS`, found `{content}`"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(bans)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::SourceLine;
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn written_bans_read_back() {
        let at = SourceLine {
            file: Arc::from(Path::new("/etc/fail2ban/ip.blacklist")),
            line: 3,
        };
        let bans = [
            ImportedBan {
                jail: "blacklist".into(),
                ip: "203.0.113.7".parse().unwrap(),
                at: at.clone(),
            },
            ImportedBan {
                jail: "blacklist".into(),
                ip: "2001:db8::7".parse().unwrap(),
                at,
            },
        ];
        let text = write(&bans);
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            ("blacklist".to_string(), "2001:db8::7".parse().unwrap())
        );
        let errors = parse("blacklist 1.2.3.4\njust-one\nblacklist 0.0.0.0\n").unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
    }
}
