//! Which pod containers a YAML jail's `pods:` source selects: globs on namespace, pod and
//! container name, all known from the log file's path, so selection needs nothing but the
//! files (no runtime socket, no Kubernetes API).

use crate::config::{Glob, PodSelector};
use crate::messages::PodContainer;

/// Whether every criterion `selector` gives matches `container`; one not given matches every
/// name.
pub fn pod_selects(selector: &PodSelector, container: &PodContainer) -> bool {
    let fits = |glob: &Option<Glob>, name: &str| glob.as_ref().is_none_or(|g| g.matches(name));
    fits(&selector.namespace, &container.namespace)
        && fits(&selector.pod, &container.pod)
        && fits(&selector.container, &container.container)
}

/// Whether any of `selectors` selects `container`: what a jail with several `pods:` sources
/// asks.
pub fn any_selects<'a>(
    selectors: impl IntoIterator<Item = &'a PodSelector>,
    container: &PodContainer,
) -> bool {
    selectors
        .into_iter()
        .any(|selector| pod_selects(selector, container))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wordpress() -> PodContainer {
        PodContainer {
            namespace: "shop".into(),
            pod: "wordpress-7d9f8-x2x4z".into(),
            uid: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
            container: "wordpress".into(),
        }
    }

    fn glob(pattern: &str) -> Option<Glob> {
        Some(Glob::new(pattern).unwrap())
    }

    #[test]
    fn every_given_criterion_must_match() {
        let container = wordpress();
        let by_pod = PodSelector {
            pod: glob("wordpress-*"),
            ..Default::default()
        };
        assert!(pod_selects(&by_pod, &container));
        let all_three = PodSelector {
            namespace: glob("shop"),
            pod: glob("wordpress-*"),
            container: glob("word?ress"),
        };
        assert!(pod_selects(&all_three, &container));
        let other_namespace = PodSelector {
            namespace: glob("kube-*"),
            pod: glob("wordpress-*"),
            ..Default::default()
        };
        assert!(!pod_selects(&other_namespace, &container));
        let sidecar = PodSelector {
            container: glob("istio-proxy"),
            ..Default::default()
        };
        assert!(!pod_selects(&sidecar, &container));
        assert!(!by_pod.is_empty());
        assert!(PodSelector::default().is_empty());
    }

    #[test]
    fn a_glob_matches_the_whole_name() {
        let prefix_only = PodSelector {
            pod: glob("wordpress"),
            ..Default::default()
        };
        assert!(!pod_selects(&prefix_only, &wordpress()));
        assert!(any_selects(
            [
                &prefix_only,
                &PodSelector {
                    namespace: glob("s[a-z]op"),
                    ..Default::default()
                }
            ],
            &wordpress()
        ));
    }
}
