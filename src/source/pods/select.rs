//! Which pod containers a YAML jail's `pods:` source selects: globs on namespace, pod and
//! container name, all known from the log file's path, so selection needs nothing but the
//! files (no runtime socket, no Kubernetes API).

use crate::config::Glob;

use super::PodContainer;

/// `- pods: {namespace: "shop", pod: "wordpress-*", container: "wordpress"}`: every criterion
/// given must match; one not given matches every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: Option<Glob>,
    /// The pod's name (`wordpress-7d9f8-x2x4z`): a Deployment's pods share its prefix.
    pub pod: Option<Glob>,
    pub container: Option<Glob>,
}

impl PodSelector {
    /// Whether every criterion given matches `container`.
    pub fn matches(&self, container: &PodContainer) -> bool {
        let fits = |glob: &Option<Glob>, name: &str| glob.as_ref().is_none_or(|g| g.matches(name));
        fits(&self.namespace, &container.namespace)
            && fits(&self.pod, &container.pod)
            && fits(&self.container, &container.container)
    }

    /// Whether the selector names anything at all; a selector without criteria would read
    /// every pod of the node, which configuration refuses.
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.pod.is_none() && self.container.is_none()
    }
}

/// Whether any of `selectors` selects `container`: what a jail with several `pods:` sources
/// asks.
pub fn any_selects<'a>(
    selectors: impl IntoIterator<Item = &'a PodSelector>,
    container: &PodContainer,
) -> bool {
    selectors
        .into_iter()
        .any(|selector| selector.matches(container))
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
        assert!(by_pod.matches(&container));
        let all_three = PodSelector {
            namespace: glob("shop"),
            pod: glob("wordpress-*"),
            container: glob("word?ress"),
        };
        assert!(all_three.matches(&container));
        let other_namespace = PodSelector {
            namespace: glob("kube-*"),
            pod: glob("wordpress-*"),
            ..Default::default()
        };
        assert!(!other_namespace.matches(&container));
        let sidecar = PodSelector {
            container: glob("istio-proxy"),
            ..Default::default()
        };
        assert!(!sidecar.matches(&container));
        assert!(!by_pod.is_empty());
        assert!(PodSelector::default().is_empty());
    }

    #[test]
    fn a_glob_matches_the_whole_name() {
        let prefix_only = PodSelector {
            pod: glob("wordpress"),
            ..Default::default()
        };
        assert!(!prefix_only.matches(&wordpress()));
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
