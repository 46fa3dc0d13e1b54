//! Recognising logjail's own container, so that logjail never reads its own log: its ban
//! lines quote attackers' log lines, and reading them back would count every failure twice.

use std::path::Path;

/// How logjail's own container can be recognised; empty when logjail runs on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnContainer {
    /// The full container id, when the mounts or cgroups show it.
    pub id: Option<String>,
    /// The container's host name when it looks like a short container id (Docker's default
    /// host name), used when the full id cannot be found.
    pub short_id: Option<String>,
}

impl OwnContainer {
    /// Looks at this process: `/proc/self/mountinfo` (Docker bind-mounts
    /// `/var/lib/docker/containers/<id>/hostname` and friends into every container),
    /// `/proc/self/cgroup` (cgroup v1 paths and systemd scopes name the id), and, inside a
    /// container (`/.dockerenv`), the host name.
    pub fn detect() -> OwnContainer {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let id = id_in_mountinfo(&mountinfo).or_else(|| id_in_cgroup(&cgroup));
        let short_id = if Path::new("/.dockerenv").exists() {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|name| name.trim().to_string())
                .filter(|name| name.len() == 12 && is_hex(name))
        } else {
            None
        };
        OwnContainer { id, short_id }
    }

    /// Whether the container with this full id is logjail's own.
    pub fn is(&self, container_id: &str) -> bool {
        match (&self.id, &self.short_id) {
            (Some(id), _) => id == container_id,
            (None, Some(short)) => container_id.starts_with(short.as_str()),
            (None, None) => false,
        }
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The first 64-hex-digit path component that follows `marker` in `text`.
fn id_after(text: &str, marker: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let candidate = &rest[at + marker.len()..];
        if let Some(id) = candidate.get(..64)
            && is_hex(id)
            && candidate[64..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_ascii_hexdigit())
        {
            return Some(id.to_string());
        }
        rest = &rest[at + marker.len()..];
    }
    None
}

/// Docker bind-mounts these files from the container's directory; only they count, since
/// on the host the mount table also lists other containers' directories (their `shm`).
const CONTAINER_FILES: &[&str] = &["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

fn id_in_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // Fields: id, parent, major:minor, root, mount point, …
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if CONTAINER_FILES.contains(&mount_point) {
            id_after(root, "/containers/")
        } else {
            None
        }
    })
}

fn id_in_cgroup(cgroup: &str) -> Option<String> {
    id_after(cgroup, "/docker/").or_else(|| id_after(cgroup, "docker-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e0c7a9b2d3e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";

    #[test]
    fn finds_the_id_in_the_hostname_bind_mount() {
        let mountinfo = format!(
            "612 590 0:52 / / rw,relatime - overlay overlay rw\n\
             630 612 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(id_in_mountinfo(&mountinfo).as_deref(), Some(ID));
        assert_eq!(
            id_in_mountinfo("612 590 0:52 / / rw - overlay overlay rw\n"),
            None
        );
        // The host's mount table lists other containers' shm mounts: not ours.
        let host =
            format!("700 30 0:60 / /var/lib/docker/containers/{ID}/mounts/shm rw - tmpfs shm rw\n");
        assert_eq!(id_in_mountinfo(&host), None);
    }

    #[test]
    fn finds_the_id_in_cgroup_v1_and_systemd_scopes() {
        assert_eq!(
            id_in_cgroup(&format!("12:memory:/docker/{ID}\n0::/\n")).as_deref(),
            Some(ID)
        );
        assert_eq!(
            id_in_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")).as_deref(),
            Some(ID)
        );
        assert_eq!(id_in_cgroup("0::/\n"), None);
        assert_eq!(id_in_cgroup("0::/user.slice/docker-abc.scope\n"), None);
    }

    #[test]
    fn a_longer_hex_run_is_not_an_id() {
        assert_eq!(id_after(&format!("/docker/{ID}0"), "/docker/"), None);
    }

    #[test]
    fn matching() {
        let own = OwnContainer {
            id: Some(ID.to_string()),
            short_id: None,
        };
        assert!(own.is(ID));
        assert!(!own.is(&ID.replace('4', "5")));
        let by_hostname = OwnContainer {
            id: None,
            short_id: Some(ID[..12].to_string()),
        };
        assert!(by_hostname.is(ID));
        assert!(!OwnContainer::default().is(ID));
    }
}
