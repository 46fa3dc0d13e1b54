//! Sources: where log lines come from (container json-file logs, the Docker API, host files,
//! pod CRI log files, the journal), each followed by its own task that sends batches of raw
//! lines downstream.
//!
//! Sources do not decode envelopes or run filters: they only read, remember where they are,
//! and hand lines on, so that a slow reader never holds up the matching of others.

pub mod docker;
pub mod file;
pub mod journal;
pub mod pods;
pub mod supervisor;
pub mod watch;

/// How many bytes of a file's beginning its position keeps: enough to hold a log line's time
/// stamp and more, so that two files written at different times differ in them.
pub const FILE_HEAD_BYTES: usize = 128;

/// Largest batch a source sends at once.
pub const MAX_BATCH_LINES: usize = 512;

/// Has the jail task create (or confirm) the jails a workload's labels or annotations define,
/// and gives the routes that count now: the planned ones plus each jail it accepted. Refused
/// jails come back as problems in label words (`labels \`logjail.jail.NAME.*\`: …`), for the
/// caller to word for its workload and report once. Docker discovery and the pods router share
/// it.
pub(crate) async fn define_workload_jails(
    jails: &tokio::sync::mpsc::Sender<crate::messages::JailEvent>,
    planned: crate::routing::ContainerRoutes,
) -> (Vec<crate::messages::Route>, Vec<String>) {
    let mut routes = planned.routes;
    let mut problems = planned.problems;
    for jail in planned.defined {
        let name = jail.config.name.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = jails
            .send(crate::messages::JailEvent::Define {
                config: Box::new(jail.config),
                definition: Box::new(jail.definition),
                reply,
            })
            .await;
        let answer = match sent {
            Ok(()) => answer
                .await
                .map_err(|_| "the jails are stopping".to_string())
                .and_then(|defined| defined.map_err(|refused| refused.to_string())),
            Err(_) => Err("the jails are stopping".to_string()),
        };
        match answer {
            Ok(()) => crate::routing::add_route(&mut routes, jail.route),
            Err(message) => problems.push(format!(
                "labels `{}{name}.*`: {message} (jail \"{name}\" skipped)",
                crate::routing::labels::JAIL_PREFIX,
            )),
        }
    }
    (routes, problems)
}
