//! A client of the container runtime's CRI socket (containerd, k3s's containerd, CRI-O): which
//! pods the node runs, with their labels and annotations.
//!
//! The kubelet copies every pod's labels and annotations into the pod's sandbox when it asks
//! the runtime to create it, so `ListPodSandbox` on the node's own socket tells them without
//! the Kubernetes API and without any RBAC. Only reading calls are made here (`Version`,
//! `ListPodSandbox`, `PodSandboxStatus`); the test harness drives the rest of the protocol
//! through [`CriClient::runtime`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListPodSandboxRequest, PodSandbox, PodSandboxState, PodSandboxStatusRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where runtimes put their CRI socket, in the order they are tried: k3s's embedded
/// containerd, a plain containerd, CRI-O.
pub const DEFAULT_RUNTIME_SOCKETS: [&str; 3] = [
    "/run/k3s/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
];

/// Longest wait for the socket to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one answer: a runtime that hangs must not hold up whoever asks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first of `candidates` that exists and is a socket.
pub fn find_runtime_socket<'a>(candidates: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    candidates
        .into_iter()
        .find(|path| std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_socket()))
        .map(Path::to_path_buf)
}

/// Why the runtime could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("CRI socket {}: cannot connect: {source}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CRI socket {}: {call} failed: {}", .socket.display(), .status.message())]
    Call {
        socket: PathBuf,
        call: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("CRI socket {}: {call} answered without {missing}", .socket.display())]
    Incomplete {
        socket: PathBuf,
        call: &'static str,
        missing: &'static str,
    },
}

/// Whether a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    /// Stopped, or being set up or torn down.
    NotReady,
}

/// One pod as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxInfo {
    /// The runtime's sandbox id.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Which sandbox of the pod this is: the kubelet makes a new one (`attempt + 1`) when the
    /// old one died.
    pub attempt: u32,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// The pod's labels, plus the kubelet's `io.kubernetes.pod.*` ones.
    pub labels: HashMap<String, String>,
    /// The pod's annotations, plus the kubelet's `kubernetes.io/config.*` ones.
    pub annotations: HashMap<String, String>,
    /// Where the pod's container logs go (`/var/log/pods/<ns>_<pod>_<uid>`), when the runtime
    /// tells it (only [`CriClient::pod_status`] asks, and not every runtime says).
    pub log_directory: Option<PathBuf>,
}

impl PodSandboxInfo {
    fn from_list(sandbox: PodSandbox) -> Option<PodSandboxInfo> {
        let metadata = sandbox.metadata?;
        Some(PodSandboxInfo {
            state: state_of(sandbox.state),
            id: sandbox.id,
            namespace: metadata.namespace,
            name: metadata.name,
            uid: metadata.uid,
            attempt: metadata.attempt,
            created_at: sandbox.created_at,
            labels: sandbox.labels,
            annotations: sandbox.annotations,
            log_directory: None,
        })
    }

    /// `namespace/name`, as people write a pod.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn state_of(state: i32) -> SandboxState {
    if state == PodSandboxState::SandboxReady as i32 {
        SandboxState::Ready
    } else {
        SandboxState::NotReady
    }
}

/// What the runtime says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// `containerd`, `cri-o`.
    pub name: String,
    pub version: String,
    /// The CRI version it speaks (`v1`).
    pub api_version: String,
}

/// A connection to one runtime's CRI socket.
#[derive(Debug, Clone)]
pub struct CriClient {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<CriClient, CriError> {
        let path = socket.to_path_buf();
        // The URI is not used: every connection goes to the socket.
        let endpoint = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|source| CriError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(CriClient {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The generated client, for calls this module does not wrap (the test harness runs pods
    /// with it as the kubelet would).
    pub fn runtime(&mut self) -> &mut RuntimeServiceClient<Channel> {
        &mut self.runtime
    }

    fn failed(&self, call: &'static str, status: tonic::Status) -> CriError {
        CriError::Call {
            socket: self.socket.clone(),
            call,
            status: Box::new(status),
        }
    }

    /// `Version`: also tells whether the runtime speaks CRI v1 at all (an older one answers
    /// "unimplemented").
    pub async fn version(&mut self) -> Result<RuntimeVersion, CriError> {
        let answer = self
            .runtime
            .version(VersionRequest {
                version: "v1".to_string(),
            })
            .await
            .map_err(|status| self.failed("Version", status))?
            .into_inner();
        Ok(RuntimeVersion {
            name: answer.runtime_name,
            version: answer.runtime_version,
            api_version: answer.runtime_api_version,
        })
    }

    /// `ListPodSandbox`: every sandbox the runtime has, ready or not, with labels and
    /// annotations. A pod may have several (older attempts); see [`current_sandboxes`].
    pub async fn sandboxes(&mut self) -> Result<Vec<PodSandboxInfo>, CriError> {
        let answer = self
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(|status| self.failed("ListPodSandbox", status))?
            .into_inner();
        Ok(answer
            .items
            .into_iter()
            .filter_map(PodSandboxInfo::from_list)
            .collect())
    }

    /// [`CriClient::sandboxes`], one per pod: see [`current_sandboxes`].
    pub async fn pods(&mut self) -> Result<Vec<PodSandboxInfo>, CriError> {
        Ok(current_sandboxes(self.sandboxes().await?))
    }

    /// `PodSandboxStatus` of one sandbox, with its log directory when the runtime's verbose
    /// answer says it (containerd does).
    pub async fn pod_status(&mut self, sandbox_id: &str) -> Result<PodSandboxInfo, CriError> {
        let answer = self
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                verbose: true,
            })
            .await
            .map_err(|status| self.failed("PodSandboxStatus", status))?
            .into_inner();
        let incomplete = |missing| CriError::Incomplete {
            socket: self.socket.clone(),
            call: "PodSandboxStatus",
            missing,
        };
        let status = answer.status.ok_or_else(|| incomplete("a status"))?;
        let metadata = status.metadata.ok_or_else(|| incomplete("metadata"))?;
        Ok(PodSandboxInfo {
            state: state_of(status.state),
            id: status.id,
            namespace: metadata.namespace,
            name: metadata.name,
            uid: metadata.uid,
            attempt: metadata.attempt,
            created_at: status.created_at,
            labels: status.labels,
            annotations: status.annotations,
            log_directory: log_directory_of(&answer.info),
        })
    }
}

/// One sandbox per pod (namespace, name, uid): the ready one, else the newest attempt. The
/// kubelet keeps a dead sandbox around for a while after making its successor.
pub fn current_sandboxes(sandboxes: Vec<PodSandboxInfo>) -> Vec<PodSandboxInfo> {
    let mut by_pod: HashMap<(String, String, String), PodSandboxInfo> = HashMap::new();
    for sandbox in sandboxes {
        let key = (
            sandbox.namespace.clone(),
            sandbox.name.clone(),
            sandbox.uid.clone(),
        );
        let rank = |s: &PodSandboxInfo| (s.state == SandboxState::Ready, s.attempt, s.created_at);
        match by_pod.get(&key) {
            Some(kept) if rank(kept) >= rank(&sandbox) => {}
            _ => {
                by_pod.insert(key, sandbox);
            }
        }
    }
    let mut pods: Vec<PodSandboxInfo> = by_pod.into_values().collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    pods
}

/// containerd's verbose status carries the sandbox's whole configuration as JSON under
/// `info`, with the log directory the kubelet asked for.
fn log_directory_of(info: &HashMap<String, String>) -> Option<PathBuf> {
    let json: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let config = json.get("config")?;
    let directory = config
        .get("log_directory")
        .or_else(|| config.get("logDirectory"))?
        .as_str()?;
    (!directory.is_empty()).then(|| PathBuf::from(directory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, attempt: u32, state: SandboxState) -> PodSandboxInfo {
        PodSandboxInfo {
            id: id.into(),
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "u1".into(),
            attempt,
            state,
            created_at: i64::from(attempt),
            labels: HashMap::new(),
            annotations: HashMap::new(),
            log_directory: None,
        }
    }

    #[test]
    fn one_sandbox_per_pod_the_ready_one_first() {
        let mut other = sandbox("other", 0, SandboxState::NotReady);
        other.uid = "u2".into();
        let pods = current_sandboxes(vec![
            sandbox("old", 0, SandboxState::NotReady),
            sandbox("ready", 1, SandboxState::Ready),
            sandbox("dying", 2, SandboxState::NotReady),
            other,
        ]);
        let ids: Vec<&str> = pods.iter().map(|pod| pod.id.as_str()).collect();
        assert_eq!(ids, ["ready", "other"]);
        let pods = current_sandboxes(vec![
            sandbox("old", 0, SandboxState::NotReady),
            sandbox("newer", 1, SandboxState::NotReady),
        ]);
        assert_eq!(pods[0].id, "newer");
    }

    #[test]
    fn the_log_directory_comes_from_containerds_verbose_info() {
        let info = HashMap::from([(
            "info".to_string(),
            r#"{"pid":42,"config":{"metadata":{"name":"web-0"},"log_directory":"/var/log/pods/shop_web-0_u1"}}"#
                .to_string(),
        )]);
        assert_eq!(
            log_directory_of(&info),
            Some(PathBuf::from("/var/log/pods/shop_web-0_u1"))
        );
        assert_eq!(log_directory_of(&HashMap::new()), None);
        let garbage = HashMap::from([("info".to_string(), "not json".to_string())]);
        assert_eq!(log_directory_of(&garbage), None);
    }

    #[test]
    fn the_first_existing_socket_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("crio.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let plain_file = dir.path().join("containerd.sock");
        std::fs::write(&plain_file, b"").unwrap();
        let missing = dir.path().join("k3s.sock");
        assert_eq!(
            find_runtime_socket([missing.as_path(), plain_file.as_path(), socket.as_path()]),
            Some(socket.clone())
        );
        assert_eq!(find_runtime_socket([missing.as_path()]), None);
    }
}
