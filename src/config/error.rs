//! Configuration errors: each one says where (file, line, column), in which jail or filter, and
//! what is wrong, so that `logjail check` can list them all in one run.

use std::fmt;

use super::positions::TextPosition;

/// The part of the configuration an error belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The file as a whole or a top-level section; the key path says which.
    File,
    /// A jail under `jails:`.
    Jail(String),
    /// A user filter under `filters:`.
    Filter(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::File => Ok(()),
            Scope::Jail(name) => write!(f, "jail \"{name}\""),
            Scope::Filter(name) => write!(f, "filter \"{name}\""),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the text came from, as shown to the user.
    pub origin: String,
    /// Where in the text; `None` when the file could not be read at all.
    pub position: Option<TextPosition>,
    /// The jail or filter at fault, so that errors can be grouped and filtered.
    pub scope: Scope,
    /// The setting within the scope, e.g. `maxretry` or `sources[1].container.name`; empty when
    /// the error is about the scope as a whole.
    pub key: String,
    /// What is wrong, meant to be read as is.
    pub message: String,
}

impl ConfigError {
    /// The jail this error is about, if any.
    pub fn jail(&self) -> Option<&str> {
        match &self.scope {
            Scope::Jail(name) => Some(name),
            _ => None,
        }
    }

    /// The user filter this error is about, if any.
    pub fn filter(&self) -> Option<&str> {
        match &self.scope {
            Scope::Filter(name) => Some(name),
            _ => None,
        }
    }

    /// The error without its origin: `12:15: jail "sshd": maxretry: …`, handy in tests and
    /// wherever the file name is already shown.
    pub fn without_origin(&self) -> String {
        let mut out = String::new();
        if let Some(position) = self.position {
            out.push_str(&format!("{position}: "));
        }
        if self.scope != Scope::File {
            out.push_str(&format!("{}: ", self.scope));
        }
        if !self.key.is_empty() {
            out.push_str(&format!("{}: ", self.key));
        }
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `file:line:col: …` is what editors and CI annotations recognise.
        let separator = if self.position.is_some() { ":" } else { ": " };
        write!(f, "{}{separator}{}", self.origin, self.without_origin())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration, in the order they appear in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(
    /// The errors, sorted by position; public so that callers can build or merge lists.
    pub Vec<ConfigError>,
);

impl ConfigErrors {
    /// The errors, in text order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (a `ConfigErrors` returned as an error never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (number, error) in self.0.iter().enumerate() {
            if number > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(scope: Scope, key: &str, position: Option<TextPosition>) -> ConfigError {
        ConfigError {
            origin: "/etc/logjail/logjail.yaml".to_string(),
            position,
            scope,
            key: key.to_string(),
            message: "must be at least 1 (got -1)".to_string(),
        }
    }

    #[test]
    fn displays_file_line_column_scope_key_and_message() {
        let at = Some(TextPosition {
            line: 12,
            column: 15,
        });
        assert_eq!(
            error(Scope::Jail("sshd".into()), "maxretry", at).to_string(),
            "/etc/logjail/logjail.yaml:12:15: jail \"sshd\": maxretry: must be at least 1 (got -1)"
        );
        assert_eq!(
            error(Scope::File, "defaults.maxretry", at).to_string(),
            "/etc/logjail/logjail.yaml:12:15: defaults.maxretry: must be at least 1 (got -1)"
        );
        assert_eq!(
            error(Scope::Filter("f".into()), "", None).to_string(),
            "/etc/logjail/logjail.yaml: filter \"f\": must be at least 1 (got -1)"
        );
    }

    #[test]
    fn lists_one_error_per_line() {
        let errors = ConfigErrors(vec![
            error(Scope::Jail("a".into()), "maxretry", None),
            error(Scope::Jail("b".into()), "maxretry", None),
        ]);
        assert_eq!(errors.to_string().lines().count(), 2);
        assert_eq!(
            errors
                .iter()
                .filter_map(ConfigError::jail)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
