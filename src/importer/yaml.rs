//! Writes an import's [`Plan`] as logjail YAML, with comments saying where each jail came
//! from.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::ports::Protocol;
use crate::duration::{BanTime, format_duration};

use super::filters::FilterPlan;
use super::plan::{Increment, Jail, Plan, Shared, Source};

/// The YAML text of `plan`.
pub fn write(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from the Fail2Ban configuration in {} by `logjail import-fail2ban`.",
        plan.source.display()
    );
    let _ = writeln!(
        out,
        "# The import's report lists what mapped, what mapped approximately and what did not.\n# Check it with `logjail check -c FILE`."
    );
    let mut defaults = String::new();
    shared(&mut defaults, &plan.defaults, "  ");
    if !defaults.is_empty() {
        let _ = writeln!(out, "\ndefaults:");
        out.push_str(&defaults);
    }
    if let Some(level) = plan.log_level {
        let _ = writeln!(out, "\nlog:\n  level: {level}");
    }
    let _ = writeln!(out, "\njails:");
    if plan.jails.is_empty() {
        let _ = writeln!(out, "  {{}}");
    }
    for jail in &plan.jails {
        write_jail(&mut out, jail);
    }
    out
}

fn write_jail(out: &mut String, jail: &Jail) {
    let _ = writeln!(out, "  {}:", scalar(&jail.name));
    let renamed = if jail.name == jail.fail2ban_name {
        String::new()
    } else {
        format!(" (Fail2Ban jail \"{}\")", jail.fail2ban_name)
    };
    let _ = writeln!(out, "    # {}{renamed}", jail.at);
    match &jail.filter {
        None => {
            let _ = writeln!(out, "    manual: true");
        }
        Some(FilterPlan::Builtin(name)) => {
            let _ = writeln!(out, "    filter: {}", scalar(name));
        }
        Some(FilterPlan::Fail2Ban { path, options }) => {
            let _ = writeln!(out, "    filter:");
            // Written absolute: logjail reads a relative path from the YAML's own folder,
            // which need not be where the import ran.
            let written = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let _ = writeln!(
                out,
                "      fail2ban: {}",
                scalar(&written.display().to_string())
            );
            for (key, value) in options {
                let _ = writeln!(out, "      {}: {}", scalar(key), scalar(value));
            }
        }
    }
    if !jail.sources.is_empty() {
        let _ = writeln!(out, "    sources:");
        for source in &jail.sources {
            match source {
                Source::File(path) => {
                    let _ = writeln!(out, "      - file: {}", scalar(path));
                    let _ = writeln!(out, "        optional: true");
                }
                Source::Journal {
                    unit,
                    matches,
                    directory,
                } => {
                    let mut parts = Vec::new();
                    if let Some(unit) = unit {
                        parts.push(format!("unit: {}", scalar(unit)));
                    }
                    if !matches.is_empty() {
                        let items: Vec<String> = matches.iter().map(|m| scalar(m)).collect();
                        parts.push(format!("match: [{}]", items.join(", ")));
                    }
                    if let Some(directory) = directory {
                        parts.push(format!("directory: {}", scalar(directory)));
                    }
                    let _ = writeln!(out, "      - journal: {{{}}}", parts.join(", "));
                }
                Source::AllContainers => {
                    let _ = writeln!(out, "      - container: {{name: \"*\"}}");
                }
            }
        }
    }
    shared(out, &jail.shared, "    ");
    match &jail.ports {
        None => {
            let _ = writeln!(out, "    ports: all");
        }
        Some(ports) => {
            // Port numbers bare, names and ranges (`8000:8100`) as strings.
            let items: Vec<String> = ports
                .iter()
                .map(|p| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        p.clone()
                    } else {
                        scalar(p)
                    }
                })
                .collect();
            let _ = writeln!(out, "    ports: [{}]", items.join(", "));
        }
    }
    if let Some(protocol) = jail.protocol {
        let name = match protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::All => "all",
        };
        let _ = writeln!(out, "    protocol: {name}");
    }
    if let Some(chains) = &jail.chains {
        let names: Vec<&str> = chains.iter().map(|chain| chain.name()).collect();
        let _ = writeln!(out, "    chains: [{}]", names.join(", "));
    }
    if let Some(action) = jail.action {
        let _ = writeln!(out, "    action: {action}");
    }
}

fn shared(out: &mut String, shared: &Shared, indent: &str) {
    if let Some(bantime) = shared.bantime {
        let text = match bantime {
            BanTime::Permanent => "-1".to_string(),
            BanTime::Finite(duration) => duration_text(duration),
        };
        let _ = writeln!(out, "{indent}bantime: {text}");
    }
    if let Some(findtime) = shared.findtime {
        let _ = writeln!(out, "{indent}findtime: {}", duration_text(findtime));
    }
    if let Some(maxretry) = shared.maxretry {
        let _ = writeln!(out, "{indent}maxretry: {maxretry}");
    }
    if let Some(ignoreself) = shared.ignoreself {
        let _ = writeln!(out, "{indent}ignoreself: {ignoreself}");
    }
    if let Some(ignoreip) = &shared.ignoreip {
        // A single address without its /32 or /128, as people write it.
        let items: Vec<String> = ignoreip
            .iter()
            .map(|n| {
                if n.prefix_len() == n.max_prefix_len() {
                    scalar(&n.addr().to_string())
                } else {
                    scalar(&n.to_string())
                }
            })
            .collect();
        let _ = writeln!(out, "{indent}ignoreip: [{}]", items.join(", "));
    }
    if let Some(increment) = &shared.increment
        && !increment.is_empty()
    {
        write_increment(out, increment, indent);
    }
}

fn write_increment(out: &mut String, increment: &Increment, indent: &str) {
    let _ = writeln!(out, "{indent}increment:");
    if let Some(enabled) = increment.enabled {
        let _ = writeln!(out, "{indent}  enabled: {enabled}");
    }
    if let Some(factor) = increment.factor {
        let _ = writeln!(out, "{indent}  factor: {factor}");
    }
    if let Some(multipliers) = &increment.multipliers {
        let items: Vec<String> = multipliers.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "{indent}  multipliers: [{}]", items.join(", "));
    }
    if let Some(maxtime) = increment.maxtime {
        let _ = writeln!(out, "{indent}  maxtime: {}", duration_text(maxtime));
    }
    if let Some(rndtime) = increment.rndtime {
        let _ = writeln!(out, "{indent}  rndtime: {}", duration_text(rndtime));
    }
    if let Some(overalljails) = increment.overalljails {
        let _ = writeln!(out, "{indent}  overalljails: {overalljails}");
    }
}

/// A duration as logjail writes it (`2h`, `30d`), plain seconds kept readable.
fn duration_text(duration: Duration) -> String {
    format_duration(duration)
}

/// A string as a YAML scalar: bare when that reads back as the same string, else quoted.
pub fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-@".contains(c))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/' || c == '_')
        && !looks_typed(text);
    if plain {
        text.to_string()
    } else {
        // A JSON string is a valid double-quoted YAML scalar.
        serde_json::to_string(text).unwrap_or_else(|_| format!("'{}'", text.replace('\'', "''")))
    }
}

/// Words and numbers YAML would read as something other than a string.
fn looks_typed(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
    ) || text.parse::<f64>().is_ok()
        || text.starts_with(|c: char| c.is_ascii_digit()) && text.contains(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_strings() {
        for text in [
            "sshd",
            "/var/log/auth.log",
            "::1",
            "127.0.0.0/8",
            "8000:8100",
            "22",
            "yes",
            "a b",
            "*",
            "2001:db8::/32",
            "x: y",
            "1.5",
            "10.0.0.1",
            "_SYSTEMD_UNIT=sshd.service",
            "",
        ] {
            let yaml = format!("key: {}\n", scalar(text));
            let value: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(value["key"].as_str(), Some(text), "{yaml}");
        }
        assert_eq!(scalar("sshd"), "sshd");
        assert_eq!(scalar("/var/log/auth.log"), "/var/log/auth.log");
    }
}
