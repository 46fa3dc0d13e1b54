//! Fail2Ban's INI files, read the way Fail2Ban reads them, with the file and line of every value
//! kept so that whatever is built from them can say where a setting came from.
//!
//! The dialect is Python's `configparser` as Fail2Ban configures it: `key = value` or
//! `key: value`; option names are case-insensitive (kept lowercase), section names are not;
//! continuation lines are indented deeper than their key; whole-line comments start with `#` or
//! `;`, inline comments with `;` after a blank; `[DEFAULT]` applies to every section.
//!
//! On top of that, what Fail2Ban adds ([`IniStack`]):
//!
//! - A configuration `NAME` is `NAME.conf`, then `NAME.d/*.conf`, then `NAME.local`, then
//!   `NAME.d/*.local` (each folder in name order), later files overriding earlier ones option by
//!   option.
//! - `[INCLUDES]` `before =` / `after =` name files (relative to the including file) read
//!   before or after it; each file read also brings its `.local` sibling, and a file already on
//!   the way is not read again (no loops).
//! - `%(name)s` interpolation (`%%` is a percent sign), with `%(__name__)s` the section's name,
//!   `%(default/name)s` the `[DEFAULT]` value, `%(known/name)s` the value this section had before
//!   a later file overrode it, and `%(SECTION/name)s` another section's own value.
//!
//! `<tag>` substitution belongs to filters and actions, not to the file format, and is not done
//! here.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value (or a section header) was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLine {
    pub file: Arc<Path>,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for SourceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One option's value as written (continuation lines joined with `\n`), not interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    pub text: String,
    /// The line of the option's key.
    pub at: SourceLine,
}

/// Options in the order first written; a later value of the same name replaces the earlier one
/// in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(String, RawValue)>,
}

impl Options {
    /// The value of `name` (already lowercase).
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Sets `name`, keeping its first position; returns the value it replaced.
    pub fn set(&mut self, name: &str, value: RawValue) -> Option<RawValue> {
        match self.entries.iter_mut().find(|(key, _)| key == name) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((name.to_string(), value));
                None
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One `[SECTION]` of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSection {
    pub name: String,
    /// The header's line.
    pub at: SourceLine,
    pub options: Options,
}

/// One file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniFile {
    pub path: Arc<Path>,
    /// `[DEFAULT]`.
    pub defaults: Options,
    /// The other sections in file order.
    pub sections: Vec<IniSection>,
}

/// Why a Fail2Ban file could not be read or a value not be worked out. Each names the file and
/// line at fault, as Fail2Ban itself would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{at}: {message}")]
    Syntax { at: SourceLine, message: String },
    #[error("{at}: [{section}] {option}: {message}")]
    Interpolation {
        /// Where the option being worked out was written.
        at: SourceLine,
        section: String,
        option: String,
        message: String,
    },
}

/// The most nested `%(…)s` levels Python's configparser follows (its `MAX_INTERPOLATION_DEPTH`).
const MAX_DEPTH: usize = 10;

/// Options sections that hold the values a section had before a later file overrode them.
const KNOWN_PREFIX: &str = "KNOWN/";

impl IniFile {
    /// Reads and parses one file (UTF-8, as Fail2Ban reads it).
    pub fn read(path: &Path) -> Result<IniFile, IniError> {
        let bytes = std::fs::read(path).map_err(|error| IniError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| IniError::Io {
            path: path.display().to_string(),
            message: "not UTF-8 (Fail2Ban reads its files as UTF-8)".to_string(),
        })?;
        IniFile::parse(path, &text)
    }

    /// Parses `text` as the file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<IniFile, IniError> {
        let file: Arc<Path> = Arc::from(path);
        let at = |line: usize| SourceLine {
            file: file.clone(),
            line,
        };
        let mut parsed = IniFile {
            path: file.clone(),
            defaults: Options::default(),
            sections: Vec::new(),
        };
        // Which section lines go to: None before any header, Some(None) for [DEFAULT],
        // Some(Some(i)) for parsed.sections[i].
        let mut current: Option<Option<usize>> = None;
        // The option continuation lines extend, with its lines so far.
        let mut open: Option<(String, Vec<String>, SourceLine)> = None;
        let mut open_indent = 0usize;
        let mut seen_sections: Vec<String> = Vec::new();
        let mut seen_options: Vec<(Option<usize>, String)> = Vec::new();

        let finish = |parsed: &mut IniFile,
                      current: Option<Option<usize>>,
                      open: &mut Option<(String, Vec<String>, SourceLine)>| {
            if let (Some(target), Some((name, lines, at))) = (current, open.take()) {
                let value = RawValue {
                    text: lines.join("\n").trim_end().to_string(),
                    at,
                };
                match target {
                    None => parsed.defaults.set(&name, value),
                    Some(index) => parsed.sections[index].options.set(&name, value),
                };
            }
        };

        for (index, raw_line) in text.split('\n').enumerate() {
            let number = index + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let comment_start = comment_start(line);
            let value = line[..comment_start.unwrap_or(line.len())].trim();
            if value.is_empty() {
                // A blank line inside a value is part of it (Python keeps empty lines in
                // values), unless the line held a comment.
                if comment_start.is_none()
                    && let Some((_, lines, _)) = open.as_mut()
                {
                    lines.push(String::new());
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if open.is_some() && indent > open_indent {
                if let Some((_, lines, _)) = open.as_mut() {
                    lines.push(value.to_string());
                }
                continue;
            }
            finish(&mut parsed, current, &mut open);
            open_indent = indent;
            if let Some(header) = section_header(value) {
                if seen_sections.iter().any(|s| s == header) {
                    return Err(IniError::Syntax {
                        at: at(number),
                        message: format!(
                            "section [{header}] appears twice in this file (Fail2Ban refuses the file)"
                        ),
                    });
                }
                seen_sections.push(header.to_string());
                if header == "DEFAULT" {
                    current = Some(None);
                } else {
                    parsed.sections.push(IniSection {
                        name: header.to_string(),
                        at: at(number),
                        options: Options::default(),
                    });
                    current = Some(Some(parsed.sections.len() - 1));
                }
                continue;
            }
            let Some(target) = current else {
                return Err(IniError::Syntax {
                    at: at(number),
                    message: "a setting before any [SECTION] header".to_string(),
                });
            };
            let Some(delimiter) = value.find(['=', ':']) else {
                return Err(IniError::Syntax {
                    at: at(number),
                    message: format!("`{value}` is neither `key = value` nor a [SECTION] header"),
                });
            };
            let name = value[..delimiter].trim_end().to_lowercase();
            if name.is_empty() {
                return Err(IniError::Syntax {
                    at: at(number),
                    message: "a value without a key".to_string(),
                });
            }
            if seen_options
                .iter()
                .any(|(section, option)| *section == target && *option == name)
            {
                return Err(IniError::Syntax {
                    at: at(number),
                    message: format!(
                        "`{name}` is set twice in this section (Fail2Ban refuses the file)"
                    ),
                });
            }
            seen_options.push((target, name.clone()));
            let first = value[delimiter + 1..].trim().to_string();
            open = Some((name, vec![first], at(number)));
        }
        finish(&mut parsed, current, &mut open);
        Ok(parsed)
    }

    /// The section named `name` (not `DEFAULT`).
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// Where a comment starts on `line`: a `#` or `;` opening the line, or a `;` after a blank.
fn comment_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return Some(0);
    }
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b';' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
}

/// `[name]` (Python's pattern is permissive: everything up to the last `]`).
fn section_header(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    (end > 0).then(|| &inner[..end])
}

/// A value worked out: interpolation done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    /// Where the option itself was written (in its section or in `[DEFAULT]`).
    pub at: SourceLine,
    /// The other values it was made of through `%(…)s`, in the order used.
    pub via: Vec<SourceLine>,
}

/// One section merged over every file read.
#[derive(Debug, Clone, Default)]
struct MergedSection {
    name: String,
    /// Where the section was first opened.
    at: Option<SourceLine>,
    options: Options,
}

/// A configuration read from several files the way Fail2Ban merges them.
#[derive(Debug, Clone, Default)]
pub struct IniStack {
    /// Every file read, in reading order.
    files: Vec<Arc<Path>>,
    defaults: Options,
    /// In order of first appearance; the `KNOWN/…` ones hold overridden values.
    sections: Vec<MergedSection>,
}

impl IniStack {
    /// Fail2Ban's configuration `name` under `base` (`jail`, `fail2ban`, `filter.d/sshd`,
    /// `action.d/iptables-multiport`): `NAME.conf`, `NAME.d/*.conf`, `NAME.local`,
    /// `NAME.d/*.local`, each with its includes. Files that do not exist are skipped; none at
    /// all is an empty stack (see [`IniStack::files`]).
    pub fn read_config(base: &Path, name: &str) -> Result<IniStack, IniError> {
        let stem = base.join(name);
        let folder = PathBuf::from(format!("{}.d", stem.display()));
        let mut candidates = vec![PathBuf::from(format!("{}.conf", stem.display()))];
        candidates.extend(folder_files(&folder, "conf"));
        candidates.push(PathBuf::from(format!("{}.local", stem.display())));
        candidates.extend(folder_files(&folder, "local"));
        let existing: Vec<PathBuf> = candidates.into_iter().filter(|p| p.is_file()).collect();
        IniStack::read_files(&existing)
    }

    /// Reads `files` in order, each with its `.local` sibling and its `[INCLUDES]`.
    pub fn read_files(files: &[PathBuf]) -> Result<IniStack, IniError> {
        let mut cache: HashMap<PathBuf, Option<Arc<IniFile>>> = HashMap::new();
        let mut order = Vec::new();
        for file in with_locals(files) {
            order.extend(includes(&file, &[], &mut cache)?);
        }
        let mut stack = IniStack::default();
        for path in order {
            let Some(Some(file)) = cache.get(&path).cloned() else {
                continue;
            };
            stack.merge(&file);
        }
        Ok(stack)
    }

    /// One parsed file on top of what is there.
    pub fn merge(&mut self, file: &IniFile) {
        self.files.push(file.path.clone());
        for (name, value) in file.defaults.iter() {
            self.defaults.set(name, value.clone());
        }
        for section in &file.sections {
            let slot = match self.sections.iter().position(|s| s.name == section.name) {
                Some(slot) => slot,
                None => {
                    self.sections.push(MergedSection {
                        name: section.name.clone(),
                        at: Some(section.at.clone()),
                        options: Options::default(),
                    });
                    self.sections.len() - 1
                }
            };
            let mut replaced = Vec::new();
            for (name, value) in section.options.iter() {
                if let Some(old) = self.sections[slot].options.set(name, value.clone()) {
                    replaced.push((name.to_string(), old));
                }
            }
            if !replaced.is_empty() {
                let known = self.section_mut(&format!("{KNOWN_PREFIX}{}", section.name));
                for (name, old) in replaced {
                    known.options.set(&name, old);
                }
            }
        }
    }

    fn section_mut(&mut self, name: &str) -> &mut MergedSection {
        let slot = match self.sections.iter().position(|s| s.name == name) {
            Some(slot) => slot,
            None => {
                self.sections.push(MergedSection {
                    name: name.to_string(),
                    ..MergedSection::default()
                });
                self.sections.len() - 1
            }
        };
        &mut self.sections[slot]
    }

    fn merged(&self, name: &str) -> Option<&MergedSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The files read, in order (includes and `.local` files included).
    pub fn files(&self) -> &[Arc<Path>] {
        &self.files
    }

    /// Section names in order of first appearance (not `DEFAULT`, not the `KNOWN/` ones).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .map(|s| s.name.as_str())
            .filter(|name| !name.starts_with(KNOWN_PREFIX))
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.merged(name).is_some()
    }

    /// Where `section` was first opened.
    pub fn section_at(&self, section: &str) -> Option<&SourceLine> {
        self.merged(section).and_then(|s| s.at.as_ref())
    }

    /// The section's own options (without `[DEFAULT]`), as merged.
    pub fn own_options(&self, section: &str) -> Option<&Options> {
        self.merged(section).map(|s| &s.options)
    }

    /// `[DEFAULT]`, as merged.
    pub fn defaults(&self) -> &Options {
        &self.defaults
    }

    /// Adds a value to `[DEFAULT]` (Fail2Ban's `fail2ban_version`, `fail2ban_confpath`).
    pub fn set_default(&mut self, name: &str, text: &str, at: SourceLine) {
        self.defaults.set(
            name,
            RawValue {
                text: text.to_string(),
                at,
            },
        );
    }

    /// The raw value of `option` in `section`, else in `[DEFAULT]`. `section` `DEFAULT` reads
    /// only `[DEFAULT]`.
    pub fn raw(&self, section: &str, option: &str) -> Option<&RawValue> {
        let option = option.to_lowercase();
        if section != "DEFAULT"
            && let Some(value) = self.merged(section).and_then(|s| s.options.get(&option))
        {
            return Some(value);
        }
        self.defaults.get(&option)
    }

    /// What `%(known/option)s` reads in `section`: the raw value `option` had there before a
    /// later file set it again, else the `[DEFAULT]` one.
    pub fn known_raw(&self, section: &str, option: &str) -> Option<&RawValue> {
        let option = option.to_lowercase();
        self.merged(&format!("{KNOWN_PREFIX}{section}"))
            .and_then(|s| s.options.get(&option))
            .or_else(|| self.defaults.get(&option))
    }

    /// The interpolated value of `option` in `section` (else from `[DEFAULT]`); `None` when it
    /// is not set.
    pub fn get(&self, section: &str, option: &str) -> Result<Option<Value>, IniError> {
        self.get_with(section, option, &Options::default())
    }

    /// [`IniStack::get`] with `vars` looked up first (the options a jail hands a filter or an
    /// action).
    pub fn get_with(
        &self,
        section: &str,
        option: &str,
        vars: &Options,
    ) -> Result<Option<Value>, IniError> {
        let option = option.to_lowercase();
        let Some(raw) = vars.get(&option).or_else(|| self.raw(section, &option)) else {
            return Ok(None);
        };
        let mut value = Value {
            text: String::new(),
            at: raw.at.clone(),
            via: Vec::new(),
        };
        let context = Context {
            stack: self,
            section,
            option: &option,
            at: &raw.at,
            vars,
        };
        context.expand(&raw.text, 1, &mut value)?;
        Ok(Some(value))
    }

    /// Interpolates arbitrary `text` as if it were the value of `option` in `section`
    /// (`at` is where it came from, for errors).
    pub fn interpolate(
        &self,
        section: &str,
        text: &str,
        at: &SourceLine,
        vars: &Options,
    ) -> Result<Value, IniError> {
        let mut value = Value {
            text: String::new(),
            at: at.clone(),
            via: Vec::new(),
        };
        let context = Context {
            stack: self,
            section,
            option: "",
            at,
            vars,
        };
        context.expand(text, 1, &mut value)?;
        Ok(value)
    }
}

/// What an interpolation runs in.
struct Context<'a> {
    stack: &'a IniStack,
    section: &'a str,
    option: &'a str,
    at: &'a SourceLine,
    vars: &'a Options,
}

impl Context<'_> {
    fn error(&self, message: String) -> IniError {
        IniError::Interpolation {
            at: self.at.clone(),
            section: self.section.to_string(),
            option: self.option.to_string(),
            message,
        }
    }

    fn expand(&self, text: &str, depth: usize, out: &mut Value) -> Result<(), IniError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!(
                "more than {MAX_DEPTH} nested %(…)s references (a value that refers to itself?)"
            )));
        }
        let mut rest = text;
        while let Some(percent) = rest.find('%') {
            out.text.push_str(&rest[..percent]);
            let after = &rest[percent + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                out.text.push('%');
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('(') {
                let Some(close) = tail.find(')') else {
                    return Err(self.error(format!("unclosed reference `%{after}`")));
                };
                let name = tail[..close].to_lowercase();
                let Some(tail) = tail[close + 1..].strip_prefix('s') else {
                    return Err(self.error(format!(
                        "`%({name})` must be followed by `s`, as in `%({name})s`"
                    )));
                };
                let Some(found) = self.lookup(&name) else {
                    return Err(self.error(format!(
                        "`%({name})s` refers to `{name}`, which is not set here or in [DEFAULT]"
                    )));
                };
                out.via.push(found.at.clone());
                if found.text.contains('%') {
                    self.expand(&found.text, depth + 1, out)?;
                } else {
                    out.text.push_str(&found.text);
                }
                rest = tail;
            } else {
                return Err(self.error(
                    "`%` must be followed by `%` or `(` (write `%%` for a percent sign)"
                        .to_string(),
                ));
            }
        }
        out.text.push_str(rest);
        Ok(())
    }

    /// A `%(name)s` target: the given vars, the section's name, the section's options, then
    /// `[DEFAULT]`; `default/…`, `known/…` and `SECTION/…` names as Fail2Ban resolves them.
    fn lookup(&self, name: &str) -> Option<RawValue> {
        if let Some(value) = self.vars.get(name) {
            return Some(value.clone());
        }
        if name == "__name__" {
            let at = self
                .stack
                .section_at(self.section)
                .cloned()
                .unwrap_or_else(|| self.at.clone());
            return Some(RawValue {
                text: self.section.to_string(),
                at,
            });
        }
        if let Some(value) = self.stack.raw(self.section, name) {
            return Some(value.clone());
        }
        let (section, option) = split_section_reference(name)?;
        let defaults = || self.stack.defaults.get(option).cloned();
        match section.to_lowercase().as_str() {
            "default" => defaults(),
            "known" => self
                .stack
                .merged(&format!("{KNOWN_PREFIX}{}", self.section))
                .and_then(|s| s.options.get(option))
                .cloned()
                .or_else(defaults),
            _ => {
                let other = self.stack.merged(section)?;
                other.options.get(option).cloned().or_else(defaults)
            }
        }
    }
}

/// `section/option` as Fail2Ban writes it in `%(section/option)s` (a word, a slash, a name
/// without blanks).
fn split_section_reference(name: &str) -> Option<(&str, &str)> {
    let (section, option) = name.split_once('/')?;
    let word = !section.is_empty()
        && section
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    (word && !option.is_empty() && !option.contains(char::is_whitespace))
        .then_some((section, option))
}

/// `folder/*.EXT` in name order, hidden files left out (as Python's glob does).
fn folder_files(folder: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == extension))
        .collect();
    names.sort();
    names.into_iter().map(|name| folder.join(name)).collect()
}

/// Each file followed by its `.local` sibling when that exists and is not listed already.
fn with_locals(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        out.push(file.clone());
        let local = file.with_extension("local");
        if !files.contains(&local) && local.is_file() {
            out.push(local);
        }
    }
    out
}

/// The files `resource` stands for: its `before` includes, itself, its `after` includes
/// (recursively, each with its `.local`); a file on the current include path is skipped, a
/// missing file stands for nothing.
fn includes(
    resource: &Path,
    seen: &[PathBuf],
    cache: &mut HashMap<PathBuf, Option<Arc<IniFile>>>,
) -> Result<Vec<PathBuf>, IniError> {
    let file = match cache.get(resource) {
        Some(file) => file.clone(),
        None => {
            let file = if resource.is_file() {
                Some(Arc::new(IniFile::read(resource)?))
            } else {
                None
            };
            cache.insert(resource.to_path_buf(), file.clone());
            file
        }
    };
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let directory = resource.parent().unwrap_or(Path::new("."));
    let mut path = seen.to_vec();
    path.push(resource.to_path_buf());
    let mut lists = [Vec::new(), Vec::new()];
    if let Some(section) = file.section("INCLUDES") {
        for (slot, key) in ["before", "after"].into_iter().enumerate() {
            let Some(value) = section.options.get(key) else {
                continue;
            };
            for name in value.text.lines().map(str::trim).filter(|n| !n.is_empty()) {
                let target = if Path::new(name).is_absolute() {
                    PathBuf::from(name)
                } else {
                    directory.join(name)
                };
                if path.contains(&target) {
                    continue;
                }
                for expanded in with_locals(std::slice::from_ref(&target)) {
                    lists[slot].extend(includes(&expanded, &path, cache)?);
                }
            }
        }
    }
    let [before, after] = lists;
    let mut out = before;
    out.push(resource.to_path_buf());
    out.extend(after);
    Ok(out)
}

/// What a `<tag>` stands for, as the caller of [`substitute_tags`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// The option's value, itself searched for tags in the next round.
    Value(String),
    /// Text that replaces the tag and is final (such as an escaped literal).
    Literal(String),
    /// Not a tag here: `<name>` stays as written.
    Keep,
}

/// Why [`substitute_tags`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagError<E> {
    /// The lookup failed.
    Lookup(E),
    /// Still changing after the most rounds allowed (a tag refers to itself); the text so far.
    Unsettled(String),
}

/// Fail2Ban's `<tag>` substitution, shared by filter and action files: each `<name>` (no
/// blanks or angle brackets inside, so the innermost of `<lt_<logtype>/x>` comes first) is
/// replaced by what `lookup(name, text_before_the_tag)` says, round after round until a round
/// changes nothing.
pub fn substitute_tags<E>(
    text: &str,
    max_rounds: usize,
    mut lookup: impl FnMut(&str, &str) -> Result<Tag, E>,
) -> Result<String, TagError<E>> {
    let mut current = text.to_string();
    for _ in 0..max_rounds {
        let mut changed = false;
        let mut out = String::with_capacity(current.len());
        let mut rest = current.as_str();
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find(['<', '>', ' ', '\t', '\n']) {
                Some(close) if close > 0 && after.as_bytes()[close] == b'>' => {
                    let name = &after[..close];
                    match lookup(name, &rest[..open]).map_err(TagError::Lookup)? {
                        Tag::Value(value) => {
                            out.push_str(&value);
                            changed = true;
                        }
                        Tag::Literal(literal) => out.push_str(&literal),
                        Tag::Keep => {
                            out.push('<');
                            out.push_str(name);
                            out.push('>');
                        }
                    }
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('<');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        current = out;
        if !changed {
            return Ok(current);
        }
    }
    Err(TagError::Unsettled(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IniFile {
        IniFile::parse(Path::new("t.conf"), text).unwrap()
    }

    fn stack_of(text: &str) -> IniStack {
        let mut stack = IniStack::default();
        stack.merge(&parse(text));
        stack
    }

    #[test]
    fn keys_values_comments_and_continuations() {
        let file = parse(
            "# comment\n[DEFAULT]\nBanTime = 10m ; inline\nlogpath = /a\n          /b\n\n   ; note\n\n[sshd]\nport: ssh\nurl = http://x;y\n",
        );
        assert_eq!(file.defaults.get("bantime").unwrap().text, "10m");
        assert_eq!(file.defaults.get("bantime").unwrap().at.line, 3);
        assert_eq!(file.defaults.get("logpath").unwrap().text, "/a\n/b");
        let sshd = file.section("sshd").unwrap();
        assert_eq!(sshd.at.line, 9);
        assert_eq!(sshd.options.get("port").unwrap().text, "ssh");
        // `;` without a blank before it is part of the value.
        assert_eq!(sshd.options.get("url").unwrap().text, "http://x;y");
    }

    #[test]
    fn a_blank_line_inside_a_value_is_kept_but_not_at_its_end() {
        let file = parse("[a]\nx = 1\n  2\n\n  3\n\ny = 4\n");
        let a = file.section("a").unwrap();
        assert_eq!(a.options.get("x").unwrap().text, "1\n2\n\n3");
        assert_eq!(a.options.get("y").unwrap().text, "4");
    }

    #[test]
    fn first_delimiter_splits_and_empty_values_are_values() {
        let file = parse("[a]\nfailregex = ^x=<HOST>: y$\nempty =\n");
        let a = file.section("a").unwrap();
        assert_eq!(a.options.get("failregex").unwrap().text, "^x=<HOST>: y$");
        assert_eq!(a.options.get("empty").unwrap().text, "");
    }

    #[test]
    fn what_fail2ban_refuses_is_an_error_with_its_line() {
        for (text, line) in [
            ("x = 1\n", 1),
            ("[a]\nx = 1\n[b]\n[a]\n", 4),
            ("[a]\nx = 1\nX = 2\n", 3),
            ("[a]\njust words\n", 2),
            ("[a]\n = 1\n", 2),
        ] {
            match IniFile::parse(Path::new("t.conf"), text) {
                Err(IniError::Syntax { at, .. }) => assert_eq!(at.line, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn interpolation_of_names_defaults_and_sections() {
        let stack = stack_of(
            "[DEFAULT]\nport = 0:65535\nbanaction = iptables-multiport\naction_ = %(banaction)s[port=\"%(port)s\", name=%(__name__)s]\naction = %(action_)s\npct = 100%%\n[sshd]\nport = ssh\n[nsd]\naction_ = %(default/action_)s[protocol=tcp]\nother = %(sshd/port)s\n",
        );
        assert_eq!(
            stack.get("sshd", "action").unwrap().unwrap().text,
            "iptables-multiport[port=\"ssh\", name=sshd]"
        );
        assert_eq!(
            stack.get("nsd", "action").unwrap().unwrap().text,
            "iptables-multiport[port=\"0:65535\", name=nsd][protocol=tcp]"
        );
        assert_eq!(stack.get("nsd", "other").unwrap().unwrap().text, "ssh");
        assert_eq!(stack.get("sshd", "pct").unwrap().unwrap().text, "100%");
        assert_eq!(stack.get("sshd", "missing").unwrap(), None);
        let action = stack.get("sshd", "action").unwrap().unwrap();
        assert_eq!(action.at.line, 5);
        assert!(action.via.iter().any(|at| at.line == 4));
    }

    #[test]
    fn interpolation_errors_name_the_option() {
        let stack = stack_of("[a]\nx = %(nope)s\nloop = %(loop)s\nbad = 5%\n");
        for option in ["x", "loop", "bad"] {
            match stack.get("a", option) {
                Err(IniError::Interpolation {
                    option: named, at, ..
                }) => {
                    assert_eq!(named, option);
                    assert!(at.line >= 2);
                }
                other => panic!("{option}: {other:?}"),
            }
        }
    }

    #[test]
    fn later_files_override_and_known_keeps_the_earlier_value() {
        let mut stack = IniStack::default();
        stack.merge(&parse(
            "[DEFAULT]\nbantime = 10m\n[sshd]\nport = ssh\nmaxretry = 5\n",
        ));
        stack.merge(
            &IniFile::parse(
                Path::new("t.local"),
                "[DEFAULT]\nbantime = 1h\n[sshd]\nport = %(known/port)s,2222\n",
            )
            .unwrap(),
        );
        assert_eq!(stack.get("sshd", "bantime").unwrap().unwrap().text, "1h");
        let port = stack.get("sshd", "port").unwrap().unwrap();
        assert_eq!(port.text, "ssh,2222");
        assert_eq!(&*port.at.file, Path::new("t.local"));
        assert_eq!(stack.get("sshd", "maxretry").unwrap().unwrap().text, "5");
        assert_eq!(stack.sections().collect::<Vec<_>>(), ["sshd"]);
        // What `known/` reads, raw: the section's earlier value, else the defaults'.
        assert_eq!(stack.known_raw("sshd", "port").unwrap().text, "ssh");
        assert_eq!(stack.known_raw("sshd", "bantime").unwrap().text, "1h");
        assert!(stack.known_raw("sshd", "nothing").is_none());
    }

    #[test]
    fn configuration_order_and_includes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "paths-common.conf",
            "[INCLUDES]\nafter = paths-overrides.local\n[DEFAULT]\nsshd_log = /var/log/secure\nseen = common\n",
        );
        write(
            "paths-debian.conf",
            "[INCLUDES]\nbefore = paths-common.conf\n[DEFAULT]\nsshd_log = /var/log/auth.log\n",
        );
        write("paths-overrides.local", "[DEFAULT]\nseen = overrides\n");
        write(
            "jail.conf",
            "[INCLUDES]\nbefore = paths-debian.conf\n[DEFAULT]\nmaxretry = 5\n[sshd]\nlogpath = %(sshd_log)s\n",
        );
        write("jail.d/b.conf", "[sshd]\nmaxretry = 2\n");
        write("jail.d/a.conf", "[sshd]\nmaxretry = 1\n");
        write("jail.local", "[sshd]\nmaxretry = 3\n");
        write("jail.d/z.local", "[sshd]\nmaxretry = 4\n");
        write("jail.d/.hidden.conf", "[sshd]\nmaxretry = 99\n");
        let stack = IniStack::read_config(dir.path(), "jail").unwrap();
        let names: Vec<String> = stack
            .files()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "paths-common.conf",
                "paths-overrides.local",
                "paths-debian.conf",
                "jail.conf",
                "jail.d/a.conf",
                "jail.d/b.conf",
                "jail.local",
                "jail.d/z.local"
            ]
        );
        let maxretry = stack.get("sshd", "maxretry").unwrap().unwrap();
        assert_eq!(maxretry.text, "4");
        assert!(maxretry.at.file.ends_with("jail.d/z.local"));
        let logpath = stack.get("sshd", "logpath").unwrap().unwrap();
        assert_eq!(logpath.text, "/var/log/auth.log");
        assert!(logpath.via[0].file.ends_with("paths-debian.conf"));
        assert_eq!(
            stack.get("sshd", "seen").unwrap().unwrap().text,
            "overrides"
        );
    }

    #[test]
    fn includes_that_go_round_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.conf"),
            "[INCLUDES]\nbefore = b.conf\n[Definition]\nx = a\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.conf"),
            "[INCLUDES]\nbefore = a.conf\n[Definition]\nx = b\ny = b\n",
        )
        .unwrap();
        let stack = IniStack::read_config(dir.path(), "a").unwrap();
        assert_eq!(stack.files().len(), 2);
        assert_eq!(stack.get("Definition", "x").unwrap().unwrap().text, "a");
        assert_eq!(stack.get("Definition", "y").unwrap().unwrap().text, "b");
    }

    #[test]
    fn tags_are_filled_innermost_first_and_loops_are_caught() {
        let options = |name: &str| match name {
            "logtype" => Tag::Value("file".into()),
            "lt_file/prefix" => Tag::Value("P:".into()),
            "self" => Tag::Value("<self>".into()),
            _ => Tag::Keep,
        };
        let filled = substitute_tags("<lt_<logtype>/prefix> <HOST> a<b", 10, |name, _| {
            Ok::<_, ()>(options(name))
        });
        assert_eq!(filled, Ok("P: <HOST> a<b".to_string()));
        assert!(matches!(
            substitute_tags("<self>", 10, |name, _| Ok::<_, ()>(options(name))),
            Err(TagError::Unsettled(_))
        ));
        assert_eq!(
            substitute_tags("x <bad>", 10, |_, _| Err::<Tag, _>("no")),
            Err(TagError::Lookup("no"))
        );
    }
}
