//! Every file under `tests/fixtures/config/bad/` is an invalid configuration whose header lists
//! the exact errors expected (`# expect: LINE:COLUMN: scope: key: message`), in text order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use logjail::config::{Config, ConfigErrors};

fn bad_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/bad");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// The `# expect:` lines; `{here}` stands for the fixture's folder, from which relative paths
/// in it are read.
fn expected_errors(path: &Path) -> Vec<String> {
    let here = path.parent().unwrap().display().to_string();
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(|line| line.replace("{here}", &here))
        .collect()
}

fn load_errors(path: &Path) -> ConfigErrors {
    match Config::load(path) {
        Ok(_) => panic!("{} validated but should not", path.display()),
        Err(errors) => errors,
    }
}

#[test]
fn every_bad_fixture_reports_exactly_its_expected_errors() {
    let fixtures = bad_fixtures();
    assert!(fixtures.len() >= 10, "fixtures missing: {fixtures:?}");
    let mut mismatches = Vec::new();
    for path in &fixtures {
        let expected = expected_errors(path);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let errors = load_errors(path);
        let actual: Vec<String> = errors.iter().map(|e| e.without_origin()).collect();
        if actual != expected {
            mismatches.push(format!(
                "{}\n  expected:\n    {}\n  actual:\n    {}",
                path.display(),
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}

#[test]
fn errors_name_the_file_they_come_from() {
    for path in bad_fixtures() {
        let errors = load_errors(&path);
        let shown = errors.to_string();
        assert_eq!(shown.lines().count(), errors.len());
        for line in shown.lines() {
            assert!(
                line.starts_with(&format!("{}:", path.display())),
                "{line} does not start with the file name"
            );
        }
    }
}

#[test]
fn five_errors_in_three_jails_are_all_reported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/bad/five_errors_three_jails.yaml");
    let errors = load_errors(&path);
    assert_eq!(errors.len(), 5, "{errors}");
    let jails: Vec<&str> = errors.iter().filter_map(|e| e.jail()).collect();
    assert_eq!(jails, ["sshd", "sshd", "web", "web", "smtp"]);
    let first = &errors.errors()[0];
    assert_eq!(
        first.to_string(),
        format!(
            "{}:12:15: jail \"sshd\": maxretry: must be at least 1 (got -1)",
            path.display()
        )
    );
}

#[test]
fn a_missing_file_is_one_error_without_a_position() {
    let errors = Config::load(Path::new("/nonexistent/logjail.yaml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.errors()[0].position, None);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/logjail.yaml: cannot read the configuration: "),
        "{errors}"
    );
}
