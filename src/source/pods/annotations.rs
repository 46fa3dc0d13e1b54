//! Pod annotations (and labels) as jail words: `logjail.io/…` on a pod means what `logjail.…`
//! means on a Docker container.
//!
//! | on the pod | as a container label |
//! |---|---|
//! | `logjail.io/enable: "true"` | `logjail.enable=true` |
//! | `logjail.io/jails: "sshd,wordpress"` | `logjail.jails=sshd,wordpress` |
//! | `logjail.io/jail.wp.filter: wordpress` | `logjail.jail.wp.filter=wordpress` |
//!
//! `logjail.io/` is a prefix in Kubernetes' own form (a DNS name, then `/`), as
//! `app.kubernetes.io/` is. Annotations are the way to write them: label values may not hold
//! commas, spaces or `/`, so `logjail.io/jails: "sshd,wordpress"` or an `ignoreip` list fit only
//! an annotation. A label works where its value is a valid label value (`logjail.io/jails: wp`,
//! `logjail.io/jail.wp.maxretry: "3"`); when a pod has the same key as both, the annotation is
//! used and the label reported.
//!
//! The words are then read by [`crate::routing::labels::parse`], the one place that knows
//! them; only the keys in its messages are given back as they were written on the pod, with
//! the pod's namespace and name.

use std::collections::HashMap;
use std::fmt;

use crate::routing::labels::{self, ContainerLabels, LabelContext};

use super::cri::PodSandboxInfo;

/// What every logjail annotation (or label) of a pod starts with.
pub const POD_PREFIX: &str = "logjail.io/";

/// Where a jail word was written on the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenAs {
    Annotation,
    Label,
}

impl fmt::Display for WrittenAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WrittenAs::Annotation => "annotation",
            WrittenAs::Label => "label",
        })
    }
}

/// A pod's jail words, in the shape container labels have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodJailWords {
    /// `logjail.enable`, `logjail.jails`, `logjail.jail.NAME.KEY`: what
    /// [`labels::parse`] reads.
    pub labels: HashMap<String, String>,
    /// For each key of `labels`: the key as written on the pod, and whether as an annotation
    /// or a label.
    pub written: HashMap<String, (String, WrittenAs)>,
    /// Labels passed over because an annotation gives the same key.
    pub shadowed: Vec<PodWordError>,
}

/// One jail word of a pod that cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "pod {namespace}/{pod}: {written_as} `{key}: {value}`: {message}{}",
    .jail.as_ref().map(|jail| format!(" (jail \"{jail}\" skipped)")).unwrap_or_default()
)]
pub struct PodWordError {
    pub namespace: String,
    pub pod: String,
    /// The key as written on the pod (`logjail.io/jail.wp.maxretry`).
    pub key: String,
    pub written_as: WrittenAs,
    pub value: String,
    pub message: String,
    /// The jail the word belongs to and that is skipped because of it, if any.
    pub jail: Option<String>,
}

/// What a pod's annotations and labels ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodJails {
    /// As for a container: opt-in or out, jails joined, jails defined (only the valid ones).
    pub parsed: ContainerLabels,
    /// Every word that cannot be used, naming the pod and the key; only its jail is skipped.
    pub errors: Vec<PodWordError>,
}

/// Whether the pod has any logjail annotation or label: the cheap check before anything else.
pub fn has_jail_words(pod: &PodSandboxInfo) -> bool {
    pod.annotations
        .keys()
        .chain(pod.labels.keys())
        .any(|key| key.starts_with(POD_PREFIX))
}

/// Turns a pod's `logjail.io/` annotations and labels into container-label keys
/// (`logjail.io/jails` → `logjail.jails`), annotations winning over labels.
pub fn jail_words(pod: &PodSandboxInfo) -> PodJailWords {
    let mut words = PodJailWords::default();
    for (key, value) in &pod.annotations {
        if let Some(rest) = key.strip_prefix(POD_PREFIX) {
            let label = format!("{}{rest}", labels::PREFIX);
            words.labels.insert(label.clone(), value.clone());
            words
                .written
                .insert(label, (key.clone(), WrittenAs::Annotation));
        }
    }
    let mut pod_labels: Vec<(&String, &String)> = pod
        .labels
        .iter()
        .filter(|(key, _)| key.starts_with(POD_PREFIX))
        .collect();
    // Reported in a stable order, whatever the map's.
    pod_labels.sort();
    for (key, value) in pod_labels {
        let rest = &key[POD_PREFIX.len()..];
        let label = format!("{}{rest}", labels::PREFIX);
        match words.labels.get(&label) {
            Some(annotated) if annotated == value => {}
            Some(annotated) => words.shadowed.push(PodWordError {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                key: key.clone(),
                written_as: WrittenAs::Label,
                value: value.clone(),
                message: format!(
                    "ignored: the annotation of the same key says \"{annotated}\", and \
                     annotations win"
                ),
                jail: None,
            }),
            None => {
                words.labels.insert(label.clone(), value.clone());
                words.written.insert(label, (key.clone(), WrittenAs::Label));
            }
        }
    }
    words
}

/// Reads a pod's jail words as container labels are read; errors name the pod and the key as
/// written on it.
pub fn parse(pod: &PodSandboxInfo, context: &LabelContext<'_>) -> PodJails {
    let words = jail_words(pod);
    let parsed = labels::parse(&words.labels, context);
    let mut errors = words.shadowed.clone();
    for error in &parsed.errors {
        let (key, written_as) = words
            .written
            .get(&error.label)
            .cloned()
            .unwrap_or_else(|| (error.label.clone(), WrittenAs::Annotation));
        errors.push(PodWordError {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            // The message may quote container-label keys (`logjail.jail.wp.filter=NAME`):
            // said in the pod's words instead.
            message: in_pod_words(&error.message),
            key,
            written_as,
            value: error.value.clone(),
            jail: error.jail.clone(),
        });
    }
    PodJails { parsed, errors }
}

/// A message of [`labels::parse`] with its container-label keys written as pod keys:
/// `` `logjail.jails=wp` `` becomes `` `logjail.io/jails: wp` ``, a bare `logjail.enable`
/// becomes `logjail.io/enable`.
pub fn in_pod_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for (index, part) in message.split('`').enumerate() {
        if index > 0 {
            out.push('`');
        }
        let quoted = index % 2 == 1;
        if quoted && let Some(rest) = part.strip_prefix(labels::PREFIX) {
            out.push_str(POD_PREFIX);
            match rest.split_once('=') {
                Some((key, value)) => {
                    out.push_str(key);
                    out.push_str(": ");
                    out.push_str(value);
                }
                None => out.push_str(rest),
            }
        } else {
            out.push_str(&pod_prefixed_words(part));
        }
    }
    out
}

/// `logjail.x` words in running text, as pod keys.
fn pod_prefixed_words(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.strip_prefix(labels::PREFIX) {
            Some(rest) => format!("{POD_PREFIX}{rest}"),
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::DefaultsConfig;
    use crate::routing::labels::LabelContext;

    fn pod(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> PodSandboxInfo {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        PodSandboxInfo {
            id: "sandbox".into(),
            namespace: "shop".into(),
            name: "wordpress-0".into(),
            uid: "u1".into(),
            attempt: 0,
            state: super::super::cri::SandboxState::Ready,
            created_at: 0,
            labels: map(labels),
            annotations: map(annotations),
            log_directory: None,
        }
    }

    fn parse_with(pod: &PodSandboxInfo) -> PodJails {
        let defaults = DefaultsConfig::default();
        let filters: BTreeSet<String> = ["wordpress", "sshd"].map(String::from).into();
        let yaml_jails = BTreeSet::from(["sshd".to_string()]);
        let context = LabelContext {
            defaults: &defaults,
            filters: &filters,
            yaml_jails: &yaml_jails,
            chain_prefix: "LJ",
            host_network: true,
        };
        parse(pod, &context)
    }

    #[test]
    fn annotations_are_the_container_label_words_under_logjail_io() {
        let pod = pod(
            &[
                ("logjail.io/jails", "sshd, wp"),
                ("logjail.io/jail.wp.filter", "wordpress"),
                ("logjail.io/jail.wp.maxretry", "3"),
                ("logjail.io/jail.wp.ignoreip", "10.0.0.0/8, 192.168.1.1"),
                ("kubernetes.io/config.seen", "2026-12-01T20:47:24Z"),
            ],
            &[
                ("app", "wordpress"),
                ("io.kubernetes.pod.name", "wordpress-0"),
            ],
        );
        assert!(has_jail_words(&pod));
        let words = jail_words(&pod);
        assert_eq!(words.labels.len(), 4);
        assert_eq!(words.labels["logjail.jails"], "sshd, wp");
        assert_eq!(
            words.written["logjail.jail.wp.maxretry"],
            (
                "logjail.io/jail.wp.maxretry".to_string(),
                WrittenAs::Annotation
            )
        );
        let jails = parse_with(&pod);
        assert!(jails.errors.is_empty(), "{:?}", jails.errors);
        assert_eq!(jails.parsed.jails, ["sshd", "wp"]);
        assert_eq!(jails.parsed.defined.len(), 1);
        let wp = &jails.parsed.defined[0];
        assert_eq!(wp.name, "wp");
        assert_eq!(wp.maxretry, 3);
        assert_eq!(wp.ignoreip.len(), 2);
        assert!(jails.parsed.wants_watching());
    }

    #[test]
    fn a_bad_annotation_skips_only_its_jail_and_names_pod_and_key() {
        let pod = pod(
            &[
                ("logjail.io/jail.good.filter", "wordpress"),
                ("logjail.io/jail.bad.filter", "wordpress"),
                ("logjail.io/jail.bad.maxretry", "lots"),
            ],
            &[],
        );
        let jails = parse_with(&pod);
        let defined: Vec<&str> = jails
            .parsed
            .defined
            .iter()
            .map(|j| j.name.as_str())
            .collect();
        assert_eq!(defined, ["good"]);
        assert_eq!(jails.errors.len(), 1, "{:?}", jails.errors);
        let error = &jails.errors[0];
        assert_eq!(error.key, "logjail.io/jail.bad.maxretry");
        assert_eq!(error.jail.as_deref(), Some("bad"));
        let text = error.to_string();
        assert!(
            text.starts_with(
                "pod shop/wordpress-0: annotation `logjail.io/jail.bad.maxretry: lots`: "
            ),
            "{text}"
        );
        assert!(text.ends_with("(jail \"bad\" skipped)"), "{text}");
    }

    #[test]
    fn labels_work_and_annotations_win_over_them() {
        let pod = pod(
            &[("logjail.io/jail.wp.maxretry", "3")],
            &[
                ("logjail.io/jail.wp.filter", "wordpress"),
                ("logjail.io/jail.wp.maxretry", "9"),
            ],
        );
        let jails = parse_with(&pod);
        assert_eq!(jails.parsed.defined.len(), 1);
        assert_eq!(jails.parsed.defined[0].maxretry, 3);
        assert_eq!(jails.errors.len(), 1);
        assert_eq!(jails.errors[0].written_as, WrittenAs::Label);
        assert!(
            jails.errors[0].to_string().contains("annotations win"),
            "{}",
            jails.errors[0]
        );
    }

    #[test]
    fn unknown_words_and_yaml_jail_names_are_reported_in_the_pods_words() {
        let pod = pod(
            &[
                ("logjail.io/enabled", "true"),
                ("logjail.io/jail.sshd.filter", "sshd"),
            ],
            &[("logjail.io/jail.wp", "x")],
        );
        let jails = parse_with(&pod);
        let texts: Vec<String> = jails.errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.contains("annotation `logjail.io/enabled: true`")
                    && t.contains("logjail.io/enable")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("label `logjail.io/jail.wp: x`")
                    && t.contains("logjail.io/jail.NAME.KEY")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("`logjail.io/jails: sshd`")),
            "{texts:?}"
        );
        assert!(
            texts.iter().all(|t| !t.contains("logjail.jail")),
            "{texts:?}"
        );
    }

    #[test]
    fn a_pod_without_words_asks_for_nothing() {
        let pod = pod(&[("kubernetes.io/config.source", "api")], &[("app", "x")]);
        assert!(!has_jail_words(&pod));
        let jails = parse_with(&pod);
        assert!(!jails.parsed.wants_watching());
        assert!(jails.errors.is_empty());
    }
}
