//! Which YAML jails select a container without labels: `container: {name, image, label}`.

use std::collections::HashMap;

use crate::config::{ContainerSelector, JailConfig, SourceConfig};

/// What a selector looks at, as the container list, an event or `inspect` report it.
#[derive(Debug, Clone, Copy)]
pub struct ContainerFacts<'a> {
    /// Without Docker's leading `/`.
    pub name: &'a str,
    /// The image reference the container was created from (`wordpress:6`).
    pub image: &'a str,
    pub labels: &'a HashMap<String, String>,
}

/// Whether every criterion the selector gives matches.
pub fn selector_matches(selector: &ContainerSelector, facts: &ContainerFacts<'_>) -> bool {
    selector
        .name
        .as_ref()
        .is_none_or(|glob| glob.matches(facts.name))
        && selector
            .image
            .as_ref()
            .is_none_or(|glob| glob.matches(facts.image))
        && selector.label.as_ref().is_none_or(|wanted| {
            facts
                .labels
                .get(&wanted.key)
                .is_some_and(|value| wanted.value.as_ref().is_none_or(|v| v == value))
        })
}

/// Whether the jail reads logs and one of its `container:` sources selects the container.
pub fn jail_selects(jail: &JailConfig, facts: &ContainerFacts<'_>) -> bool {
    jail.enabled
        && !jail.is_manual()
        && jail.sources.iter().any(|source| match source {
            SourceConfig::Container(selector) => selector_matches(selector, facts),
            _ => false,
        })
}

/// Whether any jail has a `container:` source at all; without one, only labelled containers
/// need a closer look.
pub fn any_selector(jails: &[JailConfig]) -> bool {
    jails.iter().any(|jail| {
        jail.enabled
            && jail
                .sources
                .iter()
                .any(|source| matches!(source, SourceConfig::Container(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Glob, LabelMatch};

    fn facts<'a>(labels: &'a HashMap<String, String>) -> ContainerFacts<'a> {
        ContainerFacts {
            name: "wp-frontend-1",
            image: "wordpress:6.5",
            labels,
        }
    }

    #[test]
    fn every_given_criterion_must_match() {
        let labels: HashMap<String, String> =
            [("com.docker.compose.service".to_string(), "wp".to_string())].into();
        let facts = facts(&labels);
        let by_name = ContainerSelector {
            name: Some(Glob::new("wp-*").unwrap()),
            ..Default::default()
        };
        assert!(selector_matches(&by_name, &facts));
        let by_image = ContainerSelector {
            image: Some(Glob::new("wordpress:*").unwrap()),
            ..Default::default()
        };
        assert!(selector_matches(&by_image, &facts));
        let by_label = ContainerSelector {
            label: Some(LabelMatch::parse("com.docker.compose.service=wp").unwrap()),
            ..Default::default()
        };
        assert!(selector_matches(&by_label, &facts));
        let label_exists = ContainerSelector {
            label: Some(LabelMatch::parse("com.docker.compose.service").unwrap()),
            ..Default::default()
        };
        assert!(selector_matches(&label_exists, &facts));
        let wrong_value = ContainerSelector {
            label: Some(LabelMatch::parse("com.docker.compose.service=db").unwrap()),
            ..Default::default()
        };
        assert!(!selector_matches(&wrong_value, &facts));
        let name_and_wrong_image = ContainerSelector {
            name: Some(Glob::new("wp-*").unwrap()),
            image: Some(Glob::new("nginx*").unwrap()),
            label: None,
        };
        assert!(!selector_matches(&name_and_wrong_image, &facts));
    }
}
