//! A private Docker engine for tests that stop and start it: its own socket, data and exec
//! roots, containerd namespace and bridge, and no iptables rules, so that the machine's engine
//! and the other tests never notice it.
//!
//! Never `--bridge=none`: an engine started so deletes the host's `docker0`, which belongs to
//! the machine's engine. The private engine gets a bridge of its own instead.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{WAIT, docker_at};

/// The private engine; stopped (and its files removed) when dropped.
pub struct PrivateDockerd {
    dir: tempfile::TempDir,
    /// The engine's own bridge (deleted after it stops).
    bridge: String,
    /// `unix://…` of its socket.
    pub host: String,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts an engine and waits until it answers.
    pub async fn start() -> PrivateDockerd {
        // Short: the socket paths under it must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("ljd")
            .tempdir_in("/tmp")
            .unwrap();
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
            bridge,
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
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&self.host)
            .arg("--data-root")
            .arg(self.path("root"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .arg("--bridge")
            .arg(&self.bridge)
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--userland-proxy=false",
                "--shutdown-timeout=1",
            ])
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.terminate();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
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
