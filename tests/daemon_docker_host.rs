//! A whole Docker host in a network namespace: a private engine with IPv6 and ip6tables, a
//! container publishing a port on IPv4 and IPv6, two clients A and B in namespaces of their
//! own, and the real `logjail run` binary banning A in `DOCKER-USER`. Proven with real
//! packets:
//!
//! - IPv6 clients of a published port are banned in ip6tables (the machine's own engine runs
//!   without IPv6, and there docker-proxy would show every IPv6 client as the bridge gateway;
//!   here `--userland-proxy=false` makes ip6tables DNAT them, and the container's log shows
//!   A's real address, which the log-driven ban relies on);
//! - the same for IPv4, and a ban decided from the container's own log lines;
//! - a real engine restart (SIGTERM, then a start on the same data) under a running logjail:
//!   the bans hold again within seconds, and logjail's jumps are in place once each;
//! - a clean stop of logjail takes its chains and sets out again.
//!
//! Why a namespace: iptables, ip6tables and ipset state belong to a network namespace, so the
//! engine's chains, `DOCKER-USER` and logjail's chains and sets exist only in the one this
//! test makes. The machine's firewall and engine never see any of it, and the engine's
//! `docker0` does not clash with the machine's. The engine is started with `nsenter --net`
//! (see `tests/support/dockerd.rs` for why not `ip netns exec`); logjail with `ip netns exec`,
//! as a user would.
//!
//! What Docker 20.10 (the engine here) does that shapes this test:
//! - `--ip6tables` is refused without `--experimental`;
//! - it makes no ip6tables `DOCKER-USER`: logjail makes it and the jump from `FORWARD`;
//! - every start of the engine inserts its IPv6 rules at the top of `FORWARD`, above that
//!   jump, where they accept traffic to published ports before `DOCKER-USER` is consulted:
//!   IPv6 bans stopped holding after a restart until logjail learnt to move the jump back
//!   above Docker's rules (`logjail::firewall::rules::docker_user_jump`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use firewall_support::docker_host::{
    Client, PUBLISHED, assert_docker_user_ban_layout, rules_of, set_holds, tail, wait_until,
};
use firewall_support::{Netns, Reach, unique};
use logjail::firewall::Family;
use support::dockerd::PrivateDockerd;
use support::process::{LogjailProcess, LogjailRun};
use support::{Containers, docker_cli};

const IMAGE: &str = "logjail-host/busybox:local";

/// Both logs, for failure messages.
fn context(logjail: &LogjailProcess, engine: &PrivateDockerd) -> String {
    format!(
        "logjail:\n{}\nengine:\n{}",
        logjail.log(),
        tail(&engine.log())
    )
}

fn iptables(host: &Netns, family: Family) -> String {
    let program = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    host.sh(program, &["-w", "-S"])
}

/// `docker logs`, both streams (busybox httpd logs to stderr).
fn container_log(engine: &str, container: &str) -> String {
    let output = Command::new(docker_cli())
        .args(["-H", engine, "logs", container])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn config(dir: &Path, engine: &str, prefix: &str, container: &str) -> String {
    format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/lj.sock}}
docker: {{enabled: true, host: "{engine}"}}
metrics: {{enabled: false}}
firewall: {{chain_prefix: {prefix}}}
filters:
  httpd404:
    failregex: ['^<HOST>:\d+: response:404$']
jails:
  web:
    manual: true
    bantime: 1h
    chains: [docker-user]
    ports: [{PUBLISHED}]
    protocol: tcp
  httpd:
    filter: httpd404
    maxretry: 3
    bantime: 1h
    chains: [docker-user]
    ports: [{PUBLISHED}]
    protocol: tcp
    sources:
      - container: {{name: "{container}"}}
"#,
        dir = dir.display()
    )
}

#[test]
fn published_ports_stay_banned_over_ipv6_and_ipv4_across_an_engine_restart() {
    // Dropped last: the engine's child process belongs to it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Netns::new("ljh");
    let a = Client::linked_to(&host, "lja", 1);
    let b = Client::linked_to(&host, "ljb", 2);
    let mut engine = runtime.block_on(PrivateDockerd::start_in_netns(
        &host.name,
        &[
            "--experimental",
            "--ipv6",
            "--ip6tables",
            "--fixed-cidr-v6",
            "fd61:d::/64",
        ],
    ));
    runtime.block_on(engine.import_busybox(IMAGE));
    let container = unique("ljweb");
    let mut containers = Containers::on_host(&engine.host);
    let v4_port = format!("0.0.0.0:{PUBLISHED}:8080");
    let v6_port = format!("[::]:{PUBLISHED}:8080");
    runtime.block_on(containers.run(
        &container,
        &[
            "--restart",
            "always",
            // httpd as PID 1 ignores SIGTERM: the engine's stop would wait 10 s for it.
            "--stop-timeout",
            "1",
            "-p",
            &v4_port,
            "-p",
            &v6_port,
            IMAGE,
            "sh",
            "-c",
            "/bin/busybox mkdir -p /www && echo served > /www/index.html && exec /bin/busybox httpd -f -v -p 8080 -h /www",
        ],
    ));
    let served = |client: &Client| {
        [Family::V4, Family::V6]
            .iter()
            .all(|family| client.reach(*family) == Reach::Connected)
    };
    wait_until(
        "the container to serve both families",
        || {
            let log = container_log(&engine.host, &container);
            format!("container:\n{log}\nengine:\n{}", tail(&engine.log()))
        },
        || served(&b),
    );

    let dir = tempfile::Builder::new()
        .prefix("ljh")
        .tempdir_in("/tmp")
        .unwrap();
    let prefix = unique("ljx");
    let config_path = dir.path().join("logjail.yaml");
    std::fs::write(
        &config_path,
        config(dir.path(), &engine.host, &prefix, &container),
    )
    .unwrap();
    let mut logjail = LogjailRun::new(&config_path).netns(&host.name).start();
    let set = |jail: &str, family: Family| {
        let tag = match family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        format!("{prefix}-s-{jail}-{tag}")
    };

    // Through the DNAT path the container sees A's own IPv6 address, not a gateway's.
    let answer = a.get(Family::V6, "/");
    assert!(answer.contains("served"), "{answer}");
    wait_until(
        "A's IPv6 address in the container's log",
        || container_log(&engine.host, &container),
        || container_log(&engine.host, &container).contains(&format!("[{}]:", a.v6)),
    );

    // A manual ban, each family in turn: the banned client's new connections are dropped,
    // the other client's are not, and an unban lets it back in.
    for family in [Family::V6, Family::V4] {
        let banned = a.address(family).to_string();
        logjail.must(&["ban", "web", &banned]);
        wait_until(
            &format!("{banned} in {}", set("web", family)),
            || context(&logjail, &engine),
            || set_holds(&host, &set("web", family), a.address(family)),
        );
        assert_eq!(a.reach(family), Reach::TimedOut, "{banned} banned");
        assert_eq!(
            b.reach(family),
            Reach::Connected,
            "{family:?}: B not banned"
        );
        let other = match family {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        };
        assert_eq!(a.reach(other), Reach::Connected, "only {banned} is banned");
        let listing = iptables(&host, family);
        assert_docker_user_ban_layout(&listing, &prefix, "web", &set("web", family));
        logjail.must(&["unban", "web", &banned]);
        wait_until(
            &format!("{banned} out of the set"),
            || context(&logjail, &engine),
            || !set_holds(&host, &set("web", family), a.address(family)),
        );
        assert_eq!(a.reach(family), Reach::Connected, "{banned} unbanned");
    }

    // A ban decided from the container's own log: three 404s from A's IPv6 address.
    for _ in 0..3 {
        let answer = a.get(Family::V6, "/missing");
        let status = answer.lines().next().unwrap_or_default();
        assert!(status.contains(" 404 "), "{answer}");
    }
    wait_until(
        "the httpd jail to ban A's IPv6 address",
        || context(&logjail, &engine),
        || set_holds(&host, &set("httpd", Family::V6), a.v6),
    );
    assert_eq!(
        logjail.must(&["get", "httpd", "banned"]),
        format!("{}\n", a.v6)
    );
    assert_eq!(a.reach(Family::V6), Reach::TimedOut);
    assert_eq!(a.reach(Family::V4), Reach::Connected);
    logjail.must(&["unban", "httpd", &a.v6.to_string()]);

    // The engine restarts under a running logjail, A banned in both families.
    logjail.must(&["ban", "web", &a.v4.to_string()]);
    logjail.must(&["ban", "web", &a.v6.to_string()]);
    wait_until(
        "both bans in the sets",
        || context(&logjail, &engine),
        || {
            set_holds(&host, &set("web", Family::V4), a.v4)
                && set_holds(&host, &set("web", Family::V6), a.v6)
                && !set_holds(&host, &set("httpd", Family::V6), a.v6)
        },
    );
    assert_eq!(a.reach(Family::V4), Reach::TimedOut);
    assert_eq!(a.reach(Family::V6), Reach::TimedOut);
    let restarted = Instant::now();
    runtime.block_on(engine.stop());
    let stopped = restarted.elapsed();
    // Starts it again on the same data (the child is gone, so only the start is left).
    runtime.block_on(engine.restart());
    let answering = restarted.elapsed();
    // The restart policy brings the container back.
    wait_until(
        "the container to serve B again",
        || context(&logjail, &engine),
        || served(&b),
    );
    wait_until(
        "A to be blocked again in both families",
        || context(&logjail, &engine),
        || a.reach(Family::V4) == Reach::TimedOut && a.reach(Family::V6) == Reach::TimedOut,
    );
    eprintln!(
        "engine stopped after {:.1} s, answered again after {:.1} s; bans held again after {:.1} s",
        stopped.as_secs_f64(),
        answering.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );
    assert!(served(&b), "B still served");
    for family in [Family::V4, Family::V6] {
        let listing = iptables(&host, family);
        assert_eq!(
            rules_of(&listing, "FORWARD").first(),
            Some(&"-A FORWARD -j DOCKER-USER"),
            "{family:?}: DOCKER-USER first in FORWARD\n{listing}"
        );
        assert_eq!(
            rules_of(&listing, "FORWARD")
                .iter()
                .filter(|rule| rule.ends_with("-j DOCKER-USER"))
                .count(),
            1,
            "{family:?}: one jump to DOCKER-USER\n{listing}"
        );
        let docker_user = rules_of(&listing, "DOCKER-USER");
        let ours = format!("-A DOCKER-USER -j {prefix}-docker");
        assert_eq!(
            docker_user.first(),
            Some(&ours.as_str()),
            "{family:?}: logjail's jump first in DOCKER-USER\n{listing}"
        );
        assert_eq!(
            docker_user.iter().filter(|rule| **rule == ours).count(),
            1,
            "{family:?}: logjail's jump once\n{listing}"
        );
    }
    assert!(logjail.running(), "logjail lived through the restart");
    assert!(
        logjail.log().contains("lost the connection to Docker"),
        "{}",
        logjail.log()
    );

    // A clean stop takes logjail's chains and sets out; the bans go with them.
    let status = logjail.stop();
    assert!(status.success(), "{status}\n{}", logjail.log());
    for family in [Family::V4, Family::V6] {
        let listing = iptables(&host, family);
        assert!(!listing.contains(&prefix), "{family:?}:\n{listing}");
    }
    let sets = host.sh("ipset", &["list", "-n"]);
    assert!(!sets.contains(&prefix), "{sets}");
    assert_eq!(a.reach(Family::V4), Reach::Connected);
    assert_eq!(a.reach(Family::V6), Reach::Connected);
    drop(containers);
    runtime.block_on(engine.stop());
}
