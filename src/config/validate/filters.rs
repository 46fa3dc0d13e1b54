//! User filters: checked key by key, compiled by the filter engine, errors placed on the
//! pattern at fault.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{Anchor, Place, Validator, check_name, describe, key_text};
use crate::config::error::Scope;
use crate::config::jail::JailConfig;
use crate::config::positions::{COMPLEX_KEY, YamlPath};
use crate::filter::{Filter, FilterError, FilterField, FilterSpec, builtin};

impl Validator<'_> {
    /// Checks and compiles the user filters; returns the compiled ones and their specs.
    pub(super) fn filters(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
    ) -> (BTreeMap<String, Filter>, BTreeMap<String, FilterSpec>) {
        let mut compiled = BTreeMap::new();
        let mut specs = BTreeMap::new();
        let mapping = match value {
            None | Some(Value::Null) => return (compiled, specs),
            Some(Value::Mapping(mapping)) => mapping,
            Some(other) => {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    format!(
                        "must be a mapping of filter names to filters, not {}",
                        describe(other)
                    ),
                );
                return (compiled, specs);
            }
        };
        for (key, value) in mapping {
            let Some(name) = key_text(key) else {
                self.report(
                    &Place::file(),
                    &path.key(COMPLEX_KEY),
                    Anchor::Key,
                    "filter names must be plain words",
                );
                continue;
            };
            let filter_path = path.key(&name);
            let place = Place {
                scope: Scope::Filter(name.clone()),
                depth: 2,
            };
            if let Err(message) = check_name(&name, "filter") {
                self.report(&place, &filter_path, Anchor::Key, message);
                continue;
            }
            let Some(spec) = self.mapping_of::<FilterSpec>(
                &single_strings_as_lists(value),
                &filter_path,
                &place,
            ) else {
                continue;
            };
            match compile_filter(&name, &spec) {
                Ok(filter) => {
                    compiled.insert(name.clone(), filter);
                }
                Err(errors) => {
                    for error in errors {
                        let (error_path, anchor) = match error.field {
                            Some(field) => (filter_field_path(&filter_path, field), Anchor::Value),
                            None => (filter_path.clone(), Anchor::Key),
                        };
                        self.report(&place, &error_path, anchor, one_line(&error.message));
                    }
                }
            }
            specs.insert(name, spec);
        }
        (compiled, specs)
    }

    /// Adds the built-in filters the jails use to the compiled user filters.
    pub(super) fn compile_used_builtins(
        &mut self,
        mut filters: BTreeMap<String, Filter>,
        jails: &[JailConfig],
        jails_path: &YamlPath,
    ) -> BTreeMap<String, Filter> {
        for jail in jails {
            let Some(name) = &jail.filter else { continue };
            if filters.contains_key(name) {
                continue;
            }
            let Some(spec) = builtin::spec(name) else {
                continue;
            };
            match compile_filter(name, &spec) {
                Ok(filter) => {
                    filters.insert(name.clone(), filter);
                }
                Err(errors) => {
                    // A built-in that does not compile is our bug, but say where it is used.
                    let place = Place {
                        scope: Scope::Jail(jail.name.clone()),
                        depth: 2,
                    };
                    let path = jails_path.key(&jail.name).key("filter");
                    for error in errors {
                        self.report(&place, &path, Anchor::Value, format!("built-in {error}"));
                    }
                }
            }
        }
        filters
    }
}

/// The one place that talks to the filter engine.
pub(super) fn compile_filter(name: &str, spec: &FilterSpec) -> Result<Filter, Vec<FilterError>> {
    Filter::compile(name, spec)
}

fn filter_field_path(filter: &YamlPath, field: FilterField) -> YamlPath {
    match field {
        FilterField::Program => filter.key("program"),
        FilterField::Prefregex => filter.key("prefregex"),
        FilterField::Failregex(i) => filter.key("failregex").index(i),
        FilterField::Ignoreregex(i) => filter.key("ignoreregex").index(i),
        FilterField::Datepattern => filter.key("datepattern"),
    }
}

/// The regex crate explains parse errors over several lines, quoting the pattern with its tags
/// expanded (which is not what the user wrote); one error per line keeps the first line and the
/// reason: `regex parse error: unclosed group`.
pub(super) fn one_line(message: &str) -> String {
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        Some(last) => {
            let reason = last.strip_prefix("error: ").unwrap_or(last);
            format!("{}: {reason}", first.trim_end_matches(':'))
        }
        None => first.to_string(),
    }
}

/// A filter whose `failregex`/`ignoreregex` is one string instead of a list means a one-item
/// list; accepting it spares users a confusing type error.
fn single_strings_as_lists(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Mapping(mapping) = &mut value {
        for key in ["failregex", "ignoreregex"] {
            if let Some(item) = mapping.get_mut(key)
                && item.is_string()
            {
                *item = Value::Sequence(vec![item.clone()]);
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_regex_errors_become_one_line() {
        let unclosed = String::from("(a");
        let error = regex::Regex::new(&unclosed).unwrap_err().to_string();
        assert!(error.contains('\n'));
        assert_eq!(one_line(&error), "regex parse error: unclosed group");
        assert_eq!(one_line("has no failregex"), "has no failregex");
    }
}
