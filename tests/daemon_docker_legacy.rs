//! The sidecar image on a Docker host whose engine uses **iptables-legacy**, proven with real
//! packets. The machine's own engine uses iptables-nft, so `tests/docker_sidecar_e2e.rs` can
//! only show the nft case; here a network namespace plays a host whose private engine finds
//! `iptables -> iptables-legacy` first on its PATH (see `tests/support/dockerd.rs`), as on a
//! Debian or Ubuntu host switched to legacy with `update-alternatives`.
//!
//! This is the mismatch that makes Fail2Ban's bans do nothing on such hosts: rules written with
//! iptables-nft are not where Docker's `DOCKER-USER` is. Checked for real:
//! - the engine's chains (`DOCKER`, `DOCKER-USER`) are in iptables-legacy and ip6tables-legacy
//!   of the namespace, and iptables-nft there holds nothing;
//! - the image built by `deploy/build-local.sh` (from this test's binary), run on that engine
//!   as a user would run it (host networking, `NET_ADMIN` and `NET_RAW`, the engine's socket,
//!   its `containers` folder at the path the engine reports as `LogPath`, `/run/xtables.lock`,
//!   the configuration at `/etc/logjail/logjail.yaml`), detects legacy from inside the
//!   container: `logjail status` says so;
//! - a manual ban (`docker exec … logjail ban`) goes into iptables-legacy (the jump from
//!   `DOCKER-USER` to logjail's chain, the set match) and nothing of logjail's reaches the
//!   nftables ruleset; the banned client's new connections to the published port time out
//!   while the other client connects, for IPv4 and IPv6; `logjail unban` lets it back in;
//! - a ban decided from the target container's own log (it joins the jail by label, and the
//!   sidecar reads its json-file through the mount);
//! - `docker stop` (SIGTERM through tini) takes logjail's chains and sets out again.
//!
//! Everything lives in namespaces and a private engine of the test's own: the machine's
//! firewall and engine only see the image build and its removal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use firewall_support::docker_host::{
    Client, PUBLISHED, assert_docker_user_ban_layout, rules_of, set_holds, tail, wait_until,
};
use firewall_support::{Netns, Reach, sh_quiet, unique};
use logjail::firewall::Family;
use support::dockerd::{Iptables, PrivateDockerd};
use support::sidecar_image::SidecarImage;
use support::{Containers, docker_cli};

const BUSYBOX: &str = "logjail-legacy/busybox:local";

/// An image tag on the private engine, removed when dropped: before the engine stops, so
/// declared after it.
struct PrivateImage<'a> {
    engine: &'a PrivateDockerd,
    tag: String,
}

impl Drop for PrivateImage<'_> {
    fn drop(&mut self) {
        sh_quiet(
            &docker_cli(),
            &["-H", &self.engine.host, "image", "rm", "-f", &self.tag],
        );
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The Docker client against the private engine; the whole output whatever happened.
fn docker_on(engine: &PrivateDockerd, args: &[&str]) -> Output {
    Command::new(docker_cli())
        .args(["-H", &engine.host])
        .args(args)
        .output()
        .unwrap()
}

/// `docker exec SIDECAR logjail ARGS…` on the private engine.
fn logjail(engine: &PrivateDockerd, sidecar: &str, args: &[&str]) -> Output {
    let mut full = vec!["exec", sidecar, "logjail"];
    full.extend_from_slice(args);
    docker_on(engine, &full)
}

/// A `logjail` command in the sidecar that must succeed; its output.
fn logjail_ok(engine: &PrivateDockerd, sidecar: &str, args: &[&str]) -> String {
    let output = logjail(engine, sidecar, args);
    assert!(
        output.status.success(),
        "logjail {args:?}: {}\nsidecar:\n{}",
        text(&output),
        logs(engine, sidecar)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `docker logs`, both streams.
fn logs(engine: &PrivateDockerd, container: &str) -> String {
    text(&docker_on(engine, &["logs", container]))
}

/// `-S` of one flavour and family in the host namespace (stdout only: iptables-nft warns
/// on stderr that legacy tables exist).
fn rules(host: &Netns, flavour: &str, family: Family) -> String {
    let program = match family {
        Family::V4 => format!("iptables-{flavour}"),
        Family::V6 => format!("ip6tables-{flavour}"),
    };
    let mut listing = String::new();
    for table in ["filter", "nat"] {
        listing.push_str(&host.sh(&program, &["-w", "-t", table, "-S"]));
    }
    listing
}

/// The chains a listing declares (`-N NAME`).
fn chains(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| line.strip_prefix("-N "))
        .collect()
}

fn config(prefix: &str) -> String {
    format!(
        r#"# The sidecar on a legacy host (written by tests/daemon_docker_legacy.rs).
docker: {{enabled: true}}
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
  # Reads the containers labelled logjail.jails=httpd.
  httpd:
    filter: httpd404
    maxretry: 3
    bantime: 1h
    chains: [docker-user]
    ports: [{PUBLISHED}]
    protocol: tcp
"#
    )
}

#[test]
fn the_sidecar_bans_in_iptables_legacy_where_docker_keeps_its_chains() {
    let started = Instant::now();
    // The image first, on the machine's engine, from this test's binary.
    let image = SidecarImage::build(format!("logjail-test/sidecar-legacy:{}", unique("l")));
    let built = started.elapsed();

    // Dropped last: the engine's child process belongs to it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Netns::new("ljlh");
    let a = Client::linked_to(&host, "ljla", 1);
    let b = Client::linked_to(&host, "ljlb", 2);
    let engine = runtime.block_on(PrivateDockerd::start_in_netns_with(
        &host.name,
        &[
            "--experimental",
            "--ipv6",
            "--ip6tables",
            "--fixed-cidr-v6",
            "fd62:d::/64",
        ],
        Iptables::Legacy,
    ));
    let engine_log = || tail(&engine.log());

    // The engine's chains are in legacy, for both families, and nft holds none of its own.
    for family in [Family::V4, Family::V6] {
        let legacy = rules(&host, "legacy", family);
        let nft = rules(&host, "nft", family);
        let wanted: &[&str] = match family {
            // Docker 20.10 makes no ip6tables DOCKER-USER (logjail will).
            Family::V4 => &["DOCKER", "DOCKER-USER"],
            Family::V6 => &["DOCKER"],
        };
        for chain in wanted {
            assert!(
                chains(&legacy).contains(chain),
                "{family:?}: {chain} not in legacy:\n{legacy}"
            );
        }
        assert!(
            chains(&nft).is_empty() && !nft.contains("DOCKER"),
            "{family:?}: the engine wrote to nft:\n{nft}"
        );
    }

    runtime.block_on(engine.import_busybox(BUSYBOX));
    engine.load_from_machine(&image.tag);
    let sidecar_image = PrivateImage {
        engine: &engine,
        tag: image.tag.clone(),
    };
    drop(image);
    let loaded = started.elapsed();

    // The target: busybox httpd publishing a port, joining the `httpd` jail by label and
    // defining a jail of its own (`t404`) by labels too.
    let target = unique("ljlweb");
    let mut containers = Containers::on_host(&engine.host);
    runtime.block_on(containers.run(
        &target,
        &[
            "--label",
            "logjail.jails=httpd",
            "--label",
            "logjail.jail.t404.filter=httpd404",
            "--label",
            "logjail.jail.t404.maxretry=3",
            // httpd as PID 1 ignores SIGTERM: the engine's stop would wait 10 s for it.
            "--stop-timeout",
            "1",
            "-p",
            &format!("0.0.0.0:{PUBLISHED}:8080"),
            "-p",
            &format!("[::]:{PUBLISHED}:8080"),
            BUSYBOX,
            "sh",
            "-c",
            "/bin/busybox mkdir -p /www && echo served > /www/index.html && exec /bin/busybox httpd -f -v -p 8080 -h /www",
        ],
    ));
    wait_until(
        "the target to serve B in both families",
        || {
            format!(
                "target:\n{}\nengine:\n{}",
                logs(&engine, &target),
                engine_log()
            )
        },
        || {
            [Family::V4, Family::V6]
                .iter()
                .all(|family| b.reach(*family) == Reach::Connected)
        },
    );
    // Docker published the port in legacy's nat table.
    let nat = rules(&host, "legacy", Family::V4);
    assert!(
        rules_of(&nat, "DOCKER")
            .iter()
            .any(|rule| rule.contains(&format!("--dport {PUBLISHED}")) && rule.contains("DNAT")),
        "{nat}"
    );

    // The sidecar, as a user runs it on such a host.
    let log_path = String::from_utf8_lossy(
        &docker_on(&engine, &["inspect", "-f", "{{.LogPath}}", &target]).stdout,
    )
    .trim()
    .to_string();
    let containers_dir = engine.data_root().join("containers");
    assert!(
        Path::new(&log_path).starts_with(&containers_dir),
        "LogPath {log_path} is not under {}",
        containers_dir.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("ljl")
        .tempdir_in("/tmp")
        .unwrap();
    let prefix = unique("ljl");
    let config_path = dir.path().join("logjail.yaml");
    std::fs::write(&config_path, config(&prefix)).unwrap();
    // iptables-legacy serialises on this lock; the engine took it, so it exists.
    assert!(Path::new("/run/xtables.lock").is_file());
    let sidecar = unique("ljlside");
    runtime.block_on(containers.run(
        &sidecar,
        &[
            "--network",
            "host",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_RAW",
            "-v",
            &format!("{}:/var/run/docker.sock:ro", engine.socket().display()),
            "-v",
            &format!("{0}:{0}:ro", containers_dir.display()),
            "-v",
            "/run/xtables.lock:/run/xtables.lock",
            "-v",
            &format!("{}:/etc/logjail/logjail.yaml:ro", config_path.display()),
            &sidecar_image.tag,
        ],
    ));
    let sidecar_log = || logs(&engine, &sidecar);
    wait_until(
        "the sidecar to read the target's json-file",
        sidecar_log,
        || {
            sidecar_log().lines().any(|line| {
                line.contains("watching container")
                    && line.contains(&target)
                    && line.contains("read=\"logfile\"")
            })
        },
    );
    wait_until("the sidecar's control socket", sidecar_log, || {
        logjail(&engine, &sidecar, &["ping"]).status.success()
    });
    let ready = started.elapsed();

    // Detected from inside the container.
    let status = logjail_ok(&engine, &sidecar, &["status"]);
    assert!(status.contains("Firewall:\t\tlegacy ("), "{status}");

    let set = |jail: &str, family: Family| {
        let tag = match family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        format!("{prefix}-s-{jail}-{tag}")
    };
    let context = || format!("sidecar:\n{}\nengine:\n{}", sidecar_log(), engine_log());
    // Nothing of logjail's in nftables at all (iptables-nft's tables or any other).
    let nothing_in_nft = || {
        let ruleset = host.sh("nft", &["list", "ruleset"]);
        assert!(
            !ruleset.contains(&prefix),
            "logjail in nftables:\n{ruleset}"
        );
    };

    // Manual bans, each family in turn.
    for family in [Family::V4, Family::V6] {
        let banned = a.address(family).to_string();
        logjail_ok(&engine, &sidecar, &["ban", "web", &banned]);
        wait_until(
            &format!("{banned} in {}", set("web", family)),
            context,
            || set_holds(&host, &set("web", family), a.address(family)),
        );
        let legacy = rules(&host, "legacy", family);
        assert_docker_user_ban_layout(&legacy, &prefix, "web", &set("web", family));
        let nft = rules(&host, "nft", family);
        assert!(
            !nft.contains(&prefix) && chains(&nft).is_empty(),
            "{family:?}: logjail wrote to iptables-nft:\n{nft}"
        );
        nothing_in_nft();
        assert_eq!(a.reach(family), Reach::TimedOut, "{banned} banned");
        assert_eq!(b.reach(family), Reach::Connected, "{family:?}: B served");
        logjail_ok(&engine, &sidecar, &["unban", "web", &banned]);
        assert!(!set_holds(&host, &set("web", family), a.address(family)));
        assert_eq!(a.reach(family), Reach::Connected, "{banned} unbanned");
    }

    // A ban decided from the target's own log, read through the mounted json-file: three
    // 404s from A (the engine DNATs, so httpd sees A's own address).
    for _ in 0..3 {
        let status = a.get(Family::V4, "/missing");
        assert!(status.contains(" 404 "), "{status}");
    }
    wait_until("the httpd jail to ban A", context, || {
        set_holds(&host, &set("httpd", Family::V4), a.v4)
    });
    assert_eq!(
        logjail_ok(&engine, &sidecar, &["get", "httpd", "banned"]),
        format!("{}\n", a.v4)
    );
    assert_eq!(a.reach(Family::V4), Reach::TimedOut);
    assert_eq!(b.reach(Family::V4), Reach::Connected);
    assert_eq!(
        a.reach(Family::V6),
        Reach::Connected,
        "only A's IPv4 banned"
    );
    let legacy = rules(&host, "legacy", Family::V4);
    assert!(
        rules_of(&legacy, &format!("{prefix}-j-httpd-d"))
            .iter()
            .any(|rule| rule.contains(&format!("--match-set {} src", set("httpd", Family::V4)))),
        "{legacy}"
    );
    nothing_in_nft();
    // The jail the container defined by labels banned A too, and only where the container's
    // clients come in: DOCKER-USER, never INPUT (its lines are the container's to forge).
    wait_until("the label-defined jail to ban A", context, || {
        set_holds(&host, &set("t404", Family::V4), a.v4)
    });
    let legacy = rules(&host, "legacy", Family::V4);
    assert!(
        rules_of(&legacy, &format!("{prefix}-j-t404-d"))
            .iter()
            .any(|rule| rule.contains(&format!("--match-set {} src", set("t404", Family::V4)))),
        "{legacy}"
    );
    assert!(
        !legacy.contains(&format!("{prefix}-j-t404-i")),
        "a label-defined jail reached INPUT:\n{legacy}"
    );
    let banned_at = started.elapsed();

    // `docker stop`: tini hands SIGTERM to logjail, which takes its chains and sets out.
    let stop = docker_on(&engine, &["stop", &sidecar]);
    assert!(stop.status.success(), "{}", text(&stop));
    let exit = docker_on(&engine, &["inspect", "-f", "{{.State.ExitCode}}", &sidecar]);
    assert_eq!(text(&exit).trim(), "0", "{}", sidecar_log());
    assert!(
        sidecar_log().contains("chains and sets removed"),
        "{}",
        sidecar_log()
    );
    for family in [Family::V4, Family::V6] {
        let legacy = rules(&host, "legacy", family);
        assert!(!legacy.contains(&prefix), "{family:?}:\n{legacy}");
    }
    let sets = host.sh("ipset", &["list", "-n"]);
    assert!(!sets.contains(&prefix), "{sets}");
    assert_eq!(a.reach(Family::V4), Reach::Connected, "A let in again");

    eprintln!(
        "image built in {:.1} s; engine up and image loaded at {:.1} s; sidecar watching at \
         {:.1} s; log-driven ban at {:.1} s; done at {:.1} s",
        built.as_secs_f64(),
        loaded.as_secs_f64(),
        ready.as_secs_f64(),
        banned_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(containers);
    drop(sidecar_image);
}
