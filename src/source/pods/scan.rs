//! One look at the pod log directory: which containers have which `<n>.log` files now, and
//! what changed since the last look (new containers, restarts, containers gone).
//!
//! Reading directories is all this does; deciding what to follow and following is
//! [`super::discovery`]'s. A name not in the kubelet's shape is reported, never followed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::PodContainer;
use super::path::{LogFileName, PodDir, PodPathError};

/// What one look found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Containers with at least one current (`<n>.log`) file, and those files by attempt.
    pub containers: BTreeMap<PodContainer, Attempts>,
    /// Every pod log directory (with or without containers yet), to watch for new ones.
    pub pod_dirs: BTreeSet<PathBuf>,
    /// Container log directories without any `<n>.log` yet (created just before the runtime
    /// opens the file), to watch for their first file.
    pub empty_container_dirs: BTreeSet<PathBuf>,
    /// Whether the log directory itself exists (a node without pods may not have it yet).
    pub log_dir_exists: bool,
    /// Names that are not the kubelet's and what could not be read, to say once each.
    pub problems: Vec<ScanProblem>,
}

/// A container's current files: `<n>.log` by `n`.
pub type Attempts = BTreeMap<u32, PathBuf>;

/// Something under the log directory that was passed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanProblem {
    #[error("{}: {error}", .path.display())]
    Name {
        path: PathBuf,
        #[source]
        error: PodPathError,
    },
    #[error("cannot read {}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
}

impl ScanProblem {
    /// What the problem is about (to say it once per path).
    pub fn path(&self) -> &Path {
        match self {
            ScanProblem::Name { path, .. } | ScanProblem::Read { path, .. } => path,
        }
    }
}

/// Why the log directory could not be looked at at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the pod log directory {}: {source}", .path.display())]
pub struct ScanError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Looks at `log_dir` (usually `/var/log/pods`) once.
pub fn scan(log_dir: &Path) -> Result<Inventory, ScanError> {
    let mut inventory = Inventory::default();
    let pods = match std::fs::read_dir(log_dir) {
        Ok(pods) => pods,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(inventory),
        Err(source) => {
            return Err(ScanError {
                path: log_dir.to_path_buf(),
                source,
            });
        }
    };
    inventory.log_dir_exists = true;
    for entry in pods.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            inventory.problems.push(ScanProblem::Name {
                error: PodPathError::NotUtf8 { path: path.clone() },
                path,
            });
            continue;
        };
        match PodDir::parse(&name) {
            Ok(pod) => scan_pod(&pod, &path, &mut inventory),
            Err(error) => inventory.problems.push(ScanProblem::Name { path, error }),
        }
    }
    Ok(inventory)
}

fn scan_pod(pod: &PodDir, pod_path: &Path, inventory: &mut Inventory) {
    inventory.pod_dirs.insert(pod_path.to_path_buf());
    let containers = match std::fs::read_dir(pod_path) {
        Ok(containers) => containers,
        // Deleted between the two reads: the next look will not see it either.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            inventory.problems.push(ScanProblem::Read {
                path: pod_path.to_path_buf(),
                message: error.to_string(),
            });
            return;
        }
    };
    for entry in containers.flatten() {
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let path = entry.path();
        let container = match entry.file_name().to_str() {
            Some(name) => pod.container(name),
            None => Err(PodPathError::NotUtf8 { path: path.clone() }),
        };
        match container {
            Ok(container) => {
                let attempts = current_files(&path, &mut inventory.problems);
                if attempts.is_empty() {
                    inventory.empty_container_dirs.insert(path);
                } else {
                    inventory.containers.insert(container, attempts);
                }
            }
            Err(error) => inventory.problems.push(ScanProblem::Name { path, error }),
        }
    }
}

/// The `<n>.log` files of one container directory.
fn current_files(dir: &Path, problems: &mut Vec<ScanProblem>) -> Attempts {
    let mut attempts = Attempts::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return attempts,
        Err(error) => {
            problems.push(ScanProblem::Read {
                path: dir.to_path_buf(),
                message: error.to_string(),
            });
            return attempts;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            problems.push(ScanProblem::Name {
                error: PodPathError::NotUtf8 { path: path.clone() },
                path,
            });
            continue;
        };
        match LogFileName::parse(&name) {
            Ok(LogFileName::Current { restart }) => {
                attempts.insert(restart, path);
            }
            Ok(LogFileName::Rotated { .. } | LogFileName::Compressed { .. }) => {}
            Err(error) => problems.push(ScanProblem::Name { path, error }),
        }
    }
    attempts
}

/// The attempt whose file (current or rotated, not compressed) in `dir` has this identity: where
/// a stored position points after a restart of logjail.
pub fn attempt_of(dir: &Path, device: u64, inode: u64) -> Option<u32> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let restart = match LogFileName::parse(&name) {
            Ok(LogFileName::Current { restart } | LogFileName::Rotated { restart }) => restart,
            _ => continue,
        };
        if entry
            .metadata()
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == (device, inode))
        {
            return Some(restart);
        }
    }
    None
}

/// What changed between the containers known and a new look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A container seen for the first time; `latest` is its newest attempt.
    Appeared {
        container: PodContainer,
        latest: u32,
    },
    /// Attempts newer than the one known, oldest first (the container restarted, maybe more
    /// than once since the last look).
    Restarted {
        container: PodContainer,
        newer: Vec<u32>,
    },
    /// The container has no current file any more: its pod (or the container) was deleted.
    Gone { container: PodContainer },
}

/// Compares `known` (each container with its newest attempt known) with `now`.
pub fn changes(known: &BTreeMap<PodContainer, u32>, now: &Inventory) -> Vec<Change> {
    let mut changes = Vec::new();
    for (container, attempts) in &now.containers {
        let Some(latest) = attempts.keys().next_back().copied() else {
            continue;
        };
        match known.get(container) {
            None => changes.push(Change::Appeared {
                container: container.clone(),
                latest,
            }),
            Some(&known_latest) => {
                let newer: Vec<u32> = attempts
                    .range(known_latest.saturating_add(1)..)
                    .map(|(restart, _)| *restart)
                    .collect();
                if !newer.is_empty() && known_latest != u32::MAX {
                    changes.push(Change::Restarted {
                        container: container.clone(),
                        newer,
                    });
                }
            }
        }
    }
    for container in known.keys() {
        if !now.containers.contains_key(container) {
            changes.push(Change::Gone {
                container: container.clone(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    fn container(pod: &str, name: &str) -> PodContainer {
        PodContainer {
            namespace: "shop".into(),
            pod: pod.into(),
            uid: UID.into(),
            container: name.into(),
        }
    }

    #[test]
    fn a_look_finds_current_files_by_container_and_passes_over_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let web = root.join(format!("shop_web-0_{UID}"));
        touch(&web.join("nginx/0.log"));
        touch(&web.join("nginx/0.log.20261201-204724.gz"));
        touch(&web.join("nginx/1.log"));
        touch(&web.join("nginx/1.log.20261201-214724"));
        touch(&web.join("php/0.log"));
        std::fs::create_dir_all(web.join("init")).unwrap();
        touch(&root.join("bad_name/x/0.log"));
        touch(&web.join("php/core"));
        // A stray file beside the pod directories is nobody's log.
        touch(&root.join("README"));
        let inventory = scan(root).unwrap();
        assert!(inventory.log_dir_exists);
        let nginx = &inventory.containers[&container("web-0", "nginx")];
        assert_eq!(nginx.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(nginx[&1], web.join("nginx/1.log"));
        assert!(
            inventory
                .containers
                .contains_key(&container("web-0", "php"))
        );
        assert_eq!(inventory.containers.len(), 2);
        assert_eq!(
            inventory.empty_container_dirs,
            BTreeSet::from([web.join("init")])
        );
        assert_eq!(inventory.pod_dirs, BTreeSet::from([web.clone()]));
        let mut problems: Vec<String> = inventory.problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("bad_name"), "{problems:?}");
        assert!(problems[1].contains("php/core"), "{problems:?}");
    }

    #[test]
    fn a_missing_log_directory_is_empty_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = scan(&dir.path().join("pods")).unwrap();
        assert!(!inventory.log_dir_exists);
        assert!(inventory.containers.is_empty());
    }

    #[test]
    fn changes_name_new_containers_restarts_and_the_gone() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join(format!("shop_web-0_{UID}"));
        touch(&web.join("nginx/0.log"));
        touch(&web.join("nginx/1.log"));
        touch(&web.join("nginx/2.log"));
        touch(&web.join("php/0.log"));
        let inventory = scan(dir.path()).unwrap();
        let known = BTreeMap::from([
            (container("web-0", "nginx"), 0),
            (container("web-1", "nginx"), 4),
        ]);
        assert_eq!(
            changes(&known, &inventory),
            [
                Change::Restarted {
                    container: container("web-0", "nginx"),
                    newer: vec![1, 2],
                },
                Change::Appeared {
                    container: container("web-0", "php"),
                    latest: 0,
                },
                Change::Gone {
                    container: container("web-1", "nginx"),
                },
            ]
        );
        let up_to_date = BTreeMap::from([
            (container("web-0", "nginx"), 2),
            (container("web-0", "php"), 0),
        ]);
        assert!(changes(&up_to_date, &inventory).is_empty());
    }

    #[test]
    fn a_stored_identity_leads_to_its_attempt_even_when_rotated() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("0.log.20261201-204724"));
        touch(&dir.path().join("1.log"));
        let identity = |name: &str| {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            (meta.dev(), meta.ino())
        };
        let (device, inode) = identity("0.log.20261201-204724");
        assert_eq!(attempt_of(dir.path(), device, inode), Some(0));
        let (device, inode) = identity("1.log");
        assert_eq!(attempt_of(dir.path(), device, inode), Some(1));
        assert_eq!(attempt_of(dir.path(), device, u64::MAX), None);
    }
}
