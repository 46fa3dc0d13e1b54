//! A k3s node end to end, for real: a network namespace plays the node, a private containerd
//! runs inside it (started through `nsenter --net=…`, as `support::containerd` does) with a
//! host-network pod serving HTTP (busybox httpd on the node's port 18080, logging every answer
//! with the client's address to stderr, which the runtime writes to the pod's CRI log), and a
//! DNAT like CNI portmap's sends the hostPort 8080 to it. The real `logjail run` runs in the
//! node namespace on `firewall.target: kubernetes` with the pods source on, reading the pod's
//! log files and its annotations through the runtime's CRI socket. Clients A and B come from
//! namespaces of their own.
//!
//! Checked with real packets: A's 404s through the hostPort make the pod's annotation jail ban
//! A in raw `PREROUTING`, before the DNAT (A's connect to 8080 times out while B is served);
//! the node's own sshd-like service (a listener on 2222 and a host log file) is closed to A
//! only by the YAML `sshd` jail on `INPUT`, never by the pod's jail; after `kill -9` and a
//! restart A is still dropped on 8080 with exactly one entry in the jail's set, B is served,
//! and `status` names the kubernetes target. IPv4 only (`firewall_k8s_netns` covers IPv6).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use firewall_support::docker_host::{set_holds, tail, wait_until};
use firewall_support::{Netns, Reach, ip, link, listen, try_connect, unique};
use support::containerd::{Containerd, PodSpec};
use support::process::{LogjailProcess, LogjailRun};

/// The pod's hostPort, DNATed to the pod's server.
const HOSTPORT: u16 = 8080;
/// Where the host-network pod's server listens, on the node.
const POD_PORT: u16 = 18080;
/// The node's own sshd-like service.
const NODE_SSH: u16 = 2222;
/// A connection attempt that gets no answer for this long was dropped.
const DROP_WAIT: Duration = Duration::from_millis(1500);
/// Longest wait for an HTTP answer of the pod.
const HTTP_WAIT: Duration = Duration::from_secs(10);

const NODE_A: &str = "10.0.1.1";
const A: &str = "10.0.1.2";
const NODE_B: &str = "10.0.2.1";
const B: &str = "10.0.2.2";
/// The pod's annotation jail.
const POD_JAIL: &str = "web";

/// The node with its clients; the namespaces go when dropped.
struct Node {
    node: Netns,
    a: Netns,
    b: Netns,
}

impl Node {
    fn new() -> Node {
        let node = Node {
            node: Netns::new("ljn"),
            a: Netns::new("ljna"),
            b: Netns::new("ljnb"),
        };
        link(&node.node, &node.a, (NODE_A, A), ("fd00:1::1", "fd00:1::2"));
        link(&node.node, &node.b, (NODE_B, B), ("fd00:2::1", "fd00:2::2"));
        // What CNI portmap writes for a hostPort of a host-network pod: the node's own
        // address, another port.
        node.node.sh(
            "iptables",
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                &HOSTPORT.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{NODE_A}:{POD_PORT}"),
            ],
        );
        node
    }

    fn node_address_for(&self, client: &Netns) -> IpAddr {
        if client.name == self.a.name {
            ip(NODE_A)
        } else {
            ip(NODE_B)
        }
    }

    fn reaches(&self, client: &Netns, port: u16) -> Reach {
        try_connect(
            client,
            SocketAddr::new(self.node_address_for(client), port),
            DROP_WAIT,
        )
    }

    /// One HTTP/1.0 request from `client` through the hostPort; the whole answer.
    fn get(&self, client: &Netns, path: &str) -> String {
        let target = SocketAddr::new(self.node_address_for(client), HOSTPORT);
        let request = format!("GET {path} HTTP/1.0\r\n\r\n");
        client.run(move || {
            let mut stream = TcpStream::connect_timeout(&target, HTTP_WAIT).unwrap();
            stream.set_read_timeout(Some(HTTP_WAIT)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
    }

    /// `iptables -t TABLE -S` in the node namespace.
    fn table(&self, table: &str) -> String {
        self.node.sh("iptables", &["-w", "-t", table, "-S"])
    }

    /// Entries of an ipset set in the node namespace.
    fn set_entries(&self, set: &str) -> Vec<String> {
        self.node
            .sh("ipset", &["list", set])
            .lines()
            .skip_while(|line| !line.starts_with("Members:"))
            .skip(1)
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

fn config(dir: &Path, containerd: &Containerd, prefix: &str) -> String {
    format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/lj.sock}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
firewall: {{target: kubernetes, chain_prefix: {prefix}}}
pods: {{enabled: true, log_dir: {log_dir}, runtime_socket: {socket}}}
filters:
  httpd4xx:
    failregex: ['^<HOST>:\d+: response:40[134]$']
jails:
  sshd:
    filter: sshd
    maxretry: 2
    bantime: 1h
    ports: "{NODE_SSH}"
    protocol: tcp
    chains: [input]
    sources:
      - file: {dir}/auth.log
"#,
        dir = dir.display(),
        log_dir = containerd.log_dir.display(),
        socket = containerd.socket().display(),
    )
}

/// A failed password from `host` as sshd logs it through syslog, stamped now.
fn failed_password(host: &str) -> String {
    format!(
        "{} node sshd[4242]: Failed password for root from {host} port 1 ssh2\n",
        chrono::Local::now().format("%b %e %H:%M:%S")
    )
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn on_a_k3s_node_a_pods_annotation_jail_drops_its_client_before_dnat_and_never_guards_the_node() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = Node::new();
    let containerd = runtime.block_on(Containerd::start_in_netns(&node.node.name));
    let spec = PodSpec::new("shop", "web-0")
        .annotation(&format!("logjail.io/jail.{POD_JAIL}.filter"), "httpd4xx")
        .annotation(
            &format!("logjail.io/jail.{POD_JAIL}.port"),
            &HOSTPORT.to_string(),
        )
        .annotation(&format!("logjail.io/jail.{POD_JAIL}.maxretry"), "3")
        .annotation(&format!("logjail.io/jail.{POD_JAIL}.bantime"), "1h");
    let pod = runtime.block_on(containerd.run_pod(spec));
    let script = format!(
        "mkdir -p /www && echo served > /www/index.html && exec httpd -f -vv -p {POD_PORT} -h /www"
    );
    runtime.block_on(containerd.run_container(&pod, "web", 0, &script));
    let _sshd = listen(&node.node, NODE_SSH);
    wait_until(
        "the pod to serve B through the hostPort",
        || containerd.log(),
        || node.reaches(&node.b, HOSTPORT) == Reach::Connected,
    );
    assert!(node.get(&node.b, "/").contains("served"));

    let dir = tempfile::Builder::new()
        .prefix("ljk3s")
        .tempdir_in("/tmp")
        .unwrap();
    let prefix = unique("ljk3");
    let pod_set = format!("{prefix}-s-{POD_JAIL}-4");
    let sshd_set = format!("{prefix}-s-sshd-4");
    let auth_log = dir.path().join("auth.log");
    std::fs::write(&auth_log, "").unwrap();
    let config_path = dir.path().join("logjail.yaml");
    std::fs::write(&config_path, config(dir.path(), &containerd, &prefix)).unwrap();
    let mut logjail = LogjailRun::new(&config_path).netns(&node.node.name).start();
    let context = |logjail: &LogjailProcess| {
        format!(
            "logjail:\n{}\ncontainerd:\n{}",
            tail(&logjail.log()),
            tail(&containerd.log())
        )
    };
    wait_until(
        "the pod's container to be followed",
        || context(&logjail),
        || {
            logjail.log().contains("following pod container")
                && logjail.log().contains(&format!("jails={POD_JAIL}"))
        },
    );

    // Three 404s from A through the hostPort: the pod's annotation jail bans A.
    for _ in 0..3 {
        let answer = node.get(&node.a, "/missing");
        assert!(
            answer
                .lines()
                .next()
                .is_some_and(|status| status.contains(" 404 ")),
            "{answer}"
        );
    }
    wait_until(
        "A in the pod jail's set",
        || context(&logjail),
        || set_holds(&node.node, &pod_set, ip(A)),
    );
    assert_eq!(node.reaches(&node.a, HOSTPORT), Reach::TimedOut);
    assert!(node.get(&node.b, "/").contains("served"), "B is served");
    let raw = node.table("raw");
    assert!(
        raw.lines()
            .any(|line| line == format!("-A PREROUTING -j {prefix}-raw")),
        "the jump in raw PREROUTING:\n{raw}"
    );
    let hook = format!("{prefix}-j-{POD_JAIL}-r");
    assert!(
        raw.lines()
            .any(|line| line.starts_with(&format!("-A {prefix}-raw "))
                && line.contains(&HOSTPORT.to_string())
                && line.ends_with(&format!("-j {hook}"))),
        "the hostPort selected before DNAT:\n{raw}"
    );
    assert!(
        raw.lines()
            .any(|line| line == format!("-A {hook} -m set --match-set {pod_set} src -j DROP")),
        "the set match drops:\n{raw}"
    );
    let filter = node.table("filter");
    assert!(
        !filter.contains(&pod_set),
        "the pod jail has nothing in the filter table:\n{filter}"
    );

    // The node's own service: the pod's jail does not close it.
    assert_eq!(
        node.reaches(&node.a, NODE_SSH),
        Reach::Connected,
        "a pod's jail never guards the node's sshd"
    );
    append(&auth_log, &failed_password(A));
    append(&auth_log, &failed_password(A));
    wait_until(
        "A in the sshd jail's set",
        || context(&logjail),
        || set_holds(&node.node, &sshd_set, ip(A)),
    );
    assert_eq!(node.reaches(&node.a, NODE_SSH), Reach::TimedOut);
    assert_eq!(node.reaches(&node.b, NODE_SSH), Reach::Connected);
    let filter = node.table("filter");
    assert!(
        filter
            .lines()
            .any(|line| line.contains(&sshd_set)
                && line.starts_with(&format!("-A {prefix}-j-sshd-i "))),
        "the sshd jail bans from INPUT:\n{filter}"
    );

    // A crash: the kernel keeps the chains and sets; the restart adopts them.
    logjail.kill();
    let mut logjail = LogjailRun::new(&config_path).netns(&node.node.name).start();
    wait_until(
        "the pod jail back after the restart",
        || context(&logjail),
        || {
            logjail
                .must(&["banned"])
                .contains(&format!("{POD_JAIL}\t{A}\t"))
        },
    );
    assert!(
        logjail
            .log()
            .contains("label-defined jail restored from the store"),
        "the pod's jail comes back from the store, before its annotations are read:\n{}",
        logjail.log()
    );
    assert_eq!(node.reaches(&node.a, HOSTPORT), Reach::TimedOut);
    assert!(node.get(&node.b, "/").contains("served"), "B is served");
    assert_eq!(
        node.set_entries(&pod_set),
        [A.to_string()],
        "exactly one entry"
    );
    let status = logjail.must(&["status"]);
    assert!(status.contains("kubernetes target"), "{status}");
    assert!(logjail.stop().success(), "{}", logjail.log());
    assert!(
        !node.table("raw").contains(&prefix),
        "a clean stop removes logjail's raw chains"
    );
    drop(containerd);
}
