//! The real `logjail` binary: its CLI against a control socket, and `logjail run` as its own
//! process (in a network namespace the test made, optionally with a PATH of the test's
//! choosing), with its log in a file, waits for it to answer or to exit, and SIGTERM or
//! SIGKILL as a service manager or a crash would. Killed when dropped, so a failing test
//! leaves no daemon behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use logjail::config::Config;

pub const BINARY: &str = env!("CARGO_BIN_EXE_logjail");

/// How long `logjail run` gets to answer, to exit by itself, or to stop on SIGTERM.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// A program on the test's own PATH (or in the sbin folders, which a root PATH has).
pub fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

/// `logjail --socket SOCKET ARGS…`, waited for.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// [`cli`] without blocking the runtime (the daemon it talks to may run on it).
pub async fn cli_async(socket: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(BINARY)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .unwrap()
}

/// Polls until `done`, at most 20 s (what a running daemon does in moments: a socket, a ban
/// in the kernel, a rule put back).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How `logjail run -c CONFIG` is started, builder style.
pub struct LogjailRun {
    config: PathBuf,
    socket: Option<PathBuf>,
    log: Option<PathBuf>,
    netns: Option<String>,
    path: Option<OsString>,
    env: Vec<(String, String)>,
}

impl LogjailRun {
    /// `logjail run -c CONFIG`; by default its socket is the one the file names and its log
    /// (stderr) goes to `logjail.log` next to the file.
    pub fn new(config: &Path) -> LogjailRun {
        LogjailRun {
            config: config.to_path_buf(),
            socket: None,
            log: None,
            netns: None,
            path: None,
            env: Vec::new(),
        }
    }

    /// Runs it with `ip netns exec NAME`, as a user would in a namespace.
    pub fn netns(mut self, name: &str) -> LogjailRun {
        self.netns = Some(name.to_string());
        self
    }

    /// Its stderr goes to `log` (created afresh).
    pub fn log(mut self, log: &Path) -> LogjailRun {
        self.log = Some(log.to_path_buf());
        self
    }

    /// The socket the CLI talks to, where the file cannot be read before the start.
    pub fn socket(mut self, socket: &Path) -> LogjailRun {
        self.socket = Some(socket.to_path_buf());
        self
    }

    /// `path` is its whole PATH, and `DOCKER_HOST` is not passed on: a host with only the
    /// programs the test links there.
    pub fn path(mut self, path: &Path) -> LogjailRun {
        self.path = Some(path.as_os_str().to_os_string());
        self
    }

    /// `name=value` in its environment (`ip netns exec` passes it on).
    pub fn env(mut self, name: &str, value: &str) -> LogjailRun {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts the process and returns at once (for a start that must fail).
    pub fn spawn(self) -> LogjailProcess {
        let socket = self.socket.unwrap_or_else(|| {
            Config::load(&self.config)
                .unwrap_or_else(|errors| panic!("{}: {errors}", self.config.display()))
                .control
                .socket
        });
        let log = self.log.unwrap_or_else(|| {
            self.config
                .parent()
                .expect("the configuration is in a folder")
                .join("logjail.log")
        });
        let mut command = match &self.netns {
            Some(name) => {
                // Found here: a PATH of the test's would be searched for it otherwise.
                let mut command = Command::new(find_program("ip"));
                command.args(["netns", "exec", name, BINARY]);
                command
            }
            None => Command::new(BINARY),
        };
        command.args(["run", "-c"]).arg(&self.config);
        if let Some(path) = &self.path {
            command.env("PATH", path).env_remove("DOCKER_HOST");
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        LogjailProcess { child, socket, log }
    }

    /// Starts the process and waits until it answers on its socket.
    pub fn start(self) -> LogjailProcess {
        let mut logjail = self.spawn();
        logjail.wait_ready();
        logjail
    }
}

/// A running `logjail run`.
pub struct LogjailProcess {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl LogjailProcess {
    /// Waits until it answers `ping`; panics with its log if it exits first or takes too long.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + PROCESS_WAIT;
        while !(self.socket.exists() && self.cli(&["ping"]).status.success()) {
            assert!(self.running(), "logjail exited at start:\n{}", self.log());
            assert!(
                Instant::now() < deadline,
                "logjail never answered:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit by itself (a start-up failure).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.exit_within("logjail kept running")
    }

    /// The exit status once the process ends; panics with `failure` and the log after
    /// [`PROCESS_WAIT`].
    fn exit_within(&mut self, failure: &str) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{failure}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// A CLI command that must succeed; its output.
    pub fn must(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "logjail {args:?}: {}{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, as `docker stop` or systemd would; waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", self.child.id());
        self.exit_within("logjail did not stop on SIGTERM")
    }

    /// SIGKILL, as a crash or an OOM kill would: nothing is cleaned up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for LogjailProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
