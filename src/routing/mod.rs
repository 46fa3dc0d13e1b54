//! Routing: which origins feed which jails, with which filters, decided in one place.
//!
//! The configuration's jails name host files, journal selections and container selectors;
//! container labels name jails and define their own ([`labels`]). This module turns both into
//! [`Route`]s (origin → jail, filter) and into the label-defined jails the jail task must
//! create, so that the file, journal and Docker sources only read what it says they should
//! and tell the matcher which routes their lines take.
//!
//! ```text
//!  configuration ─┐
//!                 ├─► routing ──► routes per origin ──► matcher
//!  labels ────────┘          └──► label jail definitions ──► jail task
//! ```

pub mod labels;
pub mod pod_select;
pub mod select;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, JailConfig, JournalSelector, SourceConfig};
use crate::filter::Filter;
use crate::messages::Origin;
use crate::messages::{DefinitionKind, JailDefinition, PodContainer};

use labels::ContainerLabels;
use select::{ContainerFacts, jail_selects};

pub use crate::messages::Route;

/// Why routes could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("filter \"{filter}\" of jail \"{jail}\" is not compiled")]
    MissingFilter { jail: String, filter: String },
}

/// Compiled filters by name: the configuration's, compiled once and shared by every source,
/// and built-ins compiled the first time a label names one.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    compiled: BTreeMap<String, Arc<Filter>>,
}

impl Filters {
    /// The configuration's filters (`Config::filters` holds the built-ins its jails use too).
    pub fn of(config: &Config) -> Filters {
        Filters {
            compiled: config
                .filters
                .iter()
                .map(|(name, filter)| (name.clone(), Arc::new(filter.clone())))
                .collect(),
        }
    }

    /// The configuration's filter of that name, if compiled.
    pub fn get(&self, name: &str) -> Option<&Arc<Filter>> {
        self.compiled.get(name)
    }

    /// The filter names a label may use: the configuration's and every built-in one.
    pub fn label_choices(&self) -> BTreeSet<String> {
        self.compiled
            .keys()
            .cloned()
            .chain(crate::filter::builtin::names().map(String::from))
            .collect()
    }

    /// A filter by name: the configuration's, else a built-in compiled now (and kept).
    pub fn get_or_builtin(&mut self, name: &str) -> Option<Arc<Filter>> {
        if let Some(filter) = self.compiled.get(name) {
            return Some(filter.clone());
        }
        let spec = crate::filter::builtin::spec(name)?;
        match Filter::compile(name, &spec) {
            Ok(filter) => {
                let filter = Arc::new(filter);
                self.compiled.insert(name.to_string(), filter.clone());
                Some(filter)
            }
            Err(errors) => {
                tracing::error!(filter = name, ?errors, "built-in filter does not compile");
                None
            }
        }
    }
}

/// The route of `jail` (its name with its compiled filter); `None` for a manual jail.
pub fn jail_route(jail: &JailConfig, filters: &Filters) -> Result<Option<Route>, RoutingError> {
    let Some(filter_name) = &jail.filter else {
        return Ok(None);
    };
    let filter = filters
        .get(filter_name)
        .ok_or_else(|| RoutingError::MissingFilter {
            jail: jail.name.clone(),
            filter: filter_name.clone(),
        })?;
    Ok(Some(route_to(jail, filter)))
}

/// Every host file to follow, each with the jails that read it. Globs are expanded now (in
/// the file name only); a plain path that does not exist yet is followed (waited for) unless
/// the source says it is optional.
pub fn file_routes(
    jails: &[JailConfig],
    filters: &Filters,
) -> Result<BTreeMap<PathBuf, Vec<Route>>, RoutingError> {
    let mut routes: BTreeMap<PathBuf, Vec<Route>> = BTreeMap::new();
    for jail in jails.iter().filter(|j| j.enabled) {
        let Some(route) = jail_route(jail, filters)? else {
            continue;
        };
        for source in &jail.sources {
            let SourceConfig::File { path, optional } = source else {
                continue;
            };
            let mut paths = expand_file_glob(path.as_str(), path.has_wildcards());
            if paths.is_empty() && !path.has_wildcards() {
                if *optional {
                    tracing::info!(jail = %jail.name, file = path.as_str(), "optional file absent; not watched");
                } else {
                    tracing::warn!(jail = %jail.name, file = path.as_str(), "no such file yet; waiting for it");
                    paths.push(PathBuf::from(path.as_str()));
                }
            }
            for file in paths {
                routes.entry(file).or_default().push(route.clone());
            }
        }
    }
    Ok(routes)
}

/// The files a `file:` source names now: the path itself, or what a glob matches in its
/// directory (wildcards in the file name only).
fn expand_file_glob(pattern: &str, has_wildcards: bool) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    if !has_wildcards {
        return if path.exists() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let Ok(glob) = crate::config::Glob::new(&name.to_string_lossy()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(pattern, "cannot read the directory of a file pattern");
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter(|entry| glob.matches(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// Every distinct journal selection (canonical: equal selections compare equal, so two jails
/// reading the same entries share one follower), each with the jails that read it.
pub fn journal_routes(
    jails: &[JailConfig],
    filters: &Filters,
) -> Result<Vec<(JournalSelector, Vec<Route>)>, RoutingError> {
    let mut routes: Vec<(JournalSelector, Vec<Route>)> = Vec::new();
    for jail in jails.iter().filter(|j| j.enabled) {
        let Some(route) = jail_route(jail, filters)? else {
            continue;
        };
        for source in &jail.sources {
            let SourceConfig::Journal(selector) = source else {
                continue;
            };
            let selector = selector.canonical();
            let route = route.clone();
            match routes.iter_mut().find(|(known, _)| *known == selector) {
                // The same selection twice in one jail counts its entries once.
                Some((_, jail_routes)) if jail_routes.iter().any(|r| r.jail == route.jail) => {}
                Some((_, jail_routes)) => jail_routes.push(route),
                None => routes.push((selector, vec![route])),
            }
        }
    }
    Ok(routes)
}

/// A jail a container's labels define, for the jail task to create (or confirm) before its
/// route counts.
#[derive(Debug, Clone)]
pub struct LabelJail {
    pub config: JailConfig,
    /// What defined it, stored so that the jail and its bans come back after a restart.
    pub definition: JailDefinition,
    pub route: Route,
}

/// What a container feeds, before the jail task has created the jails its labels define.
#[derive(Debug, Default)]
pub struct ContainerRoutes {
    /// Jails of the configuration file: selected by a `container:` source or named by
    /// `logjail.jails`.
    pub routes: Vec<Route>,
    /// Jails the labels define; their routes join `routes` once the jail task accepts them.
    pub defined: Vec<LabelJail>,
    /// Labels that cannot be used, one message each, for the caller to report (it names the
    /// container).
    pub problems: Vec<String>,
}

/// The jails a container feeds: configuration jails whose selectors match it, jails its
/// labels name, and jails its labels define (`parsed`, read with [`labels::parse`]).
pub fn container_routes(
    jails: &[JailConfig],
    filters: &mut Filters,
    origin: &Origin,
    facts: &ContainerFacts<'_>,
    parsed: &ContainerLabels,
    host_network: bool,
) -> ContainerRoutes {
    // Known by name, which outlives the id when compose re-creates the container.
    let defined_by = match origin {
        Origin::Container { name, id } if name.is_empty() => format!("container {id}"),
        Origin::Container { name, .. } => format!("container {name}"),
        other => other.to_string(),
    };
    workload_routes(
        jails,
        filters,
        |jail| jail_selects(jail, facts),
        Definer {
            words: facts.labels,
            parsed,
            defined_by,
            kind: DefinitionKind::ContainerLabels,
            host_network,
            needs_ports: false,
        },
    )
}

/// Why a pod-defined jail must name its ports: it bans before DNAT (raw `PREROUTING` on a
/// Kubernetes node), where every port of the node passes, its own sshd included. Its ports
/// (the hostPorts or node ports clients use) confine it to the ways into that pod.
pub const POD_JAIL_NEEDS_PORT: &str = "a jail defined by a pod must say which ports lead to \
     the pod (`logjail.jail.NAME.port`, its hostPort or node port): it bans before DNAT, where \
     every port of the node passes";

/// The jails a pod container feeds: configuration jails whose `pods:` selectors match it,
/// jails its annotations name, and jails its annotations define (`words`, already in
/// container-label form, read into `parsed` with [`labels::parse`]). Pod-defined jails ban
/// where clients come in before DNAT, on the ports they name (see [`POD_JAIL_NEEDS_PORT`]).
pub fn pod_routes(
    jails: &[JailConfig],
    filters: &mut Filters,
    container: &PodContainer,
    words: &HashMap<String, String>,
    parsed: &ContainerLabels,
) -> ContainerRoutes {
    workload_routes(
        jails,
        filters,
        |jail| {
            jail.sources.iter().any(|source| match source {
                SourceConfig::Pods(selector) => pod_select::pod_selects(selector, container),
                _ => false,
            })
        },
        Definer {
            words,
            parsed,
            defined_by: format!("pod {}/{}", container.namespace, container.pod),
            kind: DefinitionKind::PodAnnotations,
            host_network: false,
            needs_ports: true,
        },
    )
}

/// What defines jails for a workload (a container's labels, a pod's annotations).
struct Definer<'a> {
    /// The words as read (container-label form), stored with each definition.
    words: &'a HashMap<String, String>,
    parsed: &'a ContainerLabels,
    defined_by: String,
    kind: DefinitionKind,
    host_network: bool,
    /// Its jails must name their ports (see [`POD_JAIL_NEEDS_PORT`]).
    needs_ports: bool,
}

fn workload_routes(
    jails: &[JailConfig],
    filters: &mut Filters,
    selected: impl Fn(&JailConfig) -> bool,
    definer: Definer<'_>,
) -> ContainerRoutes {
    let parsed = definer.parsed;
    let mut result = ContainerRoutes {
        problems: parsed.errors.iter().map(ToString::to_string).collect(),
        ..ContainerRoutes::default()
    };
    for jail in jails {
        if jail.enabled
            && selected(jail)
            && let Some(filter) = jail.filter.as_ref().and_then(|f| filters.get(f))
        {
            add_route(&mut result.routes, route_to(jail, filter));
        }
    }
    if !parsed.wants_watching() {
        return result;
    }
    let jails_label = definer
        .words
        .get(labels::JAILS)
        .cloned()
        .unwrap_or_default();
    for name in &parsed.jails {
        if parsed.defined.iter().any(|jail| &jail.name == name) {
            continue;
        }
        match jails.iter().find(|jail| &jail.name == name) {
            Some(jail) if jail.is_manual() => result.problems.push(format!(
                "label `{}={jails_label}`: jail \"{name}\" is manual (it bans from the \
                 command line only and reads no logs)",
                labels::JAILS
            )),
            Some(jail) if !jail.enabled => result.problems.push(format!(
                "label `{}={jails_label}`: jail \"{name}\" is disabled in the configuration",
                labels::JAILS
            )),
            Some(jail) => {
                if let Some(filter) = jail.filter.as_ref().and_then(|f| filters.get(f)) {
                    add_route(&mut result.routes, route_to(jail, filter));
                }
            }
            None => result.problems.push(format!(
                "label `{}={jails_label}`: no jail \"{name}\" in the configuration or in \
                 this container's `{}NAME.*` labels",
                labels::JAILS,
                labels::JAIL_PREFIX
            )),
        }
    }
    for jail in &parsed.defined {
        if definer.needs_ports && matches!(jail.ports, crate::config::Ports::All) {
            result.problems.push(format!(
                "labels `{}{}.*`: {POD_JAIL_NEEDS_PORT} (jail \"{}\" skipped)",
                labels::JAIL_PREFIX,
                jail.name,
                jail.name
            ));
            continue;
        }
        let filter_name = jail.filter.clone().unwrap_or_default();
        let Some(filter) = filters.get_or_builtin(&filter_name) else {
            result.problems.push(format!(
                "label `{}{}.filter`: filter \"{filter_name}\" does not compile (jail \"{}\" skipped)",
                labels::JAIL_PREFIX,
                jail.name,
                jail.name
            ));
            continue;
        };
        result.defined.push(LabelJail {
            config: jail.clone(),
            definition: labels::definition_of(
                definer.kind,
                &jail.name,
                definer.words,
                &definer.defined_by,
                definer.host_network,
            ),
            route: route_to(jail, &filter),
        });
    }
    result
}

/// Adds `route` to `routes` unless its jail is there already.
pub fn add_route(routes: &mut Vec<Route>, route: Route) {
    if !routes.iter().any(|known| known.jail == route.jail) {
        routes.push(route);
    }
}

fn route_to(jail: &JailConfig, filter: &Arc<Filter>) -> Route {
    Route {
        jail: Arc::from(jail.name.as_str()),
        filter: filter.clone(),
    }
}
