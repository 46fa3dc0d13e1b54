//! Fuzz target: configuration loading and container label parsing never panic.
#![no_main]

use std::collections::{BTreeSet, HashMap};

use libfuzzer_sys::fuzz_target;
use logjail::config::{Config, DefaultsConfig};
use logjail::filter::builtin;
use logjail::source::docker::labels::{self, LabelContext};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::from_yaml_str(&text, "fuzz.yaml");

    // The same bytes as container labels: `key=value` lines.
    let map: HashMap<String, String> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect();
    let defaults = DefaultsConfig::default();
    let filters: BTreeSet<String> = builtin::names().map(str::to_string).collect();
    let yaml_jails: BTreeSet<String> = ["sshd".to_string()].into();
    let parsed = labels::parse(
        &map,
        &LabelContext {
            defaults: &defaults,
            filters: &filters,
            yaml_jails: &yaml_jails,
            chain_prefix: "logjail",
            host_network: false,
        },
    );
    for jail in &parsed.defined {
        assert!("logjail".len() + 1 + jail.name.len() <= 28, "{}", jail.name);
    }
});
