//! Shared by the fleet test and benchmark: a hub namespace running a real `redis-server`, and
//! `logjail run` members in namespaces of their own linked to it by veth.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::firewall_support::{Netns, sh, unique};
use crate::support::process::{LogjailProcess, LogjailRun, find_program, wait_until};

/// The port each member serves, and the attacker tries.
pub const PORT: u16 = 8080;
/// The attacker: an address on the hub's loopback, which the hub uses as the source towards
/// every member and every member routes back through its link.
pub const ATTACKER: &str = "10.77.100.1";
/// An address B's jail ignores.
pub const IGNORED_ON_B: &str = "10.77.100.50";

/// The hub (Redis, attacker) and its links.
pub struct Hub {
    pub ns: Netns,
    links: u8,
}

impl Hub {
    pub fn new() -> Hub {
        let ns = Netns::new("ljfh");
        sh(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{ATTACKER}/24"),
                "dev",
                "lo",
            ],
        );
        Hub { ns, links: 0 }
    }

    /// A member namespace linked to the hub: the hub is `10.77.N.1`, the member `10.77.N.2`.
    pub fn member(&mut self) -> (Netns, String) {
        self.links += 1;
        let n = self.links;
        let member = Netns::new("ljfm");
        let hub_end = unique("ljh");
        let member_end = unique("ljm");
        sh(
            "ip",
            &[
                "link",
                "add",
                &hub_end,
                "netns",
                &self.ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &member_end,
                "netns",
                &member.name,
            ],
        );
        let hub_ip = format!("10.77.{n}.1");
        let member_ip = format!("10.77.{n}.2");
        let net = format!("10.77.{n}.0/24");
        for (ns, dev, address) in [
            (&self.ns, &hub_end, &hub_ip),
            (&member, &member_end, &member_ip),
        ] {
            sh(
                "ip",
                &[
                    "-n",
                    &ns.name,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    dev,
                ],
            );
            sh("ip", &["-n", &ns.name, "link", "set", dev, "up"]);
        }
        // The hub speaks to the member from the attacker's address; Redis answers from the
        // address the member connected to, whatever this says.
        sh(
            "ip",
            &[
                "-n",
                &self.ns.name,
                "route",
                "replace",
                &net,
                "dev",
                &hub_end,
                "src",
                ATTACKER,
            ],
        );
        sh(
            "ip",
            &[
                "-n",
                &member.name,
                "route",
                "add",
                "10.77.100.0/24",
                "via",
                &hub_ip,
            ],
        );
        (member, hub_ip)
    }
}

/// A real `redis-server` in the hub namespace, its data on disk (append-only, fsync'd each
/// write) so that a restart loses nothing.
pub struct Redis {
    ns_name: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(ns: &Netns, dir: &Path) -> Redis {
        let mut redis = Redis {
            ns_name: ns.name.clone(),
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn spawn(&mut self) {
        let child = Command::new(find_program("ip"))
            .args(["netns", "exec", &self.ns_name])
            .arg(find_program("redis-server"))
            .args([
                "--port",
                "6379",
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) starts");
        self.child = Some(child);
        wait_until("redis-server to answer", || {
            self.cli(&["PING"]).trim() == "PONG"
        });
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(find_program("ip"))
            .args(["netns", "exec", &self.ns_name])
            .arg(find_program("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", "6379"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// SIGKILL: nothing flushed but what `appendfsync always` wrote.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One member: its namespace, its files, its process.
pub struct Member {
    pub name: &'static str,
    pub ns: Netns,
    pub dir: PathBuf,
    config: PathBuf,
    pub process: Option<LogjailProcess>,
    runs: u32,
}

impl Member {
    pub fn new(
        hub: &mut Hub,
        root: &Path,
        name: &'static str,
        key: &Path,
        ignoreip: &[&str],
    ) -> Member {
        let (ns, hub_ip) = hub.member();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("logjail.yaml");
        let ignore = if ignoreip.is_empty() {
            String::new()
        } else {
            format!("    ignoreip: [{}]\n", ignoreip.join(", "))
        };
        std::fs::write(
            &config,
            format!(
                r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
firewall: {{chain_prefix: ljf}}
fleet: {{redis: "redis://{hub_ip}:6379", name: {name}, hmac_key_file: {key}}}
filters:
  app:
    failregex: ['^login failed from <HOST>$']
jails:
  app:
    maxretry: 2
    bantime: 1h
    chains: [input]
{ignore}    sources:
      - file: {dir}/app.log
"#,
                dir = dir.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("app.log"), "").unwrap();
        Member {
            name,
            ns,
            dir,
            config,
            process: None,
            runs: 0,
        }
    }

    pub fn start(&mut self) {
        self.runs += 1;
        let _ = std::fs::remove_file(self.dir.join("logjail.sock"));
        let process = LogjailRun::new(&self.config)
            .netns(&self.ns.name)
            .log(&self.dir.join(format!("run{}.log", self.runs)))
            .start();
        self.process = Some(process);
    }

    pub fn process(&self) -> &LogjailProcess {
        self.process.as_ref().expect("member running")
    }

    pub fn banned(&self) -> String {
        self.process().must(&["get", "app", "banned"])
    }

    pub fn has_ban(&self, host: &str) -> bool {
        self.banned().lines().any(|line| line.trim() == host)
    }

    pub fn in_kernel(&self, host: &str) -> bool {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "ipset",
                "list",
                "ljf-s-app-4",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(host))
    }

    /// The seconds left of `host`'s entry in the member's kernel set.
    pub fn kernel_timeout(&self, host: &str) -> u64 {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "ipset",
                "list",
                "ljf-s-app-4",
            ])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&output.stdout).into_owned();
        listing
            .lines()
            .find(|line| line.split_whitespace().next() == Some(host))
            .and_then(|line| line.split("timeout ").nth(1))
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no timeout for {host} in {listing}"))
    }

    pub fn log(&self) -> String {
        self.process().log()
    }

    /// Two failures of `host` in the member's log: a ban at the usual maxretry of 2.
    pub fn attack_log(&self, host: &str) {
        self.failures_in_log(host, 2);
    }

    pub fn failures_in_log(&self, host: &str, count: usize) {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("app.log"))
            .unwrap();
        for _ in 0..count {
            writeln!(log, "login failed from {host}").unwrap();
        }
    }

    /// Changes the member's configuration file (before `start`, or before a restart).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    pub fn target(&self, index: u8) -> SocketAddr {
        format!("10.77.{index}.2:{PORT}").parse().unwrap()
    }
}
