//! The firewall with real packets, inside network namespaces made by each test: a server
//! namespace runs a real TCP service and the firewall (iptables, ip6tables and ipset there
//! are the namespace's own), two client namespaces connect to it over veth links, IPv4 and
//! IPv6. Nothing here touches the host's firewall.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use firewall_support::*;
use logjail::config::{
    Chain, FirewallAction, FirewallBackend, FirewallConfig, FirewallMode, FirewallTarget,
    PortRange, Ports, Protocol, RejectWith,
};
use logjail::firewall::{
    BanOutcome, BanRequest, Family, Firewall, FirewallError, FirewallHandle, FirewallOptions, Hook,
    JailRule,
};

const PORT: u16 = 8022;
const OTHER_PORT: u16 = 8023;
const DROP_WAIT: Duration = Duration::from_millis(1200);

const A4: &str = "10.0.1.2";
const B4: &str = "10.0.2.2";
const A6: &str = "fd00:1::2";
const B6: &str = "fd00:2::2";
const SERVER_A4: &str = "10.0.1.1";
const SERVER_B4: &str = "10.0.2.1";
const SERVER_A6: &str = "fd00:1::1";
const SERVER_B6: &str = "fd00:2::1";

/// A server namespace with two clients, A and B, each on its own link.
struct Lab {
    server: Netns,
    a: Netns,
    b: Netns,
}

impl Lab {
    fn new() -> Arc<Lab> {
        let lab = Lab {
            server: Netns::new("ljfs"),
            a: Netns::new("ljfa"),
            b: Netns::new("ljfb"),
        };
        link(&lab.server, &lab.a, (SERVER_A4, A4), (SERVER_A6, A6));
        link(&lab.server, &lab.b, (SERVER_B4, B4), (SERVER_B6, B6));
        Arc::new(lab)
    }

    /// Where A and B reach the server, by family.
    fn target_of_a(&self, v6: bool, port: u16) -> SocketAddr {
        SocketAddr::new(ip(if v6 { SERVER_A6 } else { SERVER_A4 }), port)
    }

    fn target_of_b(&self, v6: bool, port: u16) -> SocketAddr {
        SocketAddr::new(ip(if v6 { SERVER_B6 } else { SERVER_B4 }), port)
    }

    fn a_reaches(&self, v6: bool, port: u16) -> Reach {
        try_connect(&self.a, self.target_of_a(v6, port), DROP_WAIT)
    }

    fn b_reaches(&self, v6: bool, port: u16) -> Reach {
        try_connect(&self.b, self.target_of_b(v6, port), DROP_WAIT)
    }

    /// Runs an async test body in the server namespace (firewall thread included).
    fn run<F, Fut>(self: &Arc<Self>, body: F)
    where
        F: FnOnce(Arc<Lab>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let lab = self.clone();
        self.server.run(move || runtime().block_on(body(lab)));
    }
}

fn config(mode: FirewallMode) -> FirewallConfig {
    FirewallConfig {
        backend: FirewallBackend::Auto,
        // The layout these tests check is Docker's (INPUT, DOCKER-USER): `auto` could find a
        // CRI socket on the machine that runs them. `tests/firewall_k8s_netns.rs` has the rest.
        target: FirewallTarget::Docker,
        mode,
        keep_bans_on_exit: false,
        chain_prefix: unique("ljt"),
    }
}

fn jail(name: &str, chains: &[Chain], ports: Ports, action: FirewallAction) -> JailRule {
    JailRule {
        name: name.to_string(),
        chains: chains.to_vec(),
        ports,
        protocol: Protocol::Tcp,
        action,
        ignoreip: Vec::new(),
    }
}

fn port_list(ports: &[u16]) -> Ports {
    Ports::List(
        ports
            .iter()
            .map(|&p| PortRange { first: p, last: p })
            .collect(),
    )
}

async fn start(config: &FirewallConfig, jails: Vec<JailRule>) -> FirewallHandle {
    Firewall::start(config.clone(), jails, FirewallOptions::default())
        .await
        .expect("firewall starts")
        .0
}

fn in_hour() -> Option<chrono::DateTime<Utc>> {
    Some(Utc::now() + chrono::Duration::hours(1))
}

/// Ban A (v4 and v6) in `jail`, check A is blocked as `blocked` says and B is not, unban,
/// check A is back.
async fn ban_check_unban(
    lab: &Lab,
    firewall: &FirewallHandle,
    jail: &str,
    blocked: fn(Reach) -> bool,
) {
    for v6 in [false, true] {
        assert_eq!(
            lab.a_reaches(v6, PORT),
            Reach::Connected,
            "v6={v6} before ban"
        );
    }
    for host in [A4, A6] {
        assert_eq!(
            firewall.ban(jail, ip(host), in_hour()).await.unwrap(),
            BanOutcome::Banned
        );
    }
    for v6 in [false, true] {
        let a = lab.a_reaches(v6, PORT);
        assert!(blocked(a), "jail {jail}, v6={v6}: banned client got {a:?}");
        assert_eq!(
            lab.b_reaches(v6, PORT),
            Reach::Connected,
            "v6={v6}: other client"
        );
    }
    for host in [A4, A6] {
        assert!(firewall.unban(jail, ip(host)).await.unwrap());
    }
    for v6 in [false, true] {
        assert_eq!(
            lab.a_reaches(v6, PORT),
            Reach::Connected,
            "v6={v6} after unban"
        );
    }
}

#[test]
fn drop_ban_with_ipset_blocks_only_the_banned_client_v4_and_v6() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        let firewall = start(
            &config,
            vec![jail(
                "sshd",
                &[Chain::Input],
                Ports::All,
                FirewallAction::Drop,
            )],
        )
        .await;
        ban_check_unban(&lab, &firewall, "sshd", |r| r == Reach::TimedOut).await;
        let status = firewall.status().await.unwrap();
        assert_eq!(status.jails[0].bans_v4 + status.jails[0].bans_v6, 0);
        assert!(
            status.backend_reason.starts_with("auto"),
            "{}",
            status.backend_reason
        );
        firewall.shutdown(false).await.unwrap();
        assert!(
            our_lines(&config.chain_prefix).is_empty(),
            "{:?}",
            our_lines(&config.chain_prefix)
        );
        assert!(our_sets(&config.chain_prefix).is_empty());
    });
}

#[test]
fn drop_ban_with_per_address_rules_blocks_only_the_banned_client() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Rules);
    lab.run(move |lab| async move {
        let firewall = start(
            &config,
            vec![jail(
                "web",
                &[Chain::Input],
                Ports::All,
                FirewallAction::Drop,
            )],
        )
        .await;
        firewall.ban("web", ip(A4), in_hour()).await.unwrap();
        let rules: Vec<String> = our_lines(&config.chain_prefix)
            .into_iter()
            .filter(|line| line.contains("-s 10.0.1.2/32"))
            .collect();
        assert_eq!(rules.len(), 1, "{rules:?}");
        firewall.unban("web", ip(A4)).await.unwrap();
        ban_check_unban(&lab, &firewall, "web", |r| r == Reach::TimedOut).await;
        assert!(
            sh("ipset", &["list", "-n"])
                .lines()
                .all(|s| !s.starts_with(&config.chain_prefix))
        );
        firewall.shutdown(false).await.unwrap();
        assert!(our_lines(&config.chain_prefix).is_empty());
    });
}

#[test]
fn every_reject_type_refuses_at_once_v4_and_v6() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    for mode in [FirewallMode::Ipset, FirewallMode::Rules] {
        let config = config(mode);
        lab.run(move |lab| async move {
            let kinds = [
                RejectWith::IcmpPortUnreachable,
                RejectWith::IcmpHostUnreachable,
                RejectWith::IcmpNetUnreachable,
                RejectWith::TcpReset,
            ];
            for (index, with) in kinds.into_iter().enumerate() {
                let name = format!("reject{index}");
                let rule = jail(
                    &name,
                    &[Chain::Input],
                    Ports::All,
                    FirewallAction::Reject(with),
                );
                let firewall = start(&config, vec![rule]).await;
                ban_check_unban(&lab, &firewall, &name, Reach::refused_fast).await;
                firewall.shutdown(false).await.unwrap();
            }
        });
    }
}

#[test]
fn a_port_scoped_ban_blocks_only_that_port() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let _other = listen(&lab.server, OTHER_PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        let rule = jail(
            "ssh",
            &[Chain::Input],
            port_list(&[PORT]),
            FirewallAction::Reject(RejectWith::TcpReset),
        );
        let firewall = start(&config, vec![rule]).await;
        for host in [A4, A6] {
            firewall.ban("ssh", ip(host), None).await.unwrap();
        }
        for v6 in [false, true] {
            assert!(lab.a_reaches(v6, PORT).refused_fast(), "v6={v6}");
            assert_eq!(lab.a_reaches(v6, OTHER_PORT), Reach::Connected, "v6={v6}");
            assert_eq!(lab.b_reaches(v6, PORT), Reach::Connected, "v6={v6}");
        }
        firewall.shutdown(false).await.unwrap();
    });
}

#[test]
fn set_entries_carry_the_remaining_time_so_bans_end_without_logjail() {
    let lab = Lab::new();
    let config = config(FirewallMode::Ipset);
    lab.run(move |_lab| async move {
        let clock = ManualClock::at(Utc::now());
        let options = FirewallOptions {
            clock: clock.clone(),
            ..FirewallOptions::default()
        };
        let rule = jail("t", &[Chain::Input], Ports::All, FirewallAction::Drop);
        let (firewall, _) = Firewall::start(config.clone(), vec![rule], options)
            .await
            .unwrap();
        let now = logjail::clock::Clock::now(&*clock);
        firewall
            .ban("t", ip(A4), Some(now + chrono::Duration::seconds(600)))
            .await
            .unwrap();
        // Longer than ipset's limit: no timeout in the kernel, logjail ends it itself.
        firewall
            .ban("t", ip(B4), Some(now + chrono::Duration::days(60)))
            .await
            .unwrap();
        firewall.ban("t", ip(A6), None).await.unwrap();
        assert_eq!(
            firewall
                .ban("t", ip(B6), Some(now - chrono::Duration::seconds(1)))
                .await
                .unwrap(),
            BanOutcome::AlreadyEnded
        );
        let set4 = format!("{}-s-t-4", config.chain_prefix);
        let set6 = format!("{}-s-t-6", config.chain_prefix);
        let timeout = entry_timeout(&set4, A4).unwrap();
        assert!((595..=600).contains(&timeout), "{timeout}");
        assert_eq!(entry_timeout(&set4, B4), Some(0));
        assert_eq!(entry_timeout(&set6, A6), Some(0));
        assert_eq!(entry_timeout(&set6, B6), None);
        // A refresh with a new end updates the timeout in place.
        firewall
            .ban("t", ip(A4), Some(now + chrono::Duration::seconds(60)))
            .await
            .unwrap();
        assert!((55..=60).contains(&entry_timeout(&set4, A4).unwrap()));
        // Past the 60-day end, a layout check takes the long ban out of the kernel.
        clock.advance(Duration::from_secs(61 * 86_400));
        let report = firewall.ensure_layout().await.unwrap();
        assert_eq!(report.expired, 2, "{report:?}");
        assert_eq!(entry_timeout(&set4, B4), None);
        let left: Vec<IpAddr> = firewall
            .bans("t")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.host)
            .collect();
        assert_eq!(left, [ip(A6)]);
        firewall.shutdown(false).await.unwrap();
    });
}

#[test]
fn per_address_rules_expire_on_layout_checks() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Rules);
    lab.run(move |lab| async move {
        let clock = ManualClock::at(Utc::now());
        let options = FirewallOptions {
            clock: clock.clone(),
            ..FirewallOptions::default()
        };
        let rule = jail("t", &[Chain::Input], Ports::All, FirewallAction::Drop);
        let (firewall, _) = Firewall::start(config.clone(), vec![rule], options)
            .await
            .unwrap();
        let now = logjail::clock::Clock::now(&*clock);
        firewall
            .ban("t", ip(A4), Some(now + chrono::Duration::seconds(30)))
            .await
            .unwrap();
        assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
        clock.advance(Duration::from_secs(31));
        assert_eq!(firewall.ensure_layout().await.unwrap().expired, 1);
        assert_eq!(lab.a_reaches(false, PORT), Reach::Connected);
        firewall.shutdown(false).await.unwrap();
    });
}

#[test]
fn protected_addresses_are_never_banned() {
    let lab = Lab::new();
    let config = config(FirewallMode::Ipset);
    lab.run(move |_lab| async move {
        let mut rule = jail("p", &[Chain::Input], Ports::All, FirewallAction::Drop);
        rule.ignoreip = vec!["10.0.2.0/24".parse().unwrap()];
        let firewall = start(&config, vec![rule]).await;
        for (host, why) in [
            (SERVER_A4, "own addresses"),
            (SERVER_A6, "own addresses"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            (B4, "ignoreip (10.0.2.0/24)"),
        ] {
            let error = firewall.ban("p", ip(host), None).await.unwrap_err();
            assert!(
                matches!(&error, FirewallError::Refused { reason, .. } if reason.contains(why)),
                "{host}: {error}"
            );
        }
        // An IPv4-mapped address is the IPv4 address.
        assert!(
            firewall
                .ban("p", ip("::ffff:10.0.1.1"), None)
                .await
                .is_err()
        );
        let batch = firewall
            .ban_many(vec![
                BanRequest {
                    jail: "p".into(),
                    host: ip(A4),
                    end: None,
                },
                BanRequest {
                    jail: "p".into(),
                    host: ip("127.0.0.2"),
                    end: None,
                },
                BanRequest {
                    jail: "nope".into(),
                    host: ip(A6),
                    end: None,
                },
            ])
            .await
            .unwrap();
        assert_eq!(batch.applied, 1);
        assert_eq!(batch.refused.len(), 2, "{batch:?}");
        assert!(matches!(
            firewall.ban("nope", ip(A4), None).await,
            Err(FirewallError::UnknownJail { .. })
        ));
        firewall.shutdown(false).await.unwrap();
    });
}

/// Start, ban, stop without clean-up (as after SIGKILL: nothing of the process is left but
/// the kernel state), start again: the bans are found, not duplicated, and re-applying them
/// changes nothing.
#[test]
fn restart_after_a_crash_reuses_chains_sets_and_bans_without_duplicates() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    for mode in [FirewallMode::Ipset, FirewallMode::Rules] {
        let config = config(mode);
        lab.run(move |lab| async move {
            let jails = vec![
                jail(
                    "sshd",
                    &[Chain::Input, Chain::DockerUser],
                    port_list(&[PORT]),
                    FirewallAction::Drop,
                ),
                jail("gone", &[Chain::Input], Ports::All, FirewallAction::Drop),
            ];
            let end = Utc::now() + chrono::Duration::seconds(900);
            let bans = vec![
                BanRequest {
                    jail: "sshd".into(),
                    host: ip(A4),
                    end: Some(end),
                },
                BanRequest {
                    jail: "sshd".into(),
                    host: ip(A6),
                    end: None,
                },
            ];
            {
                let (firewall, thread) =
                    Firewall::start(config.clone(), jails.clone(), FirewallOptions::default())
                        .await
                        .unwrap();
                assert_eq!(firewall.ban_many(bans.clone()).await.unwrap().applied, 2);
                firewall.ban("gone", ip(B4), None).await.unwrap();
                drop(firewall);
                thread.join().unwrap();
            }
            let before = our_lines(&config.chain_prefix);
            assert!(before.iter().any(|l| l.contains("-gone-")), "{before:?}");
            assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);

            // Second run without the `gone` jail.
            let kept = vec![jails[0].clone()];
            let firewall = start(&config, kept.clone()).await;
            let found = firewall.bans("sshd").await.unwrap();
            assert_eq!(found.len(), 2, "{found:?}");
            let v4 = found.iter().find(|b| b.host == ip(A4)).unwrap();
            let drift = (v4.end.unwrap() - end).num_seconds().abs();
            assert!(drift <= 2, "remaining time kept within rounding: {drift}s");
            assert_eq!(found.iter().find(|b| b.host == ip(A6)).unwrap().end, None);
            let after = our_lines(&config.chain_prefix);
            let expected: Vec<String> = before
                .iter()
                .filter(|l| !l.contains("-gone-"))
                .cloned()
                .collect();
            assert_eq!(after, expected, "same rules, the removed jail's gone");
            assert!(
                our_sets(&config.chain_prefix)
                    .iter()
                    .all(|s| !s.contains("-gone-"))
            );

            // Re-applying the stored bans is idempotent.
            let outcome = firewall.ban_many(bans.clone()).await.unwrap();
            assert_eq!(outcome.applied, 2);
            assert_eq!(our_lines(&config.chain_prefix), expected);
            assert!(firewall.ensure_layout().await.unwrap().is_clean());
            assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
            assert_eq!(lab.a_reaches(true, PORT), Reach::TimedOut);
            assert_eq!(lab.b_reaches(false, PORT), Reach::Connected);
            firewall.shutdown(false).await.unwrap();
            assert!(our_lines(&config.chain_prefix).is_empty());
        });
    }
}

#[test]
fn keep_bans_on_shutdown_leaves_everything_in_place() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        let rule = jail("k", &[Chain::Input], Ports::All, FirewallAction::Drop);
        let firewall = start(&config, vec![rule.clone()]).await;
        firewall.ban("k", ip(A4), in_hour()).await.unwrap();
        let before = our_lines(&config.chain_prefix);
        firewall.shutdown(true).await.unwrap();
        assert_eq!(our_lines(&config.chain_prefix), before);
        assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
        // The next run takes over and can clean up.
        let firewall = start(&config, vec![rule]).await;
        assert_eq!(firewall.bans("k").await.unwrap().len(), 1);
        firewall.shutdown(false).await.unwrap();
        assert_eq!(lab.a_reaches(false, PORT), Reach::Connected);
    });
}

/// Another tool flushes every chain, deletes every chain and destroys the sets (a firewall
/// reload, a reboot of the rules): a layout check puts everything back, bans included, and a
/// second check finds nothing to do (what logjail writes is exactly what iptables lists).
#[test]
fn a_layout_check_puts_back_what_another_tool_removed() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    for mode in [FirewallMode::Ipset, FirewallMode::Rules] {
        let config = config(mode);
        lab.run(move |lab| async move {
            let jails = vec![
                jail(
                    "host",
                    &[Chain::Input],
                    port_list(&[PORT]),
                    FirewallAction::Drop,
                ),
                jail(
                    "ctr",
                    &[Chain::DockerUser],
                    port_list(&[80, 443]),
                    FirewallAction::Reject(RejectWith::TcpReset),
                ),
            ];
            let firewall = start(&config, jails).await;
            // No Docker in this namespace: DOCKER-USER is made the way Docker makes it.
            let made = listing();
            for line in [
                "-N DOCKER-USER",
                "-A DOCKER-USER -j RETURN",
                "-A FORWARD -j DOCKER-USER",
            ] {
                assert!(made.lines().any(|l| l == line), "{line} missing:\n{made}");
            }
            let first_in_docker_user = made
                .lines()
                .find(|l| l.starts_with("-A DOCKER-USER"))
                .unwrap();
            assert_eq!(
                first_in_docker_user,
                format!("-A DOCKER-USER -j {}-docker", config.chain_prefix)
            );
            assert!(
                firewall.ensure_layout().await.unwrap().is_clean(),
                "nothing to repair after start"
            );

            firewall.ban("host", ip(A4), in_hour()).await.unwrap();
            firewall.ban("host", ip(A6), in_hour()).await.unwrap();
            firewall.ban("ctr", ip(A4), in_hour()).await.unwrap();
            let before = our_lines(&config.chain_prefix);
            assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);

            for tool in ["iptables", "ip6tables"] {
                sh(tool, &["-w", "-F"]);
                sh(tool, &["-w", "-X"]);
            }
            for set in our_sets(&config.chain_prefix) {
                sh("ipset", &["destroy", &set]);
            }
            assert_eq!(
                lab.a_reaches(false, PORT),
                Reach::Connected,
                "ban gone with the rules"
            );

            let report = firewall.ensure_layout().await.unwrap();
            assert!(
                report.repaired.iter().any(|r| r.contains("jump INPUT")),
                "{report:?}"
            );
            assert!(
                report.repaired.iter().any(|r| r.contains("DOCKER-USER")),
                "{report:?}"
            );
            assert_eq!(our_lines(&config.chain_prefix), before);
            assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
            assert_eq!(lab.a_reaches(true, PORT), Reach::TimedOut);
            assert_eq!(lab.b_reaches(false, PORT), Reach::Connected);
            assert!(firewall.ensure_layout().await.unwrap().is_clean());

            // Only our jump removed from INPUT (e.g. a script deleting it): put back at the top.
            sh(
                "iptables",
                &[
                    "-w",
                    "-D",
                    "INPUT",
                    "-j",
                    &format!("{}-input", config.chain_prefix),
                ],
            );
            sh("iptables", &["-w", "-A", "INPUT", "-j", "ACCEPT"]);
            let report = firewall.ensure_layout().await.unwrap();
            assert_eq!(
                report.repaired,
                [format!("IPv4 jump INPUT -> {}-input", config.chain_prefix)]
            );
            let input: Vec<String> = listing()
                .lines()
                .filter(|l| l.starts_with("-A INPUT"))
                .map(str::to_string)
                .collect();
            assert_eq!(
                input[0],
                format!("-A INPUT -j {}-input", config.chain_prefix)
            );
            sh("iptables", &["-w", "-D", "INPUT", "-j", "ACCEPT"]);
            firewall.shutdown(false).await.unwrap();
        });
    }
}

#[test]
fn jails_defined_and_removed_at_run_time() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        let firewall = start(&config, Vec::new()).await;
        assert!(
            our_lines(&config.chain_prefix).is_empty(),
            "no jail, no rules"
        );
        let rule = jail(
            "label-app",
            &[Chain::Input],
            port_list(&[PORT]),
            FirewallAction::Drop,
        );
        firewall.define_jail(rule.clone()).await.unwrap();
        firewall.ban("label-app", ip(A4), in_hour()).await.unwrap();
        assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
        // Redefining with another action keeps the bans.
        let mut rejecting = rule.clone();
        rejecting.action = FirewallAction::Reject(RejectWith::IcmpPortUnreachable);
        firewall.define_jail(rejecting).await.unwrap();
        assert!(lab.a_reaches(false, PORT).refused_fast());
        let status = firewall.status().await.unwrap();
        let jail_status = &status.jails[0];
        assert_eq!(jail_status.bans_v4, 1);
        assert_eq!(jail_status.hooks[0].hook, Hook::Input);
        assert_eq!(
            jail_status.hooks[0].verdict,
            "reject-with icmp-port-unreachable"
        );
        assert_eq!(jail_status.sets[0].kernel_entries, Some(1));
        assert_eq!(firewall.remove_jail("label-app").await.unwrap(), 1);
        assert_eq!(lab.a_reaches(false, PORT), Reach::Connected);
        assert!(our_lines(&config.chain_prefix).is_empty());
        assert!(our_sets(&config.chain_prefix).is_empty());
        firewall.shutdown(false).await.unwrap();
    });
}

#[test]
fn log_only_jails_touch_nothing_and_unban_all_clears_a_jail() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        let firewall = start(
            &config,
            vec![
                jail("dry", &[Chain::Input], Ports::All, FirewallAction::Log),
                jail("real", &[Chain::Input], Ports::All, FirewallAction::Drop),
            ],
        )
        .await;
        assert_eq!(
            firewall.ban("dry", ip(A4), None).await.unwrap(),
            BanOutcome::LogOnly
        );
        assert_eq!(lab.a_reaches(false, PORT), Reach::Connected);
        assert!(
            our_lines(&config.chain_prefix)
                .iter()
                .all(|l| !l.contains("dry"))
        );
        for host in [A4, A6] {
            firewall.ban("real", ip(host), None).await.unwrap();
        }
        assert_eq!(lab.a_reaches(true, PORT), Reach::TimedOut);
        assert_eq!(firewall.unban_all("real").await.unwrap(), 2);
        assert_eq!(lab.a_reaches(true, PORT), Reach::Connected);
        assert!(
            !firewall.unban("real", ip(A4)).await.unwrap(),
            "nothing left to unban"
        );
        firewall.shutdown(false).await.unwrap();
    });
}

/// A ban that finds its chain or set gone (flushed by another tool between two layout checks)
/// repairs the layout on the way, and every earlier ban comes back with it.
#[test]
fn a_ban_puts_back_a_layout_removed_behind_its_back() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    for mode in [FirewallMode::Ipset, FirewallMode::Rules] {
        let config = config(mode);
        lab.run(move |lab| async move {
            let rule = jail("j", &[Chain::Input], Ports::All, FirewallAction::Drop);
            let firewall = start(&config, vec![rule]).await;
            firewall.ban("j", ip(A6), in_hour()).await.unwrap();
            for tool in ["iptables", "ip6tables"] {
                sh(tool, &["-w", "-F"]);
                sh(tool, &["-w", "-X"]);
            }
            for set in our_sets(&config.chain_prefix) {
                sh("ipset", &["destroy", &set]);
            }
            assert_eq!(lab.a_reaches(true, PORT), Reach::Connected);
            assert_eq!(
                firewall.ban("j", ip(A4), in_hour()).await.unwrap(),
                BanOutcome::Banned
            );
            assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut, "{mode:?}");
            assert_eq!(lab.a_reaches(true, PORT), Reach::TimedOut, "{mode:?}");
            assert_eq!(lab.b_reaches(false, PORT), Reach::Connected);
            firewall.shutdown(false).await.unwrap();
        });
    }
}

/// A host whose Docker uses iptables-legacy (made here by creating Docker's chain with
/// iptables-legacy, in this namespace only): `auto` follows Docker, bans work, and nothing is
/// written with iptables-nft.
#[test]
fn auto_follows_docker_to_iptables_legacy() {
    let lab = Lab::new();
    let _service = listen(&lab.server, PORT);
    let config = config(FirewallMode::Ipset);
    lab.run(move |lab| async move {
        sh("iptables-legacy", &["-w", "-N", "DOCKER-USER"]);
        sh(
            "iptables-legacy",
            &["-w", "-A", "DOCKER-USER", "-j", "RETURN"],
        );
        let rule = jail(
            "legacy",
            &[Chain::Input, Chain::DockerUser],
            Ports::All,
            FirewallAction::Drop,
        );
        let firewall = start(&config, vec![rule]).await;
        let status = firewall.status().await.unwrap();
        assert_eq!(status.backend, logjail::firewall::Backend::Legacy);
        assert!(
            status.backend_reason.contains("iptables-legacy"),
            "{}",
            status.backend_reason
        );
        ban_check_unban(&lab, &firewall, "legacy", |r| r == Reach::TimedOut).await;
        let legacy = sh("iptables-legacy", &["-w", "-S"]);
        assert!(
            legacy.contains(&format!("-A INPUT -j {}-input", config.chain_prefix)),
            "{legacy}"
        );
        assert!(legacy.contains(&format!("-A DOCKER-USER -j {}-docker", config.chain_prefix)));
        let nft = sh("iptables-nft", &["-w", "-S"]);
        assert!(!nft.contains(&config.chain_prefix), "nothing in nft: {nft}");
        // No jail bans in raw PREROUTING here: logjail looked for leftovers there without
        // making iptables-legacy create the table.
        let tables = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").unwrap();
        assert!(!tables.lines().any(|t| t == "raw"), "{tables}");
        firewall.shutdown(false).await.unwrap();
        assert!(!sh("iptables-legacy", &["-w", "-S"]).contains(&config.chain_prefix));
    });
}

/// The enforcer takes bans queued one behind the other as one batch; unbans queued between
/// them still happen in their place. A is banned, unbanned and banned again; B is banned then
/// unbanned; a thousand other addresses ride in the same batches. Real packets say who is out.
#[test]
fn the_enforcer_batches_queued_bans_and_keeps_their_order_with_unbans() {
    use logjail::messages::Enforcement;
    let lab = Lab::new();
    let config = config(FirewallMode::Ipset);
    let _service = listen(&lab.server, PORT);
    lab.run(move |lab| async move {
        let rule = jail("t", &[Chain::Input], Ports::All, FirewallAction::Drop);
        let firewall = start(&config, vec![rule]).await;
        let (queue, changes) = tokio::sync::mpsc::channel(4096);
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let ban = |host: IpAddr| Enforcement::Ban {
            jail: "t".to_string(),
            host,
            end: in_hour(),
        };
        let unban = |host: IpAddr| Enforcement::Unban {
            jail: "t".to_string(),
            host,
        };
        let others: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + i)))
            .collect();
        // Queued before the enforcer runs, so they are all waiting when it starts.
        let mut sequence = vec![ban(ip(A4)), ban(ip(B4))];
        sequence.extend(others[..500].iter().map(|&host| ban(host)));
        sequence.push(unban(ip(A4)));
        sequence.extend(others[500..].iter().map(|&host| ban(host)));
        sequence.push(unban(ip(B4)));
        sequence.push(ban(ip(A4)));
        for change in sequence {
            queue.send(change).await.unwrap();
        }
        let (applied, barrier) = tokio::sync::oneshot::channel();
        queue.send(Enforcement::Barrier(applied)).await.unwrap();
        let enforcer = tokio::spawn(logjail::firewall::queue::run(
            firewall.clone(),
            changes,
            Arc::new(tokio::sync::Notify::new()),
            errors.clone(),
            stop.clone(),
        ));
        barrier.await.unwrap();
        let set = format!("{}-s-t-4", config.chain_prefix);
        let listing = sh("ipset", &["list", &set]);
        let entries = listing
            .lines()
            .skip_while(|line| *line != "Members:")
            .filter(|line| line.contains(" timeout "))
            .count();
        assert_eq!(entries, 1001, "A and the thousand others:\n{listing}");
        assert!(entry_timeout(&set, A4).is_some());
        assert_eq!(entry_timeout(&set, B4), None);
        assert_eq!(errors.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(lab.a_reaches(false, PORT), Reach::TimedOut);
        assert_eq!(lab.b_reaches(false, PORT), Reach::Connected);
        stop.cancel();
        enforcer.await.unwrap();
        firewall.shutdown(false).await.unwrap();
    });
}

/// A batch large enough to run as two `ipset restore` processes lands whole, both halves,
/// in a set created with room for it (as a restart or a new fleet member asks).
#[test]
fn a_large_batch_of_bans_lands_whole_in_a_set_sized_for_it() {
    let lab = Lab::new();
    let config = config(FirewallMode::Ipset);
    lab.run(move |_lab| async move {
        let rule = jail("t", &[Chain::Input], Ports::All, FirewallAction::Drop);
        let options = FirewallOptions {
            expected_bans: [(("t".to_string(), Family::V4), 30_000)].into(),
            ..FirewallOptions::default()
        };
        let (firewall, _thread) = Firewall::start(config.clone(), vec![rule], options)
            .await
            .unwrap();
        let requests: Vec<BanRequest> = (0..30_000u32)
            .map(|i| BanRequest {
                jail: "t".to_string(),
                host: IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + i)),
                end: in_hour(),
            })
            .collect();
        let outcome = firewall.ban_many(requests).await.unwrap();
        assert_eq!(outcome.applied, 30_000);
        let set = format!("{}-s-t-4", config.chain_prefix);
        let header = sh("ipset", &["list", "-t", &set]);
        assert!(
            header.contains("Number of entries: 30000"),
            "both halves in the kernel:\n{header}"
        );
        assert!(
            header.contains("hashsize 32768"),
            "sized at creation:\n{header}"
        );
        let v6 = sh(
            "ipset",
            &["list", "-t", &format!("{}-s-t-6", config.chain_prefix)],
        );
        assert!(v6.contains("hashsize 4096"), "no room asked:\n{v6}");
        assert!(entry_timeout(&set, "198.18.0.0").is_some());
        assert!(entry_timeout(&set, "198.18.117.47").is_some());
        firewall.shutdown(false).await.unwrap();
    });
}
