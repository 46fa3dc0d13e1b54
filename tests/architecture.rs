//! The direction of imports, checked on the source tree: data flows down the pipeline and
//! no module names a stage above it (ARCHITECTURE.md, "Layers"). A new `use` that breaks a
//! rule fails here with the file and the line.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Modules that run tasks (actors) or wire them.
const ACTORS: &[&str] = &[
    "daemon",
    "cli",
    "source",
    "jail::task",
    "filter::matcher",
    "store::task",
    "firewall::queue",
    "control::server",
    "action",
    "fleet::task",
];

/// What the modules under `owner` may not name, and why.
struct Rule {
    owner: &'static str,
    forbidden: Vec<&'static str>,
    why: &'static str,
}

impl Rule {
    /// Whether `module` naming `path` breaks this rule. The tasks inside a pure module's
    /// folder (the jail task in `jail/`) are actors, judged by the actors' rules; a module may
    /// always use its own insides.
    fn broken_by(&self, module: &str, path: &str) -> Option<&'static str> {
        let pure_rule = self.forbidden == ACTORS;
        if !within(module, self.owner)
            || (pure_rule && ACTORS.iter().any(|actor| within(module, actor)))
        {
            return None;
        }
        self.forbidden
            .iter()
            .find(|f| within(path, f) && !within(module, f))
            .copied()
    }
}

/// The rules, from ARCHITECTURE.md.
fn rules() -> Vec<Rule> {
    let pure_cores = [
        "address",
        "clock",
        "duration",
        "config",
        "importer",
        "filter",
        "jail",
        "routing",
        "control::protocol",
        "messages",
        "fleet",
    ];
    let mut rules: Vec<Rule> = pure_cores
        .into_iter()
        .map(|owner| Rule {
            owner,
            forbidden: ACTORS.to_vec(),
            why: "pure logic and message data sit below every task",
        })
        .collect();
    rules.push(Rule {
        owner: "source",
        forbidden: vec![
            "daemon",
            "cli",
            "jail",
            "firewall",
            "store",
            "action",
            "filter::matcher",
            "metrics",
        ],
        why: "sources only read and say what they saw",
    });
    rules.push(Rule {
        owner: "messages",
        forbidden: vec!["routing", "store", "source"],
        why: "the messages module is the lowest layer the tasks share",
    });
    for owner in [
        "jail", "filter", "store", "firewall", "routing", "action", "control", "metrics",
    ] {
        rules.push(Rule {
            owner,
            forbidden: vec!["daemon", "cli"],
            why: "only the binary's CLI starts the daemon",
        });
    }
    rules
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// `src/jail/task/mod.rs` → `jail::task`; `src/metrics.rs` → `metrics`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn within(module: &str, prefix: &str) -> bool {
    module == prefix || module.starts_with(&format!("{prefix}::"))
}

/// Every `crate::a::b…` path on a code line (comments and doc links excluded), as `a::b…`.
fn named_paths(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let path: String = tail
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':' || c.is_ascii_digit())
            .collect();
        paths.push(path.trim_end_matches(':').to_string());
        rest = tail;
    }
    paths
}

#[test]
fn no_module_imports_a_stage_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "the source tree was not found: {files:?}");
    let rules = rules();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere to set up what they test.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (number, line) in code.lines().enumerate() {
            for path in named_paths(line) {
                checked += 1;
                for rule in &rules {
                    if let Some(wrong) = rule.broken_by(&module, &path) {
                        broken.push(format!(
                            "src/{}:{}: `{module}` names `crate::{path}` ({wrong}): {}",
                            file.strip_prefix(&src).unwrap().display(),
                            number + 1,
                            rule.why
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 150,
        "too few paths found ({checked}): is the parser broken?"
    );
    assert!(
        broken.is_empty(),
        "imports against the data flow:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_catch_an_upward_import() {
    // The checker itself: a source naming the jail task, and a pure core naming the daemon.
    assert_eq!(
        named_paths("use crate::jail::task::Effects; // and crate::daemon"),
        vec!["jail::task", "daemon"]
    );
    assert!(named_paths("    /// see [`crate::daemon::run`]").is_empty());
    let rules = rules();
    let forbids = |module: &str, path: &str| {
        rules
            .iter()
            .any(|rule| rule.broken_by(module, path).is_some())
    };
    assert!(forbids("source::docker::discovery", "jail::task::Effects"));
    assert!(forbids("routing::labels", "daemon::run"));
    assert!(forbids("messages", "store::task::StoreHandle"));
    assert!(!forbids("jail::task", "jail::task::control"));
    assert!(!forbids("jail::task", "store::task::StoreHandle"));
    assert!(!forbids("daemon", "source::supervisor"));
    assert!(forbids("jail::task", "daemon::Daemon"));
    assert!(forbids("filter::envelope", "filter::matcher"));
}
