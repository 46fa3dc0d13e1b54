//! The pods source: the CRI log files the kubelet has the runtime write for every pod
//! container, `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log`, and what the node's
//! runtime says about its pods (labels, annotations) through its CRI socket.
//!
//! # Which files
//!
//! The path alone tells namespace, pod, uid, container and attempt ([`path`]), so jails can
//! select pods by namespace, pod and container globs ([`crate::routing::pod_select`]) with access to nothing but
//! the files. [`discovery`] looks at the log directory when inotify says something appeared
//! or went (and every few seconds in case it missed it) and keeps one follower per wanted
//! container ([`follower`]):
//! - a new pod or container: its newest `<n>.log` is read from its start;
//! - a restart (`<n>` incremented): the old file is read to its end, then the new one from
//!   its start, so that no line is lost and the order is kept;
//! - the kubelet's rotation (`0.log` renamed to `0.log.<stamp>`, the runtime told to reopen
//!   `0.log` with `ReopenContainerLog`, old files later gzipped) is followed by the file
//!   follower of [`crate::source::file`]: the renamed file is read until the new one has
//!   lines, nothing is read twice;
//! - a deleted pod: what is left is read, then its follower stops.
//!
//! Each line is handed on raw, with its position; the matcher's envelope decoder
//! ([`crate::filter::envelope`]) reads the CRI stamp (any number of fraction digits), the
//! stream, and joins `P` pieces up to the bound Docker lines have. A restarted logjail resumes
//! every container at its stored position, in whichever attempt's file (current or rotated)
//! that position is.
//!
//! # Pods' jail words
//!
//! [`cri`] asks the runtime (`ListPodSandbox`, `PodSandboxStatus`) for each pod's labels and
//! annotations, which the kubelet copies into the pod's sandbox: no Kubernetes API, no RBAC.
//! [`annotations`] reads `logjail.io/…` annotations (and labels) as the same words as Docker
//! labels (`logjail.io/jails`, `logjail.io/jail.NAME.KEY`), with errors naming the pod and the
//! key as written on it.

pub mod annotations;
pub mod cri;
pub mod discovery;
mod follower;
pub mod path;
pub mod scan;

pub use discovery::{PodCommand, PodEvent, PodSourceSettings, PodWiring};
pub use path::{PodContainer, PodLogFile};

pub use crate::config::DEFAULT_POD_LOG_DIR as DEFAULT_LOG_DIR;
