//! A real containerd for the pods tests, private to one test: its own root, state, sockets and
//! runc root in a temp folder, the CRI plugin on, and pods run through CRI the way the kubelet
//! runs them (sandbox with labels and annotations on the node's network, containers with
//! their `log_path`, restarts as new attempts, rotation by rename and `ReopenContainerLog`,
//! deletion of the pod and its log folder). It can run inside a network namespace of the
//! test's, as a node's runtime runs in the node's (see [`Containerd::start_in_netns`]), and
//! write lines to a container's own stdout or stderr through `ExecSync`, as if its program had
//! written them.
//!
//! The image is built without any registry, from Debian's busybox-static with umoci and
//! skopeo, once per machine (cached under `/var/cache/logjail-test`), and imported into each
//! containerd with `ctr`. The same image is the sandbox's ("pause") image: its command sleeps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemoveContainerRequest, RemovePodSandboxRequest, ReopenContainerLogRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use logjail::source::pods::cri::CriClient;

/// Where built test images are kept between runs (as `scripts/test-images` keeps its own).
const CACHE: &str = "/var/cache/logjail-test";
/// The image's name in containerd (what `skopeo` tags the archive with, under docker.io).
pub const IMAGE: &str = "docker.io/logjail-test/cri-busybox:1";
/// The applets the image links to busybox: what the tests' container scripts use (`httpd`
/// and `mkdir`: the node test's pod serves HTTP and logs every answer with the client).
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "printf", "seq", "head", "yes", "tr", "dd", "true", "httpd",
    "mkdir",
];
/// What the image is made of, in its cache file name: a changed list makes a new one.
const IMAGE_VERSION: &str = "v2";
/// Longest wait for containerd to answer, a container to exit and similar.
const WAIT: Duration = Duration::from_secs(20);

/// The docker-archive of the test image, built on first use.
fn image_archive() -> PathBuf {
    // One builder per process (tests may share one); other processes build under their own
    // temporary name.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let archive = Path::new(CACHE).join(format!("cri-busybox-{IMAGE_VERSION}.tar"));
    if archive.exists() {
        return archive;
    }
    std::fs::create_dir_all(CACHE).unwrap();
    let work = tempfile::Builder::new()
        .prefix("lj-cri-image")
        .tempdir()
        .unwrap();
    let layout = work.path().join("oci");
    let bundle = work.path().join("bundle");
    let image = format!("{}:busybox", layout.display());
    run("umoci", &["init", "--layout", &layout.to_string_lossy()]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["unpack", "--image", &image, &bundle.to_string_lossy()],
    );
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    run(
        "umoci",
        &["repack", "--image", &image, &bundle.to_string_lossy()],
    );
    // The sandbox runs the image's own command: it must wait, as `pause` does.
    run(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.cmd",
            "/bin/sleep",
            "--config.cmd",
            "2147483647",
        ],
    );
    // Built under a temporary name and renamed: a test running at the same time never sees
    // half an archive.
    let partial = Path::new(CACHE).join(format!(
        "cri-busybox-{IMAGE_VERSION}.tar.{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&partial);
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{image}"),
            &format!(
                "docker-archive:{}:{}",
                partial.display(),
                IMAGE.trim_start_matches("docker.io/")
            ),
        ],
    );
    std::fs::rename(&partial, &archive).unwrap();
    archive
}

/// Runs a program and panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A private containerd with the CRI plugin.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Plays the node's `/var/log/pods`.
    pub log_dir: PathBuf,
}

/// A pod as the kubelet asks for it.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

impl PodSpec {
    pub fn new(namespace: &str, name: &str) -> PodSpec {
        // A uid in the shape Kubernetes gives (a UUID), unique per test run.
        let n = UID_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uid = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            u64::from(n)
        );
        PodSpec {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid,
            ..PodSpec::default()
        }
    }

    pub fn annotation(mut self, key: &str, value: &str) -> PodSpec {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> PodSpec {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

static UID_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A running pod sandbox.
#[derive(Debug, Clone)]
pub struct Pod {
    pub sandbox_id: String,
    pub spec: PodSpec,
    /// `<log_dir>/<namespace>_<name>_<uid>`.
    pub log_directory: PathBuf,
    config: PodSandboxConfig,
}

impl Pod {
    /// Where attempt `attempt` of container `name` logs.
    pub fn log_file(&self, container: &str, attempt: u32) -> PathBuf {
        self.log_directory
            .join(container)
            .join(format!("{attempt}.log"))
    }
}

/// The node's namespaces for a host-network pod: network and (as the kubelet sets for
/// `hostNetwork: true`) nothing else shared.
fn host_network() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..NamespaceOption::default()
    }
}

impl Containerd {
    /// Starts containerd and imports the test image; waits until CRI answers.
    pub async fn start() -> Containerd {
        Containerd::start_with(None).await
    }

    /// [`Containerd::start`] inside the network namespace `netns` (`ip netns add` made it),
    /// as a node's runtime runs in the node's: host-network pods share that namespace. Started
    /// through `nsenter --net=…`, which changes only the network namespace; `ip netns exec`
    /// would also remount `/sys`, hiding the cgroup mounts runc needs. Its sockets are files,
    /// reached from any namespace.
    pub async fn start_in_netns(netns: &str) -> Containerd {
        Containerd::start_with(Some(netns)).await
    }

    async fn start_with(netns: Option<&str>) -> Containerd {
        reap_leftovers();
        let archive = tokio::task::spawn_blocking(image_archive).await.unwrap();
        // Short: the socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix(&format!("ljc{}-", std::process::id()))
            .tempdir_in("/tmp")
            .unwrap();
        let log_dir = dir.path().join("pods");
        std::fs::create_dir_all(&log_dir).unwrap();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # This sandbox lacks CAP_SYS_RESOURCE: containerd must not raise oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = dir.path().join("c.sock").display(),
            runc = dir.path().join("runc").display(),
            cni = dir.path().join("cni").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let mut command = match netns {
            Some(name) => {
                // nsenter execs containerd after entering: the child is containerd itself.
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{name}"))
                    .arg("--")
                    .arg("containerd");
                command
            }
            None => Command::new("containerd"),
        };
        let child = command
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd starts");
        let mut containerd = Containerd {
            dir,
            child: Some(child),
            log_dir,
        };
        containerd.wait_ready().await;
        let address = containerd.socket();
        let output = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(&address)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&archive)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        containerd
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("containerd exited ({status}); its log:\n{}", self.log());
            }
            if self.socket().exists()
                && let Ok(mut client) = CriClient::connect(&self.socket()).await
                && client.version().await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "containerd did not answer; its log:\n{}",
                self.log()
            );
            // Polling for readiness (there is nothing to wait on), bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.socket()).await.unwrap()
    }

    /// What containerd logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `RunPodSandbox` as the kubelet calls it for a `hostNetwork: true` pod, after making the
    /// pod's log folder.
    pub async fn run_pod(&self, spec: PodSpec) -> Pod {
        let log_directory = self
            .log_dir
            .join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid));
        std::fs::create_dir_all(&log_directory).unwrap();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: 0,
            }),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let mut client = self.client().await;
        let answer = client
            .runtime()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("RunPodSandbox: {status}\n{}", self.log()))
            .into_inner();
        Pod {
            sandbox_id: answer.pod_sandbox_id,
            spec,
            log_directory,
            config,
        }
    }

    /// `CreateContainer` (attempt `attempt`, logging to `<name>/<attempt>.log`) and
    /// `StartContainer`: the container runs `sh -c script`. Returns its id.
    pub async fn run_container(&self, pod: &Pod, name: &str, attempt: u32, script: &str) -> String {
        std::fs::create_dir_all(pod.log_directory.join(name)).unwrap();
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: IMAGE.to_string(),
                ..ImageSpec::default()
            }),
            command: vec!["/bin/sh".into(), "-c".into(), script.to_string()],
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                    ..LinuxContainerSecurityContext::default()
                }),
                ..LinuxContainerConfig::default()
            }),
            ..ContainerConfig::default()
        };
        let mut client = self.client().await;
        let id = client
            .runtime()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .unwrap_or_else(|status| panic!("CreateContainer: {status}\n{}", self.log()))
            .into_inner()
            .container_id;
        client
            .runtime()
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("StartContainer: {status}\n{}", self.log()));
        id
    }

    /// Runs `argv` in the running container (`ExecSync`) and returns its stdout; panics when
    /// it fails. What it runs is an argument vector, never a line for a shell to read.
    pub async fn exec(&self, container_id: &str, argv: &[&str]) -> String {
        let mut client = self.client().await;
        let answer = client
            .runtime()
            .exec_sync(ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: argv.iter().map(|arg| arg.to_string()).collect(),
                timeout: WAIT.as_secs() as i64,
            })
            .await
            .unwrap_or_else(|status| panic!("ExecSync {argv:?}: {status}\n{}", self.log()))
            .into_inner();
        assert_eq!(
            answer.exit_code,
            0,
            "ExecSync {argv:?}: {}",
            String::from_utf8_lossy(&answer.stderr)
        );
        String::from_utf8_lossy(&answer.stdout).into_owned()
    }

    /// Writes `line` to the container's stdout (or stderr) through the descriptors of its
    /// first process, as if the program in it had written it: the runtime puts it in the
    /// container's CRI log. The text reaches `printf` as an argument, never a shell's code.
    pub async fn write_line(&self, container_id: &str, stream: super::Stream, line: &str) {
        let target = match stream {
            super::Stream::Stdout => "/proc/1/fd/1",
            super::Stream::Stderr => "/proc/1/fd/2",
        };
        let script = format!("printf '%s\\n' \"$1\" > {target}");
        self.exec(container_id, &["/bin/sh", "-c", &script, "sh", line])
            .await;
    }

    /// Waits until the container has exited (its script ended, or it was stopped).
    pub async fn wait_exited(&self, container_id: &str) {
        let mut client = self.client().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = client
                .runtime()
                .container_status(ContainerStatusRequest {
                    container_id: container_id.to_string(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if status.state == ContainerState::ContainerExited as i32 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "container {container_id} did not exit"
            );
            // Polling the runtime's state, bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `StopContainer` (SIGTERM, then SIGKILL after `timeout` seconds).
    pub async fn stop_container(&self, container_id: &str, timeout: i64) {
        let mut client = self.client().await;
        client
            .runtime()
            .stop_container(StopContainerRequest {
                container_id: container_id.to_string(),
                timeout,
            })
            .await
            .unwrap_or_else(|status| panic!("StopContainer: {status}"));
    }

    /// The kubelet's rotation: `<n>.log` renamed with a time stamp, then the runtime told to
    /// reopen the log, which makes a new `<n>.log`. Returns the rotated file's path.
    pub async fn rotate(
        &self,
        pod: &Pod,
        container: &str,
        attempt: u32,
        container_id: &str,
    ) -> PathBuf {
        let current = pod.log_file(container, attempt);
        // The kubelet's stamp has seconds only; two rotations within one second (which the
        // kubelet never makes) take the next free second.
        let mut time = chrono::Utc::now();
        let rotated = loop {
            let stamp = time.format("%Y%m%d-%H%M%S");
            let rotated = PathBuf::from(format!("{}.{stamp}", current.display()));
            if !rotated.exists() {
                break rotated;
            }
            time += chrono::Duration::seconds(1);
        };
        std::fs::rename(&current, &rotated).unwrap();
        let mut client = self.client().await;
        client
            .runtime()
            .reopen_container_log(ReopenContainerLogRequest {
                container_id: container_id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("ReopenContainerLog: {status}"));
        rotated
    }

    /// The kubelet's compression of an older rotated file: `<file>.gz.tmp` written, renamed
    /// to `<file>.gz`, the original removed.
    pub fn compress(&self, rotated: &Path) -> PathBuf {
        let temporary = PathBuf::from(format!("{}.gz.tmp", rotated.display()));
        let compressed = PathBuf::from(format!("{}.gz", rotated.display()));
        let output = Command::new("gzip")
            .arg("-c")
            .arg(rotated)
            .output()
            .unwrap();
        assert!(output.status.success());
        std::fs::write(&temporary, output.stdout).unwrap();
        std::fs::rename(&temporary, &compressed).unwrap();
        std::fs::remove_file(rotated).unwrap();
        compressed
    }

    /// What the kubelet does when a pod is deleted: stop and remove its containers and
    /// sandbox, then remove its log folder.
    pub async fn delete_pod(&self, pod: &Pod) {
        let mut client = self.client().await;
        client
            .runtime()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("StopPodSandbox: {status}"));
        client
            .runtime()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("RemovePodSandbox: {status}"));
        std::fs::remove_dir_all(&pod.log_directory).unwrap();
    }

    /// `RemoveContainer` (the kubelet's container garbage collection).
    pub async fn remove_container(&self, container_id: &str) {
        let mut client = self.client().await;
        client
            .runtime()
            .remove_container(RemoveContainerRequest {
                container_id: container_id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("RemoveContainer: {status}"));
    }

    /// Stops and removes every sandbox (their containers with them), then stops containerd.
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let socket = self.socket();
        // Drop may run inside a runtime: the CRI calls get a runtime of their own on a thread.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(mut client) = CriClient::connect(&socket).await else {
                    return;
                };
                let Ok(listed) = client
                    .runtime()
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await
                else {
                    return;
                };
                for sandbox in listed.into_inner().items {
                    let _ = client
                        .runtime()
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: sandbox.id.clone(),
                        })
                        .await;
                    let _ = client
                        .runtime()
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: sandbox.id,
                        })
                        .await;
                }
            });
        })
        .join();
        if cleaned.is_err() {
            eprintln!("containerd clean-up panicked");
        }
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        unmount_under(self.dir.path());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// What a test killed before its clean-up (a timeout) left: its containerd, the shims and
/// container processes it started, their mounts and folder. Each folder is named after its
/// test process; only those of processes that no longer exist are touched, and only processes
/// that are provably theirs are killed, each by its id: those whose command line names the
/// folder (containerd, shims: `-address <folder>/c.sock`) and those in a cgroup of one of its
/// containers (`/k8s.io/<container id>`).
fn reap_leftovers() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ljc")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let tasks = dir.join("state/io.containerd.runtime.v2.task/k8s.io");
        let cgroups: Vec<String> = std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .map(|task| format!("/k8s.io/{}\n", task.file_name().to_string_lossy()))
            .collect();
        let folder = dir.to_string_lossy().into_owned();
        for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = process.file_name().to_string_lossy().into_owned();
            if pid.parse::<u32>().is_err() {
                continue;
            }
            let cmdline = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
            let cgroup = std::fs::read_to_string(process.path().join("cgroup")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&folder)
                || cgroups
                    .iter()
                    .any(|container| cgroup.contains(container.as_str()));
            if ours {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        unmount_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Unmounts (lazily, deepest first) whatever is mounted under `dir`: the containers' root
/// file systems that a failed clean-up left would keep the folder from going.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["--lazy", point])
            .stderr(Stdio::null())
            .status();
    }
}
