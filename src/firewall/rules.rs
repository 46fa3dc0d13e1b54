//! The iptables rules logjail writes, as argument lists in the exact form `iptables -S`
//! prints them, so that what exists can be compared with what should exist token by token.
//!
//! A hook chain holds, per jail, the jumps that select the jail's traffic (protocol and
//! ports); the jail chain holds the verdict for banned sources (a set match, or one rule per
//! banned address). Port selection differs by hook: in `INPUT` the destination port is the
//! one the client used (`multiport --dports`), in `DOCKER-USER` Docker's DNAT has already
//! rewritten it to the container's port, so the published port is matched on the
//! connection's original tuple (`conntrack --ctorigdstport … --ctdir ORIGINAL`). raw
//! `PREROUTING` runs before conntrack and every DNAT: the port there is the client's, matched
//! plainly as in `INPUT` (there is no connection yet to ask).

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::names::{Family, Hook};
use crate::config::{FirewallAction, PortRange, Ports, Protocol, RejectWith};

/// One rule: the tokens after `-A CHAIN`.
pub type Rule = Vec<String>;

/// multiport accepts 15 ports, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;

fn rule(tokens: &[&str]) -> Rule {
    tokens.iter().map(|t| (*t).to_string()).collect()
}

/// The rules in a hook chain that send one jail's traffic to the jail's chain.
pub fn hook_jumps(hook: Hook, ports: &Ports, protocol: Protocol, jail_chain: &str) -> Vec<Rule> {
    let protocols: &[Option<&str>] = match (protocol, ports) {
        (Protocol::Tcp, _) => &[Some("tcp")],
        (Protocol::Udp, _) => &[Some("udp")],
        (Protocol::All, Ports::All) => &[None],
        // Ports only exist for TCP and UDP.
        (Protocol::All, Ports::List(_)) => &[Some("tcp"), Some("udp")],
    };
    let mut rules = Vec::new();
    for protocol in protocols {
        let mut base = Vec::new();
        if let Some(protocol) = protocol {
            base.extend(rule(&["-p", protocol]));
        }
        match ports {
            Ports::All => {
                let mut jump = base.clone();
                jump.extend(rule(&["-j", jail_chain]));
                rules.push(jump);
            }
            Ports::List(ranges) => match hook {
                Hook::Input | Hook::RawPrerouting => {
                    for group in multiport_groups(ranges) {
                        let mut jump = base.clone();
                        jump.extend(rule(&[
                            "-m",
                            "multiport",
                            "--dports",
                            &group,
                            "-j",
                            jail_chain,
                        ]));
                        rules.push(jump);
                    }
                }
                Hook::DockerUser => {
                    for range in ranges {
                        let mut jump = base.clone();
                        jump.extend(rule(&[
                            "-m",
                            "conntrack",
                            "--ctorigdstport",
                            &range.to_string(),
                            "--ctdir",
                            "ORIGINAL",
                            "-j",
                            jail_chain,
                        ]));
                        rules.push(jump);
                    }
                }
            },
        }
    }
    rules
}

fn multiport_groups(ranges: &[PortRange]) -> Vec<String> {
    let mut groups = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut used = 0;
    for range in ranges {
        let cost = if range.first == range.last { 1 } else { 2 };
        if used + cost > MULTIPORT_SLOTS {
            groups.push(current.join(","));
            current.clear();
            used = 0;
        }
        current.push(range.to_string());
        used += cost;
    }
    if !current.is_empty() {
        groups.push(current.join(","));
    }
    groups
}

/// What the jail's chain does with a banned packet, as rule tails (`[-p tcp] -j …`); the
/// first that matches the packet wins.
///
/// `tcp-reset` needs `-p tcp` in its rule, so it is followed by an ICMP reject for any other
/// protocol. In `DOCKER-USER` a TCP reset is built from the packet after DNAT and carries the
/// container's address: the client ignores it (and learns the container's address), so
/// there an ICMP port-unreachable takes its place, which the kernel translates back and which
/// refuses a TCP connect at once just the same. In raw `PREROUTING` there is no `REJECT`
/// at all (iptables allows it only in filter `INPUT`, `FORWARD` and `OUTPUT`): a rejecting
/// jail drops there.
pub fn verdicts(action: FirewallAction, hook: Hook, family: Family) -> Vec<Rule> {
    match effective_reject(action, hook) {
        None => vec![rule(&["-j", "DROP"])],
        Some(RejectWith::TcpReset) => vec![
            rule(&["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]),
            rule(&[
                "-j",
                "REJECT",
                "--reject-with",
                icmp_name(RejectWith::IcmpPortUnreachable, family),
            ]),
        ],
        Some(with) => vec![rule(&[
            "-j",
            "REJECT",
            "--reject-with",
            icmp_name(with, family),
        ])],
    }
}

/// The reject type a jail really uses under a hook (`None`: it drops).
pub fn effective_reject(action: FirewallAction, hook: Hook) -> Option<RejectWith> {
    match (action, hook) {
        (_, Hook::RawPrerouting) => None,
        (FirewallAction::Reject(RejectWith::TcpReset), Hook::DockerUser) => {
            Some(RejectWith::IcmpPortUnreachable)
        }
        (FirewallAction::Reject(with), _) => Some(with),
        (FirewallAction::Drop | FirewallAction::Log, _) => None,
    }
}

/// iptables' and ip6tables' spelling of a reject type.
pub fn icmp_name(with: RejectWith, family: Family) -> &'static str {
    match (with, family) {
        (RejectWith::TcpReset, _) => "tcp-reset",
        (RejectWith::IcmpPortUnreachable, Family::V4) => "icmp-port-unreachable",
        (RejectWith::IcmpHostUnreachable, Family::V4) => "icmp-host-unreachable",
        (RejectWith::IcmpNetUnreachable, Family::V4) => "icmp-net-unreachable",
        (RejectWith::IcmpPortUnreachable, Family::V6) => "icmp6-port-unreachable",
        (RejectWith::IcmpHostUnreachable, Family::V6) => "icmp6-addr-unreachable",
        (RejectWith::IcmpNetUnreachable, Family::V6) => "icmp6-no-route",
    }
}

/// The jail chain's rules in ipset mode: each verdict for sources in the jail's set.
pub fn set_rules(set: &str, verdicts: &[Rule]) -> Vec<Rule> {
    verdicts
        .iter()
        .map(|verdict| with_matches(verdict, &[], &["-m", "set", "--match-set", set, "src"]))
        .collect()
}

/// The jail chain's rules for one banned address in per-rule mode. The comment carries the
/// ban's end, so a restarted logjail knows which leftover rules have expired.
pub fn ban_rules(host: IpAddr, end: Option<DateTime<Utc>>, verdicts: &[Rule]) -> Vec<Rule> {
    let source = host_with_prefix(host);
    let comment = until_comment(end);
    verdicts
        .iter()
        .map(|verdict| {
            with_matches(
                verdict,
                &["-s", &source],
                &["-m", "comment", "--comment", &comment],
            )
        })
        .collect()
}

/// `1.2.3.4/32`, `2001:db8::1/128`: how `iptables -S` prints a source address.
pub fn host_with_prefix(host: IpAddr) -> String {
    match host {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn until_comment(end: Option<DateTime<Utc>>) -> String {
    match end {
        Some(end) => format!("logjail-until={}", end.timestamp()),
        None => "logjail-until=never".to_string(),
    }
}

/// Reads back a per-rule ban: its address and end. `None` for anything else.
pub fn parse_ban_rule(tokens: &[String]) -> Option<(IpAddr, Option<DateTime<Utc>>)> {
    let source = value_after(tokens, "-s")?;
    let address = source.split('/').next()?.parse::<IpAddr>().ok()?;
    let full_length = match address {
        IpAddr::V4(_) => "32",
        IpAddr::V6(_) => "128",
    };
    if source
        .split('/')
        .nth(1)
        .is_some_and(|length| length != full_length)
    {
        return None;
    }
    let until = value_after(tokens, "--comment")?.strip_prefix("logjail-until=")?;
    let end = if until == "never" {
        None
    } else {
        Some(DateTime::<Utc>::from_timestamp(
            until.parse::<i64>().ok()?,
            0,
        )?)
    };
    Some((address, end))
}

fn value_after<'a>(tokens: &'a [String], flag: &str) -> Option<&'a str> {
    tokens
        .iter()
        .position(|token| token == flag)
        .and_then(|at| tokens.get(at + 1))
        .map(String::as_str)
}

/// Puts `addresses` first, then the verdict's own protocol, then `matches`, then the target:
/// the order `iptables -S` prints a rule in.
fn with_matches(verdict: &[String], addresses: &[&str], matches: &[&str]) -> Rule {
    let target_at = verdict
        .iter()
        .position(|token| token == "-j")
        .unwrap_or(verdict.len());
    let (selectors, target) = verdict.split_at(target_at);
    let mut rule: Rule = addresses.iter().map(|t| (*t).to_string()).collect();
    rule.extend(selectors.iter().cloned());
    rule.extend(matches.iter().map(|t| (*t).to_string()));
    rule.extend(target.iter().cloned());
    rule
}

/// Splits one line of `iptables -S` into tokens, removing the quotes around comments.
pub fn tokenize(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_token = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_token = true;
            }
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_token {
                    tokens.push(std::mem::take(&mut current));
                    has_token = false;
                }
            }
            c => {
                current.push(c);
                has_token = true;
            }
        }
    }
    if has_token {
        tokens.push(current);
    }
    tokens
}

/// A rule as `iptables -S` prints it after `-A CHAIN `: tokens separated by one space, a
/// comment in double quotes. Kept as one string per rule so that 100,000 per-address rules
/// stay cheap to hold and compare.
pub fn listing_text(rule: &[String]) -> String {
    let mut text = String::new();
    let mut quote = false;
    for token in rule {
        if !text.is_empty() {
            text.push(' ');
        }
        if quote {
            text.push('"');
            text.push_str(token);
            text.push('"');
        } else {
            text.push_str(token);
        }
        quote = token == "--comment";
    }
    text
}

/// The rule in `FORWARD` that sends forwarded traffic through `DOCKER-USER`, as listed.
pub const DOCKER_USER_JUMP: &str = "-j DOCKER-USER";

/// Where the jump to `DOCKER-USER` sits among `FORWARD`'s rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerUserJump {
    /// No jump: nothing in `DOCKER-USER` is ever consulted.
    Missing,
    /// Above every rule of Docker's.
    InPlace,
    /// Below a rule of Docker's, whose accepts for published ports then let banned clients
    /// through before `DOCKER-USER` is consulted.
    BelowDocker,
}

/// Finds the jump to `DOCKER-USER` in `forward` (the rules after `-A FORWARD `, in order).
///
/// Docker 20.10 keeps that jump first only in IPv4: it makes no ip6tables `DOCKER-USER`
/// (logjail makes it), and whenever the engine starts or creates a network it inserts its
/// IPv6 rules (its isolation jump, per-bridge accepts) at the top of `FORWARD`, above the
/// jump. A rule of Docker's is one that jumps to one of its chains (`DOCKER`,
/// `DOCKER-ISOLATION-STAGE-1`, `DOCKER-FORWARD` in later versions); rules of other tools
/// above the jump are theirs to place and do not count.
pub fn docker_user_jump(forward: &[String]) -> DockerUserJump {
    let Some(at) = forward.iter().position(|rule| rule == DOCKER_USER_JUMP) else {
        return DockerUserJump::Missing;
    };
    let dockers = forward[..at].iter().any(|rule| {
        let tokens = tokenize(rule);
        let target = tokens
            .iter()
            .position(|token| token == "-j" || token == "-g")
            .and_then(|at| tokens.get(at + 1));
        target.is_some_and(|target| {
            (target == "DOCKER" || target.starts_with("DOCKER-")) && target != "DOCKER-USER"
        })
    });
    if dockers {
        DockerUserJump::BelowDocker
    } else {
        DockerUserJump::InPlace
    }
}

/// One rule as a line of `iptables-restore` input (which reads the same quoting).
pub fn restore_line(chain: &str, listing_text: &str) -> String {
    format!("-A {chain} {listing_text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;

    fn ports(list: &[(u16, u16)]) -> Ports {
        Ports::List(
            list.iter()
                .map(|&(first, last)| PortRange { first, last })
                .collect(),
        )
    }

    fn joined(rules: &[Rule]) -> Vec<String> {
        rules.iter().map(|r| r.join(" ")).collect()
    }

    #[test]
    fn the_docker_user_jump_must_come_before_dockers_rules() {
        let listed =
            |rules: &[&str]| -> Vec<String> { rules.iter().map(|r| r.to_string()).collect() };
        // What Docker 20.10 leaves in ip6tables after it restarted under a running logjail.
        let after_restart = listed(&[
            "-j DOCKER-ISOLATION-STAGE-1",
            "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-o docker0 -j DOCKER",
            "-i docker0 ! -o docker0 -j ACCEPT",
            "-j DOCKER-USER",
        ]);
        assert_eq!(
            docker_user_jump(&after_restart),
            DockerUserJump::BelowDocker
        );
        // Later Docker versions keep their rules in DOCKER-FORWARD.
        let later = listed(&["-j DOCKER-FORWARD", "-j DOCKER-USER"]);
        assert_eq!(docker_user_jump(&later), DockerUserJump::BelowDocker);
        // IPv4 as Docker keeps it, and other tools' rules above the jump.
        let ipv4 = listed(&[
            "-j DOCKER-USER",
            "-j DOCKER-ISOLATION-STAGE-1",
            "-o docker0 -j DOCKER",
        ]);
        assert_eq!(docker_user_jump(&ipv4), DockerUserJump::InPlace);
        let others = listed(&["-j KUBE-FORWARD", "-i eth0 -j ACCEPT", "-j DOCKER-USER"]);
        assert_eq!(docker_user_jump(&others), DockerUserJump::InPlace);
        let elsewhere = listed(&[
            "-j DOCKER-ISOLATION-STAGE-1",
            "-s 10.0.0.0/8 -j DOCKER-USER",
        ]);
        assert_eq!(docker_user_jump(&elsewhere), DockerUserJump::Missing);
        assert_eq!(docker_user_jump(&[]), DockerUserJump::Missing);
    }

    #[test]
    fn input_jumps_use_multiport_per_protocol() {
        let rules = hook_jumps(
            Hook::Input,
            &ports(&[(22, 22), (8000, 8100)]),
            Protocol::All,
            "c",
        );
        assert_eq!(
            joined(&rules),
            [
                "-p tcp -m multiport --dports 22,8000:8100 -j c",
                "-p udp -m multiport --dports 22,8000:8100 -j c"
            ]
        );
    }

    #[test]
    fn multiport_groups_hold_at_most_fifteen_slots() {
        let many: Vec<(u16, u16)> = (1..=20).map(|p| (p, p)).collect();
        let rules = hook_jumps(Hook::Input, &ports(&many), Protocol::Tcp, "c");
        assert_eq!(rules.len(), 2);
        assert!(
            rules[0]
                .join(" ")
                .contains("--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 ")
        );
        assert!(rules[1].join(" ").contains("--dports 16,17,18,19,20 "));
        let ranges: Vec<(u16, u16)> = (0..8).map(|i| (i * 10 + 1, i * 10 + 5)).collect();
        let rules = hook_jumps(Hook::Input, &ports(&ranges), Protocol::Tcp, "c");
        assert_eq!(
            rules.len(),
            2,
            "7 ranges fit in 14 slots, the 8th opens a group"
        );
    }

    #[test]
    fn docker_jumps_match_the_published_port_before_dnat() {
        let rules = hook_jumps(
            Hook::DockerUser,
            &ports(&[(2222, 2222), (80, 90)]),
            Protocol::Tcp,
            "c",
        );
        assert_eq!(
            joined(&rules),
            [
                "-p tcp -m conntrack --ctorigdstport 2222 --ctdir ORIGINAL -j c",
                "-p tcp -m conntrack --ctorigdstport 80:90 --ctdir ORIGINAL -j c"
            ]
        );
    }

    #[test]
    fn raw_prerouting_jumps_match_the_port_the_client_used() {
        let rules = hook_jumps(
            Hook::RawPrerouting,
            &ports(&[(8080, 8080), (30000, 32767)]),
            Protocol::All,
            "c",
        );
        assert_eq!(
            joined(&rules),
            [
                "-p tcp -m multiport --dports 8080,30000:32767 -j c",
                "-p udp -m multiport --dports 8080,30000:32767 -j c"
            ]
        );
    }

    #[test]
    fn the_raw_table_drops_whatever_reject_was_asked_for() {
        for with in [RejectWith::TcpReset, RejectWith::IcmpHostUnreachable] {
            let action = FirewallAction::Reject(with);
            assert_eq!(effective_reject(action, Hook::RawPrerouting), None);
            for family in [Family::V4, Family::V6] {
                assert_eq!(
                    joined(&verdicts(action, Hook::RawPrerouting, family)),
                    ["-j DROP"]
                );
            }
        }
    }

    #[test]
    fn all_ports_all_protocols_is_one_plain_jump() {
        assert_eq!(
            joined(&hook_jumps(
                Hook::DockerUser,
                &Ports::All,
                Protocol::All,
                "c"
            )),
            ["-j c"]
        );
        assert_eq!(
            joined(&hook_jumps(Hook::Input, &Ports::All, Protocol::Udp, "c")),
            ["-p udp -j c"]
        );
    }

    #[test]
    fn tcp_reset_becomes_icmp_in_docker_user_only() {
        let action = FirewallAction::Reject(RejectWith::TcpReset);
        assert_eq!(
            joined(&verdicts(action, Hook::Input, Family::V4)),
            [
                "-p tcp -j REJECT --reject-with tcp-reset",
                "-j REJECT --reject-with icmp-port-unreachable"
            ]
        );
        assert_eq!(
            joined(&verdicts(action, Hook::DockerUser, Family::V6)),
            ["-j REJECT --reject-with icmp6-port-unreachable"]
        );
        assert_eq!(
            joined(&verdicts(
                FirewallAction::Reject(RejectWith::IcmpNetUnreachable),
                Hook::Input,
                Family::V6
            )),
            ["-j REJECT --reject-with icmp6-no-route"]
        );
        assert_eq!(
            joined(&verdicts(
                FirewallAction::Drop,
                Hook::DockerUser,
                Family::V4
            )),
            ["-j DROP"]
        );
    }

    #[test]
    fn set_and_ban_rules_are_in_listing_order() {
        let verdict = verdicts(
            FirewallAction::Reject(RejectWith::TcpReset),
            Hook::Input,
            Family::V4,
        );
        assert_eq!(
            joined(&set_rules("S", &verdict)),
            [
                "-p tcp -m set --match-set S src -j REJECT --reject-with tcp-reset",
                "-m set --match-set S src -j REJECT --reject-with icmp-port-unreachable"
            ]
        );
        let end = DateTime::<Utc>::from_timestamp(1_800_000_000, 0);
        let host: IpAddr = "2001:db8::7".parse().unwrap();
        let rules = ban_rules(
            host,
            end,
            &verdicts(FirewallAction::Drop, Hook::Input, Family::V6),
        );
        assert_eq!(
            joined(&rules),
            ["-s 2001:db8::7/128 -m comment --comment logjail-until=1800000000 -j DROP"]
        );
        assert_eq!(parse_ban_rule(&rules[0]), Some((host, end)));
    }

    #[test]
    fn listing_lines_tokenize_back_to_rules() {
        let line = r#"-A x -s 10.0.0.2/32 -m comment --comment "logjail-until=never" -j DROP"#;
        let tokens = tokenize(line);
        assert_eq!(
            tokens[4..],
            rule(&[
                "-m",
                "comment",
                "--comment",
                "logjail-until=never",
                "-j",
                "DROP"
            ])[..]
        );
        assert_eq!(
            parse_ban_rule(&tokens[2..]),
            Some(("10.0.0.2".parse().unwrap(), None))
        );
        assert_eq!(
            tokenize(r#"-A x -m comment --comment "a b" -j DROP"#)[5],
            "a b"
        );
        assert_eq!(tokenize(r#"--comment """#), ["--comment", ""]);
    }

    #[test]
    fn listing_text_quotes_comments_like_iptables() {
        let rule = ban_rules(
            "10.0.0.9".parse().unwrap(),
            None,
            &verdicts(FirewallAction::Drop, Hook::Input, Family::V4),
        );
        let text = listing_text(&rule[0]);
        assert_eq!(
            text,
            r#"-s 10.0.0.9/32 -m comment --comment "logjail-until=never" -j DROP"#
        );
        assert_eq!(tokenize(&text), rule[0]);
    }

    #[test]
    fn foreign_rules_are_not_taken_for_bans() {
        assert_eq!(
            parse_ban_rule(&tokenize(
                "-s 10.0.0.0/8 -m comment --comment logjail-until=never -j DROP"
            )),
            None
        );
        assert_eq!(parse_ban_rule(&tokenize("-s 10.0.0.1/32 -j DROP")), None);
        assert_eq!(
            parse_ban_rule(&tokenize(
                "-s 10.0.0.1/32 -m comment --comment other -j DROP"
            )),
            None
        );
    }
}
