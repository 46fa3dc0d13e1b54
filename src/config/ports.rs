//! The ports and protocol a ban blocks: `all`, `22`, `8000:8100`, or a service name.

use std::fmt;

use serde::Deserialize;

/// Which destination ports a ban blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Every port (and, with `protocol: all`, every packet) from the banned host.
    All,
    /// Only these ports; never empty.
    List(Vec<PortRange>),
}

/// An inclusive range of ports; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// Lowest port of the range, at least 1.
    pub first: u16,
    /// Highest port of the range, at least `first`.
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            // The iptables multiport spelling, which is also what users write.
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// Which transport protocol a ban blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// With a port list: both TCP and UDP; with `ports: all`: every packet.
    All,
}

/// Service names accepted in `ports:`, a small fixed table so that the result never depends
/// on the host's `/etc/services`.
const SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("sftp", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("dns", 53),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("imap", 143),
    ("imap2", 143),
    ("ldap", 389),
    ("https", 443),
    ("smtps", 465),
    ("submission", 587),
    ("ldaps", 636),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("rdp", 3389),
    ("postgresql", 5432),
    ("sip", 5060),
    ("sips", 5061),
    ("vnc", 5900),
    ("redis", 6379),
    ("http-alt", 8080),
];

/// The port of a service name from the built-in table.
pub fn service_port(name: &str) -> Option<u16> {
    SERVICES
        .iter()
        .find(|(service, _)| service.eq_ignore_ascii_case(name))
        .map(|(_, port)| *port)
}

/// The service names `ports:` understands.
pub fn service_names() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().map(|(name, _)| *name)
}

fn parse_port(text: &str) -> Result<u16, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty port".to_string());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(0) => Err("port 0 cannot be blocked; ports start at 1".to_string()),
            Ok(port) => {
                u16::try_from(port).map_err(|_| format!("port {text} is out of range (1 to 65535)"))
            }
            Err(_) => Err(format!("port {text} is out of range (1 to 65535)")),
        };
    }
    service_port(text).ok_or_else(|| {
        format!(
            "unknown service `{text}` (use a port number or one of: {})",
            service_names().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Parses one entry of `ports:`: `22`, `ssh` or a range `8000:8100`.
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let (first, last) = match text.split_once(':') {
        Some((first, last)) => (parse_port(first)?, parse_port(last)?),
        None => {
            let port = parse_port(text)?;
            (port, port)
        }
    };
    if first > last {
        return Err(format!(
            "range `{}` runs backwards; write the lower port first",
            text.trim()
        ));
    }
    Ok(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_services_and_ranges() {
        assert_eq!(
            parse_port_range("22").unwrap(),
            PortRange {
                first: 22,
                last: 22
            }
        );
        assert_eq!(parse_port_range("https").unwrap().first, 443);
        assert_eq!(parse_port_range("SSH").unwrap().first, 22);
        assert_eq!(
            parse_port_range("8000:8100").unwrap(),
            PortRange {
                first: 8000,
                last: 8100
            }
        );
        assert_eq!(
            parse_port_range("http:8080").unwrap(),
            PortRange {
                first: 80,
                last: 8080
            }
        );
    }

    #[test]
    fn refuses_zero_overflow_unknown_names_and_backward_ranges() {
        assert!(parse_port_range("0").unwrap_err().contains("port 0"));
        assert!(
            parse_port_range("65536")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_port_range("99999999999")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_port_range("gopher")
                .unwrap_err()
                .contains("unknown service")
        );
        assert!(
            parse_port_range("100:10")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(parse_port_range("10:").is_err());
    }

    #[test]
    fn displays_like_iptables() {
        assert_eq!(parse_port_range("22").unwrap().to_string(), "22");
        assert_eq!(
            parse_port_range("1000:2000").unwrap().to_string(),
            "1000:2000"
        );
    }
}
