//! Every configuration under `examples/` validates (they use the built-in filters).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use logjail::config::Config;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    assert!(files.len() >= 5, "{files:?}");
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
