//! Fail2Ban itself next to logjail: a copy of Debian's `/etc/fail2ban` with a fixture laid over
//! it, logjail's binary under Fail2Ban's command names (links, as the image installs them), and
//! a private `fail2ban-server` (its own socket, pid file, database and configuration; only the
//! `dummy` action, so it never touches a firewall) whose answers logjail's are compared with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::process::BINARY;

/// Debian's configuration, which the `fail2ban` package installs (scripts/test installs it).
pub const DEBIAN_CONFIG: &str = "/etc/fail2ban";

/// Copies `from` into `to`, folders included (the files of Debian's tree are plain files).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A Fail2Ban folder in `dir`: Debian's `/etc/fail2ban` with `tests/fixtures/fail2ban/OVERLAY`
/// laid over it.
pub fn debian_tree(dir: &Path, overlay: &str) -> PathBuf {
    assert!(
        Path::new(DEBIAN_CONFIG).join("jail.conf").is_file(),
        "{DEBIAN_CONFIG}/jail.conf is missing: install Debian's fail2ban package (scripts/test does)"
    );
    let tree = dir.join("fail2ban");
    copy_tree(Path::new(DEBIAN_CONFIG), &tree);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fail2ban")
        .join(overlay);
    copy_tree(&fixture, &tree);
    tree
}

/// logjail's binary under `name` (`fail2ban-client`, `fail2ban-regex`) in `dir`.
pub fn linked(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink(BINARY, &link).unwrap();
    link
}

/// Runs `program` with `args`.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

/// A private Fail2Ban server; stopped (and killed if need be) when dropped.
pub struct Fail2BanServer {
    pub config: PathBuf,
    pub socket: PathBuf,
    pid_file: PathBuf,
}

impl Fail2BanServer {
    /// Starts `fail2ban-server` on `jail_conf` (a whole `jail.conf`) in `dir`, and waits until
    /// it answers.
    pub fn start(dir: &Path, jail_conf: &str) -> Fail2BanServer {
        let config = dir.join("f2b-etc");
        for folder in ["filter.d", "action.d"] {
            std::fs::create_dir_all(config.join(folder)).unwrap();
        }
        let debian = Path::new(DEBIAN_CONFIG);
        for file in [
            "filter.d/common.conf",
            "filter.d/sshd.conf",
            "action.d/dummy.conf",
        ] {
            std::fs::copy(debian.join(file), config.join(file)).unwrap();
        }
        let socket = dir.join("f2b.sock");
        let pid_file = dir.join("f2b.pid");
        std::fs::write(
            config.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {log}\nsyslogsocket = auto\nsocket = {socket}\npidfile = {pid}\ndbfile = {db}\ndbpurgeage = 1d\nallowipv6 = auto\n",
                log = dir.join("f2b.log").display(),
                socket = socket.display(),
                pid = pid_file.display(),
                db = dir.join("f2b.sqlite3").display(),
            ),
        )
        .unwrap();
        std::fs::write(config.join("jail.conf"), jail_conf).unwrap();
        let started = Command::new("fail2ban-server")
            .arg("-c")
            .arg(&config)
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(&pid_file)
            .args(["-x", "-b"])
            .output()
            .expect("fail2ban-server runs (Debian's fail2ban package)");
        assert!(
            started.status.success(),
            "fail2ban-server: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let server = Fail2BanServer {
            config,
            socket,
            pid_file,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.client(&["ping"]).status.success() {
            assert!(Instant::now() < deadline, "fail2ban-server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The real `fail2ban-client` against this server.
    pub fn client(&self, args: &[&str]) -> Output {
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(&self.config)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Fail2BanServer {
    fn drop(&mut self) {
        let _ = self.client(&["stop"]);
        // A server that did not stop is killed by the pid it wrote, never by name.
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
