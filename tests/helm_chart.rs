//! The Helm chart `charts/logjail` through real tools: Helm renders and lints it for the
//! default values and every example values file, `kubernetes-validate --strict` checks each
//! rendered object against every Kubernetes minor version from 1.29 to the newest it knows,
//! `values.schema.json` refuses bad values naming them, the DaemonSet's security context,
//! mounts and tolerations are as designed, the configuration's paths and ports agree with the
//! mounts and the Service, and `checkov` passes with only the design's findings skipped.
//!
//! The tools come from `scripts/test-tools` (run by `scripts/test`) under
//! `$LOGJAIL_TEST_TOOLS` (default `/opt/logjail-test-tools`); a missing tool fails the test.
//!
//! Each case's rendered logjail configuration is written to
//! `target/tmp/helm-chart/CASE/logjail.yaml` (see [`rendered_config_file`]) and must pass
//! `logjail check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/logjail");
const BINARY: &str = env!("CARGO_BIN_EXE_logjail");
const RELEASE: &str = "lj";
const NAMESPACE: &str = "security";
/// `RELEASE-logjail`: the name every object of the release carries.
const FULLNAME: &str = "lj-logjail";
/// The oldest Kubernetes the chart supports (Chart.yaml `kubeVersion`); rendering does not
/// depend on the version, so every case is rendered once, for this one.
const RENDER_KUBE_VERSION: &str = "1.29.0";
const OLDEST_MINOR: (u32, u32) = (1, 29);
/// Lint for the oldest Kubernetes supported and the newest this Helm (v4.1) was built for.
const LINT_KUBE_VERSIONS: [&str; 2] = [RENDER_KUBE_VERSION, "1.35.0"];
/// The ServiceMonitor's API, as `helm template --api-versions` announces it.
const SERVICE_MONITOR_API: &str = "monitoring.coreos.com/v1/ServiceMonitor";

// ---- the tools -----------------------------------------------------------------------------

struct Tools {
    root: PathBuf,
    helm: PathBuf,
    python: PathBuf,
    kubernetes_validate: PathBuf,
    checkov: PathBuf,
}

/// The installed tools; panics, naming what is missing, when `scripts/test-tools` has not run.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = std::env::var_os("LOGJAIL_TEST_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/logjail-test-tools"));
        let tools = Tools {
            helm: root.join("bin/helm"),
            python: root.join("venv/bin/python"),
            kubernetes_validate: root.join("venv/bin/kubernetes-validate"),
            checkov: root.join("venv/bin/checkov"),
            root,
        };
        for tool in [
            &tools.helm,
            &tools.python,
            &tools.kubernetes_validate,
            &tools.checkov,
        ] {
            assert!(
                tool.is_file(),
                "{} is missing: run scripts/test-tools (scripts/test runs it) to install helm, \
                 kubernetes-validate and checkov into {} (or set LOGJAIL_TEST_TOOLS)",
                tool.display(),
                tools.root.display()
            );
        }
        tools
    })
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- rendering -----------------------------------------------------------------------------

/// A values file the chart is tested with: its defaults, or one of `charts/logjail/examples/`.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    values: Option<PathBuf>,
}

impl Case {
    fn args(&self) -> Vec<String> {
        match &self.values {
            Some(path) => vec!["-f".into(), path.display().to_string()],
            None => Vec::new(),
        }
    }
}

fn cases() -> Vec<Case> {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(Path::new(CHART).join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "examples: {examples:?}");
    let mut cases = vec![Case {
        name: "default".into(),
        values: None,
    }];
    cases.extend(examples.into_iter().map(|path| Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        values: Some(path),
    }));
    cases
}

/// `helm template` of the chart with these extra arguments: the manifests, or Helm's error.
fn template(extra: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        RENDER_KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    let output = run(&tools().helm, &args);
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(text(&output.stderr))
    }
}

fn documents(manifests: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifests)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|value| !value.is_null())
        .collect()
}

/// The objects the chart renders with these extra arguments; panics with Helm's error.
fn render(extra: &[&str]) -> Vec<Value> {
    let manifests = template(extra).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"));
    documents(&manifests)
}

fn render_case(case: &Case) -> (String, Vec<Value>) {
    let args = case.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let manifests = template(&args).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let objects = documents(&manifests);
    (manifests, objects)
}

/// The one object of this kind.
fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let mut found = objects.iter().filter(|o| o["kind"].as_str() == Some(kind));
    let first = found.next().unwrap_or_else(|| panic!("no {kind} rendered"));
    assert!(found.next().is_none(), "more than one {kind} rendered");
    first
}

fn has_kind(objects: &[Value], kind: &str) -> bool {
    objects.iter().any(|o| o["kind"].as_str() == Some(kind))
}

fn pod_spec(objects: &[Value]) -> &Value {
    &object(objects, "DaemonSet")["spec"]["template"]["spec"]
}

fn container(objects: &[Value]) -> &Value {
    let containers = pod_spec(objects)["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    &containers[0]
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value:?}"))
}

/// The logjail configuration the ConfigMap carries.
fn rendered_config(objects: &[Value]) -> Value {
    let config_map = object(objects, "ConfigMap");
    yaml(str_of(&config_map["data"], "logjail.yaml"))
}

/// Writes the case's rendered logjail configuration where a later `logjail check` reads it:
/// `target/tmp/helm-chart/CASE/logjail.yaml`.
fn rendered_config_file(case: &Case, objects: &[Value]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("helm-chart")
        .join(&case.name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("logjail.yaml");
    let config_map = object(objects, "ConfigMap");
    std::fs::write(&path, str_of(&config_map["data"], "logjail.yaml")).unwrap();
    path
}

/// Helm's merge of a values file into the chart's values: maps key by key, `null` removes.
fn merge_values(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge_values(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

fn values_of(case: &Case) -> Value {
    let mut values = yaml(&std::fs::read_to_string(Path::new(CHART).join("values.yaml")).unwrap());
    if let Some(path) = &case.values {
        merge_values(&mut values, &yaml(&std::fs::read_to_string(path).unwrap()));
    }
    values
}

// ---- Helm: lint, kubeVersion, NOTES --------------------------------------------------------

#[test]
fn helm_lint_strict_passes_for_the_defaults_and_every_example() {
    for case in cases() {
        for kube_version in LINT_KUBE_VERSIONS {
            let mut args = vec![
                "lint".to_string(),
                "--strict".into(),
                "--kube-version".into(),
                kube_version.into(),
                CHART.into(),
            ];
            args.extend(case.args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = run(&tools().helm, &args);
            let out = text(&output.stdout);
            assert!(
                output.status.success() && out.contains("1 chart(s) linted, 0 chart(s) failed"),
                "{} at {kube_version}: {out}{}",
                case.name,
                text(&output.stderr)
            );
            assert!(!out.contains("[WARNING]"), "{}: {out}", case.name);
        }
    }
}

#[test]
fn kubernetes_older_than_1_29_is_refused() {
    let error = run(
        &tools().helm,
        &["template", RELEASE, CHART, "--kube-version", "1.28.9"],
    );
    assert!(!error.status.success());
    let stderr = text(&error.stderr);
    assert!(stderr.contains("kubeVersion"), "{stderr}");
}

#[test]
fn the_install_notes_show_the_status_command() {
    let output = run(
        &tools().helm,
        &[
            "install",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
        ],
    );
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    let notes = &out[out.find("NOTES:").expect("helm printed NOTES")..];
    assert!(
        notes.contains(&format!(
            "kubectl -n {NAMESPACE} exec ds/{FULLNAME} -- logjail status"
        )),
        "{notes}"
    );
    assert!(
        notes.contains("docker save logjail:0.1.0 | sudo k3s ctr images import -"),
        "{notes}"
    );
    assert!(notes.contains("logjail.io/jails"), "{notes}");
}

// ---- kubernetes-validate -------------------------------------------------------------------

/// The minor versions kubernetes-validate has schemas for, from 1.29 on, oldest first.
fn validator_versions() -> Vec<(u32, u32)> {
    let output = run(
        &tools().python,
        &[
            "-c",
            "import kubernetes_validate.utils as u; print('\\n'.join(u.all_versions()))",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let versions: BTreeSet<(u32, u32)> = text(&output.stdout)
        .lines()
        .map(|line| {
            let mut parts = line.trim().split('.');
            let major = parts.next().unwrap().parse().unwrap();
            let minor = parts.next().unwrap().parse().unwrap();
            (major, minor)
        })
        .filter(|version| *version >= OLDEST_MINOR)
        .collect();
    versions.into_iter().collect()
}

/// What kubernetes-validate said about one file: the (object, version) pairs that passed, and
/// every other line.
struct Validation {
    passed: BTreeSet<(String, String)>,
    other: Vec<String>,
    success: bool,
}

fn kubernetes_validate(file: &Path, versions: &[(u32, u32)]) -> Validation {
    let mut args = vec!["--strict".to_string()];
    for (major, minor) in versions {
        args.push("-k".into());
        args.push(format!("{major}.{minor}.0"));
    }
    args.push(file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&tools().kubernetes_validate, &args);
    let mut passed = BTreeSet::new();
    let mut other = Vec::new();
    for line in text(&output.stdout)
        .lines()
        .chain(text(&output.stderr).lines())
    {
        // INFO FILE passed for resource KIND/NAME against version MAJOR.MINOR
        let pass = line
            .strip_prefix("INFO ")
            .and_then(|rest| rest.split_once(" passed for resource "))
            .and_then(|(_, rest)| rest.split_once(" against version "));
        match pass {
            Some((resource, version)) => {
                passed.insert((resource.to_string(), version.trim().to_string()));
            }
            None if line.trim().is_empty() => {}
            None => other.push(line.to_string()),
        }
    }
    Validation {
        passed,
        other,
        success: output.status.success(),
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("helm-chart")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Which API each kind the chart renders must use (a removed API only warns in the validator).
fn expected_api(kind: &str) -> &'static str {
    match kind {
        "ServiceAccount" | "ConfigMap" | "Service" | "Secret" => "v1",
        "DaemonSet" => "apps/v1",
        "ServiceMonitor" => "monitoring.coreos.com/v1",
        other => panic!("the chart renders an unexpected kind {other}"),
    }
}

#[test]
fn every_rendered_object_validates_strictly_for_kubernetes_1_29_to_the_newest() {
    let versions = validator_versions();
    assert_eq!(versions.first(), Some(&OLDEST_MINOR), "{versions:?}");
    assert!(
        versions.last().unwrap() >= &(1, 37),
        "kubernetes-validate knows only {versions:?}: update it in scripts/test-tools"
    );
    let version_names: Vec<String> = versions.iter().map(|(a, b)| format!("{a}.{b}")).collect();

    let mut renders: Vec<(String, String)> = cases()
        .iter()
        .map(|case| (case.name.clone(), render_case(case).0))
        .collect();
    // The ServiceMonitor too, as where prometheus-operator is installed.
    let with_monitor = template(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--api-versions",
        SERVICE_MONITOR_API,
    ])
    .unwrap();
    renders.push(("service-monitor".into(), with_monitor));
    // The fleet's Secret, mount and downward-API variable too.
    let fleet_values = fleet_values_file("validate-fleet", "");
    renders.push((
        "fleet".into(),
        template(&["-f", fleet_values.to_str().unwrap()]).unwrap(),
    ));

    for (name, manifests) in &renders {
        let objects = documents(manifests);
        let file = scratch_dir(name).join("rendered.yaml");
        std::fs::write(&file, manifests).unwrap();
        let validation = kubernetes_validate(&file, &versions);

        let mut expected = BTreeSet::new();
        for object in &objects {
            let kind = str_of(object, "kind");
            assert_eq!(str_of(object, "apiVersion"), expected_api(kind), "{name}");
            assert_eq!(
                object["metadata"]["namespace"].as_str(),
                Some(NAMESPACE),
                "{name}: {kind} in the release's namespace"
            );
            if kind == "ServiceMonitor" {
                continue; // a CRD: the validator has no schema for it (its warning is allowed)
            }
            let resource = format!(
                "{}/{}",
                kind.to_lowercase(),
                str_of(&object["metadata"], "name")
            );
            for version in &version_names {
                expected.insert((resource.clone(), version.clone()));
            }
        }
        assert!(
            expected.len() >= 4 * version_names.len(),
            "{name}: {objects:?}"
        );
        assert_eq!(
            validation.passed, expected,
            "{name}: every object passes for every version"
        );
        let unexpected: Vec<&String> = validation
            .other
            .iter()
            .filter(|line| {
                !(line.starts_with("WARN ")
                    && line.contains("kind ServiceMonitor with api version"))
            })
            .collect();
        assert!(
            unexpected.is_empty() && validation.success,
            "{name}: {unexpected:#?}"
        );
    }
}

/// The validator really refuses what Kubernetes refuses: a field of no schema, in strict mode.
#[test]
fn kubernetes_validate_refuses_an_unknown_field_in_the_daemonset() {
    let manifests = template(&[]).unwrap();
    let spelled_wrong = manifests.replace("      hostNetwork: true", "      hostNetwrk: true");
    assert_ne!(manifests, spelled_wrong);
    let file = scratch_dir("unknown-field").join("rendered.yaml");
    std::fs::write(&file, spelled_wrong).unwrap();
    let newest = *validator_versions().last().unwrap();
    let validation = kubernetes_validate(&file, &[newest]);
    assert!(!validation.success);
    assert!(
        validation
            .other
            .iter()
            .any(|line| line.starts_with("ERROR") && line.contains("hostNetwrk")),
        "{:#?}",
        validation.other
    );
}

// ---- values.schema.json --------------------------------------------------------------------

#[test]
fn the_schema_refuses_bad_values_and_names_each() {
    // (how the value is given, what the error must name)
    let refused: &[(&[&str], &str)] = &[
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (&["--set", "image.digest=latest"], "/image/digest"),
        (&["--set", "image.repository="], "/image/repository"),
        (
            &["--set", "config.store.path=/data/logjail.db"],
            "/config/store/path",
        ),
        (
            &["--set", "config.control.socket=/tmp/logjail.sock"],
            "/config/control/socket",
        ),
        (
            &["--set", "config.metrics.listen=localhost:9191"],
            "/config/metrics/listen",
        ),
        (
            &["--set", "config.metrics.listen=0.0.0.0:70000"],
            "/config/metrics/listen",
        ),
        (
            &["--set", "config.firewall.target=iptables"],
            "/config/firewall/target",
        ),
        (
            &[
                "--set",
                "config.pods.runtime_socket=run/k3s/containerd.sock",
            ],
            "/config/pods/runtime_socket",
        ),
        (
            &["--set", "config.pods.log_dir=/var/log/pods/"],
            "/config/pods/log_dir",
        ),
        // A misspelt section of logjail's configuration.
        (&["--set-json", "config.jail={}"], "'jail'"),
        (&["--set-json", "config.jails={\"my jail\":{}}"], "my jail"),
        (
            &["--set", "updateStrategy.maxUnavailable=0"],
            "/updateStrategy/maxUnavailable",
        ),
        (
            &["--set", "updateStrategy.maxUnavailable=0%"],
            "/updateStrategy/maxUnavailable",
        ),
        (
            &["--set-json", "tolerations=[{\"operator\":\"Sometimes\"}]"],
            "/tolerations/0/operator",
        ),
        (
            &["--set", "probes.liveness.periodSeconds=0"],
            "/probes/liveness/periodSeconds",
        ),
        (
            &["--set", "resources.limits.memory=lots"],
            "/resources/limits/memory",
        ),
        (
            &["--set", "hostPaths.state=var/lib/logjail"],
            "/hostPaths/state",
        ),
        (
            &["--set-json", "podSecurityContext.supplementalGroups=[-4]"],
            "/podSecurityContext/supplementalGroups/0",
        ),
        (
            &["--set", "podSecurityContext.privileged=true"],
            "'privileged'",
        ),
        (
            &["--set", "metrics.serviceMonitor.interval=often"],
            "/metrics/serviceMonitor/interval",
        ),
        (
            &["--set", "fleet.redis.url=http://redis:6379"],
            "/fleet/redis/url",
        ),
        (
            &[
                "--set",
                "fleet.redis.url=redis://logjail:hunter2@redis:6379",
            ],
            "/fleet/redis/url",
        ),
        (&["--set", "fleet.enabled=yes"], "/fleet/enabled"),
        (
            &["--set", "fleet.existingSecret=My_Secret"],
            "/fleet/existingSecret",
        ),
        (&["--set", "fleet.redis.password=x"], "'password'"),
        // Not a value of this chart at all (a DaemonSet has no replicas).
        (&["--set", "replicas=3"], "'replicas'"),
    ];
    for (args, names) in refused {
        let error = template(args).expect_err(&format!("{args:?} was accepted"));
        assert!(
            error.contains("values don't meet the specifications of the schema"),
            "{args:?}: {error}"
        );
        assert!(
            error.contains(names),
            "{args:?}: the error names {names}: {error}"
        );
    }
}

// ---- the DaemonSet -------------------------------------------------------------------------

#[test]
fn the_daemonset_runs_as_root_with_only_net_admin_and_net_raw_and_no_privileges() {
    let expected = yaml(
        "
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL], add: [NET_ADMIN, NET_RAW]}
",
    );
    for case in cases() {
        let (_, objects) = render_case(&case);
        let name = &case.name;
        assert_eq!(
            container(&objects)["securityContext"],
            expected,
            "{name}: container securityContext"
        );
        let pod = pod_spec(&objects);
        assert_eq!(pod["hostNetwork"], Value::Bool(true), "{name}");
        assert_eq!(
            pod["dnsPolicy"].as_str(),
            Some("ClusterFirstWithHostNet"),
            "{name}"
        );
        assert_eq!(
            pod["automountServiceAccountToken"],
            Value::Bool(false),
            "{name}"
        );
        assert_eq!(
            pod["priorityClassName"].as_str(),
            Some("system-node-critical"),
            "{name}"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{name}"
        );
        for shared in ["hostPID", "hostIPC", "shareProcessNamespace"] {
            assert!(pod[shared].is_null(), "{name}: {shared} stays off");
        }
        assert_eq!(
            pod["serviceAccountName"].as_str(),
            Some(FULLNAME),
            "{name}: its own account"
        );
        let account = object(&objects, "ServiceAccount");
        assert_eq!(
            account["automountServiceAccountToken"],
            Value::Bool(false),
            "{name}"
        );
        let strategy = &object(&objects, "DaemonSet")["spec"]["updateStrategy"];
        assert_eq!(
            strategy,
            &yaml("{type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}")
        );

        let container = container(&objects);
        let resources = &container["resources"];
        assert!(
            resources["requests"]["cpu"].is_string(),
            "{name}: {resources:?}"
        );
        assert!(resources["requests"]["memory"].is_string(), "{name}");
        assert!(resources["limits"]["memory"].is_string(), "{name}");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(
                container[probe]["exec"]["command"],
                yaml("[/usr/local/bin/logjail, ping]"),
                "{name}: {probe}"
            );
        }
        assert_eq!(
            container["args"],
            yaml("[run, -c, /etc/logjail/logjail.yaml]"),
            "{name}"
        );
        assert_eq!(str_of(container, "image"), "logjail:0.1.0", "{name}");
        assert_eq!(
            str_of(container, "imagePullPolicy"),
            "IfNotPresent",
            "{name}"
        );
    }
}

#[test]
fn an_image_digest_pins_the_image() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let objects = render(&["--set", &format!("image.digest={digest}")]);
    assert_eq!(
        str_of(container(&objects), "image"),
        format!("logjail@{digest}")
    );
    let objects = render(&[
        "--set",
        "image.repository=registry.example/sec/logjail,image.tag=1.2.3",
    ]);
    assert_eq!(
        str_of(container(&objects), "image"),
        "registry.example/sec/logjail:1.2.3"
    );
}

/// One mount as the pod sees it: where, whether read-only, and what backs it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Mount {
    path: String,
    read_only: bool,
    source: String,
}

fn mounts_of(objects: &[Value]) -> BTreeSet<Mount> {
    let pod = pod_spec(objects);
    let volumes: BTreeMap<String, &Value> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|volume| (str_of(volume, "name").to_string(), volume))
        .collect();
    container(objects)["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|mount| {
            let name = str_of(mount, "name");
            let volume = volumes
                .get(name)
                .unwrap_or_else(|| panic!("mount {name} has no volume"));
            let source = if let Some(host) = volume.get("hostPath") {
                format!(
                    "hostPath {} {}",
                    str_of(host, "path"),
                    host["type"].as_str().unwrap_or("")
                )
            } else if volume.get("emptyDir").is_some() {
                "emptyDir".to_string()
            } else if let Some(config_map) = volume.get("configMap") {
                format!("configMap {}", str_of(config_map, "name"))
            } else if let Some(secret) = volume.get("secret") {
                format!("secret {}", str_of(secret, "secretName"))
            } else {
                panic!("unexpected volume {volume:?}")
            };
            Mount {
                path: str_of(mount, "mountPath").to_string(),
                read_only: mount["readOnly"].as_bool().unwrap_or(false),
                source,
            }
        })
        .collect()
}

fn mount(path: &str, read_only: bool, source: &str) -> Mount {
    Mount {
        path: path.into(),
        read_only,
        source: source.into(),
    }
}

fn default_mounts() -> BTreeSet<Mount> {
    BTreeSet::from([
        mount("/etc/logjail", true, &format!("configMap {FULLNAME}")),
        // Written: bans, history, positions.
        mount(
            "/var/lib/logjail",
            false,
            "hostPath /var/lib/logjail DirectoryOrCreate",
        ),
        mount("/run/logjail", false, "emptyDir"),
        mount("/tmp", false, "emptyDir"),
        // A lock file: taken, so written.
        mount(
            "/run/xtables.lock",
            false,
            "hostPath /run/xtables.lock FileOrCreate",
        ),
        mount("/var/log/pods", true, "hostPath /var/log/pods Directory"),
        mount(
            "/run/k3s/containerd",
            true,
            "hostPath /run/k3s/containerd Directory",
        ),
    ])
}

#[test]
fn the_daemonset_mounts_what_it_only_reads_read_only() {
    for case in cases() {
        let (_, objects) = render_case(&case);
        let mounts = mounts_of(&objects);
        let mut expected = default_mounts();
        if case.name == "sshd-node" {
            expected.insert(mount("/host/var/log", true, "hostPath /var/log Directory"));
        }
        assert_eq!(mounts, expected, "{}", case.name);
        // Everything from the node is read-only but the state folder and the lock file.
        for mount in &mounts {
            if mount.source.starts_with("hostPath")
                && !["/var/lib/logjail", "/run/xtables.lock"].contains(&mount.path.as_str())
            {
                assert!(mount.read_only, "{}: {mount:?}", case.name);
            }
        }
    }

    // Other runtimes: the socket's folder follows the configuration.
    let objects = render(&[
        "--set",
        "config.pods.runtime_socket=/run/containerd/containerd.sock",
    ]);
    let mounts = mounts_of(&objects);
    assert!(
        mounts.contains(&mount(
            "/run/containerd",
            true,
            "hostPath /run/containerd Directory"
        )),
        "{mounts:?}"
    );
    assert!(!mounts.iter().any(|m| m.path == "/run/k3s/containerd"));

    // Without the pods source, neither pod logs nor the runtime are mounted.
    let objects = render(&["--set", "config.pods.enabled=false"]);
    let paths: BTreeSet<String> = mounts_of(&objects).into_iter().map(|m| m.path).collect();
    assert!(!paths.contains("/var/log/pods") && !paths.contains("/run/k3s/containerd"));
}

/// A Kubernetes taint, and whether a toleration lets a pod onto a node that has it.
struct Taint {
    key: &'static str,
    value: &'static str,
    effect: &'static str,
}

fn tolerates(toleration: &Value, taint: &Taint) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or("");
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => key == taint.key && toleration["value"].as_str().unwrap_or("") == taint.value,
        other => panic!("operator {other}"),
    }
}

fn tolerated_by(objects: &[Value], taint: &Taint) -> bool {
    pod_spec(objects)["tolerations"]
        .as_sequence()
        .map(|list| list.iter().any(|t| tolerates(t, taint)))
        .unwrap_or(false)
}

const NODE_TAINTS: &[Taint] = &[
    Taint {
        key: "node-role.kubernetes.io/control-plane",
        value: "",
        effect: "NoSchedule",
    },
    Taint {
        key: "node-role.kubernetes.io/master",
        value: "",
        effect: "NoSchedule",
    },
    // k3s servers started with --node-taint CriticalAddonsOnly=true:NoExecute.
    Taint {
        key: "CriticalAddonsOnly",
        value: "true",
        effect: "NoExecute",
    },
    Taint {
        key: "dedicated",
        value: "gpu",
        effect: "NoSchedule",
    },
    Taint {
        key: "node.kubernetes.io/unschedulable",
        value: "",
        effect: "NoSchedule",
    },
    Taint {
        key: "example.com/maintenance",
        value: "soon",
        effect: "PreferNoSchedule",
    },
];

#[test]
fn the_daemonset_goes_onto_control_plane_and_tainted_nodes_unless_told_otherwise() {
    for case in cases() {
        let (_, objects) = render_case(&case);
        for taint in NODE_TAINTS {
            assert!(
                tolerated_by(&objects, taint),
                "{}: a node tainted {}={}:{} gets no logjail",
                case.name,
                taint.key,
                taint.value,
                taint.effect
            );
        }
        assert_eq!(
            pod_spec(&objects)["nodeSelector"],
            yaml("{kubernetes.io/os: linux}"),
            "{}",
            case.name
        );
    }

    // Overridden: exactly the given list, and nodes tainted otherwise are left out.
    let only_control_plane = r#"[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]"#;
    let objects = render(&["--set-json", &format!("tolerations={only_control_plane}")]);
    assert_eq!(pod_spec(&objects)["tolerations"], yaml(only_control_plane));
    assert!(tolerated_by(&objects, &NODE_TAINTS[0]));
    assert!(!tolerated_by(&objects, &NODE_TAINTS[3]));

    let objects = render(&["--set-json", "tolerations=[]"]);
    assert!(pod_spec(&objects)["tolerations"].is_null());
}

// ---- configuration, checksum, mounts and ports agree ---------------------------------------

/// The folder a source path lives in, before any glob character.
fn fixed_prefix(path: &str) -> &str {
    let end = path.find(['*', '?', '[']).unwrap_or(path.len());
    &path[..end]
}

fn under(path: &str, folder: &str) -> bool {
    path == folder || path.starts_with(&format!("{}/", folder.trim_end_matches('/')))
}

#[test]
fn the_configuration_is_the_values_and_agrees_with_mounts_probes_and_ports() {
    for case in cases() {
        let (_, objects) = render_case(&case);
        let name = &case.name;
        let config = rendered_config(&objects);
        let path = rendered_config_file(&case, &objects);
        // The daemon in the pod reads exactly this: it must pass logjail's own check.
        let checked = run(Path::new(BINARY), &["check", "-c", path.to_str().unwrap()]);
        assert!(
            checked.status.success(),
            "{name}: logjail check of the chart's configuration:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        assert_eq!(
            config,
            values_of(&case)["config"],
            "{name}: the ConfigMap holds .Values.config"
        );

        let mounts = mounts_of(&objects);
        let mounted = |path: &str| mounts.iter().find(|m| under(path, &m.path)).cloned();
        let store = str_of(&config["store"], "path");
        assert_eq!(
            mounted(store).map(|m| m.source),
            Some("hostPath /var/lib/logjail DirectoryOrCreate".to_string()),
            "{name}: the store is on the node"
        );
        let socket = str_of(&config["control"], "socket");
        assert_eq!(mounted(socket).map(|m| m.path), Some("/run/logjail".into()));
        let container = container(&objects);
        assert_eq!(
            container["env"],
            yaml(&format!("[{{name: LOGJAIL_SOCKET, value: {socket}}}]")),
            "{name}: the CLI and the probes find the socket"
        );
        let log_dir = str_of(&config["pods"], "log_dir");
        assert!(
            mounted(log_dir).is_some_and(|m| m.read_only),
            "{name}: pods.log_dir {log_dir} is mounted read-only"
        );
        let runtime = str_of(&config["pods"], "runtime_socket");
        assert!(
            mounted(runtime).is_some_and(|m| m.read_only),
            "{name}: pods.runtime_socket {runtime} is mounted read-only"
        );
        assert_eq!(config["firewall"]["target"].as_str(), Some("kubernetes"));
        assert_eq!(config["docker"]["enabled"], Value::Bool(false), "{name}");

        // Every file and journal folder a jail reads is inside a mount.
        for (jail, settings) in config["jails"].as_mapping().unwrap() {
            let Some(sources) = settings["sources"].as_sequence() else {
                continue;
            };
            for source in sources {
                let paths = [
                    source["file"].as_str(),
                    source["journal"]["directory"].as_str(),
                ];
                for path in paths.into_iter().flatten() {
                    assert!(
                        mounted(fixed_prefix(path)).is_some(),
                        "{name}: jail {jail:?} reads {path}, which no volume mounts"
                    );
                }
            }
        }

        let port: u64 = str_of(&config["metrics"], "listen")
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            container["ports"],
            yaml(&format!(
                "[{{name: metrics, containerPort: {port}, protocol: TCP}}]"
            )),
            "{name}"
        );
    }
}

/// Helm merges values into the chart's `config` key by key; `null` takes a default jail out.
#[test]
fn a_values_file_adds_to_the_default_jails_and_null_removes_one() {
    let values = scratch_dir("null-jail").join("values.yaml");
    std::fs::write(
        &values,
        "config:\n  jails:\n    traefik-auth: null\n    myapp: {filter: sshd, maxretry: 2}\n",
    )
    .unwrap();
    let objects = render(&["-f", values.to_str().unwrap()]);
    let jails = rendered_config(&objects)["jails"].clone();
    assert!(jails.get("traefik-auth").is_none(), "{jails:?}");
    assert_eq!(jails["myapp"], yaml("{filter: sshd, maxretry: 2}"));
    assert_eq!(jails["wordpress"], yaml("{}"), "the other defaults stay");
}

#[test]
fn a_changed_configuration_rolls_the_pods() {
    let checksum = |objects: &[Value]| {
        let annotations =
            &object(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
        str_of(annotations, "checksum/config").to_string()
    };
    let first = checksum(&render(&[]));
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        checksum(&render(&[])),
        first,
        "the same values, the same pods"
    );
    assert_ne!(
        checksum(&render(&["--set", "config.defaults.maxretry=3"])),
        first
    );
    assert_ne!(
        checksum(&render(&[
            "--set-json",
            "config.jails.sshd={\"maxretry\":2}"
        ])),
        first
    );
    // What does not touch the configuration does not roll the pods for it.
    assert_eq!(
        checksum(&render(&["--set", "resources.requests.cpu=20m"])),
        first
    );

    // And logjail never reads its own pod: the annotation is always there.
    let objects = render(&["--set", "podAnnotations.team=security"]);
    let annotations = &object(&objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["logjail.io/enable"].as_str(), Some("false"));
    assert_eq!(annotations["team"].as_str(), Some("security"));
}

#[test]
fn the_metrics_service_and_service_monitor_follow_metrics_listen() {
    let objects = render(&[]);
    let service = object(&objects, "Service");
    let daemonset = object(&objects, "DaemonSet");
    assert_eq!(str_of(&service["spec"], "clusterIP"), "None", "headless");
    assert_eq!(
        service["spec"]["ports"],
        yaml("[{name: metrics, port: 9191, targetPort: metrics, protocol: TCP}]")
    );
    let selector = service["spec"]["selector"].as_mapping().unwrap();
    assert_eq!(
        &Value::Mapping(selector.clone()),
        &daemonset["spec"]["selector"]["matchLabels"]
    );
    let pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(pod_labels.get(key), Some(value), "pods carry {key:?}");
    }

    let objects = render(&["--set", "config.metrics.listen=0.0.0.0:9300"]);
    assert_eq!(
        object(&objects, "Service")["spec"]["ports"][0]["port"],
        yaml("9300")
    );
    assert_eq!(
        container(&objects)["ports"][0]["containerPort"],
        yaml("9300")
    );

    // A Service nobody could reach is refused, naming the setting.
    let error = template(&["--set", "config.metrics.listen=127.0.0.1:9191"]).unwrap_err();
    assert!(
        error.contains("config.metrics.listen is 127.0.0.1:9191")
            && error.contains("metrics.service.enabled=false"),
        "{error}"
    );
    let objects = render(&[
        "--set",
        "config.metrics.listen=127.0.0.1:9191,metrics.service.enabled=false",
    ]);
    assert!(!has_kind(&objects, "Service"));
    let objects = render(&["--set", "config.metrics.enabled=false"]);
    assert!(!has_kind(&objects, "Service"));
    assert!(container(&objects)["ports"].is_null());

    // The ServiceMonitor: off by default, refused without its API, scraping the Service.
    assert!(!has_kind(&render(&[]), "ServiceMonitor"));
    let error = template(&["--set", "metrics.serviceMonitor.enabled=true"]).unwrap_err();
    assert!(error.contains("monitoring.coreos.com/v1"), "{error}");
    let objects = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--api-versions",
        SERVICE_MONITOR_API,
    ]);
    let monitor = object(&objects, "ServiceMonitor");
    let service = object(&objects, "Service");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    let service_labels = service["metadata"]["labels"].as_mapping().unwrap();
    let wanted: &Mapping = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap();
    for (key, value) in wanted {
        assert_eq!(
            service_labels.get(key),
            Some(value),
            "the Service carries {key:?}"
        );
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        yaml(&format!("[{NAMESPACE}]"))
    );
}

// ---- the examples' filters -----------------------------------------------------------------

#[test]
fn every_jail_of_the_charts_configurations_has_a_built_in_filter() {
    let output = run(Path::new(BINARY), &["filters"]);
    assert!(output.status.success());
    let built_in: BTreeSet<String> = text(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for case in cases() {
        let (_, objects) = render_case(&case);
        let config = rendered_config(&objects);
        for (name, jail) in config["jails"].as_mapping().unwrap() {
            if jail["manual"].as_bool() == Some(true) {
                continue;
            }
            let filter = jail["filter"].as_str().or(name.as_str()).unwrap();
            assert!(
                built_in.contains(filter),
                "{}: jail {name:?} uses filter {filter}, not one of {built_in:?}",
                case.name
            );
        }
    }
}

/// The WordPress example reads Traefik's access log (Common Log Format, CRI envelope) with the
/// built-in `wordpress` filter: failed logins are failures of the client, nothing else is.
#[test]
fn traefik_access_log_lines_from_a_pod_log_are_wordpress_failures() {
    let case = cases()
        .into_iter()
        .find(|case| case.name == "wordpress-traefik")
        .unwrap();
    let (_, objects) = render_case(&case);
    let jail = &rendered_config(&objects)["jails"]["wordpress"];
    assert_eq!(jail["filter"].as_str(), Some("wordpress"));
    assert_eq!(
        jail["sources"],
        yaml("[{pods: {namespace: kube-system, pod: traefik-*, container: traefik}}]")
    );

    // What Traefik v2/v3 writes in Common Log Format, as containerd stores it for the pod.
    let traefik = |stamp: &str, client: &str, request: &str, status: u16| {
        format!(
            "2026-12-02T06:40:{stamp}Z stdout F {client} - - [02/Dec/2026:06:40:11 +0000] \
             \"{request}\" {status} 5120 \"-\" \"Mozilla/5.0\" 42 \
             \"blog-wordpress-blog-example-com@kubernetes\" \"http://10.42.0.12:80\" 37ms"
        )
    };
    let lines = [
        traefik(
            "11.1234567",
            "203.0.113.7",
            "POST /wp-login.php HTTP/2.0",
            200,
        ),
        traefik("12.5", "2001:db8::7", "POST /xmlrpc.php HTTP/1.1", 200),
        // A good login is redirected; a page view is no login.
        traefik("13.25", "198.51.100.9", "POST /wp-login.php HTTP/1.1", 302),
        traefik("14.0", "198.51.100.9", "GET /wp-login.php HTTP/1.1", 200),
    ];
    let file = scratch_dir("traefik-log").join("0.log");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let output = run(
        Path::new(BINARY),
        &["regex", file.to_str().unwrap(), "wordpress", "--json"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let hosts: Vec<(u64, String)> = text(&output.stdout)
        .lines()
        .map(|line| {
            let failure: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                failure["line"].as_u64().unwrap(),
                failure["host"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (1, "203.0.113.7".to_string()),
            (2, "2001:db8::7".to_string())
        ]
    );
}

// ---- checkov -------------------------------------------------------------------------------

/// The findings the design needs, skipped by annotations on the DaemonSet (with reasons).
const DESIGN_SKIPS: &[&str] = &[
    "CKV_K8S_11",
    "CKV_K8S_15",
    "CKV_K8S_19",
    "CKV_K8S_23",
    "CKV_K8S_25",
    "CKV_K8S_40",
    "CKV_K8S_43",
    "CKV2_K8S_6",
];

/// `checkov --framework helm` on a chart folder: (passed, failed, skipped with reasons).
fn checkov(chart: &Path) -> (usize, BTreeSet<String>, BTreeMap<String, String>) {
    let path = format!(
        "{}:{}",
        tools().root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(&tools().checkov)
        .args(["--directory"])
        .arg(chart)
        .args(["--framework", "helm", "--skip-download", "--output", "json"])
        .arg("--config-file")
        .arg(Path::new(CHART).join(".checkov.yaml"))
        .env("PATH", path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {}{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    });
    assert_eq!(report["check_type"].as_str(), Some("helm"), "{report}");
    assert_eq!(
        report["summary"]["parsing_errors"].as_u64(),
        Some(0),
        "{report}"
    );
    let results = &report["results"];
    let ids = |key: &str| -> Vec<&serde_json::Value> {
        results[key]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let failed: BTreeSet<String> = ids("failed_checks")
        .iter()
        .map(|c| c["check_id"].as_str().unwrap().to_string())
        .collect();
    let skipped: BTreeMap<String, String> = ids("skipped_checks")
        .iter()
        .map(|c| {
            (
                c["check_id"].as_str().unwrap().to_string(),
                c["check_result"]["suppress_comment"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    // checkov exits 1 when a check fails, and 0 otherwise.
    assert_eq!(output.status.success(), failed.is_empty(), "{report}");
    (ids("passed_checks").len(), failed, skipped)
}

#[test]
fn checkov_passes_with_only_the_designs_findings_skipped_each_with_its_reason() {
    let (passed, failed, skipped) = checkov(Path::new(CHART));
    assert!(failed.is_empty(), "checkov findings: {failed:?}");
    assert!(passed >= 50, "only {passed} checks passed");
    let skipped_ids: BTreeSet<&str> = skipped.keys().map(String::as_str).collect();
    assert_eq!(skipped_ids, DESIGN_SKIPS.iter().copied().collect());
    for (id, reason) in &skipped {
        assert!(
            reason.len() >= 20,
            "{id} is skipped without a reason: {reason:?}"
        );
    }

    // Each skip is still needed: without the annotations, exactly these fail.
    let copy = scratch_dir("checkov-unskipped").join("logjail");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(Path::new(CHART), &copy);
    let daemonset = copy.join("templates/daemonset.yaml");
    let unskipped: String = std::fs::read_to_string(&daemonset)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("checkov.io/skip"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&daemonset, unskipped).unwrap();
    let (_, failed, skipped) = checkov(&copy);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        failed,
        DESIGN_SKIPS.iter().map(|id| id.to_string()).collect(),
        "a skip that nothing needs any more, or a finding left unskipped"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---- the fleet -----------------------------------------------------------------------------

/// A values file turning the fleet on against a TLS Redis with an ACL user, the Secret made by
/// the chart; `extra` is appended under `fleet:`.
fn fleet_values_file(name: &str, extra: &str) -> PathBuf {
    let path = scratch_dir(name).join("values.yaml");
    std::fs::write(
        &path,
        format!(
            "fleet:\n  enabled: true\n  redis:\n    url: rediss://valkey-primary.security.svc:6379\n    username: logjail\n  password: the-redis-password\n  hmacKey: the-fleet-key\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn env_of(objects: &[Value]) -> &Vec<Value> {
    container(objects)["env"].as_sequence().unwrap()
}

/// `logjail check` of the configuration the ConfigMap carries, in this environment.
fn check_rendered(name: &str, objects: &[Value], env: &[(&str, &str)]) -> Output {
    let path = scratch_dir(name).join("logjail.yaml");
    let config_map = object(objects, "ConfigMap");
    std::fs::write(&path, str_of(&config_map["data"], "logjail.yaml")).unwrap();
    Command::new(BINARY)
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("NODE_NAME")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn the_fleet_is_off_by_default() {
    let objects = render(&[]);
    assert!(!has_kind(&objects, "Secret"));
    assert!(rendered_config(&objects).get("fleet").is_none());
    assert!(
        !env_of(&objects)
            .iter()
            .any(|e| e["name"].as_str() == Some("NODE_NAME"))
    );
}

#[test]
fn a_fleet_gets_its_secret_as_files_and_each_member_is_named_after_its_node() {
    let values = fleet_values_file("fleet-chart-secret", "");
    let objects = render(&["-f", values.to_str().unwrap()]);

    let secret = object(&objects, "Secret");
    assert_eq!(
        str_of(&secret["metadata"], "name"),
        format!("{FULLNAME}-fleet")
    );
    let data = secret["data"].as_mapping().unwrap();
    let decoded = |key: &str| {
        let encoded = str_of(&secret["data"], key);
        let output = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(encoded.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        text(&output.stdout)
    };
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!(decoded("password"), "the-redis-password");
    assert_eq!(decoded("hmac-key"), "the-fleet-key");

    assert_eq!(
        rendered_config(&objects)["fleet"],
        yaml(
            "
redis: rediss://valkey-primary.security.svc:6379
name_env: NODE_NAME
username: logjail
password_file: /run/secrets/logjail-fleet/password
hmac_key_file: /run/secrets/logjail-fleet/hmac-key
share: true
"
        ),
        "TLS checked against the system roots: no tls section"
    );
    let node_name = env_of(&objects)
        .iter()
        .find(|e| e["name"].as_str() == Some("NODE_NAME"))
        .expect("NODE_NAME in the environment");
    assert_eq!(
        node_name["valueFrom"],
        yaml("{fieldRef: {fieldPath: spec.nodeName}}")
    );
    let mounts = mounts_of(&objects);
    assert!(
        mounts.contains(&mount(
            "/run/secrets/logjail-fleet",
            true,
            &format!("secret {FULLNAME}-fleet")
        )),
        "{mounts:?}"
    );
    let volume = pod_spec(&objects)["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("fleet-secret"))
        .unwrap();
    assert_eq!(volume["secret"]["defaultMode"].as_u64(), Some(0o400));

    // The daemon in the pod checks it with the node's name in NODE_NAME, and says what is
    // missing without it.
    let checked = check_rendered(
        "fleet-chart-secret",
        &objects,
        &[("NODE_NAME", "k3s-node-1")],
    );
    assert!(
        checked.status.success(),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    let unset = check_rendered("fleet-chart-secret", &objects, &[]);
    assert!(!unset.status.success());
    assert!(
        text(&unset.stderr).contains("fleet.name_env")
            && text(&unset.stderr).contains("NODE_NAME is not set"),
        "{}",
        text(&unset.stderr)
    );

    // A new password rolls the pods.
    let checksum = |objects: &[Value]| {
        str_of(
            &object(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"],
            "checksum/fleet-secret",
        )
        .to_string()
    };
    let other = render(&[
        "-f",
        values.to_str().unwrap(),
        "--set",
        "fleet.password=another",
    ]);
    assert_ne!(checksum(&objects), checksum(&other));
}

#[test]
fn an_existing_secret_with_a_private_ca_is_mounted_and_the_chart_makes_no_secret() {
    let values = fleet_values_file(
        "fleet-existing-secret",
        "  existingSecret: valkey-logjail\n  redis:\n    url: rediss://valkey.security.svc:6379\n    username: logjail\n    tls:\n      privateCa: true\n",
    );
    let objects = render(&["-f", values.to_str().unwrap()]);
    assert!(!has_kind(&objects, "Secret"));
    let fleet = &rendered_config(&objects)["fleet"];
    assert_eq!(
        fleet["tls"],
        yaml("{ca_file: /run/secrets/logjail-fleet/ca.crt}")
    );
    assert_eq!(
        fleet["password_file"].as_str(),
        Some("/run/secrets/logjail-fleet/password")
    );
    assert!(mounts_of(&objects).contains(&mount(
        "/run/secrets/logjail-fleet",
        true,
        "secret valkey-logjail"
    )));
    let annotations = &object(&objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations.get("checksum/fleet-secret").is_none());
    let checked = check_rendered(
        "fleet-existing-secret",
        &objects,
        &[("NODE_NAME", "node-2")],
    );
    assert!(checked.status.success(), "{}", text(&checked.stderr));
}

#[test]
fn a_fleet_without_its_url_or_key_or_with_a_ca_for_plain_redis_is_refused_by_name() {
    let values = fleet_values_file("fleet-refused", "");
    let values = values.to_str().unwrap();
    let refused: &[(&[&str], &str)] = &[
        (&["--set", "fleet.redis.url="], "fleet.redis.url"),
        (&["--set", "fleet.hmacKey="], "fleet.hmacKey"),
        (
            &[
                "--set",
                "fleet.redis.url=redis://valkey:6379",
                "--set",
                "fleet.redis.tls.privateCa=true",
                "--set",
                "fleet.redis.tls.ca=PEM",
            ],
            "fleet.redis.tls.privateCa is for TLS",
        ),
        (
            &["--set", "fleet.redis.tls.privateCa=true"],
            "fleet.redis.tls.ca",
        ),
    ];
    for (args, names) in refused {
        let mut all = vec!["-f", values];
        all.extend_from_slice(args);
        let error = template(&all).expect_err(&format!("{args:?} was accepted"));
        assert!(error.contains(names), "{args:?}: {error}");
    }
}
