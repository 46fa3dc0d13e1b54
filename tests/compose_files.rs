//! The compose files users start from (`deploy/compose.yaml`, `examples/*/compose.yaml`):
//! Debian's `docker-compose` accepts each one, the sidecar in each has what logjail needs
//! (host network, NET_ADMIN, the Docker socket and log folder, a state volume, its config),
//! and every container label names or defines a jail the neighbouring `logjail.yaml` has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use logjail::config::Config;
use logjail::routing::labels::{self, LabelContext};
use serde_yaml::Value;

fn compose_files() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![repo.join("deploy/compose.yaml")];
    for entry in std::fs::read_dir(repo.join("examples")).unwrap() {
        let compose = entry.unwrap().path().join("compose.yaml");
        if compose.exists() {
            files.push(compose);
        }
    }
    files.sort();
    files
}

/// A label value as compose hands it to Docker when the variable is unset: `${NAME:-default}`
/// becomes `default` (the files use no other form of interpolation in labels).
fn interpolated(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("unclosed ${");
        let default = after[..end]
            .split_once(":-")
            .map(|(_, default)| default)
            .expect("labels use ${NAME:-default} only");
        out.push_str(default);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn service_labels(service: &Value) -> HashMap<String, String> {
    raw_service_labels(service)
        .into_iter()
        .map(|(key, value)| (key, interpolated(&value)))
        .collect()
}

fn raw_service_labels(service: &Value) -> HashMap<String, String> {
    match service.get("labels") {
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), value)
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => HashMap::new(),
    }
}

#[test]
fn docker_compose_accepts_every_compose_file() {
    let files = compose_files();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let output = Command::new("docker-compose")
            .arg("--file")
            .arg(&file)
            .args(["config", "--quiet"])
            // The WordPress example insists on a database password from the environment.
            .env("WORDPRESS_DB_PASSWORD", "test-only")
            .output()
            .expect("docker-compose is installed (scripts/test installs it)");
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_sidecar_has_what_logjail_needs() {
    for file in compose_files() {
        let compose: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let sidecar = &compose["services"]["logjail"];
        let place = file.display();
        assert_eq!(sidecar["network_mode"].as_str(), Some("host"), "{place}");
        let caps: Vec<&str> = sidecar["cap_add"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(
            caps.contains(&"NET_ADMIN") && caps.contains(&"NET_RAW"),
            "{place}"
        );
        assert!(
            sidecar.get("privileged").is_none(),
            "{place}: not privileged"
        );
        let volumes: Vec<&str> = sidecar["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for needed in [
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "/var/lib/docker/containers:/var/lib/docker/containers:ro",
            "./logjail.yaml:/etc/logjail/logjail.yaml:ro",
        ] {
            assert!(volumes.contains(&needed), "{place}: missing {needed}");
        }
        assert!(
            volumes.iter().any(|v| v.ends_with(":/var/lib/logjail")),
            "{place}: bans need a state volume"
        );
        assert!(file.with_file_name("logjail.yaml").exists(), "{place}");
    }
}

#[test]
fn every_container_label_joins_a_jail_of_its_configuration() {
    for file in compose_files() {
        let compose: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let config = Config::load(&file.with_file_name("logjail.yaml")).unwrap();
        // What the daemon offers labels: the configuration's filters and the built-in ones.
        let filters: BTreeSet<String> = config
            .filters
            .keys()
            .cloned()
            .chain(logjail::filter::builtin::names().map(String::from))
            .collect();
        let yaml_jails: BTreeSet<String> = config.jails.iter().map(|j| j.name.clone()).collect();
        let context = LabelContext {
            defaults: &config.defaults,
            filters: &filters,
            yaml_jails: &yaml_jails,
            chain_prefix: &config.firewall.chain_prefix,
            host_network: false,
        };
        for (name, service) in compose["services"].as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            let context = LabelContext {
                host_network: service.get("network_mode").and_then(Value::as_str) == Some("host"),
                ..context
            };
            let parsed = labels::parse(&service_labels(service), &context);
            assert!(
                parsed.errors.is_empty(),
                "{}: {name}: {:?}",
                file.display(),
                parsed.errors
            );
            if name == "logjail" {
                assert!(
                    !parsed.wants_watching(),
                    "{}: the sidecar must not watch itself",
                    file.display()
                );
                continue;
            }
            for jail in &parsed.jails {
                let known = config
                    .jails
                    .iter()
                    .any(|j| &j.name == jail && !j.is_manual())
                    || parsed.defined.iter().any(|j| &j.name == jail);
                assert!(
                    known,
                    "{}: service {name} joins unknown jail {jail}",
                    file.display()
                );
            }
        }
    }
}
