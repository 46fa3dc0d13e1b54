//! The kubelet's pod log paths: `<log_dir>/<namespace>_<pod>_<uid>/<container>/<n>.log`, read
//! into typed parts, with rotated files (`<n>.log.<stamp>`, `….gz`) told apart from the file
//! being written.
//!
//! Everything here is parsed from names found on disk, which anyone who can create a pod
//! chooses: a name is accepted only in the shape Kubernetes allows (namespaces and containers
//! are DNS labels, pods DNS subdomains, none of them holds `_`), so that the parts a jail
//! selects on are exactly what Kubernetes shows.

use std::path::{Path, PathBuf};

/// Longest namespace and container name (a DNS label).
const MAX_LABEL: usize = 63;
/// Longest pod name (a DNS subdomain).
const MAX_SUBDOMAIN: usize = 253;
/// Longest pod uid; a uid is a UUID (36), or for static pods a hash of their manifest (32).
const MAX_UID: usize = 128;

pub use crate::messages::PodContainer;

/// A pod's log directory, `<namespace>_<pod>_<uid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodDir {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
}

impl PodDir {
    /// Reads a pod log directory's name.
    pub fn parse(name: &str) -> Result<PodDir, PodPathError> {
        let parts: Vec<&str> = name.split('_').collect();
        let [namespace, pod, uid] = parts[..] else {
            return Err(PodPathError::PodDir {
                name: name.to_string(),
                reason: "expected <namespace>_<pod>_<uid> (namespace and pod names hold no `_`)"
                    .to_string(),
            });
        };
        let invalid = |reason: String| PodPathError::PodDir {
            name: name.to_string(),
            reason,
        };
        check_dns_label(namespace).map_err(|why| invalid(format!("namespace: {why}")))?;
        check_dns_subdomain(pod).map_err(|why| invalid(format!("pod name: {why}")))?;
        check_uid(uid).map_err(|why| invalid(format!("uid: {why}")))?;
        Ok(PodDir {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            uid: uid.to_string(),
        })
    }

    /// The container `name` of this pod, if `name` is a valid container name.
    pub fn container(&self, name: &str) -> Result<PodContainer, PodPathError> {
        check_dns_label(name).map_err(|reason| PodPathError::Container {
            name: name.to_string(),
            reason,
        })?;
        Ok(PodContainer {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            uid: self.uid.clone(),
            container: name.to_string(),
        })
    }
}

/// Which of a container's files a name in its log directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFileName {
    /// `<n>.log`: attempt `n` of the container, written to while it runs.
    Current { restart: u32 },
    /// `<n>.log.<stamp>`: renamed away by the kubelet's rotation; the runtime may still write
    /// its last lines before it reopens `<n>.log`.
    Rotated { restart: u32 },
    /// `<n>.log.<stamp>.gz` (and the `.gz.tmp` being written): compressed rotated files,
    /// never written by the runtime.
    Compressed { restart: u32 },
}

impl LogFileName {
    /// Reads a file name of a container log directory.
    pub fn parse(name: &str) -> Result<LogFileName, PodPathError> {
        let invalid = |reason: &str| PodPathError::LogFile {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let (number, rest) = name
            .split_once(".log")
            .ok_or_else(|| invalid("expected <n>.log"))?;
        let restart = parse_restart(number).ok_or_else(|| invalid("expected <n>.log"))?;
        if rest.is_empty() {
            return Ok(LogFileName::Current { restart });
        }
        let stamp = rest
            .strip_prefix('.')
            .ok_or_else(|| invalid("expected <n>.log or <n>.log.<stamp>"))?;
        let (stamp, compressed) = match stamp
            .strip_suffix(".gz")
            .or_else(|| stamp.strip_suffix(".gz.tmp"))
        {
            Some(stamp) => (stamp, true),
            None => (stamp, false),
        };
        if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(invalid(
                "a rotated file is <n>.log.<YYYYMMDD-hhmmss>, optionally with .gz",
            ));
        }
        Ok(if compressed {
            LogFileName::Compressed { restart }
        } else {
            LogFileName::Rotated { restart }
        })
    }

    /// The container attempt the file belongs to.
    pub fn restart(&self) -> u32 {
        match self {
            LogFileName::Current { restart }
            | LogFileName::Rotated { restart }
            | LogFileName::Compressed { restart } => *restart,
        }
    }
}

/// One log file of a pod's container, as found under the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLogFile {
    pub container: PodContainer,
    /// The container attempt: `0` for the first, incremented by each restart.
    pub restart: u32,
    pub kind: LogFileName,
    pub path: PathBuf,
}

impl PodLogFile {
    /// Reads `path`, which must be `<log_dir>/<namespace>_<pod>_<uid>/<container>/<file>`.
    pub fn from_path(log_dir: &Path, path: &Path) -> Result<PodLogFile, PodPathError> {
        let outside = || PodPathError::Layout {
            path: path.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
        };
        let relative = path.strip_prefix(log_dir).map_err(|_| outside())?;
        let parts: Vec<&str> = relative
            .iter()
            .map(|part| part.to_str().ok_or_else(|| not_utf8(path)))
            .collect::<Result<_, _>>()?;
        let [pod_dir, container, file] = parts[..] else {
            return Err(outside());
        };
        let container = PodDir::parse(pod_dir)?.container(container)?;
        let kind = LogFileName::parse(file)?;
        Ok(PodLogFile {
            container,
            restart: kind.restart(),
            kind,
            path: path.to_path_buf(),
        })
    }

    /// Whether this is the file the runtime writes to (not a rotated or compressed one).
    pub fn is_current(&self) -> bool {
        matches!(self.kind, LogFileName::Current { .. })
    }
}

/// A name under the pod log directory that is not in the kubelet's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodPathError {
    #[error("{}: not under {} as <namespace>_<pod>_<uid>/<container>/<n>.log", .path.display(), .log_dir.display())]
    Layout { path: PathBuf, log_dir: PathBuf },
    #[error("{}: not valid UTF-8", .path.display())]
    NotUtf8 { path: PathBuf },
    #[error("pod log directory `{name}`: {reason}")]
    PodDir { name: String, reason: String },
    #[error("container log directory `{name}`: {reason}")]
    Container { name: String, reason: String },
    #[error("container log file `{name}`: {reason}")]
    LogFile { name: String, reason: String },
}

fn not_utf8(path: &Path) -> PodPathError {
    PodPathError::NotUtf8 {
        path: path.to_path_buf(),
    }
}

/// `0`, `1`, `12`: no sign, no leading zero (the kubelet writes the number plainly).
fn parse_restart(number: &str) -> Option<u32> {
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'));
    if plain { number.parse().ok() } else { None }
}

/// RFC 1123 label: lower-case letters, digits and `-`, starting and ending alphanumeric.
fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".to_string());
    }
    if name.len() > MAX_LABEL {
        return Err(format!("longer than {MAX_LABEL} characters"));
    }
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if !bytes.iter().all(|&b| alphanumeric(b) || b == b'-') {
        return Err(format!(
            "`{name}` holds a character other than a-z, 0-9 and `-`"
        ));
    }
    if !alphanumeric(bytes[0]) || !alphanumeric(bytes[bytes.len() - 1]) {
        return Err(format!(
            "`{name}` must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: labels joined by `.`, at most 253 characters.
fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() > MAX_SUBDOMAIN {
        return Err(format!("longer than {MAX_SUBDOMAIN} characters"));
    }
    if name.is_empty() {
        return Err("empty".to_string());
    }
    name.split('.')
        .try_for_each(|label| check_dns_label(label).map_err(|why| format!("`{name}`: {why}")))
}

/// A uid: letters, digits and `-` (UUIDs and static pods' hashes).
fn check_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() {
        return Err("empty".to_string());
    }
    if uid.len() > MAX_UID {
        return Err(format!("longer than {MAX_UID} characters"));
    }
    if !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "`{uid}` holds a character other than letters, digits and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "7f5c2d1e-93b0-4b8a-a2f4-1c3e5d7f9a0b";

    fn file(relative: &str) -> Result<PodLogFile, PodPathError> {
        let log_dir = Path::new("/var/log/pods");
        PodLogFile::from_path(log_dir, &log_dir.join(relative))
    }

    #[test]
    fn a_current_log_file_names_its_pod_and_container() {
        let found = file(&format!("shop_wordpress-7d9f8-x2x4z_{UID}/wordpress/3.log")).unwrap();
        assert_eq!(
            found.container,
            PodContainer {
                namespace: "shop".into(),
                pod: "wordpress-7d9f8-x2x4z".into(),
                uid: UID.into(),
                container: "wordpress".into(),
            }
        );
        assert_eq!(found.restart, 3);
        assert!(found.is_current());
        assert_eq!(
            found.container.log_file(Path::new("/var/log/pods"), 3),
            found.path
        );
        assert_eq!(
            found.container.to_string(),
            "pod shop/wordpress-7d9f8-x2x4z container wordpress"
        );
    }

    #[test]
    fn dotted_pod_names_and_static_pod_uids_are_valid() {
        let found =
            file("kube-system_etcd.node-1_3b1f8e2a9c4d5e6f7a8b9c0d1e2f3a4b/etcd/0.log").unwrap();
        assert_eq!(found.container.pod, "etcd.node-1");
        assert_eq!(found.container.uid, "3b1f8e2a9c4d5e6f7a8b9c0d1e2f3a4b");
    }

    #[test]
    fn rotated_and_compressed_files_are_not_current() {
        let rotated = file(&format!("ns_web-0_{UID}/nginx/0.log.20261201-204724")).unwrap();
        assert_eq!(rotated.kind, LogFileName::Rotated { restart: 0 });
        assert!(!rotated.is_current());
        for name in ["2.log.20261201-204724.gz", "2.log.20261201-204724.gz.tmp"] {
            let compressed = file(&format!("ns_web-0_{UID}/nginx/{name}")).unwrap();
            assert_eq!(compressed.kind, LogFileName::Compressed { restart: 2 });
            assert_eq!(compressed.restart, 2);
        }
    }

    #[test]
    fn names_outside_the_kubelets_shape_are_refused_with_the_reason() {
        let cases = [
            // An underscore in a namespace or pod name would make the split ambiguous, and
            // Kubernetes allows none.
            (
                format!("my_ns_web-0_{UID}/nginx/0.log"),
                "namespace and pod names hold no `_`",
            ),
            (
                "ns_web-0/nginx/0.log".to_string(),
                "expected <namespace>_<pod>_<uid>",
            ),
            (
                format!("NS_web-0_{UID}/nginx/0.log"),
                "namespace: `NS` holds a character",
            ),
            (
                format!("ns_-web_{UID}/nginx/0.log"),
                "must start and end with a letter or digit",
            ),
            (
                format!("ns_web-0_{UID}/Nginx/0.log"),
                "container log directory `Nginx`",
            ),
            ("ns_web-0_a;b/nginx/0.log".to_string(), "uid: `a;b`"),
            (format!("ns_web-0_{UID}/nginx/01.log"), "expected <n>.log"),
            (format!("ns_web-0_{UID}/nginx/-1.log"), "expected <n>.log"),
            (
                format!("ns_web-0_{UID}/nginx/0.logx"),
                "expected <n>.log or <n>.log.<stamp>",
            ),
            (
                format!("ns_web-0_{UID}/nginx/0.log.old"),
                "a rotated file is",
            ),
            (
                format!("ns_web-0_{UID}/nginx/notes.txt"),
                "expected <n>.log",
            ),
            (format!("ns_web-0_{UID}/0.log"), "not under /var/log/pods"),
            (
                format!("ns_web-0_{UID}/nginx/x/0.log"),
                "not under /var/log/pods",
            ),
        ];
        for (relative, expected) in cases {
            let error = file(&relative).unwrap_err().to_string();
            assert!(error.contains(expected), "{relative}: {error}");
        }
        let elsewhere = PodLogFile::from_path(
            Path::new("/var/log/pods"),
            Path::new("/var/log/containers/x.log"),
        );
        assert!(matches!(elsewhere, Err(PodPathError::Layout { .. })));
    }

    #[test]
    fn over_long_names_are_refused() {
        let namespace = "n".repeat(64);
        let error = PodDir::parse(&format!("{namespace}_web_{UID}")).unwrap_err();
        assert!(error.to_string().contains("longer than 63"), "{error}");
        let pod = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        let error = PodDir::parse(&format!("ns_{pod}_{UID}")).unwrap_err();
        assert!(error.to_string().contains("longer than 253"), "{error}");
    }

    #[test]
    fn restart_numbers_up_to_u32() {
        assert_eq!(
            LogFileName::parse("4294967295.log").unwrap(),
            LogFileName::Current { restart: u32::MAX }
        );
        assert!(LogFileName::parse("4294967296.log").is_err());
    }
}
