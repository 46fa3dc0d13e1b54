//! The firewall against a real Docker engine: a container with published ports, two clients
//! in their own network namespaces on a test bridge, bans in the host's real `DOCKER-USER`.
//!
//! Each test uses its own chain prefix, bridge, subnet, namespaces and container, and cleans
//! them up by name even when it fails. They change the host's firewall, so nextest runs them
//! one at a time (`.config/nextest.toml`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use firewall_support::*;
use logjail::config::{
    Chain, FirewallAction, FirewallBackend, FirewallConfig, FirewallMode, FirewallTarget,
    PortRange, Ports, Protocol, RejectWith,
};
use logjail::firewall::{Firewall, FirewallHandle, FirewallOptions, Hook, JailRule};

const IMAGE: &str = "logjail-test/busybox:local";
const DROP_WAIT: Duration = Duration::from_millis(1500);

fn docker() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

/// A bridge on the host with clients A and B behind it, and a container publishing two
/// ports on all host addresses.
struct DockerLab {
    clients: BridgedClients,
    container: String,
    published: u16,
    second_published: u16,
}

impl DockerLab {
    fn new() -> DockerLab {
        let clients = BridgedClients::new(231);
        let container = unique("ljctr");
        sh(
            &docker(),
            &[
                "run",
                "-d",
                "--rm",
                "--name",
                &container,
                "-p",
                "0.0.0.0::8080",
                "-p",
                "0.0.0.0::8081",
                IMAGE,
                "sh",
                "-c",
                "/bin/busybox httpd -p 8081 && exec /bin/busybox httpd -f -p 8080",
            ],
        );
        let port_of = |inner: &str| -> u16 {
            let mapping = sh(&docker(), &["port", &container, inner]);
            mapping
                .lines()
                .find_map(|line| line.strip_prefix("0.0.0.0:"))
                .and_then(|port| port.trim().parse().ok())
                .unwrap_or_else(|| panic!("no IPv4 mapping for {inner}: {mapping}"))
        };
        let lab = DockerLab {
            published: port_of("8080/tcp"),
            second_published: port_of("8081/tcp"),
            clients,
            container,
        };
        lab.wait_until_served();
        lab
    }

    fn target(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.clients.host_ip, port)
    }

    fn a_reaches(&self, port: u16) -> Reach {
        try_connect(&self.clients.a, self.target(port), DROP_WAIT)
    }

    fn b_reaches(&self, port: u16) -> Reach {
        try_connect(&self.clients.b, self.target(port), DROP_WAIT)
    }

    /// The container needs a moment to listen; bounded wait on the real service.
    fn wait_until_served(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.published, self.second_published] {
            while try_connect(
                &self.clients.b,
                self.target(port),
                Duration::from_millis(300),
            ) != Reach::Connected
            {
                assert!(
                    Instant::now() < deadline,
                    "container never served port {port}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        sh_quiet(&docker(), &["rm", "-f", &self.container]);
    }
}

fn config() -> FirewallConfig {
    FirewallConfig {
        backend: FirewallBackend::Auto,
        target: FirewallTarget::Auto,
        mode: FirewallMode::Ipset,
        keep_bans_on_exit: false,
        chain_prefix: unique("ljd"),
    }
}

fn container_jail(ports: Ports, action: FirewallAction) -> JailRule {
    JailRule {
        name: "web".to_string(),
        chains: vec![Chain::DockerUser],
        ports,
        protocol: Protocol::Tcp,
        action,
        ignoreip: Vec::new(),
    }
}

fn only(port: u16) -> Ports {
    Ports::List(vec![PortRange {
        first: port,
        last: port,
    }])
}

fn in_hour() -> Option<chrono::DateTime<Utc>> {
    Some(Utc::now() + chrono::Duration::hours(1))
}

async fn start(config: &FirewallConfig, jail: JailRule) -> FirewallHandle {
    Firewall::start(config.clone(), vec![jail], FirewallOptions::default())
        .await
        .expect("firewall starts")
        .0
}

#[test]
fn drop_in_docker_user_blocks_the_banned_client_of_a_published_port() {
    let lab = DockerLab::new();
    let config = config();
    let _guard = PrefixGuard {
        prefix: config.chain_prefix.clone(),
    };
    runtime().block_on(async {
        let firewall = start(&config, container_jail(Ports::All, FirewallAction::Drop)).await;
        let status = firewall.status().await.unwrap();
        assert!(
            status.backend_reason.contains("Docker's chains"),
            "backend chosen where Docker's chains are: {}",
            status.backend_reason
        );
        assert_eq!(
            status.target,
            logjail::firewall::Target::Docker,
            "{}",
            status.target_reason
        );
        firewall
            .ban("web", lab.clients.a_ip, in_hour())
            .await
            .unwrap();
        assert_eq!(lab.a_reaches(lab.published), Reach::TimedOut);
        assert_eq!(lab.b_reaches(lab.published), Reach::Connected);
        firewall.unban("web", lab.clients.a_ip).await.unwrap();
        assert_eq!(lab.a_reaches(lab.published), Reach::Connected);
        firewall.shutdown(false).await.unwrap();
        assert!(our_lines(&config.chain_prefix).is_empty());
    });
}

/// The measured problem: a TCP reset sent from `DOCKER-USER` carries the container's address
/// and the client ignores it. A jail configured with `tcp-reset` must still refuse at once.
#[test]
fn a_tcp_reset_jail_refuses_clients_of_published_ports_at_once() {
    let lab = DockerLab::new();
    let config = config();
    let _guard = PrefixGuard {
        prefix: config.chain_prefix.clone(),
    };

    // First the naive rule, to show why logjail does not use it there.
    let a_ip = lab.clients.a_ip.to_string();
    let naive = [
        "-s",
        a_ip.as_str(),
        "-p",
        "tcp",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    let mut insert = vec!["-w", "-I", "DOCKER-USER"];
    insert.extend_from_slice(&naive);
    sh("iptables", &insert);
    let naive_result = lab.a_reaches(lab.published);
    let mut delete = vec!["-w", "-D", "DOCKER-USER"];
    delete.extend_from_slice(&naive);
    sh("iptables", &delete);
    assert_eq!(
        naive_result,
        Reach::TimedOut,
        "a plain tcp-reset in DOCKER-USER is ignored by the client"
    );

    runtime().block_on(async {
        let jail = container_jail(
            only(lab.published),
            FirewallAction::Reject(RejectWith::TcpReset),
        );
        let firewall = start(&config, jail).await;
        firewall
            .ban("web", lab.clients.a_ip, in_hour())
            .await
            .unwrap();
        let refused = lab.a_reaches(lab.published);
        assert!(refused.refused_fast(), "banned client got {refused:?}");
        assert_eq!(lab.b_reaches(lab.published), Reach::Connected);
        let status = firewall.status().await.unwrap();
        let hook = &status.jails[0].hooks[0];
        assert_eq!(hook.hook, Hook::DockerUser);
        assert_eq!(hook.verdict, "reject-with icmp-port-unreachable");
        firewall.shutdown(false).await.unwrap();
    });
}

#[test]
fn a_port_scoped_ban_matches_the_published_port_not_the_container_port() {
    let lab = DockerLab::new();
    let config = config();
    let _guard = PrefixGuard {
        prefix: config.chain_prefix.clone(),
    };
    runtime().block_on(async {
        let jail = container_jail(
            only(lab.published),
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable),
        );
        let firewall = start(&config, jail).await;
        firewall
            .ban("web", lab.clients.a_ip, in_hour())
            .await
            .unwrap();
        assert!(lab.a_reaches(lab.published).refused_fast());
        assert_eq!(lab.a_reaches(lab.second_published), Reach::Connected);
        assert_eq!(lab.b_reaches(lab.published), Reach::Connected);
        firewall.shutdown(false).await.unwrap();
    });
}

/// Another tool deletes logjail's jump from `DOCKER-USER`, or flushes logjail's chains (as a
/// Docker restart or a firewall reload can): the next layout check puts them back.
#[test]
fn the_jump_from_docker_user_comes_back_after_removal() {
    let lab = DockerLab::new();
    let config = config();
    let _guard = PrefixGuard {
        prefix: config.chain_prefix.clone(),
    };
    runtime().block_on(async {
        let jail = container_jail(only(lab.published), FirewallAction::Drop);
        let firewall = start(&config, jail).await;
        firewall
            .ban("web", lab.clients.a_ip, in_hour())
            .await
            .unwrap();
        assert_eq!(lab.a_reaches(lab.published), Reach::TimedOut);
        let hook_chain = format!("{}-docker", config.chain_prefix);

        sh("iptables", &["-w", "-D", "DOCKER-USER", "-j", &hook_chain]);
        assert_eq!(lab.a_reaches(lab.published), Reach::Connected);
        let report = firewall.ensure_layout().await.unwrap();
        assert_eq!(
            report.repaired,
            [format!("IPv4 jump DOCKER-USER -> {hook_chain}")]
        );
        assert_eq!(lab.a_reaches(lab.published), Reach::TimedOut);

        sh("iptables", &["-w", "-F", &hook_chain]);
        assert_eq!(lab.a_reaches(lab.published), Reach::Connected);
        let report = firewall.ensure_layout().await.unwrap();
        assert_eq!(report.repaired, [format!("IPv4 rules of {hook_chain}")]);
        assert_eq!(lab.a_reaches(lab.published), Reach::TimedOut);
        assert_eq!(lab.b_reaches(lab.published), Reach::Connected);
        assert!(firewall.ensure_layout().await.unwrap().is_clean());
        firewall.shutdown(false).await.unwrap();
    });
}
