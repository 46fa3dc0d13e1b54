//! A Fail2Ban filter or action file as a jail uses it: its `[Definition]` and `[Init]` values
//! with the options the jail hands it, `<tag>`s filled in.

use std::path::Path;

use crate::config::ini::{
    IniError, IniStack, Options, RawValue, SourceLine, Tag, TagError, Value, substitute_tags,
};

/// How many rounds of `<tag>` replacement are made before giving up (Fail2Ban stops at 25).
const MAX_TAG_ROUNDS: usize = 25;

/// One `filter.d/NAME` or `action.d/NAME` configuration with the options a jail gave it.
#[derive(Debug)]
pub struct Definition {
    pub stack: IniStack,
    /// `key=value` from the jail's `NAME[key=value]`; they win over `[Init]` and `[Definition]`.
    pub passed: Options,
}

impl Definition {
    /// Reads `KIND/NAME` (`filter.d/sshd`) under `dir`; `Ok(None)` when no file of it exists.
    pub fn read(
        dir: &Path,
        kind: &str,
        name: &str,
        passed: &[(String, String)],
        at: &SourceLine,
    ) -> Result<Option<Definition>, IniError> {
        let stack = IniStack::read_config(dir, &format!("{kind}/{name}"))?;
        if stack.files().is_empty() {
            return Ok(None);
        }
        let mut options = Options::default();
        for (key, value) in passed {
            options.set(
                &key.to_lowercase(),
                RawValue {
                    text: value.clone(),
                    at: at.clone(),
                },
            );
        }
        Ok(Some(Definition {
            stack,
            passed: options,
        }))
    }

    /// The file names read (`iptables.conf`, `iptables-multiport.conf`, …).
    pub fn file_names(&self) -> impl Iterator<Item = String> + '_ {
        self.stack.files().iter().filter_map(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
    }

    /// An option as the jail sees it, `%(…)s` done but `<tag>`s not: what the jail passed, else
    /// `[Init]`, else `[Definition]`.
    pub fn option(&self, name: &str) -> Result<Option<Value>, IniError> {
        let name = name.to_lowercase();
        if let Some(raw) = self.passed.get(&name) {
            return Ok(Some(Value {
                text: raw.text.clone(),
                at: raw.at.clone(),
                via: Vec::new(),
            }));
        }
        self.definition_default(&name)
    }

    /// The file's own value of an option (`[Init]`, else `[Definition]`), ignoring what the
    /// jail passed: what `<known/NAME>` means.
    fn definition_default(&self, name: &str) -> Result<Option<Value>, IniError> {
        if let Some(own) = self.stack.own_options("Init")
            && own.contains(name)
        {
            return self.stack.get("Init", name);
        }
        if self
            .stack
            .own_options("Definition")
            .is_some_and(|own| own.contains(name))
        {
            return self.stack.get_with("Definition", name, &self.passed);
        }
        Ok(None)
    }

    /// An option with every `<tag>` that names another option filled in; tags that name none
    /// (`<ip>`, `<F-USER>`) are left as written.
    pub fn resolved(&self, name: &str) -> Result<Option<Value>, IniError> {
        self.resolved_at_depth(name, 0)
    }

    /// [`Definition::resolved`]; a value that is one tag alone (`chain = <known/chain>`) takes
    /// the place where the tag's own value is written, which is what the report should name.
    fn resolved_at_depth(&self, name: &str, depth: usize) -> Result<Option<Value>, IniError> {
        let Some(mut value) = self.option(name)? else {
            return Ok(None);
        };
        let trimmed = value.text.trim();
        if depth < MAX_TAG_ROUNDS
            && let Some(tag) = trimmed.strip_prefix('<').and_then(|t| t.strip_suffix('>'))
            && !tag.contains(['<', '>', ' '])
        {
            let target = match tag.strip_prefix("known/") {
                Some(known) => self.definition_default(known)?.map(|mut v| {
                    v.text = String::new();
                    (known.to_string(), v)
                }),
                None if tag != name => Some((tag.to_string(), value.clone())),
                None => None,
            };
            if let Some((target, _)) = target {
                let inner = if tag.starts_with("known/") {
                    self.definition_default(&target)?
                        .map(|mut v| {
                            v.text = self.fill_tags(&v.text)?;
                            Ok::<Value, IniError>(v)
                        })
                        .transpose()?
                } else {
                    self.resolved_at_depth(&target, depth + 1)?
                };
                if inner.is_some() {
                    return Ok(inner);
                }
            }
        }
        value.text = self.fill_tags(&value.text)?;
        Ok(Some(value))
    }

    /// Fills in `<tag>`s of `text` from the options (`<known/NAME>`: the file's own value).
    pub fn fill_tags(&self, text: &str) -> Result<String, IniError> {
        let filled = substitute_tags(text, MAX_TAG_ROUNDS, |tag, _| {
            let replacement = match tag.strip_prefix("known/") {
                Some(known) => self.definition_default(known)?,
                None => self.option(tag)?,
            };
            Ok(match replacement {
                // `name = <name>` would never settle.
                Some(value) if !tag.eq_ignore_ascii_case(&value.text) => Tag::Value(value.text),
                _ => Tag::Keep,
            })
        });
        match filled {
            Ok(text) => Ok(text),
            Err(TagError::Lookup(error)) => Err(error),
            // A loop of tags leaves what the rounds made of it, as Fail2Ban does.
            Err(TagError::Unsettled(text)) => Ok(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_options_win_over_init_and_tags_are_filled() {
        let dir = tempfile::tempdir().unwrap();
        let actions = dir.path().join("action.d");
        std::fs::create_dir_all(&actions).unwrap();
        std::fs::write(
            actions.join("base.conf"),
            "[Definition]\ntype = oneport\nactionban = <iptables> -I f2b-<name> 1 -s <ip> -j <blocktype>\n[Init]\nname = default\nblocktype = REJECT --reject-with icmp-port-unreachable\nchain = INPUT\nlockingopt = -w\niptables = iptables <lockingopt>\n",
        )
        .unwrap();
        std::fs::write(
            actions.join("multi.conf"),
            "[INCLUDES]\nbefore = base.conf\n[Definition]\ntype = multiport\n",
        )
        .unwrap();
        std::fs::write(actions.join("multi.local"), "[Init]\nblocktype = DROP\n").unwrap();
        let at = SourceLine {
            file: std::sync::Arc::from(Path::new("jail.conf")),
            line: 1,
        };
        let action = Definition::read(
            dir.path(),
            "action.d",
            "multi",
            &[
                ("name".into(), "sshd".into()),
                ("chain".into(), "<known/chain>".into()),
            ],
            &at,
        )
        .unwrap()
        .unwrap();
        assert_eq!(action.resolved("type").unwrap().unwrap().text, "multiport");
        assert_eq!(action.resolved("blocktype").unwrap().unwrap().text, "DROP");
        assert_eq!(action.resolved("chain").unwrap().unwrap().text, "INPUT");
        assert_eq!(
            action.resolved("actionban").unwrap().unwrap().text,
            "iptables -w -I f2b-sshd 1 -s <ip> -j DROP"
        );
        assert!(
            action
                .resolved("blocktype")
                .unwrap()
                .unwrap()
                .at
                .file
                .ends_with("multi.local")
        );
        assert_eq!(
            action.file_names().collect::<Vec<_>>(),
            ["base.conf", "multi.conf", "multi.local"]
        );
        assert!(
            Definition::read(dir.path(), "action.d", "nope", &[], &at)
                .unwrap()
                .is_none()
        );
    }
}
