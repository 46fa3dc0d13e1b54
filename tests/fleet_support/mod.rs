//! Shared by the fleet test and benchmark: a hub namespace running a real `redis-server`, and
//! `logjail run` members in namespaces of their own linked to it by veth.

#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
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
    /// Arguments after the defaults (TLS, a unix socket, ACL users), kept for restarts.
    extra: Vec<String>,
    /// How `redis-cli` reaches and authenticates to this server.
    cli_args: Vec<String>,
}

impl Redis {
    pub fn start(ns: &Netns, dir: &Path) -> Redis {
        Redis::start_with(ns, dir, &[], &["-h", "127.0.0.1", "-p", "6379"])
    }

    /// A server with `extra` arguments (later ones win over the defaults, `--port 0` turns
    /// plain TCP off), which `redis-cli` reaches with `cli_args`.
    pub fn start_with<S: AsRef<str>>(ns: &Netns, dir: &Path, extra: &[S], cli_args: &[S]) -> Redis {
        let owned = |args: &[S]| args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut redis = Redis {
            ns_name: ns.name.clone(),
            dir: dir.to_path_buf(),
            child: None,
            extra: owned(extra),
            cli_args: owned(cli_args),
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
            .args(&self.extra)
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
            .args(&self.cli_args)
            .arg("--no-auth-warning")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether Redis holds the key of `host`'s ban in the tests' jail `app`.
    pub fn has_ban_key(&self, host: &str) -> bool {
        self.cli(&["EXISTS", &format!("logjail:ban:app:{host}")])
            .trim()
            == "1"
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

/// A CA, a server certificate for every hub address (`10.77.N.1`) and a client certificate
/// it signed, made by `openssl` for one test.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn make(dir: &Path) -> TlsFiles {
        std::fs::create_dir_all(dir).unwrap();
        let file = |name: &str| dir.join(name).display().to_string();
        let openssl = |args: &[&str]| {
            let output = Command::new(find_program("openssl"))
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &["-subj", "/CN=logjail test CA"],
                &["-keyout", &file("ca.key"), "-out", &file("ca.pem")],
            ]
            .concat(),
        );
        let sans: Vec<String> = (1..=9).map(|n| format!("IP:10.77.{n}.1")).collect();
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (who, subject) in [("server", "/CN=redis"), ("client", "/CN=logjail member")] {
            openssl(
                &[
                    &["req", "-nodes"][..],
                    &ec,
                    &["-subj", subject],
                    &["-keyout", &file(&format!("{who}.key"))],
                    &["-out", &file(&format!("{who}.csr"))],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &file(&format!("{who}.csr")),
                "-CA",
                &file("ca.pem"),
                "-CAkey",
                &file("ca.key"),
                "-CAcreateserial",
                "-extfile",
                &file(&format!("{who}.ext")),
                "-out",
                &file(&format!("{who}.pem")),
            ]);
        }
        TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
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
    /// Its environment beyond the test's (`password_env`, `name_env`).
    pub env: Vec<(String, String)>,
}

impl Member {
    pub fn new(
        hub: &mut Hub,
        root: &Path,
        name: &'static str,
        key: &Path,
        ignoreip: &[&str],
    ) -> Member {
        Member::with_fleet(hub, root, name, ignoreip, |hub_ip| {
            format!(
                r#"redis: "redis://{hub_ip}:6379", name: {name}, hmac_key_file: {}"#,
                key.display()
            )
        })
    }

    /// A member whose `fleet:` mapping (inside the braces) `fleet` writes from the hub's
    /// address on its link.
    pub fn with_fleet(
        hub: &mut Hub,
        root: &Path,
        name: &'static str,
        ignoreip: &[&str],
        fleet: impl FnOnce(&str) -> String,
    ) -> Member {
        let (ns, hub_ip) = hub.member();
        let fleet = fleet(&hub_ip);
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
fleet: {{{fleet}}}
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
            env: Vec::new(),
        }
    }

    pub fn start(&mut self) {
        self.runs += 1;
        let _ = std::fs::remove_file(self.dir.join("logjail.sock"));
        let mut run = LogjailRun::new(&self.config)
            .netns(&self.ns.name)
            // Named here: the file may take its member name from an environment the test
            // process does not have.
            .socket(&self.dir.join("logjail.sock"))
            .log(&self.dir.join(format!("run{}.log", self.runs)));
        for (name, value) in &self.env {
            run = run.env(name, value);
        }
        let process = run.start();
        self.process = Some(process);
    }

    /// Turns `/metrics` on at `127.0.0.1:9191` in the member's namespace (before `start`).
    pub fn enable_metrics(&self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let on = text.replace(
            "metrics: {enabled: false}",
            "metrics: {enabled: true, listen: \"127.0.0.1:9191\"}",
        );
        assert_ne!(text, on, "the member's file turns metrics off");
        std::fs::write(&self.config, on).unwrap();
    }

    /// The member's `/metrics`, fetched inside its namespace.
    pub fn metrics(&self) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .arg(find_program("curl"))
            .args(["-sf", "http://127.0.0.1:9191/metrics"])
            .output()
            .unwrap();
        assert!(output.status.success(), "curl /metrics on {}", self.name);
        String::from_utf8_lossy(&output.stdout).into_owned()
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

    /// `ipset list` of the member's IPv4 set of jail `app`, with `options` (`-t`: the header).
    fn kernel_set(&self, options: &[&str]) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "ipset", "list"])
            .args(options)
            .arg("ljf-s-app-4")
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn in_kernel(&self, host: &str) -> bool {
        self.kernel_set(&[])
            .lines()
            .any(|line| line.split_whitespace().next() == Some(host))
    }

    /// Entries in the member's kernel set, from its header alone.
    pub fn kernel_entries(&self) -> usize {
        self.kernel_set(&["-t"])
            .lines()
            .find_map(|line| line.strip_prefix("Number of entries: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The seconds left of `host`'s entry in the member's kernel set.
    pub fn kernel_timeout(&self, host: &str) -> u64 {
        let listing = self.kernel_set(&[]);
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

    /// Waits until the member is past its first sync with Redis (its fleet task connected).
    pub fn wait_connected(&self) {
        wait_until(&format!("{} connected to the fleet", self.name), || {
            self.log().contains("fleet: connected")
        });
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

/// Writes a ban of `hosts` in jail `app` by member `origin`, signed with `key`, straight into
/// the hub's Redis (an hour long), as that member would have.
pub fn fill_bans(hub: &Hub, key: &[u8], origin: &str, hosts: &[IpAddr]) {
    use logjail::fleet::{BanRecord, FeedMessage, Keys, Signer, encode_message};
    let signer = Signer::with_key(key).unwrap();
    let keys = Keys::default();
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<(String, String)> = hosts
        .iter()
        .map(|ip| {
            let record = BanRecord {
                origin: origin.to_string(),
                jail: "app".to_string(),
                ip: *ip,
                start_ms: now,
                end_ms: Some(now + 3_600_000),
                count: 1,
            };
            (
                keys.ban("app", *ip),
                encode_message(&FeedMessage::Ban(record), &signer),
            )
        })
        .collect();
    hub.ns.run(move || {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut connection = client.get_connection().unwrap();
        for chunk in records.chunks(10_000) {
            let mut pipe = redis::pipe();
            for (key, value) in chunk {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(3_600_000)
                    .ignore();
            }
            pipe.query::<()>(&mut connection).unwrap();
        }
    });
}

/// Every run log of the members under `root` (one folder each), oldest run first: what a
/// failed wait prints, killed members included.
pub fn member_logs(root: &Path) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|member| {
            std::fs::read_dir(member.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("run") && name.ends_with(".log"))
        })
        .collect();
    logs.sort();
    logs.iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            format!("--- {}\n{text}", path.display())
        })
        .collect()
}

impl Member {
    /// The unbans its store keeps for Redis, as `JAIL IP`, read beside the running daemon
    /// (the store is in WAL mode: a reader does not disturb it).
    pub fn unsent_unbans(&self) -> Vec<String> {
        let db = rusqlite::Connection::open_with_flags(
            self.dir.join("state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut query = db
            .prepare("SELECT jail, host FROM fleet_unbans ORDER BY jail, host")
            .unwrap();
        query
            .query_map([], |row| {
                Ok(format!(
                    "{} {}",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}
