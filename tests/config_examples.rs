//! Every configuration under `examples/` (and the sidecar's, `deploy/logjail.yaml`) validates;
//! they use the built-in filters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use logjail::config::Config;

/// `examples/*.yaml`, each example folder's `logjail.yaml`, and `deploy/logjail.yaml`.
fn examples() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(repo.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        } else if path.join("logjail.yaml").exists() {
            files.push(path.join("logjail.yaml"));
        }
    }
    files.push(repo.join("deploy/logjail.yaml"));
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    assert!(files.len() >= 9, "{files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| Config::load(path).err().map(|errors| errors.to_string()))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_jail_of_the_examples_has_its_filter_compiled() {
    for path in examples() {
        let Ok(config) = Config::load(&path) else {
            continue; // reported by every_example_validates
        };
        for jail in &config.jails {
            if let Some(filter) = &jail.filter {
                assert!(
                    config.filters.contains_key(filter),
                    "{}: jail {} uses {filter}, which was not compiled",
                    path.display(),
                    jail.name
                );
            }
        }
    }
}
