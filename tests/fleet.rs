//! The fleet for real: a Debian `redis-server` in a hub namespace the test made, and `logjail
//! run` members A, B and C (and D, with another HMAC key), each in its own network namespace
//! with its own iptables and ipset, reaching Redis over a veth link. The attacker is an
//! address of the hub, the same on every link, so that a ban made on A drops real packets on
//! B and C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod fleet_support;
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use firewall_support::{Reach, listen, try_connect};
use fleet_support::{
    ATTACKER, Hub, IGNORED_ON_B, Member, PORT, Redis, TlsFiles, fill_bans, member_logs,
};
use support::process::wait_until;

/// Waits until `done`, at most `limit`; returns how long it took. On a timeout the logs of
/// the members under `root` say what each did.
fn within(root: &Path, what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what}: not within {} ms\n{}",
            limit.as_millis(),
            member_logs(root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// How long "not spread" is watched before it is believed: well over the 1 s the fleet
/// promises for what does spread.
const QUIET: Duration = Duration::from_millis(1500);

#[test]
fn bans_spread_across_three_members_through_a_real_redis() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the fleet's shared secret\n").unwrap();
    let wrong_key = root.path().join("other.key");
    std::fs::write(&wrong_key, "not the fleet's key\n").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();

    let mut hub = Hub::new();
    let mut redis = Redis::start(&hub.ns, &redis_dir);
    let mut a = Member::new(&mut hub, root.path(), "a", &key, &[]);
    let mut b = Member::new(&mut hub, root.path(), "b", &key, &[IGNORED_ON_B]);
    let mut c = Member::new(&mut hub, root.path(), "c", &key, &[]);
    let mut d = Member::new(&mut hub, root.path(), "d", &wrong_key, &[]);
    for member in [&mut a, &mut b, &mut c, &mut d] {
        member.start();
    }
    let _servers: Vec<_> = [&b, &c].iter().map(|m| listen(&m.ns, PORT)).collect();
    let reach = |index: u8, member: &Member| {
        try_connect(&hub.ns, member.target(index), Duration::from_millis(800))
    };
    assert_eq!(reach(2, &b), Reach::Connected, "B served before any ban");
    assert_eq!(reach(3, &c), Reach::Connected, "C served before any ban");

    // An attack seen in A's log: banned on B and C within 1 s, packets dropped there.
    a.attack_log(ATTACKER);
    within(root.path(), "the ban on A", Duration::from_secs(20), || {
        a.has_ban(ATTACKER)
    });
    let spread = within(
        root.path(),
        "A's ban on B and C, in their kernels",
        Duration::from_secs(1),
        || b.in_kernel(ATTACKER) && c.in_kernel(ATTACKER),
    );
    eprintln!("fleet: A's ban in B's and C's ipsets after {spread:?}");
    assert_eq!(reach(2, &b), Reach::TimedOut, "B drops the attacker");
    assert_eq!(reach(3, &c), Reach::TimedOut, "C drops the attacker");
    assert!(
        c.log().contains("ban from the fleet") && c.log().contains("member=a"),
        "{}",
        c.log()
    );
    let listing = c.process().must(&["banned"]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(ATTACKER) && l.ends_with("from fleet member a")),
        "`banned` on C names where the ban came from: {listing}"
    );
    let listing = a.process().must(&["banned"]);
    assert!(
        !listing.contains("from fleet member"),
        "made on A: {listing}"
    );
    wait_until("A's status listing every member", || {
        a.process()
            .must(&["status"])
            .contains("Members seen:\ta, b, c, d")
    });
    let status = a.process().must(&["status"]);
    assert!(status.contains("Fleet:\t\tconnected as a"), "{status}");

    // D signs with another key: it refuses A's ban and nobody takes D's.
    assert!(!d.has_ban(ATTACKER), "D took a ban it cannot check");
    wait_until("D's warning naming A", || {
        d.log().contains("record refused") && d.log().contains("member=a")
    });
    d.process().must(&["ban", "app", "10.77.100.66"]);
    std::thread::sleep(QUIET);
    for member in [&a, &b, &c] {
        assert!(
            !member.has_ban("10.77.100.66"),
            "{} took D's forged ban",
            member.name
        );
    }
    assert!(
        a.log().contains("record refused") && a.log().contains("member=d"),
        "{}",
        a.log()
    );

    // B's own ignoreip stands against a fleet ban.
    a.process().must(&["ban", "app", IGNORED_ON_B]);
    within(
        root.path(),
        "the ignored address banned on C",
        Duration::from_secs(1),
        || c.has_ban(IGNORED_ON_B),
    );
    std::thread::sleep(QUIET);
    assert!(!b.has_ban(IGNORED_ON_B), "B banned an address it ignores");
    assert!(
        b.log().contains("fleet ban not applied here"),
        "{}",
        b.log()
    );

    // An unban on C lifts the ban everywhere, and B serves the attacker again.
    c.process().must(&["unban", "app", ATTACKER]);
    within(
        root.path(),
        "the unban on A and B",
        Duration::from_secs(1),
        || !a.has_ban(ATTACKER) && !b.has_ban(ATTACKER) && !b.in_kernel(ATTACKER),
    );
    assert_eq!(
        reach(2, &b),
        Reach::Connected,
        "B serves the attacker again"
    );
    assert!(!redis.has_ban_key(ATTACKER), "the key is gone");

    // B is killed; a ban made meanwhile is held by B once it is back, with the same end.
    b.process.as_mut().unwrap().kill();
    a.process().must(&["ban", "app", "10.77.100.9"]);
    within(root.path(), "the ban on C", Duration::from_secs(1), || {
        c.has_ban("10.77.100.9")
    });
    b.start();
    assert!(b.has_ban("10.77.100.9"), "B caught up at start");
    assert!(b.in_kernel("10.77.100.9"), "and in its kernel");
    let (on_b, on_c) = (
        b.kernel_timeout("10.77.100.9"),
        c.kernel_timeout("10.77.100.9"),
    );
    assert!(
        on_b.abs_diff(on_c) <= 2 && on_b > 3500,
        "the same remaining time on B ({on_b} s) as on C ({on_c} s)"
    );

    // Redis is killed mid-run: A bans while it is away (local bans go on), and once Redis is
    // back nothing is lost: the earlier ban is still there and the new one reaches B and C.
    redis.kill();
    a.process().must(&["ban", "app", "10.77.100.11"]);
    assert!(a.in_kernel("10.77.100.11"), "A bans without Redis");
    wait_until("A's status saying the fleet is degraded", || {
        a.process().must(&["status"]).contains("Fleet:\t\tdegraded")
    });
    redis.spawn();
    assert!(
        redis.has_ban_key("10.77.100.9"),
        "the ban made before the restart is still in Redis"
    );
    within(
        root.path(),
        "the ban made while Redis was away on B and C",
        Duration::from_secs(15),
        || {
            b.has_ban("10.77.100.11")
                && c.has_ban("10.77.100.11")
                && b.in_kernel("10.77.100.11")
                && c.in_kernel("10.77.100.11")
        },
    );
    assert!(a.has_ban("10.77.100.9") && b.has_ban("10.77.100.9"));
    wait_until("A's status connected again", || {
        a.process()
            .must(&["status"])
            .contains("Fleet:\t\tconnected")
    });

    for member in [&mut a, &mut b, &mut c, &mut d] {
        member.process.as_mut().unwrap().stop();
    }
}

/// `share_failures`: tries spread over the members add up. maxretry is 5 on every member; the
/// attacker tries twice on A, twice on B (4 in all: no ban anywhere), then once on C, whose
/// count is then 5: C bans, and A and B drop the attacker's packets through the shared ban.
/// An address with 4 tries across the fleet is never banned, and failures written with
/// another HMAC key (member D) count for nothing.
#[test]
fn failures_spread_over_members_add_up_to_a_ban() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the fleet's shared secret\n").unwrap();
    let wrong_key = root.path().join("other.key");
    std::fs::write(&wrong_key, "not the fleet's key\n").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();

    let mut hub = Hub::new();
    let redis = Redis::start(&hub.ns, &redis_dir);
    let mut a = Member::new(&mut hub, root.path(), "a", &key, &[]);
    let mut b = Member::new(&mut hub, root.path(), "b", &key, &[]);
    let mut c = Member::new(&mut hub, root.path(), "c", &key, &[]);
    let mut d = Member::new(&mut hub, root.path(), "d", &wrong_key, &[]);
    for member in [&mut a, &mut b, &mut c, &mut d] {
        member.edit_config(|text| {
            text.replace(
                "    maxretry: 2\n",
                "    maxretry: 5\n    findtime: 1h\n    share_failures: true\n",
            )
        });
        member.start();
    }
    for member in [&a, &b, &c, &d] {
        member.wait_connected();
    }
    let _servers: Vec<_> = [&a, &b].iter().map(|m| listen(&m.ns, PORT)).collect();
    let reach = |index: u8, member: &Member| {
        try_connect(&hub.ns, member.target(index), Duration::from_millis(800))
    };
    const LEGIT: &str = "10.77.100.20";
    const FORGED: &str = "10.77.100.30";

    a.failures_in_log(ATTACKER, 2);
    b.failures_in_log(ATTACKER, 2);
    a.failures_in_log(LEGIT, 2);
    b.failures_in_log(LEGIT, 2);
    // D's four tries of FORGED are in Redis signed with D's key; A's one makes five entries.
    d.failures_in_log(FORGED, 4);
    wait_until("D's four failures in Redis", || {
        redis
            .cli(&["ZCARD", &format!("logjail:fail:app:{FORGED}")])
            .trim()
            == "4"
    });
    a.failures_in_log(FORGED, 1);
    let attacker_set = format!("logjail:fail:app:{ATTACKER}");
    wait_until("the attacker's four failures in Redis", || {
        redis.cli(&["ZCARD", &attacker_set]).trim() == "4"
    });
    std::thread::sleep(QUIET);
    for member in [&a, &b, &c] {
        assert!(
            !member.has_ban(ATTACKER),
            "{}: banned at 4 of 5 tries\n{}",
            member.name,
            member.log()
        );
    }
    assert_eq!(
        reach(1, &a),
        Reach::Connected,
        "A serves the attacker at 4 tries"
    );

    // The fifth try, on C: C's count reaches 5 and the ban spreads.
    c.failures_in_log(ATTACKER, 1);
    within(
        root.path(),
        "C's ban from the fleet's count",
        Duration::from_secs(10),
        || c.has_ban(ATTACKER),
    );
    within(
        root.path(),
        "C's ban in A's and B's kernels",
        Duration::from_secs(2),
        || a.in_kernel(ATTACKER) && b.in_kernel(ATTACKER),
    );
    assert_eq!(reach(1, &a), Reach::TimedOut, "A drops the attacker");
    assert_eq!(reach(2, &b), Reach::TimedOut, "B drops the attacker");
    let log = c.log();
    assert!(
        log.contains("failures across the fleet reached maxretry")
            && log.contains("failures=5")
            && log.contains("members=a,b,c"),
        "{log}"
    );
    // Banned: the address's count starts again from nothing.
    wait_until("the attacker's set deleted", || {
        redis.cli(&["EXISTS", &attacker_set]).trim() == "0"
    });

    std::thread::sleep(QUIET);
    for member in [&a, &b, &c, &d] {
        assert!(
            !member.has_ban(LEGIT),
            "{} banned a legit address",
            member.name
        );
        assert!(
            !member.has_ban(FORGED),
            "{} counted failures it cannot check",
            member.name
        );
    }
    assert!(
        a.log().contains("record refused") && a.log().contains("member=d"),
        "A names the member whose entries it refused\n{}",
        a.log()
    );
}

/// Redis over TLS with a private CA and a client certificate (`tls-auth-clients yes`), and
/// the same server over its unix socket: a ban made on either member reaches the other.
#[test]
fn members_share_bans_over_tls_with_a_private_ca_and_over_a_unix_socket() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the fleet's shared secret\n").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let tls = TlsFiles::make(&root.path().join("tls"));
    let socket = redis_dir.join("redis.sock");
    let path = |p: &std::path::Path| p.display().to_string();

    let mut hub = Hub::new();
    let _redis = Redis::start_with(
        &hub.ns,
        &redis_dir,
        &[
            "--port".to_string(),
            "0".to_string(),
            "--tls-port".to_string(),
            "6380".to_string(),
            "--tls-cert-file".to_string(),
            path(&tls.server_cert),
            "--tls-key-file".to_string(),
            path(&tls.server_key),
            "--tls-ca-cert-file".to_string(),
            path(&tls.ca),
            "--tls-auth-clients".to_string(),
            "yes".to_string(),
            "--unixsocket".to_string(),
            path(&socket),
            "--unixsocketperm".to_string(),
            "700".to_string(),
        ],
        &["-s".to_string(), path(&socket)],
    );
    let mut a = Member::with_fleet(&mut hub, root.path(), "a", &[], |hub_ip| {
        format!(
            r#"redis: "rediss://{hub_ip}:6380", name: a, hmac_key_file: {}, tls: {{ca_file: {}, cert_file: {}, key_file: {}}}"#,
            key.display(),
            tls.ca.display(),
            tls.client_cert.display(),
            tls.client_key.display(),
        )
    });
    let mut b = Member::with_fleet(&mut hub, root.path(), "b", &[], |_| {
        format!(
            r#"redis: "unix://{}", name: b, hmac_key_file: {}"#,
            socket.display(),
            key.display()
        )
    });
    a.start();
    b.start();
    for member in [&a, &b] {
        wait_until("the member connected", || {
            member
                .process()
                .must(&["status"])
                .contains(&format!("Fleet:\t\tconnected as {}", member.name))
        });
    }

    a.process().must(&["ban", "app", "10.77.100.21"]);
    within(
        root.path(),
        "A's ban (TLS) on B (unix socket)",
        Duration::from_secs(2),
        || b.has_ban("10.77.100.21") && b.in_kernel("10.77.100.21"),
    );
    b.process().must(&["ban", "app", "10.77.100.22"]);
    within(
        root.path(),
        "B's ban (unix socket) on A (TLS)",
        Duration::from_secs(2),
        || a.has_ban("10.77.100.22") && a.in_kernel("10.77.100.22"),
    );
    assert!(
        b.log().contains("member=a") && a.log().contains("member=b"),
        "each names the other as the origin:\n{}\n{}",
        a.log(),
        b.log()
    );
    for member in [&mut a, &mut b] {
        member.process.as_mut().unwrap().stop();
    }
}

/// Redis with ACL users and the default user off: members authenticate as `fleet` with the
/// password from a file or from the environment; a member with a wrong password stays up,
/// bans locally, says it is degraded, and retries with a backoff rather than in a busy loop.
#[test]
fn acl_users_authenticate_from_a_file_or_the_environment_and_a_wrong_password_degrades() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the fleet's shared secret\n").unwrap();
    let password = root.path().join("redis-password");
    std::fs::write(&password, "s3cret-fleet\n").unwrap();
    let wrong = root.path().join("wrong-password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();

    let mut hub = Hub::new();
    let redis = Redis::start_with(
        &hub.ns,
        &redis_dir,
        // Redis joins the words after an option into one line of its configuration.
        &[
            "--user",
            "default",
            "off",
            "--user",
            "fleet",
            "on",
            ">s3cret-fleet",
            "~logjail:*",
            "&logjail:*",
            // The README's ACL for a fleet user.
            "+@all",
            "-@admin",
        ],
        &[
            "-h",
            "127.0.0.1",
            "-p",
            "6379",
            "--user",
            "fleet",
            "--pass",
            "s3cret-fleet",
        ],
    );
    assert!(
        !Command::new("ip")
            .args(["netns", "exec", &hub.ns.name, "redis-cli", "PING"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
            .unwrap(),
        "the default user is off: no member gets in without the ACL user"
    );
    let fleet = |name: &str, hub_ip: &str, password: &str| {
        format!(
            r#"redis: "redis://{hub_ip}:6379", name: {name}, username: fleet, {password}, hmac_key_file: {}"#,
            key.display()
        )
    };
    let mut a = Member::with_fleet(&mut hub, root.path(), "a", &[], |hub_ip| {
        fleet(
            "a",
            hub_ip,
            &format!("password_file: {}", password.display()),
        )
    });
    let mut b = Member::with_fleet(&mut hub, root.path(), "b", &[], |hub_ip| {
        fleet("b", hub_ip, "password_env: FLEET_REDIS_PASSWORD")
    });
    b.env.push((
        "FLEET_REDIS_PASSWORD".to_string(),
        "s3cret-fleet".to_string(),
    ));
    let mut c = Member::with_fleet(&mut hub, root.path(), "c", &[], |hub_ip| {
        fleet("c", hub_ip, &format!("password_file: {}", wrong.display()))
    });
    a.enable_metrics();
    c.enable_metrics();
    for member in [&mut a, &mut b, &mut c] {
        member.start();
    }

    a.process().must(&["ban", "app", "10.77.100.31"]);
    within(root.path(), "A's ban on B", Duration::from_secs(5), || {
        b.has_ban("10.77.100.31") && b.in_kernel("10.77.100.31")
    });
    assert!(redis.has_ban_key("10.77.100.31"), "written as the ACL user");
    wait_until("B's status listing A and B", || {
        b.process()
            .must(&["status"])
            .contains("Members seen:\ta, b")
    });

    // C: refused by Redis, up, degraded, banning on its own, and not taking A's bans.
    let status = c.process().must(&["status"]);
    assert!(status.contains("Fleet:\t\tdegraded"), "{status}");
    assert!(c.metrics().contains("logjail_fleet_degraded 1\n"));
    wait_until("A's metrics saying connected", || {
        a.metrics().contains("logjail_fleet_degraded 0\n")
    });
    c.attack_log("10.77.100.32");
    within(
        root.path(),
        "C's own ban without the fleet",
        Duration::from_secs(20),
        || c.has_ban("10.77.100.32") && c.in_kernel("10.77.100.32"),
    );
    assert!(!c.has_ban("10.77.100.31"), "C cannot read the fleet");
    let errors = |member: &Member| -> u64 {
        let status = member.process().must(&["status"]);
        status
            .lines()
            .find_map(|l| l.split("Errors:").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no error count in {status}"))
    };
    let before = errors(&c);
    std::thread::sleep(Duration::from_secs(6));
    let after = errors(&c);
    // With a backoff growing to 5 s, six seconds hold a few attempts; a busy loop would
    // count thousands.
    assert!(
        after > before && after - before <= 6,
        "C retried {} times in 6 s",
        after - before
    );
    assert!(
        c.log().contains("Redis refused this member") && c.log().contains("AuthenticationFailed"),
        "C says why: {}",
        c.log()
    );
    assert!(c.process.as_mut().unwrap().running(), "C is still up");
    assert!(
        !redis
            .cli(&["KEYS", "logjail:member:*"])
            .contains("member:c"),
        "C never got in"
    );
    for member in [&mut a, &mut b, &mut c] {
        member.process.as_mut().unwrap().stop();
    }
}

/// A real Redis and members A, B and C sharing through it, B and C holding A's bans of
/// `hosts`. Fields in the order they are dropped: the members before Redis and the links,
/// the folder last.
struct Trio {
    a: Member,
    b: Member,
    c: Member,
    redis: Redis,
    hub: Hub,
    root: tempfile::TempDir,
}

fn trio_holding_bans_of_a(hosts: &[&str]) -> Trio {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the fleet's shared secret\n").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mut hub = Hub::new();
    let redis = Redis::start(&hub.ns, &redis_dir);
    let mut a = Member::new(&mut hub, root.path(), "a", &key, &[]);
    let mut b = Member::new(&mut hub, root.path(), "b", &key, &[]);
    let mut c = Member::new(&mut hub, root.path(), "c", &key, &[]);
    for member in [&mut a, &mut b, &mut c] {
        member.start();
    }
    for host in hosts {
        a.process().must(&["ban", "app", host]);
    }
    within(
        root.path(),
        "A's bans on B and C",
        Duration::from_secs(2),
        || {
            [&b, &c]
                .iter()
                .all(|m| hosts.iter().all(|host| m.has_ban(host)))
        },
    );
    Trio {
        a,
        b,
        c,
        redis,
        hub,
        root,
    }
}

/// Waits until every one of `members` says the fleet is degraded.
fn wait_degraded(members: &[&Member]) {
    wait_until("the members degraded", || {
        members
            .iter()
            .all(|m| m.process().must(&["status"]).contains("Fleet:\t\tdegraded"))
    });
}

/// Watches `members` for [`QUIET`], then checks that none holds any of `hosts`, in its jail
/// or its kernel.
fn assert_lifted_on(root: &Path, members: &[&Member], hosts: &[&str]) {
    std::thread::sleep(QUIET);
    for member in members {
        for host in hosts {
            assert!(
                !member.has_ban(host) && !member.in_kernel(host),
                "{host} stays lifted on {}\n{}",
                member.name,
                member_logs(root)
            );
        }
    }
}

/// Unbans made while Redis is down outlive a restart of the member that made them: B, killed
/// with `kill -9` and started again while Redis is still down, and C, stopped and started
/// once Redis is back, send them, and neither takes the ban it lifted back from the fleet.
#[test]
fn unbans_made_while_redis_is_down_survive_a_restart_before_it_returns() {
    let (x, y) = ("10.77.100.61", "10.77.100.62");
    let Trio {
        root,
        hub: _hub,
        mut redis,
        mut a,
        mut b,
        mut c,
    } = trio_holding_bans_of_a(&[x, y]);
    redis.kill();
    wait_degraded(&[&b, &c]);
    b.process().must(&["unban", "app", x]);
    c.process().must(&["unban", "app", y]);
    // B is killed once its store holds the unban, as a crash after it would find it.
    wait_until("the unban in B's store", || {
        b.unsent_unbans() == [format!("app {x}")]
    });
    b.process.as_mut().unwrap().kill();
    c.process.as_mut().unwrap().stop();
    b.start();
    assert!(
        !b.has_ban(x) && !b.in_kernel(x),
        "B lifted x before its crash: {}",
        member_logs(root.path())
    );
    assert!(a.has_ban(x) && a.has_ban(y), "A heard of neither unban");

    redis.spawn();
    within(
        root.path(),
        "B's unban on A",
        Duration::from_secs(15),
        || !a.has_ban(x) && !a.in_kernel(x),
    );
    c.start();
    within(
        root.path(),
        "C's unban on A and B",
        Duration::from_secs(5),
        || !a.has_ban(y) && !b.has_ban(y) && !b.in_kernel(y),
    );
    assert_lifted_on(root.path(), &[&a, &b, &c], &[x, y]);
    for member in [&b, &c] {
        assert_eq!(
            member.unsent_unbans(),
            Vec::<String>::new(),
            "Redis took {}'s unban: the store forgets it",
            member.name
        );
    }
    assert!(
        c.log()
            .contains("fleet ban lifted here while Redis was away; not taken back"),
        "C's start left out the ban it lifted: {}",
        c.log()
    );
    for host in [x, y] {
        assert!(!redis.has_ban_key(host), "the key of {host} is gone");
    }
    for member in [&mut a, &mut b, &mut c] {
        member.process.as_mut().unwrap().stop();
    }
}

/// Unbans made while Redis is down (on the member that banned, and on another) are sent when
/// it returns, and reach a member that reconnects before or after they are sent.
#[test]
fn unbans_made_while_redis_is_down_are_sent_when_it_returns() {
    let (x, y) = ("10.77.100.41", "10.77.100.42");
    let Trio {
        root,
        hub: _hub,
        mut redis,
        mut a,
        mut b,
        mut c,
    } = trio_holding_bans_of_a(&[x, y]);
    redis.kill();
    wait_degraded(&[&a, &c]);
    // A lifts its own ban, C lifts A's other one; B sees neither while Redis is away.
    a.process().must(&["unban", "app", x]);
    c.process().must(&["unban", "app", y]);
    std::thread::sleep(QUIET);
    assert!(
        b.has_ban(x) && b.has_ban(y),
        "nothing reached B without Redis"
    );

    redis.spawn();
    within(
        root.path(),
        "both unbans on B",
        Duration::from_secs(15),
        || !b.has_ban(x) && !b.has_ban(y) && !b.in_kernel(x) && !b.in_kernel(y),
    );
    within(
        root.path(),
        "C's unban on A and A's on C",
        Duration::from_secs(15),
        || !a.has_ban(y) && !c.has_ban(x),
    );
    // The members that lifted a ban while Redis was away still find it there when they
    // sync: it stays lifted on them too.
    assert_lifted_on(root.path(), &[&a, &b, &c], &[x, y]);
    let lifted = |member: &Member, host: &str, by: &str| {
        member.log().lines().any(|line| {
            line.contains(" unban ")
                && line.contains(host)
                && line.contains(&format!("fleet unban by {by}"))
        })
    };
    assert!(lifted(&b, x, "a") && lifted(&b, y, "c"), "{}", b.log());
    for host in [x, y] {
        assert!(!redis.has_ban_key(host), "the key of {host} is gone");
        let left: i64 = redis
            .cli(&["PTTL", &format!("logjail:unban:app:{host}")])
            .trim()
            .parse()
            .unwrap();
        assert!(
            left > 3_000_000,
            "the unban of {host} is recorded for what the ban had left ({left} ms)"
        );
    }

    // B is stopped holding a ban of A's in its store; A lifts it meanwhile (B misses the
    // feed); B, started again, lifts it from the recorded unban.
    let z = "10.77.100.43";
    a.process().must(&["ban", "app", z]);
    within(
        root.path(),
        "A's third ban on B",
        Duration::from_secs(2),
        || b.has_ban(z),
    );
    b.process.as_mut().unwrap().stop();
    a.process().must(&["unban", "app", z]);
    within(
        root.path(),
        "the unban on C",
        Duration::from_secs(2),
        || !c.has_ban(z),
    );
    b.start();
    within(
        root.path(),
        "B lifting the ban it restored",
        Duration::from_secs(5),
        || !b.has_ban(z) && !b.in_kernel(z),
    );
    assert!(
        lifted(&b, z, "a"),
        "B held the ban after its restart and lifted it from the record: {}",
        b.log()
    );
    for member in [&mut a, &mut b, &mut c] {
        if let Some(process) = member.process.as_mut()
            && process.running()
        {
            process.stop();
        }
    }
}

/// A new member catches up on bans spread over several SCAN pages (each fetched, checked and
/// applied while the next is on its way): every valid one is in its jail and its kernel by the
/// time it answers, the forged ones are not, and once Redis is gone a restart still holds them
/// all, from its own store.
#[test]
fn a_new_member_catches_up_on_many_pages_of_bans_before_it_answers() {
    const SECRET: &str = "the fleet's shared secret";
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();

    let mut hub = Hub::new();
    let mut redis = Redis::start(&hub.ns, &redis_dir);
    // 198.18.0.0/15 is reserved for benchmarks: no packet goes to these addresses.
    let address = |i: u32| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i));
    let valid: Vec<IpAddr> = (0..12_000).map(address).collect();
    let forged: Vec<IpAddr> = (20_000..20_003).map(address).collect();
    fill_bans(&hub, SECRET.as_bytes(), "elsewhere", &valid);
    fill_bans(&hub, b"not the fleet's key", "elsewhere", &forged);

    let mut newcomer = Member::new(&mut hub, root.path(), "new", &key, &[]);
    newcomer.start();
    assert_eq!(newcomer.kernel_entries(), valid.len(), "{}", newcomer.log());
    let banned = newcomer.banned();
    assert_eq!(
        banned.lines().filter(|l| !l.trim().is_empty()).count(),
        valid.len()
    );
    for host in [valid[0], valid[5_000], valid[11_999]] {
        assert!(
            banned.lines().any(|l| l.trim() == host.to_string()),
            "{host}"
        );
    }
    for host in &forged {
        assert!(
            !newcomer.in_kernel(&host.to_string()),
            "forged ban {host} applied"
        );
    }
    let log = newcomer.log();
    assert!(log.contains("loaded=12000"), "{log}");
    assert!(log.contains("record refused"), "{log}");

    newcomer.process.as_mut().unwrap().stop();
    redis.kill();
    newcomer.start();
    assert_eq!(
        newcomer.kernel_entries(),
        valid.len(),
        "restored from the store without Redis:\n{}",
        newcomer.log()
    );
    newcomer.process.as_mut().unwrap().stop();
}
