//! A network namespace playing a Docker host (a private engine runs inside it, see
//! `support::dockerd`): client namespaces linked to it with both address families, and the
//! waits and listings the tests check it with. Everything stays inside namespaces the test
//! made, so the same addresses serve every test that uses it.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use logjail::firewall::Family;

use super::{Netns, Reach, link, try_connect};

/// The port the target container publishes on the host namespace's addresses (fixed:
/// nothing else listens in that namespace).
pub const PUBLISHED: u16 = 18080;
/// A connection attempt that gets no answer for this long was dropped.
pub const DROP_WAIT: Duration = Duration::from_millis(1500);
/// Longest wait for what takes seconds: an engine (re)start, a sidecar start, a ban, a layout
/// check (every 5 s).
pub const WAIT: Duration = Duration::from_secs(30);

/// One client namespace linked to the host namespace, with both families.
pub struct Client {
    pub ns: Netns,
    /// The client's own addresses.
    pub v4: IpAddr,
    pub v6: IpAddr,
    /// The host namespace's addresses on the client's link, where the port is published.
    pub host_v4: IpAddr,
    pub host_v6: IpAddr,
}

impl Client {
    pub fn linked_to(host: &Netns, stem: &str, subnet: u8) -> Client {
        let ns = Netns::new(stem);
        let host_v4 = format!("10.61.{subnet}.1");
        let v4 = format!("10.61.{subnet}.2");
        let host_v6 = format!("fd61:{subnet}::1");
        let v6 = format!("fd61:{subnet}::2");
        link(host, &ns, (&host_v4, &v4), (&host_v6, &v6));
        Client {
            ns,
            v4: v4.parse().unwrap(),
            v6: v6.parse().unwrap(),
            host_v4: host_v4.parse().unwrap(),
            host_v6: host_v6.parse().unwrap(),
        }
    }

    pub fn address(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    pub fn target(&self, family: Family) -> SocketAddr {
        let host = match family {
            Family::V4 => self.host_v4,
            Family::V6 => self.host_v6,
        };
        SocketAddr::new(host, PUBLISHED)
    }

    /// A new connection to the published port.
    pub fn reach(&self, family: Family) -> Reach {
        try_connect(&self.ns, self.target(family), DROP_WAIT)
    }

    /// One HTTP/1.0 request to the published port; the whole answer.
    pub fn get(&self, family: Family, path: &str) -> String {
        let target = self.target(family);
        let request = format!("GET {path} HTTP/1.0\r\n\r\n");
        self.ns.run(move || {
            let mut stream = TcpStream::connect_timeout(&target, WAIT).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
    }
}

/// The last lines of a long log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Polls real state until `done`, at most `WAIT`; `context` explains a failure.
pub fn wait_until(what: &str, context: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `address` is an entry of `set` in the host namespace. A set that does not exist
/// (yet: logjail may still be laying out its firewall) holds nothing.
pub fn set_holds(host: &Netns, set: &str, address: IpAddr) -> bool {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &host.name, "ipset", "list", set])
        .output()
        .expect("cannot run ip netns exec");
    output.status.success()
        && String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(address.to_string().as_str()))
}

/// The rules of `chain`, in order, as `-S` lists them.
pub fn rules_of<'a>(listing: &'a str, chain: &str) -> Vec<&'a str> {
    let head = format!("-A {chain} ");
    listing
        .lines()
        .filter(|line| line.starts_with(&head))
        .collect()
}

/// What a ban of `jail` in `DOCKER-USER` needs, in one `-S` listing of the host namespace:
/// exactly one jump from `DOCKER-USER` to logjail's hook chain, the hook's rule for the
/// published port (matched before DNAT, with conntrack) to the jail's chain, and the jail
/// chain's match on `set` with DROP.
pub fn assert_docker_user_ban_layout(listing: &str, prefix: &str, jail: &str, set: &str) {
    assert_docker_user_ban_verdict(listing, prefix, jail, set, "-j DROP");
}

/// [`assert_docker_user_ban_layout`] with the jail chain's verdict (`-j REJECT --reject-with …`).
pub fn assert_docker_user_ban_verdict(
    listing: &str,
    prefix: &str,
    jail: &str,
    set: &str,
    verdict: &str,
) {
    let jump = format!("-A DOCKER-USER -j {prefix}-docker");
    let jumps = rules_of(listing, "DOCKER-USER")
        .iter()
        .filter(|rule| **rule == jump)
        .count();
    assert_eq!(
        jumps, 1,
        "one jump from DOCKER-USER to logjail's chain:\n{listing}"
    );
    let jail_chain = format!("{prefix}-j-{jail}-d");
    assert!(
        rules_of(listing, &format!("{prefix}-docker"))
            .iter()
            .any(|rule| {
                rule.contains(&format!("--ctorigdstport {PUBLISHED}"))
                    && rule.ends_with(&format!("-j {jail_chain}"))
            }),
        "no published-port rule to {jail_chain}:\n{listing}"
    );
    assert!(
        rules_of(listing, &jail_chain).iter().any(|rule| {
            rule.contains(&format!("--match-set {set} src")) && rule.ends_with(verdict)
        }),
        "no `{verdict}` on {set} in {jail_chain}:\n{listing}"
    );
}
