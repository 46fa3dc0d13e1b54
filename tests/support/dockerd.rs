//! A private Docker engine for tests that stop and start it: its own socket, data and exec
//! roots and containerd namespace, so that the machine's engine and the other tests never
//! notice it. It runs either in the machine's network namespace, on a bridge of its own and
//! without iptables rules, or wholly inside a network namespace the test made, where its
//! `docker0`, iptables and ip6tables rules are that namespace's own.
//!
//! Never `--bridge=none`: an engine started so deletes the host's `docker0`, which belongs to
//! the machine's engine. The private engine gets a bridge of its own instead.
//!
//! An engine in a namespace is started through `nsenter --net=…`, not `ip netns exec`: the
//! latter also gives it a mount namespace with a fresh `/sys` and no cgroup mounts, where
//! dockerd stops with "Devices cgroup isn't mounted". nsenter only changes the network
//! namespace and then runs dockerd itself, so the child the test holds is the engine.
//!
//! An engine in a namespace can be made to use iptables-legacy although the machine's
//! `iptables` is the nft flavour: Docker 20.10 runs whatever `iptables` and `ip6tables` its
//! PATH finds first, so the engine gets a PATH that starts with a folder of links to the
//! legacy programs (a Docker host of the kind where Fail2Ban's bans silently miss).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{WAIT, docker_at};

/// Where the engine's networking lives.
enum Network {
    /// The machine's namespace, on this bridge of its own (deleted after the engine stops),
    /// with iptables left alone.
    Bridge(String),
    /// Inside this network namespace, with these extra dockerd arguments, and this folder
    /// first on the engine's PATH (the iptables it runs) when given.
    Namespace {
        name: String,
        args: Vec<String>,
        path_first: Option<PathBuf>,
    },
}

/// Which iptables flavour an engine in a namespace drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iptables {
    /// The machine's `iptables` (nft here).
    System,
    /// `iptables-legacy` and `ip6tables-legacy`, found first on the engine's PATH.
    Legacy,
}

/// The private engine; stopped (and its files removed) when dropped.
pub struct PrivateDockerd {
    dir: tempfile::TempDir,
    /// Where its networking lives, and so how it is started and what to clean up.
    network: Network,
    /// `unix://…` of its socket.
    pub host: String,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts an engine and waits until it answers.
    pub async fn start() -> PrivateDockerd {
        let dir = short_tempdir();
        let host = format!("unix://{}", dir.path().join("d.sock").display());
        let pid = std::process::id();
        let bridge = format!("ljdbr{}", pid % 100_000);
        let subnet = format!("10.215.{}.1/24", pid % 250);
        for args in [
            vec!["link", "add", bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", subnet.as_str(), "dev", bridge.as_str()],
            vec!["link", "set", bridge.as_str(), "up"],
        ] {
            let status = std::process::Command::new("ip")
                .args(&args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        }
        let mut dockerd = PrivateDockerd {
            dir,
            network: Network::Bridge(bridge),
            host,
            child: None,
        };
        dockerd.launch().await;
        dockerd
    }

    /// Starts an engine inside the network namespace `netns` (`ip netns add` made it) with
    /// iptables on and `args` added (e.g. IPv6 settings), and waits until it answers. Its
    /// chains, `docker0` and published ports exist only in that namespace.
    pub async fn start_in_netns(netns: &str, args: &[&str]) -> PrivateDockerd {
        PrivateDockerd::start_in_netns_with(netns, args, Iptables::System).await
    }

    /// [`PrivateDockerd::start_in_netns`] with the iptables flavour the engine drives.
    pub async fn start_in_netns_with(
        netns: &str,
        args: &[&str],
        iptables: Iptables,
    ) -> PrivateDockerd {
        let dir = short_tempdir();
        let host = format!("unix://{}", dir.path().join("d.sock").display());
        let path_first = match iptables {
            Iptables::System => None,
            Iptables::Legacy => Some(legacy_iptables_links(dir.path())),
        };
        let mut dockerd = PrivateDockerd {
            dir,
            network: Network::Namespace {
                name: netns.to_string(),
                args: args.iter().map(|arg| (*arg).to_string()).collect(),
                path_first,
            },
            host,
            child: None,
        };
        dockerd.launch().await;
        dockerd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn launch(&mut self) {
        let namespace = format!(
            "logjail-test-{}",
            self.dir.path().file_name().unwrap().to_string_lossy()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .unwrap();
        let mut command = match &self.network {
            Network::Bridge(bridge) => {
                let mut command = Command::new("dockerd");
                command
                    .arg("--bridge")
                    .arg(bridge)
                    .args(["--iptables=false", "--ip6tables=false"]);
                command
            }
            Network::Namespace {
                name,
                args,
                path_first,
            } => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{name}"))
                    .arg("dockerd")
                    .args(args);
                if let Some(first) = path_first {
                    let rest = std::env::var_os("PATH").unwrap_or_default();
                    let paths = std::iter::once(first.clone()).chain(std::env::split_paths(&rest));
                    command.env("PATH", std::env::join_paths(paths).unwrap());
                }
                command
            }
        };
        let child = command
            .arg("--host")
            .arg(&self.host)
            .arg("--data-root")
            .arg(self.path("root"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .args(["--userland-proxy=false", "--shutdown-timeout=1"])
            .arg("--containerd-namespace")
            .arg(&namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{namespace}-plugins"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "private dockerd exited ({status}); its log:\n{}",
                    self.log()
                );
            }
            let ready = Command::new(super::docker_cli())
                .args(["-H", &self.host, "info"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "private dockerd did not answer; its log:\n{}",
                std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
            );
            // Polling for readiness (there is nothing to wait on), bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the engine as `systemctl stop docker` would (SIGTERM: containers are stopped).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        tokio::time::timeout(WAIT, child.wait())
            .await
            .expect("dockerd stops")
            .unwrap();
    }

    /// Starts it again on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Imports a busybox image (from the host's busybox-static) as `name`.
    pub async fn import_busybox(&self, name: &str) {
        let root = self.path("busybox");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "echo", "sleep", "printf", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-cf", "-", "."])
            .output()
            .await
            .unwrap();
        assert!(tar.status.success());
        let tarball = self.path("busybox.tar");
        std::fs::write(&tarball, tar.stdout).unwrap();
        docker_at(
            Some(&self.host),
            &[
                "import",
                "-c",
                "CMD [\"/bin/sh\"]",
                &tarball.to_string_lossy(),
                name,
            ],
        )
        .await;
    }

    /// Copies `image` from the machine's engine into this one (`docker save | docker load`).
    pub fn load_from_machine(&self, image: &str) {
        let mut save = std::process::Command::new(super::docker_cli())
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save runs");
        let load = std::process::Command::new(super::docker_cli())
            .args(["-H", &self.host, "load", "-q"])
            .stdin(Stdio::from(save.stdout.take().unwrap()))
            .output()
            .expect("docker load runs");
        let saved = save.wait().unwrap();
        assert!(
            saved.success() && load.status.success(),
            "docker save {image} | docker load: {saved}, {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `--data-root`: the json-file logs are under its `containers` folder.
    pub fn data_root(&self) -> PathBuf {
        self.path("root")
    }

    /// The engine's API socket, as a file (for a bind mount).
    pub fn socket(&self) -> PathBuf {
        self.path("d.sock")
    }

    /// What the engine logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.terminate();
        // The engine binds its own network namespace here for `--network host` containers
        // and leaves it mounted when it stops: the folder could not be removed, and the
        // mount would keep a test's namespace (its links and firewall) alive after
        // `ip netns del`.
        let host_sandbox = self.path("exec/netns/default");
        if host_sandbox.exists() {
            let _ = std::process::Command::new("umount")
                .arg("--lazy")
                .arg(&host_sandbox)
                .output();
        }
        if let Network::Bridge(bridge) = &self.network {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge])
                .output();
        }
    }
}

impl PrivateDockerd {
    fn terminate(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            // dockerd stops its containers and its containerd before it exits; the directory
            // can only be removed after that.
            for _ in 0..300 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A folder under `dir` whose `iptables`, `ip6tables` (and their `-save` and `-restore`) are
/// links to the legacy programs.
fn legacy_iptables_links(dir: &Path) -> PathBuf {
    let bin = dir.join("legacy-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for family in ["iptables", "ip6tables"] {
        for suffix in ["", "-save", "-restore"] {
            let target = PathBuf::from(format!("/usr/sbin/{family}-legacy{suffix}"));
            assert!(target.exists(), "{} is missing", target.display());
            std::os::unix::fs::symlink(&target, bin.join(format!("{family}{suffix}"))).unwrap();
        }
    }
    bin
}

/// Short: the socket paths under it must fit in sun_path.
fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ljd")
        .tempdir_in("/tmp")
        .unwrap()
}
