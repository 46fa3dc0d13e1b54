//! A real OpenSSH server in a container (the Debian image made with debootstrap), brute-forced
//! over the network from an attacker in its own network namespace: the built-in `sshd`
//! filter, through a label-defined jail, bans the attacker's own address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, TcpListener};

use logjail::messages::DaemonEvent;
use support::{Containers, TestDaemon, WAIT, container_logs, scratch, unique_name};

const SSHD_IMAGE: &str = "logjail-test/sshd:local";

/// A bridge on the host and an attacker namespace plugged into it, removed when dropped.
struct AttackerNet {
    bridge: String,
    namespace: String,
    host_address: Ipv4Addr,
    attacker_address: Ipv4Addr,
}

fn ip_command(args: &[&str]) {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl AttackerNet {
    fn create() -> AttackerNet {
        let pid = std::process::id();
        // A /24 of its own for this run, away from Docker's 172.16/12 pools.
        let subnet = [10, 214, (pid % 250) as u8];
        let net = AttackerNet {
            bridge: format!("ljbr{}", pid % 100_000),
            namespace: format!("lj-attacker-{pid}"),
            host_address: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
            attacker_address: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 2),
        };
        let host_end = format!("ljh{}", pid % 100_000);
        let attacker_end = format!("lja{}", pid % 100_000);
        ip_command(&["link", "add", &net.bridge, "type", "bridge"]);
        ip_command(&[
            "addr",
            "add",
            &format!("{}/24", net.host_address),
            "dev",
            &net.bridge,
        ]);
        ip_command(&["link", "set", &net.bridge, "up"]);
        ip_command(&["netns", "add", &net.namespace]);
        ip_command(&[
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            &attacker_end,
        ]);
        ip_command(&["link", "set", &host_end, "master", &net.bridge, "up"]);
        ip_command(&["link", "set", &attacker_end, "netns", &net.namespace]);
        ip_command(&[
            "-n",
            &net.namespace,
            "addr",
            "add",
            &format!("{}/24", net.attacker_address),
            "dev",
            &attacker_end,
        ]);
        ip_command(&["-n", &net.namespace, "link", "set", &attacker_end, "up"]);
        ip_command(&["-n", &net.namespace, "link", "set", "lo", "up"]);
        net
    }
}

impl Drop for AttackerNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        for args in [
            vec!["netns", "del", self.namespace.as_str()],
            vec!["link", "del", self.bridge.as_str()],
        ] {
            let _ = std::process::Command::new("ip").args(&args).output();
        }
    }
}

/// One failed login attempt from the attacker namespace (a wrong password, one prompt).
/// `Err` with ssh's output when the attempt did not end in "Permission denied" within
/// [`ATTEMPT_WAIT`]: once the attacker is banned (any logjail on this machine may enforce the
/// label-defined jail, not only the one under test), its connections hang.
async fn failed_login(net: &AttackerNet, port: u16, user: &str) -> Result<(), String> {
    let target = format!("{user}@{}", net.host_address);
    let port = port.to_string();
    let attempt = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.namespace,
            "sshpass",
            "-p",
            "wrong-password",
            "ssh",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=2",
            "-p",
            &port,
            &target,
            "true",
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(ATTEMPT_WAIT, attempt)
        .await
        .map_err(|_| format!("{user}: no answer within {ATTEMPT_WAIT:?}"))?
        .map_err(|e| e.to_string())?;
    // sshpass exits 5 when the password is refused; ssh itself 255 when the server gives up
    // ("Permission denied").
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(5)
        || (output.status.code() == Some(255) && stderr.contains("Permission denied"))
    {
        Ok(())
    } else {
        Err(format!("{user}: {:?}: {stderr}", output.status))
    }
}

/// Longest one login attempt may take (sshd's PAM delay is a few seconds).
const ATTEMPT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_forced_sshd_container_bans_the_attackers_real_address() {
    let net = AttackerNet::create();
    let port = {
        let listener = TcpListener::bind((net.host_address, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let name = unique_name("sshd");
    let mut containers = Containers::new();
    let dir = scratch();
    let mut daemon = TestDaemon::start(
        r#"
docker:
  enabled: true
jails:
  placeholder-manual:
    manual: true
"#,
        dir.path(),
    );
    containers
        .run(
            &name,
            &[
                "-p",
                &format!("{}:{port}:22", net.host_address),
                "--label",
                "logjail.jail.t30sshd.filter=sshd",
                "--label",
                "logjail.jail.t30sshd.maxretry=3",
                "--label",
                "logjail.jail.t30sshd.port=ssh",
                SSHD_IMAGE,
            ],
        )
        .await;
    // sshd says when it listens; ask until it has (bounded).
    let deadline = tokio::time::Instant::now() + WAIT;
    while !container_logs(&name).await.contains("Server listening") {
        assert!(tokio::time::Instant::now() < deadline, "sshd did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Attempts in parallel: each costs sshd's PAM delay of a few seconds.
    let attempts = futures::future::join_all([
        failed_login(&net, port, "root"),
        failed_login(&net, port, "root"),
        failed_login(&net, port, "root"),
        failed_login(&net, port, "admin"),
    ]);
    let attacker = IpAddr::V4(net.attacker_address);
    let (attempts, ban) = tokio::join!(attempts, daemon.banned("t30sshd", attacker));
    let refused = attempts.iter().filter(|attempt| attempt.is_ok()).count();
    assert!(refused >= 1, "no attempt reached sshd: {attempts:?}");
    let DaemonEvent::Banned { order, origin } = ban else {
        unreachable!()
    };
    assert_eq!(order.failures, 3);
    assert_eq!(
        origin.as_deref().and_then(support::origin_name),
        Some(name.as_str())
    );
    assert!(
        order
            .matches
            .iter()
            .all(|line| line.contains(&net.attacker_address.to_string())),
        "{:?}",
        order.matches
    );
    // Every failure the jail saw came from the attacker, none from the Docker gateway.
    let judged = daemon.failures_so_far(&name);
    assert!(judged.len() >= 3, "{judged:?}");
    assert!(judged.iter().all(|j| j.host == attacker), "{judged:?}");
    daemon.stop().await;
}
