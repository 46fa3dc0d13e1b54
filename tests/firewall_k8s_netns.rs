//! Bans on a Kubernetes node, with real packets: a network namespace plays a k3s node, with
//! DNAT rules like CNI portmap's for two hostPorts, one to a pod (a namespace of its own behind
//! the node, reached through `FORWARD`) and one to a host-network pod (the node's own address
//! on another port, reached through `INPUT`), and an sshd-like service on the node itself.
//! Clients A and B come from namespaces of their own, IPv4 and IPv6.
//!
//! What is checked for real: on target `kubernetes` a container jail's bans sit in raw
//! `PREROUTING` (the listing says so, first in the chain, beside another tool's rule) and drop
//! the banned client on both hostPorts while the other client is served; a host jail guards
//! the node's service from `INPUT` and may reject there; the same container jail on target
//! `docker` misses the hostPort that DNATs to the node's own address (why the raw hook
//! exists); a crash leaves the raw layout in place and the next run adopts it, a flush of the
//! raw table is repaired, and a clean stop removes everything of logjail's from it;
//! `firewall.target: auto` finds the node by kube-proxy's chain. With iptables-nft and
//! iptables-legacy alike. Nothing here touches the host's firewall.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use firewall_support::*;
use logjail::config::{
    Chain, FirewallAction, FirewallBackend, FirewallConfig, FirewallMode, FirewallTarget,
    PortRange, Ports, Protocol, RejectWith,
};
use logjail::firewall::{
    BanRequest, Family, Firewall, FirewallHandle, FirewallOptions, Hook, JailRule, Target,
};

/// The hostPort DNATed to the pod's port.
const POD_HOSTPORT: u16 = 8080;
const POD_PORT: u16 = 18080;
/// The hostPort DNATed to a host-network pod: the node's own address, another port.
const HOSTNET_HOSTPORT: u16 = 8081;
const HOSTNET_PORT: u16 = 18081;
/// The node's own sshd-like service.
const NODE_SSH: u16 = 2222;
const DROP_WAIT: Duration = Duration::from_millis(1200);

const A4: &str = "10.0.1.2";
const B4: &str = "10.0.2.2";
const A6: &str = "fd00:1::2";
const B6: &str = "fd00:2::2";
const NODE_A4: &str = "10.0.1.1";
const NODE_B4: &str = "10.0.2.1";
const NODE_A6: &str = "fd00:1::1";
const NODE_B6: &str = "fd00:2::1";
/// The pod network (flannel's `cni0` side of the node).
const NODE_POD4: &str = "10.42.0.1";
const POD4: &str = "10.42.0.5";
const NODE_POD6: &str = "fd00:42::1";
const POD6: &str = "fd00:42::5";
/// Another tool's rule in raw PREROUTING (flannel's VXLAN port untracked), which logjail
/// must leave alone.
const OTHERS_RAW_RULE: &str = "-p udp -m udp --dport 8472 -j CT --notrack";

/// A node namespace with a pod behind it and clients A and B in front, each on its own link.
struct Node {
    node: Netns,
    pod: Netns,
    a: Netns,
    b: Netns,
    backend: FirewallBackend,
}

impl Node {
    fn new(backend: FirewallBackend) -> Arc<Node> {
        let node = Node {
            node: Netns::new("ljkn"),
            pod: Netns::new("ljkp"),
            a: Netns::new("ljka"),
            b: Netns::new("ljkb"),
            backend,
        };
        link(&node.node, &node.a, (NODE_A4, A4), (NODE_A6, A6));
        link(&node.node, &node.b, (NODE_B4, B4), (NODE_B6, B6));
        link(&node.node, &node.pod, (NODE_POD4, POD4), (NODE_POD6, POD6));
        for forwarding in ["ipv4/ip_forward", "ipv6/conf/all/forwarding"] {
            let set = format!("echo 1 > /proc/sys/net/{forwarding}");
            node.node.sh("sh", &["-c", &set]);
        }
        // A REJECT answers with an ICMP error, which the kernel rate-limits per client (1 s
        // by default): one REJECT right after another to the same client would then show up
        // only with the SYN retransmit, a second later, and read as "not refused at once".
        for ratelimit in ["ipv4/icmp_ratelimit", "ipv6/icmp/ratelimit"] {
            let set = format!("echo 0 > /proc/sys/net/{ratelimit}");
            node.node.sh("sh", &["-c", &set]);
        }
        node.pod
            .sh("ip", &["-4", "route", "add", "default", "via", NODE_POD4]);
        node.pod
            .sh("ip", &["-6", "route", "add", "default", "via", NODE_POD6]);
        // What CNI portmap writes for the two hostPorts, in the node's own iptables.
        for family in Family::ALL {
            let (pod, node_itself) = match family {
                Family::V4 => (
                    format!("{POD4}:{POD_PORT}"),
                    format!("{NODE_A4}:{HOSTNET_PORT}"),
                ),
                Family::V6 => (
                    format!("[{POD6}]:{POD_PORT}"),
                    format!("[{NODE_A6}]:{HOSTNET_PORT}"),
                ),
            };
            let program = node.program(family);
            for (hostport, destination) in [(POD_HOSTPORT, pod), (HOSTNET_HOSTPORT, node_itself)] {
                node.node.sh(
                    program,
                    &[
                        "-w",
                        "-t",
                        "nat",
                        "-A",
                        "PREROUTING",
                        "-p",
                        "tcp",
                        "--dport",
                        &hostport.to_string(),
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &destination,
                    ],
                );
            }
            let mut others = vec!["-w", "-t", "raw", "-A", "PREROUTING"];
            others.extend(OTHERS_RAW_RULE.split(' '));
            node.node.sh(program, &others);
        }
        Arc::new(node)
    }

    /// The iptables program of the node's backend for one family.
    fn program(&self, family: Family) -> &'static str {
        match (self.backend, family) {
            (FirewallBackend::Legacy, Family::V4) => "iptables-legacy",
            (FirewallBackend::Legacy, Family::V6) => "ip6tables-legacy",
            (_, Family::V4) => "iptables-nft",
            (_, Family::V6) => "ip6tables-nft",
        }
    }

    /// A client's connection to a port of the node, on the node's address on its link.
    fn reaches(&self, client: &Netns, v6: bool, port: u16) -> Reach {
        let node = match (client.name == self.a.name, v6) {
            (true, false) => NODE_A4,
            (true, true) => NODE_A6,
            (false, false) => NODE_B4,
            (false, true) => NODE_B6,
        };
        try_connect(client, SocketAddr::new(ip(node), port), DROP_WAIT)
    }

    fn a_reaches(&self, v6: bool, port: u16) -> Reach {
        self.reaches(&self.a, v6, port)
    }

    fn b_reaches(&self, v6: bool, port: u16) -> Reach {
        self.reaches(&self.b, v6, port)
    }

    /// The servers: the pod's, the host-network pod's and the node's sshd. The kernel
    /// completes handshakes into their backlogs; they close when dropped. Returns once both
    /// clients reach all three over IPv4 and IPv6: the first IPv6 SYN the node forwards to the
    /// pod waits for neighbour discovery and is only answered at its retransmit, a second
    /// later, which a check for a drop would take for one.
    fn serve(&self) -> Vec<std::net::TcpListener> {
        let servers = vec![
            listen(&self.pod, POD_PORT),
            listen(&self.node, HOSTNET_PORT),
            listen(&self.node, NODE_SSH),
        ];
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for client in [&self.a, &self.b] {
            for v6 in [false, true] {
                for port in [POD_HOSTPORT, HOSTNET_HOSTPORT, NODE_SSH] {
                    while self.reaches(client, v6, port) != Reach::Connected {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "{} never reached port {port} (v6={v6})",
                            client.name
                        );
                    }
                }
            }
        }
        servers
    }

    /// Runs an async test body in the node namespace (firewall thread included).
    fn run<F, Fut>(self: &Arc<Self>, body: F)
    where
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let node = self.clone();
        self.node.run(move || runtime().block_on(body(node)));
    }

    /// `-t TABLE -S` of one family, from the node namespace's thread.
    fn table(&self, family: Family, table: &str) -> String {
        sh(self.program(family), &["-w", "-t", table, "-S"])
    }

    /// The raw PREROUTING rules of one family, in order.
    fn raw_prerouting(&self, family: Family) -> Vec<String> {
        self.table(family, "raw")
            .lines()
            .filter_map(|line| line.strip_prefix("-A PREROUTING "))
            .map(str::to_string)
            .collect()
    }

    /// Lines of both tables and families that mention `prefix`, sorted.
    fn ours(&self, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> = Family::ALL
            .into_iter()
            .flat_map(|family| {
                ["filter", "raw"]
                    .into_iter()
                    .map(move |table| (family, table))
            })
            .flat_map(|(family, table)| {
                self.table(family, table)
                    .lines()
                    .filter(|line| line.contains(prefix))
                    .map(|line| format!("{family:?} {table} {line}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    }
}

fn config(backend: FirewallBackend, target: FirewallTarget, mode: FirewallMode) -> FirewallConfig {
    FirewallConfig {
        backend,
        target,
        mode,
        keep_bans_on_exit: false,
        chain_prefix: unique("ljk"),
    }
}

fn ports(list: &[u16]) -> Ports {
    Ports::List(
        list.iter()
            .map(|&port| PortRange {
                first: port,
                last: port,
            })
            .collect(),
    )
}

/// A jail for the pod's hostPorts, as routing makes one for a workload: `docker-user`, which
/// the target places.
fn pod_jail(action: FirewallAction) -> JailRule {
    JailRule {
        name: "pod".to_string(),
        chains: vec![Chain::DockerUser],
        ports: ports(&[POD_HOSTPORT, HOSTNET_HOSTPORT]),
        protocol: Protocol::Tcp,
        action,
        ignoreip: Vec::new(),
    }
}

/// A YAML jail for the node's own sshd.
fn sshd_jail(action: FirewallAction) -> JailRule {
    JailRule {
        name: "sshd".to_string(),
        chains: vec![Chain::Input],
        ports: ports(&[NODE_SSH]),
        protocol: Protocol::Tcp,
        action,
        ignoreip: Vec::new(),
    }
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

const BACKENDS: [FirewallBackend; 2] = [FirewallBackend::Nft, FirewallBackend::Legacy];

/// The raw layout of one jail in ipset mode: our jump first in PREROUTING, the other tool's
/// rule kept, the hook chain selecting the hostPorts, the set match dropping.
fn assert_raw_ban_layout(node: &Node, prefix: &str, family: Family) {
    let prerouting = node.raw_prerouting(family);
    assert_eq!(
        prerouting,
        [format!("-j {prefix}-raw"), OTHERS_RAW_RULE.to_string()],
        "{family:?}: our jump first, the other tool's rule kept"
    );
    let raw = node.table(family, "raw");
    let tag = match family {
        Family::V4 => "4",
        Family::V6 => "6",
    };
    for line in [
        format!(
            "-A {prefix}-raw -p tcp -m multiport --dports {POD_HOSTPORT},{HOSTNET_HOSTPORT} -j {prefix}-j-pod-r"
        ),
        format!("-A {prefix}-j-pod-r -m set --match-set {prefix}-s-pod-{tag} src -j DROP"),
    ] {
        assert!(raw.lines().any(|l| l == line), "{line} missing:\n{raw}");
    }
    let filter = node.table(family, "filter");
    assert!(
        !filter.contains("DOCKER-USER"),
        "no DOCKER-USER on a Kubernetes node:\n{filter}"
    );
}

#[test]
fn on_a_node_a_pod_ban_drops_the_client_before_dnat_and_a_host_jail_guards_the_node() {
    for backend in BACKENDS {
        let node = Node::new(backend);
        let _servers = node.serve();
        let config = config(backend, FirewallTarget::Kubernetes, FirewallMode::Ipset);
        node.run(move |node| async move {
            // The pod jail asks for a reject: raw PREROUTING cannot, so it drops there. The
            // host jail keeps its reject in INPUT.
            let firewall = start(
                &config,
                vec![
                    pod_jail(FirewallAction::Reject(RejectWith::TcpReset)),
                    sshd_jail(FirewallAction::Reject(RejectWith::IcmpPortUnreachable)),
                ],
            )
            .await;
            for v6 in [false, true] {
                for port in [POD_HOSTPORT, HOSTNET_HOSTPORT, NODE_SSH] {
                    assert_eq!(node.a_reaches(v6, port), Reach::Connected, "{port} v6={v6}");
                }
            }
            let status = firewall.status().await.unwrap();
            assert_eq!(status.target, Target::Kubernetes);
            assert!(
                status
                    .summary()
                    .ends_with(", kubernetes target (configured (firewall.target: kubernetes))"),
                "{}",
                status.summary()
            );
            let [pod, sshd] = status.jails.as_slice() else {
                panic!("{status:?}");
            };
            assert_eq!(pod.hooks.len(), 1, "{pod:?}");
            assert_eq!(pod.hooks[0].hook, Hook::RawPrerouting);
            assert_eq!(
                pod.hooks[0].chain,
                format!("{}-j-pod-r", config.chain_prefix)
            );
            assert_eq!(pod.hooks[0].verdict, "drop");
            assert_eq!(sshd.hooks[0].hook, Hook::Input);
            assert_eq!(sshd.hooks[0].verdict, "reject-with icmp-port-unreachable");

            for host in [A4, A6] {
                firewall.ban("pod", ip(host), in_hour()).await.unwrap();
            }
            for family in Family::ALL {
                assert_raw_ban_layout(&node, &config.chain_prefix, family);
            }
            for v6 in [false, true] {
                for port in [POD_HOSTPORT, HOSTNET_HOSTPORT] {
                    assert_eq!(
                        node.a_reaches(v6, port),
                        Reach::TimedOut,
                        "{backend:?}: banned client on hostPort {port}, v6={v6}"
                    );
                    assert_eq!(node.b_reaches(v6, port), Reach::Connected, "{port} v6={v6}");
                }
                // A pod's jail never closes the node's own service.
                assert_eq!(node.a_reaches(v6, NODE_SSH), Reach::Connected, "v6={v6}");
            }

            for host in [A4, A6] {
                firewall.ban("sshd", ip(host), in_hour()).await.unwrap();
            }
            for v6 in [false, true] {
                let reach = node.a_reaches(v6, NODE_SSH);
                assert!(reach.refused_fast(), "v6={v6}: {reach:?}");
                assert_eq!(node.b_reaches(v6, NODE_SSH), Reach::Connected, "v6={v6}");
            }

            assert_eq!(firewall.unban_all("pod").await.unwrap(), 2);
            for v6 in [false, true] {
                assert_eq!(
                    node.a_reaches(v6, POD_HOSTPORT),
                    Reach::Connected,
                    "v6={v6}"
                );
            }
            firewall.shutdown(false).await.unwrap();
            assert_eq!(node.ours(&config.chain_prefix), [] as [String; 0]);
            for family in Family::ALL {
                assert_eq!(
                    node.raw_prerouting(family),
                    [OTHERS_RAW_RULE],
                    "{family:?}: the other tool's rule outlives us"
                );
            }
            assert_eq!(our_sets(&config.chain_prefix), [] as [String; 0]);
        });
    }
}

/// The reason for the raw hook, shown with the same jail on target `docker` (here logjail
/// makes `DOCKER-USER`): the hostPort to a pod passes `FORWARD` and is caught, the hostPort
/// DNATed to the node's own address goes to `INPUT` and never meets `DOCKER-USER`.
#[test]
fn the_same_pod_jail_on_target_docker_misses_a_hostport_to_the_node_itself() {
    let node = Node::new(FirewallBackend::Nft);
    let _servers = node.serve();
    let config = config(
        FirewallBackend::Nft,
        FirewallTarget::Docker,
        FirewallMode::Ipset,
    );
    node.run(move |node| async move {
        let firewall = start(&config, vec![pod_jail(FirewallAction::Drop)]).await;
        firewall.ban("pod", ip(A4), in_hour()).await.unwrap();
        assert_eq!(node.a_reaches(false, POD_HOSTPORT), Reach::TimedOut);
        assert_eq!(
            node.a_reaches(false, HOSTNET_HOSTPORT),
            Reach::Connected,
            "DOCKER-USER never sees traffic DNATed to the node itself"
        );
        assert!(
            node.raw_prerouting(Family::V4)
                .iter()
                .all(|rule| !rule.contains(&config.chain_prefix))
        );
        firewall.shutdown(false).await.unwrap();
    });
}

/// Start, ban, stop as a crash would (nothing left but the kernel state), start again
/// without one of the jails: the raw chains and bans are adopted without duplicates and the
/// removed jail's go. Then another tool flushes the raw table: a layout check puts it back.
/// A clean stop removes everything of ours. Both modes, both backends.
#[test]
fn the_raw_hook_is_adopted_after_a_crash_repaired_after_a_flush_and_removed_on_stop() {
    for backend in BACKENDS {
        let node = Node::new(backend);
        let _servers = node.serve();
        for mode in [FirewallMode::Ipset, FirewallMode::Rules] {
            let config = config(backend, FirewallTarget::Kubernetes, mode);
            node.run(move |node| async move {
                let prefix = config.chain_prefix.clone();
                let gone = JailRule {
                    name: "gone".to_string(),
                    chains: vec![Chain::Prerouting],
                    ports: Ports::All,
                    protocol: Protocol::All,
                    action: FirewallAction::Drop,
                    ignoreip: Vec::new(),
                };
                let jails = vec![pod_jail(FirewallAction::Drop), gone];
                let end = Utc::now() + chrono::Duration::seconds(900);
                let bans = vec![
                    BanRequest {
                        jail: "pod".into(),
                        host: ip(A4),
                        end: Some(end),
                    },
                    BanRequest {
                        jail: "pod".into(),
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
                let before = node.ours(&prefix);
                assert!(
                    before.iter().any(|line| line.contains("-gone-")),
                    "{before:?}"
                );
                if mode == FirewallMode::Rules {
                    let ban = format!("-A {prefix}-j-pod-r -s {A4}/32 -m comment");
                    assert!(
                        before.iter().any(|line| line.contains(&ban)),
                        "one raw rule per ban: {before:?}"
                    );
                }
                assert_eq!(node.a_reaches(false, POD_HOSTPORT), Reach::TimedOut);

                let firewall = start(&config, vec![jails[0].clone()]).await;
                let found = firewall.bans("pod").await.unwrap();
                assert_eq!(found.len(), 2, "{mode:?}: {found:?}");
                let v4 = found.iter().find(|ban| ban.host == ip(A4)).unwrap();
                assert!((v4.end.unwrap() - end).num_seconds().abs() <= 2);
                let expected: Vec<String> = before
                    .iter()
                    .filter(|line| !line.contains("-gone-"))
                    .cloned()
                    .collect();
                assert_eq!(node.ours(&prefix), expected, "{mode:?}");
                assert_eq!(firewall.ban_many(bans).await.unwrap().applied, 2);
                assert_eq!(
                    node.ours(&prefix),
                    expected,
                    "re-applied without duplicates"
                );
                assert!(firewall.ensure_layout().await.unwrap().is_clean());
                assert_eq!(node.b_reaches(false, POD_HOSTPORT), Reach::Connected);

                // `iptables -t raw -F; -X` by another tool (a firewall reload).
                for family in Family::ALL {
                    sh(node.program(family), &["-w", "-t", "raw", "-F"]);
                    sh(node.program(family), &["-w", "-t", "raw", "-X"]);
                }
                assert_eq!(node.a_reaches(true, POD_HOSTPORT), Reach::Connected);
                let report = firewall.ensure_layout().await.unwrap();
                for family in ["IPv4", "IPv6"] {
                    let jump = format!("{family} jump raw PREROUTING -> {prefix}-raw");
                    assert!(report.repaired.contains(&jump), "{report:?}");
                }
                assert_eq!(node.ours(&prefix), expected, "{mode:?}");
                assert_eq!(node.a_reaches(true, POD_HOSTPORT), Reach::TimedOut);
                assert!(firewall.ensure_layout().await.unwrap().is_clean());

                firewall.shutdown(false).await.unwrap();
                assert_eq!(node.ours(&prefix), [] as [String; 0], "{mode:?}");
                assert_eq!(node.a_reaches(false, POD_HOSTPORT), Reach::Connected);
                // What the flush took is the other tool's to put back; put it back for the
                // next mode.
                for family in Family::ALL {
                    let mut others = vec!["-w", "-t", "raw", "-A", "PREROUTING"];
                    others.extend(OTHERS_RAW_RULE.split(' '));
                    sh(node.program(family), &others);
                }
            });
        }
    }
}

/// `firewall.target: auto` on a node where kube-proxy has made its chain (here by the test,
/// in the node's own iptables of each backend): Kubernetes, said why, bans in raw PREROUTING.
#[test]
fn auto_finds_a_kubernetes_node_by_kube_proxys_chain() {
    for backend in BACKENDS {
        let node = Node::new(backend);
        let _servers = node.serve();
        let config = config(backend, FirewallTarget::Auto, FirewallMode::Ipset);
        node.run(move |node| async move {
            sh(
                node.program(Family::V4),
                &["-w", "-t", "nat", "-N", "KUBE-SERVICES"],
            );
            let firewall = start(&config, vec![pod_jail(FirewallAction::Drop)]).await;
            let status = firewall.status().await.unwrap();
            assert_eq!(
                status.target,
                Target::Kubernetes,
                "{}",
                status.target_reason
            );
            assert_eq!(
                status.target_reason,
                format!(
                    "auto: Kubernetes' chain KUBE-SERVICES is in {}",
                    node.program(Family::V4)
                )
            );
            assert_eq!(status.jails[0].hooks[0].hook, Hook::RawPrerouting);
            firewall.ban("pod", ip(A4), in_hour()).await.unwrap();
            assert_raw_ban_layout(&node, &config.chain_prefix, Family::V4);
            assert_eq!(node.a_reaches(false, HOSTNET_HOSTPORT), Reach::TimedOut);
            assert_eq!(node.b_reaches(false, HOSTNET_HOSTPORT), Reach::Connected);
            firewall.shutdown(false).await.unwrap();
        });
    }
}
