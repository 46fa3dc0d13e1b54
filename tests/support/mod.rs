//! What the integration tests share: the one in-process daemon harness ([`daemon`]), the real
//! binary as a process and its CLI ([`process`]), a private containerd running pods as the
//! kubelet does ([`containerd`]), and helpers for tests against a real Docker engine:
//! containers cleaned up by name, lines written into them, and the daemon's log captured.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub mod containerd;
pub mod daemon;
pub mod dockerd;
pub mod fail2ban;
pub mod fail2ban_logs;
pub mod process;
pub mod sidecar_image;

// Each test uses a part of what is re-exported.
#[allow(unused_imports)]
pub use daemon::{DaemonBuilder, Judged, TestDaemon, config_from_yaml, config_with_store};

use logjail::messages::Origin;

/// Longest wait for something a real engine does in a second or two.
pub const WAIT: Duration = Duration::from_secs(60);

/// The Docker client (`/usr/bin/docker` matches Debian's engine; `$DOCKER` overrides).
pub fn docker_cli() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

/// A name no other test (or run) uses.
pub fn unique_name(test: &str) -> String {
    format!("lj-test-{test}-{}", std::process::id())
}

/// Runs the Docker client; panics with its output when it fails.
pub async fn docker(args: &[&str]) -> String {
    docker_at(None, args).await
}

/// [`docker`] against another engine (`-H unix://…`).
pub async fn docker_at(host: Option<&str>, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(docker_cli());
    if let Some(host) = host {
        command.arg("-H").arg(host);
    }
    let output = command
        .args(args)
        .output()
        .await
        .expect("the docker client runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `docker logs` of a container, stdout and stderr together.
pub async fn container_logs(name: &str) -> String {
    let output = tokio::process::Command::new(docker_cli())
        .args(["logs", name])
        .output()
        .await
        .expect("the docker client runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Removes what earlier runs left behind when they were killed (a test that times out is
/// killed before its guards run): containers, network namespaces and bridges named after a
/// test process that no longer exists.
pub fn reap_leftovers() {
    let dead =
        |pid: &str| pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists();
    let names = std::process::Command::new(docker_cli())
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    for name in names.lines() {
        if name.starts_with("lj-test-") && name.rsplit('-').next().is_some_and(dead) {
            let _ = std::process::Command::new(docker_cli())
                .args(["rm", "-f", "-v", name])
                .output();
        }
    }
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    for line in namespaces.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = name.strip_prefix("lj-attacker-")
            && dead(pid)
        {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .output();
            let bridge = format!("ljbr{}", pid.parse::<u32>().unwrap_or(0) % 100_000);
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &bridge])
                .output();
        }
    }
}

/// Removes containers by name when dropped, also when the test fails.
#[derive(Debug, Default)]
pub struct Containers {
    host: Option<String>,
    names: Vec<String>,
}

impl Containers {
    pub fn new() -> Containers {
        Containers::default()
    }

    pub fn on_host(host: &str) -> Containers {
        Containers {
            host: Some(host.to_string()),
            names: Vec::new(),
        }
    }

    /// `docker run -d --name NAME ARGS…`; returns the container id.
    pub async fn run(&mut self, name: &str, args: &[&str]) -> String {
        self.names.push(name.to_string());
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        docker_at(self.host.as_deref(), &all).await
    }

    /// Remembers a name to remove (a container created another way, or renamed to it).
    pub fn track(&mut self, name: &str) {
        self.names.push(name.to_string());
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            let mut command = std::process::Command::new(docker_cli());
            if let Some(host) = &self.host {
                command.arg("-H").arg(host);
            }
            let _ = command
                .args(["rm", "-f", "-v", name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Writes `line` to the container's stdout (or stderr) through its PID 1's descriptors, as if
/// the program in it had written it. The text never reaches a shell: it is passed as an
/// argument to `printf`.
pub async fn write_line(container: &str, stream: Stream, line: &str) {
    write_at(None, container, stream, line).await;
}

/// [`write_line`] on another engine.
pub async fn write_at(host: Option<&str>, container: &str, stream: Stream, line: &str) {
    let target = match stream {
        Stream::Stdout => "/proc/1/fd/1",
        Stream::Stderr => "/proc/1/fd/2",
    };
    let script = format!("printf '%s\\n' \"$1\" > {target}");
    docker_at(host, &["exec", container, "sh", "-c", &script, "sh", line]).await;
}

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Every log line of every daemon in this process; tests pick theirs by container name.
pub fn captured_log() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the daemon's log to the buffer [`captured_log`] reads (once per process).
pub fn capture_log() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buffer = log_buffer().clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || BufferWriter(buffer.clone()))
            .try_init();
    });
}

/// The last lines of the captured log, for failure messages.
pub fn log_tail() -> String {
    let log = captured_log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

pub fn origin_name(origin: &Origin) -> Option<&str> {
    match origin {
        Origin::Container { name, .. } => Some(name),
        _ => None,
    }
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A scratch directory for the store (and whatever else a test keeps on disk).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("logjail-docker-test-")
        .tempdir()
        .unwrap()
}

/// `GET path` from an HTTP endpoint (metrics, `/healthz`) at `address`: the status code and the body.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}
