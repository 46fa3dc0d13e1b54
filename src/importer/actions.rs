//! A jail's Fail2Ban actions sorted into what logjail does instead: a firewall verdict (the
//! iptables, ipset and nftables families), nothing (mail, whois, `dummy`), or a custom command
//! that logjail never runs but can suggest as a `command:` notification.

use std::path::{Path, PathBuf};

use crate::config::action::{FirewallAction, RejectWith};
use crate::config::ini::{IniError, SourceLine};
use crate::config::jail::Chain;

use super::definition::Definition;
use super::report::Report;
use super::values::Entry;

/// The firewall files of Fail2Ban whose commands logjail's own firewall replaces. An action
/// whose `actionban` is written in one of them bans the way logjail does.
const FIREWALL_FILES: &[&str] = &[
    "iptables.conf",
    "iptables-multiport.conf",
    "iptables-allports.conf",
    "iptables-new.conf",
    "iptables-ipset.conf",
    "iptables-ipset-proto4.conf",
    "iptables-ipset-proto6.conf",
    "iptables-ipset-proto6-allports.conf",
    "iptables-multiport-log.conf",
    "nftables.conf",
    "nftables-multiport.conf",
    "nftables-allports.conf",
];

/// What one firewall action of a jail bans.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallPart {
    /// `None` when its `blocktype` has no logjail counterpart (reported).
    pub verdict: Option<FirewallAction>,
    /// `None`: every port; else the port words as Fail2Ban wrote them (`ssh`, `8000:8100`).
    pub ports: Option<Vec<String>>,
    /// Transport protocols named (`tcp`, `udp`; empty for anything else).
    pub protocols: Vec<String>,
    /// `None` when the chain has no logjail counterpart (reported).
    pub chain: Option<Chain>,
}

/// An action whose ban keeps an address file (`echo <ip> >> /etc/fail2ban/ip.blacklist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFile {
    /// The path as the action writes it.
    pub written: PathBuf,
    /// Where the `actionban` doing it is.
    pub at: SourceLine,
}

/// One action of a jail, classified.
#[derive(Debug, Default)]
pub struct Classified {
    pub firewall: Option<FirewallPart>,
    pub address_file: Option<AddressFile>,
}

/// Classifies the action `entry` of jail `jail`, reporting what carries over.
pub fn classify(
    dir: &Path,
    jail: &str,
    entry: &Entry,
    at: &SourceLine,
    report: &mut Report,
) -> Result<Classified, IniError> {
    let scope = format!("[{jail}]");
    // Jails that use one action twice (tcp and udp) tell them apart by name.
    let setting = match entry.option("name") {
        Some(name) if name != jail => format!("action {} ({name})", entry.name),
        _ => format!("action {}", entry.name),
    };
    if entry.name.ends_with(".py") {
        report.not_mapped(
            Some(at),
            &scope,
            &setting,
            "a Python action; logjail runs no Fail2Ban action code (a `command:` or `webhook:` \
             notification can take its place)",
        );
        return Ok(Classified::default());
    }
    let mut passed = entry.options.clone();
    if !passed.iter().any(|(key, _)| key == "name") {
        // Fail2Ban hands every action its jail's name unless told otherwise.
        passed.push(("name".to_string(), jail.to_string()));
    }
    let Some(action) = Definition::read(dir, "action.d", &entry.name, &passed, at)? else {
        report.not_mapped(
            Some(at),
            &scope,
            &setting,
            format!(
                "no action.d/{}.conf or .local under {} (Fail2Ban refuses such a jail)",
                entry.name,
                dir.display()
            ),
        );
        return Ok(Classified::default());
    };
    let files: Vec<String> = action.file_names().collect();
    let ban = action.resolved("actionban")?;
    let ban_is_stock = ban
        .as_ref()
        .and_then(|value| value.at.file.file_name())
        .is_some_and(|name| FIREWALL_FILES.iter().any(|f| name == *f));
    let family = if files.iter().any(|f| f == "iptables.conf") {
        Some(Family::Iptables)
    } else if files.iter().any(|f| f == "nftables.conf") {
        Some(Family::Nftables)
    } else {
        None
    };
    let mut classified = Classified::default();
    if let Some(family) = family {
        classified.firewall = Some(firewall_part(
            &action, family, &scope, &setting, at, report,
        )?);
        if entry.name == "iptables-multiport-log" {
            report.approximate(
                Some(at),
                &scope,
                &setting,
                "Fail2Ban also writes a kernel LOG line per blocked packet; logjail logs each ban \
                 and unban instead (no per-packet log)",
            );
        }
    }
    let ban_lines: Vec<String> = ban
        .as_ref()
        .map(|value| {
            value
                .text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let ban_at = ban.as_ref().map(|value| value.at.clone());
    if family.is_some() && ban_is_stock {
        return Ok(classified);
    }
    if let Some(written) = ban_lines.iter().find_map(|line| address_file_of(line)) {
        classified.address_file = Some(AddressFile {
            written,
            at: ban_at.clone().unwrap_or_else(|| at.clone()),
        });
    }
    let name = entry.name.as_str();
    if is_mail(name) {
        let whois = if name.contains("whois") {
            " and a whois look-up"
        } else {
            ""
        };
        report.not_mapped(
            Some(at),
            &scope,
            &setting,
            format!(
                "mail on ban{whois}: logjail sends no mail; a notification can, e.g. \
                 `command: {{argv: [/usr/local/bin/mail-ban, \"<jail>\", \"<ip>\", \"<failures>\"], on: [ban]}}` \
                 or a `webhook:` to your chat"
            ),
        );
        return Ok(classified);
    }
    if name == "dummy" {
        report.not_mapped(
            Some(at),
            &scope,
            &setting,
            "does nothing (Fail2Ban's test action); nothing to carry over",
        );
        return Ok(classified);
    }
    if ban_lines.is_empty() {
        if family.is_none() {
            report.not_mapped(
                Some(at),
                &scope,
                &setting,
                "has no actionban; nothing to carry over",
            );
        }
        return Ok(classified);
    }
    let kind = if family.is_some() {
        "its own actionban replaces the firewall family's"
    } else {
        "a custom action"
    };
    for line in &ban_lines {
        if family.is_some() && is_firewall_command(line) {
            report.mapped(
                ban_at.as_ref(),
                &scope,
                format!("{setting} actionban `{line}`"),
                "the ban in the firewall itself: logjail's firewall does it (see the verdict above)",
            );
            continue;
        }
        let message = match (&classified.address_file, address_file_of(line)) {
            (Some(file), Some(_)) => format!(
                "keeps banned addresses in {}: logjail keeps its bans in its store instead (they \
                 survive restarts), and the addresses already in that file are imported once \
                 (see the summary). Fail2Ban bans the whole file again at every start, for good; \
                 logjail bans each address for the jail's bantime (`bantime: -1` makes that \
                 permanent)",
                file.written.display()
            ),
            _ => format!(
                "{kind}; logjail never runs Fail2Ban's shell commands. {}",
                suggestion(line)
            ),
        };
        report.not_mapped(
            ban_at.as_ref(),
            &scope,
            format!("{setting} actionban `{line}`"),
            message,
        );
    }
    Ok(classified)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Iptables,
    Nftables,
}

/// Whether `line` runs iptables, ip6tables, ipset or nft: what logjail's own firewall does.
fn is_firewall_command(line: &str) -> bool {
    let program = line.split_whitespace().next().unwrap_or("");
    let program = program.rsplit('/').next().unwrap_or(program);
    matches!(program, "iptables" | "ip6tables" | "ipset" | "nft")
}

fn is_mail(name: &str) -> bool {
    name.starts_with("mail") || name.starts_with("sendmail") || name == "complain"
}

/// Verdict, ports, protocols and chain of an iptables or nftables action.
fn firewall_part(
    action: &Definition,
    family: Family,
    scope: &str,
    setting: &str,
    at: &SourceLine,
    report: &mut Report,
) -> Result<FirewallPart, IniError> {
    let text = |name: &str| -> Result<Option<String>, IniError> {
        Ok(action
            .resolved(name)?
            .map(|value| value.text.trim().to_string()))
    };
    let blocktype_value = action.resolved("blocktype")?;
    let blocktype = blocktype_value
        .as_ref()
        .map(|v| v.text.trim().to_string())
        .unwrap_or_default();
    let verdict = match family {
        Family::Iptables => iptables_verdict(&blocktype),
        Family::Nftables => nftables_verdict(&blocktype),
    };
    let blocktype_at = blocktype_value.map(|value| value.at);
    match verdict {
        Some(verdict) => report.mapped(
            blocktype_at.as_ref().or(Some(at)),
            scope,
            format!("{setting} blocktype = {blocktype}"),
            format!("action: {verdict}"),
        ),
        None => report.not_mapped(
            blocktype_at.as_ref().or(Some(at)),
            scope,
            format!("{setting} blocktype = {blocktype}"),
            "logjail's verdicts are drop, reject and reject-with TYPE; the jail is imported with \
             `action: log` (bans are decided and logged, nothing is blocked) until you choose one",
        ),
    }
    let all_ports = text("type")?.as_deref() == Some("allports");
    let ports = if all_ports {
        None
    } else {
        let port = text("port")?.unwrap_or_default();
        let words: Vec<String> = port
            .split([',', ' '])
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        if words.is_empty() || words.iter().any(|w| w == "0:65535" || w == "1:65535") {
            None
        } else {
            Some(words)
        }
    };
    let protocols: Vec<String> = text("protocol")?
        .unwrap_or_default()
        .split([',', ' '])
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    let chain_option = match family {
        Family::Iptables => "chain",
        Family::Nftables => "chain_hook",
    };
    let chain_value = action.resolved(chain_option)?;
    let chain_text = chain_value
        .as_ref()
        .map(|v| v.text.trim().to_string())
        .unwrap_or_default();
    let chain_at = chain_value.map(|value| value.at);
    let chain = match chain_text.to_ascii_uppercase().as_str() {
        "INPUT" => {
            report.mapped(
                chain_at.as_ref().or(Some(at)),
                scope,
                format!("{setting} {chain_option} = {chain_text}"),
                "chains: [input]",
            );
            Some(Chain::Input)
        }
        "DOCKER-USER" => {
            report.mapped(
                chain_at.as_ref().or(Some(at)),
                scope,
                format!("{setting} {chain_option} = {chain_text}"),
                "chains: [docker-user]",
            );
            Some(Chain::DockerUser)
        }
        "FORWARD" => {
            report.approximate(
                chain_at.as_ref().or(Some(at)),
                scope,
                format!("{setting} {chain_option} = {chain_text}"),
                "chains: [docker-user]: logjail bans forwarded traffic in DOCKER-USER, which \
                 FORWARD jumps to first (containers' published ports); other forwarded traffic \
                 is not banned",
            );
            Some(Chain::DockerUser)
        }
        _ => {
            report.not_mapped(
                chain_at.as_ref().or(Some(at)),
                scope,
                format!("{setting} {chain_option} = {chain_text}"),
                "logjail bans in INPUT and DOCKER-USER only; the jail uses both",
            );
            None
        }
    };
    Ok(FirewallPart {
        verdict,
        ports,
        protocols,
        chain,
    })
}

/// `DROP`, `REJECT`, `REJECT --reject-with TYPE` (IPv6 spellings read as their IPv4 twins).
fn iptables_verdict(blocktype: &str) -> Option<FirewallAction> {
    let words: Vec<&str> = blocktype.split_whitespace().collect();
    match words.as_slice() {
        [drop] if drop.eq_ignore_ascii_case("DROP") => Some(FirewallAction::Drop),
        [reject] if reject.eq_ignore_ascii_case("REJECT") => {
            Some(FirewallAction::Reject(RejectWith::IcmpPortUnreachable))
        }
        [reject, flag, kind]
            if reject.eq_ignore_ascii_case("REJECT") && *flag == "--reject-with" =>
        {
            reject_type(kind).map(FirewallAction::Reject)
        }
        _ => None,
    }
}

/// nftables' `drop`, `reject`, `reject with icmp type X` / `reject with tcp reset`.
fn nftables_verdict(blocktype: &str) -> Option<FirewallAction> {
    let words: Vec<&str> = blocktype.split_whitespace().collect();
    match words.as_slice() {
        ["drop"] => Some(FirewallAction::Drop),
        ["reject"] => Some(FirewallAction::Reject(RejectWith::IcmpPortUnreachable)),
        ["reject", "with", "tcp", "reset"] => Some(FirewallAction::Reject(RejectWith::TcpReset)),
        ["reject", "with", "icmp" | "icmpx" | "icmpv6", "type", kind] => {
            reject_type(&format!("icmp-{kind}")).map(FirewallAction::Reject)
        }
        _ => None,
    }
}

fn reject_type(kind: &str) -> Option<RejectWith> {
    let kind = kind.replace("icmp6-adm-prohibited", "icmp-host-prohibited");
    let kind = match kind.as_str() {
        "icmp6-port-unreachable" | "port-unreachable" => "icmp-port-unreachable",
        "icmp6-addr-unreachable" | "icmp6-no-route" => "icmp-host-unreachable",
        other => other,
    };
    RejectWith::parse(kind).ok()
}

/// The file an `echo <ip> >> FILE` line appends the banned address to.
fn address_file_of(line: &str) -> Option<PathBuf> {
    let (before, after) = line.split_once(">>")?;
    let writes_ip = before.contains("<ip>")
        && (before.trim_start().starts_with("echo") || before.trim_start().starts_with("printf"));
    if !writes_ip {
        return None;
    }
    let target = after
        .split_whitespace()
        .next()?
        .trim_matches(|c| c == '"' || c == '\'' || c == ';');
    target.starts_with('/').then(|| PathBuf::from(target))
}

/// Fail2Ban's ban-time tags and the logjail placeholders that say the same.
const TAGS: &[(&str, &str)] = &[
    ("<ip>", "<ip>"),
    ("<failures>", "<failures>"),
    ("<bantime>", "<bantime>"),
    ("<bancount>", "<ban_count>"),
    ("<matches>", "<matches>"),
    ("<ipmatches>", "<matches>"),
    ("<ipjailmatches>", "<matches>"),
    ("<time>", "<time>"),
];

/// A `command:` notification that runs what `line` runs, when it is a plain program call; else
/// how to get there.
fn suggestion(line: &str) -> String {
    let mut words = Vec::new();
    let mut plain = true;
    for word in line.split_whitespace() {
        let mut translated = word.to_string();
        for (tag, placeholder) in TAGS {
            translated = translated.replace(tag, placeholder);
        }
        let mut probe = translated.clone();
        for (_, placeholder) in TAGS {
            probe = probe.replace(placeholder, "");
        }
        if probe.contains(|c: char| "|&;<>()$`\\\"'*?{}[]~".contains(c)) {
            plain = false;
        }
        words.push(translated);
    }
    if plain
        && words
            .first()
            .is_some_and(|program| program.starts_with('/'))
    {
        let argv: Vec<String> = words
            .iter()
            .map(|w| serde_json::to_string(w).unwrap_or_else(|_| w.clone()))
            .collect();
        format!(
            "As a notification: `command: {{argv: [{}], on: [ban]}}` (each placeholder fills one argument; <time> is RFC 3339 there, not seconds since 1970)",
            argv.join(", ")
        )
    } else {
        "It uses the shell (pipes, redirections, variables or quoting) or no absolute program \
         path: put it in a script and call that, e.g. `command: {argv: [/usr/local/bin/on-ban, \
         \"<jail>\", \"<ip>\"], on: [ban]}`"
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocktypes_to_verdicts() {
        assert_eq!(iptables_verdict("DROP"), Some(FirewallAction::Drop));
        assert_eq!(
            iptables_verdict("REJECT --reject-with icmp-port-unreachable"),
            Some(FirewallAction::Reject(RejectWith::IcmpPortUnreachable))
        );
        assert_eq!(
            iptables_verdict("REJECT --reject-with tcp-reset"),
            Some(FirewallAction::Reject(RejectWith::TcpReset))
        );
        assert_eq!(
            iptables_verdict("REJECT --reject-with icmp6-port-unreachable"),
            Some(FirewallAction::Reject(RejectWith::IcmpPortUnreachable))
        );
        assert_eq!(iptables_verdict("RETURN"), None);
        assert_eq!(iptables_verdict("LOG --log-prefix x"), None);
        assert_eq!(nftables_verdict("drop"), Some(FirewallAction::Drop));
        assert_eq!(
            nftables_verdict("reject with tcp reset"),
            Some(FirewallAction::Reject(RejectWith::TcpReset))
        );
        assert_eq!(
            nftables_verdict("reject with icmp type host-unreachable"),
            Some(FirewallAction::Reject(RejectWith::IcmpHostUnreachable))
        );
    }

    #[test]
    fn address_files_are_found_in_echo_lines() {
        assert_eq!(
            address_file_of("echo <ip> >> /etc/fail2ban/ip.blacklist"),
            Some(PathBuf::from("/etc/fail2ban/ip.blacklist"))
        );
        assert_eq!(
            address_file_of("echo \"<ip>\" >>\"/var/lib/f2b/list\""),
            Some(PathBuf::from("/var/lib/f2b/list"))
        );
        assert_eq!(address_file_of("iptables -I f2b 1 -s <ip> -j DROP"), None);
        assert_eq!(address_file_of("cat /x >> /y"), None);
    }

    #[test]
    fn plain_commands_become_notifications_and_shell_ones_a_script() {
        let plain = suggestion("/usr/local/bin/notify <ip> sshd <failures>");
        assert!(
            plain.contains(r#"argv: ["/usr/local/bin/notify", "<ip>", "sshd", "<failures>"]"#),
            "{plain}"
        );
        let shell = suggestion("curl -s https://x/?ip=<ip> | logger");
        assert!(shell.contains("put it in a script"), "{shell}");
        let relative = suggestion("notify <ip>");
        assert!(relative.contains("put it in a script"), "{relative}");
    }
}
