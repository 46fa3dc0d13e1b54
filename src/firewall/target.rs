//! Which kind of host the bans are for (a Docker host, a Kubernetes node, a host without a
//! container runtime), as configured or detected from the chains and sockets runtimes leave.
//!
//! The target decides where a jail's `docker-user` bans sit (see [`Hook::for_chain`]). On a
//! Kubernetes node hostPort (CNI portmap), NodePort (kube-proxy) and ServiceLB rewrite the
//! destination in nat `PREROUTING`, before any filter chain: `INPUT` sees the port after DNAT
//! (or nothing, for a pod), `FORWARD` misses services on the node, and there is no
//! `DOCKER-USER`. Only raw `PREROUTING` sees every packet with the port the client used.
//!
//! Detection, in order, first match wins:
//! 1. a `KUBE-*` chain (kube-proxy, kubelet, kube-router) in the filter or nat table:
//!    `kubernetes`, even where Docker is installed too, because raw `PREROUTING` also stops
//!    clients of Docker's published ports while `DOCKER-USER` never sees a pod's;
//! 2. the k3s or CRI-O socket: `kubernetes` (their only use is running pods);
//! 3. Docker's chains, or Docker's socket: `docker`;
//! 4. plain containerd's socket: `kubernetes`. Checked after Docker because Docker's engine
//!    runs on containerd and often leaves that socket; without Docker, containerd serves a
//!    kubelet or nerdctl, both publishing ports through CNI portmap's DNAT;
//! 5. `host`.
//!
//! Like the backend, the target is decided once at start: a node whose runtime starts after
//! logjail should set `firewall.target` rather than rely on `auto`.
//!
//! [`Hook::for_chain`]: super::names::Hook::for_chain

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::backend::{self, BackendChoice};
use super::names::Family;
use crate::config::FirewallTarget;

/// Docker's socket where the engine makes it.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// k3s's embedded containerd.
pub const K3S_SOCKET: &str = "/run/k3s/containerd/containerd.sock";
/// CRI-O's socket.
pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";
/// A plain containerd's socket (kubeadm nodes, nerdctl hosts, and Docker's own containerd).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// Every socket detection looks at.
pub const KNOWN_SOCKETS: [&str; 4] = [DOCKER_SOCKET, K3S_SOCKET, CRIO_SOCKET, CONTAINERD_SOCKET];

/// A target in force once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Docker,
    Kubernetes,
    Host,
}

impl fmt::Display for Target {
    /// As `firewall.target` spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Docker => "docker",
            Target::Kubernetes => "kubernetes",
            Target::Host => "host",
        })
    }
}

/// The target and why, for the log and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChoice {
    pub target: Target,
    pub reason: String,
}

/// What detection looked at: the chains of one iptables program and the sockets present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The program listed (`iptables-nft`), named in the reason.
    pub program: String,
    /// Chains declared (`-N NAME`) in its filter and nat tables.
    pub chains: BTreeSet<String>,
    /// Which of [`KNOWN_SOCKETS`] exist as sockets.
    pub sockets: BTreeSet<String>,
}

impl Evidence {
    /// Evidence from `iptables -S` listings (any number of tables) and the sockets found.
    pub fn from_listings<'a>(
        program: &str,
        listings: impl IntoIterator<Item = &'a str>,
        sockets: impl IntoIterator<Item = &'a str>,
    ) -> Evidence {
        let chains = listings
            .into_iter()
            .flat_map(str::lines)
            .filter_map(|line| line.strip_prefix("-N "))
            .map(|rest| rest.split(' ').next().unwrap_or(rest).to_string())
            .collect();
        Evidence {
            program: program.to_string(),
            chains,
            sockets: sockets.into_iter().map(str::to_string).collect(),
        }
    }

    fn has_socket(&self, socket: &str) -> bool {
        self.sockets.contains(socket)
    }
}

/// Resolves `firewall.target`; `auto` looks at the chosen backend's IPv4 chains and at the
/// runtimes' sockets.
pub fn choose(configured: FirewallTarget, backend: &BackendChoice) -> TargetChoice {
    let configured_as = |target: Target| TargetChoice {
        target,
        reason: format!("configured (firewall.target: {target})"),
    };
    match configured {
        FirewallTarget::Docker => configured_as(Target::Docker),
        FirewallTarget::Kubernetes => configured_as(Target::Kubernetes),
        FirewallTarget::Host => configured_as(Target::Host),
        FirewallTarget::Auto => decide(&gather(backend)),
    }
}

/// The choice `auto` makes from what it found (the order is the module documentation's).
pub fn decide(evidence: &Evidence) -> TargetChoice {
    let auto = |target: Target, why: String| TargetChoice {
        target,
        reason: format!("auto: {why}"),
    };
    let program = &evidence.program;
    let kube = evidence
        .chains
        .iter()
        .find(|chain| *chain == "KUBE-SERVICES")
        .or_else(|| {
            evidence
                .chains
                .iter()
                .find(|chain| chain.starts_with("KUBE-"))
        });
    if let Some(chain) = kube {
        return auto(
            Target::Kubernetes,
            format!("Kubernetes' chain {chain} is in {program}"),
        );
    }
    for socket in [K3S_SOCKET, CRIO_SOCKET] {
        if evidence.has_socket(socket) {
            return auto(
                Target::Kubernetes,
                format!("the CRI socket {socket} is there"),
            );
        }
    }
    let docker = ["DOCKER-USER", "DOCKER"]
        .into_iter()
        .find(|chain| evidence.chains.contains(*chain));
    if let Some(chain) = docker {
        return auto(
            Target::Docker,
            format!("Docker's chain {chain} is in {program}"),
        );
    }
    if evidence.has_socket(DOCKER_SOCKET) {
        return auto(
            Target::Docker,
            format!("the Docker socket {DOCKER_SOCKET} is there"),
        );
    }
    if evidence.has_socket(CONTAINERD_SOCKET) {
        return auto(
            Target::Kubernetes,
            format!("the CRI socket {CONTAINERD_SOCKET} is there and Docker is not"),
        );
    }
    auto(
        Target::Host,
        format!(
            "no Docker or Kubernetes here (no DOCKER or KUBE-* chains in {program}, no Docker \
             or CRI socket)"
        ),
    )
}

/// Lists the filter and nat tables (a table that cannot be listed counts as empty) and looks
/// for the sockets.
fn gather(backend: &BackendChoice) -> Evidence {
    let program = backend.iptables(Family::V4);
    let listings: Vec<String> = ["filter", "nat"]
        .into_iter()
        .filter_map(|table| backend::run(program, &["-w", "-t", table, "-S"], None).ok())
        .collect();
    let sockets = KNOWN_SOCKETS.into_iter().filter(|socket| is_socket(socket));
    Evidence::from_listings(program, listings.iter().map(String::as_str), sockets)
}

fn is_socket(path: &str) -> bool {
    std::fs::metadata(Path::new(path)).is_ok_and(|metadata| metadata.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(listing: &[&str], sockets: &[&'static str]) -> TargetChoice {
        decide(&Evidence::from_listings(
            "iptables-nft",
            [listing.join("\n").as_str()],
            sockets.iter().copied(),
        ))
    }

    const BARE: [&str; 3] = ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"];

    /// A k3s node as kube-proxy and the kubelet leave its nat and filter tables.
    const K3S_NAT: [&str; 6] = [
        "-P PREROUTING ACCEPT",
        "-N KUBE-KUBELET-CANARY",
        "-N KUBE-MARK-MASQ",
        "-N KUBE-NODEPORTS",
        "-N KUBE-SERVICES",
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ];

    /// A Docker host's filter table.
    const DOCKER_FILTER: [&str; 5] = [
        "-P FORWARD DROP",
        "-N DOCKER",
        "-N DOCKER-ISOLATION-STAGE-1",
        "-N DOCKER-USER",
        "-A FORWARD -j DOCKER-USER",
    ];

    #[test]
    fn kube_proxys_chains_make_a_kubernetes_node_even_with_docker_installed() {
        let choice = found(&K3S_NAT, &[]);
        assert_eq!(choice.target, Target::Kubernetes);
        assert_eq!(
            choice.reason,
            "auto: Kubernetes' chain KUBE-SERVICES is in iptables-nft"
        );
        let mut both: Vec<&str> = K3S_NAT.to_vec();
        both.extend(DOCKER_FILTER);
        let choice = found(&both, &[DOCKER_SOCKET]);
        assert_eq!(choice.target, Target::Kubernetes, "{choice:?}");
        // Only the kubelet's canary (kube-proxy not running yet, or replaced by Cilium).
        let choice = found(&["-N KUBE-KUBELET-CANARY"], &[]);
        assert_eq!(choice.target, Target::Kubernetes);
        assert!(choice.reason.contains("KUBE-KUBELET-CANARY"), "{choice:?}");
    }

    #[test]
    fn k3s_and_crio_sockets_make_a_kubernetes_node_before_any_chain_exists() {
        for socket in [K3S_SOCKET, CRIO_SOCKET] {
            let choice = found(&BARE, &[socket, DOCKER_SOCKET]);
            assert_eq!(choice.target, Target::Kubernetes, "{socket}");
            assert_eq!(
                choice.reason,
                format!("auto: the CRI socket {socket} is there")
            );
        }
    }

    #[test]
    fn dockers_chains_or_socket_make_a_docker_host() {
        let choice = found(&DOCKER_FILTER, &[]);
        assert_eq!(choice.target, Target::Docker);
        assert_eq!(
            choice.reason,
            "auto: Docker's chain DOCKER-USER is in iptables-nft"
        );
        // Docker's engine runs on containerd and may leave its socket: still Docker.
        let choice = found(&BARE, &[DOCKER_SOCKET, CONTAINERD_SOCKET]);
        assert_eq!(choice.target, Target::Docker);
        assert!(choice.reason.contains(DOCKER_SOCKET), "{choice:?}");
    }

    #[test]
    fn containerd_without_docker_is_a_kubernetes_node_and_nothing_is_a_host() {
        let choice = found(&BARE, &[CONTAINERD_SOCKET]);
        assert_eq!(choice.target, Target::Kubernetes);
        assert!(choice.reason.contains("Docker is not"), "{choice:?}");
        let choice = found(&BARE, &[]);
        assert_eq!(choice.target, Target::Host);
        assert!(choice.reason.starts_with("auto: no Docker"), "{choice:?}");
        // Chains that merely start like Docker's or Kubernetes' are someone else's.
        let choice = found(&["-N DOCKERISH", "-N KUBEX", "-N kube-services"], &[]);
        assert_eq!(choice.target, Target::Host, "{choice:?}");
    }

    #[test]
    fn chains_are_read_from_every_listing_given() {
        let evidence = Evidence::from_listings(
            "iptables-legacy",
            ["-N A\n-A A -j B", "-N KUBE-FORWARD\n-P INPUT ACCEPT"],
            [CRIO_SOCKET],
        );
        assert_eq!(
            evidence
                .chains
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["A", "KUBE-FORWARD"]
        );
        assert!(evidence.has_socket(CRIO_SOCKET));
        assert_eq!(
            decide(&evidence).reason,
            "auto: Kubernetes' chain KUBE-FORWARD is in iptables-legacy"
        );
    }

    #[test]
    fn a_configured_target_is_taken_as_given() {
        let backend = backend::choose(crate::config::FirewallBackend::Nft).unwrap();
        let choice = choose(FirewallTarget::Kubernetes, &backend);
        assert_eq!(choice.target, Target::Kubernetes);
        assert_eq!(choice.reason, "configured (firewall.target: kubernetes)");
        assert_eq!(choose(FirewallTarget::Host, &backend).target, Target::Host);
    }
}
