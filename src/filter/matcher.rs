//! The matcher task: unwraps each line's envelope and runs the filters of the jails its origin
//! feeds, turning lines into failures for the jail task. It also keeps the sources' read
//! positions, since a line counts as read only once it has been matched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::address::RefusalWarnings;
use crate::clock::SharedClock;
use crate::filter::Verdict;
use crate::filter::envelope::{Decoder, Record};
use crate::filter::session::Sessions;
pub use crate::messages::Route;
use crate::messages::{LineBatch, Origin, Position};

use crate::messages::MatcherControl;
use crate::messages::StoreRequest;
use crate::messages::{FailureEvent, JailEvent};
use crate::store::task::StoreHandle;

/// Line counts per origin, for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OriginCounts {
    pub lines: u64,
    pub failures: u64,
}

struct OriginState {
    decoder: Decoder,
    routes: Arc<[Route]>,
    /// Per route, the sessions of its filter on this origin (Fail2Ban's `<F-MLFID>`), for
    /// filters that keep them. A new set of routes (a reload) starts them afresh.
    sessions: Vec<Option<Sessions>>,
    counts: OriginCounts,
    /// Seconds between the last timed line's own time and its matching.
    lag_seconds: Option<f64>,
}

/// How often read positions are written to the store while lines flow.
const POSITION_FLUSH: Duration = Duration::from_secs(1);

/// Runs until every line sender is gone, then writes the last positions.
pub async fn run(
    mut lines: mpsc::Receiver<LineBatch>,
    mut control: mpsc::Receiver<MatcherControl>,
    failures: mpsc::Sender<JailEvent>,
    store: StoreHandle,
    clock: SharedClock,
) {
    let mut origins: HashMap<Arc<Origin>, OriginState> = HashMap::new();
    let mut dirty_positions: HashMap<String, Position> = HashMap::new();
    let mut flush_timer = tokio::time::interval(POSITION_FLUSH);
    flush_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut control_open = true;
    let mut refusals = RefusalWarnings::new();
    loop {
        tokio::select! {
            // Routes first: a source is attached before its follower starts sending.
            biased;
            request = control.recv(), if control_open => match request {
                Some(request) => apply_control(request, &mut origins, &store).await,
                None => control_open = false,
            },
            _ = flush_timer.tick() => {
                flush_positions(&mut dirty_positions, &store, &clock).await;
            }
            batch = lines.recv() => {
                let Some(batch) = batch else { break };
                // Routes sent before this batch's lines must be in place.
                while let Ok(request) = control.try_recv() {
                    apply_control(request, &mut origins, &store).await;
                }
                match_batch(
                    batch,
                    &mut origins,
                    &mut dirty_positions,
                    &failures,
                    &clock,
                    &mut refusals,
                )
                .await;
            }
        }
    }
    flush_positions(&mut dirty_positions, &store, &clock).await;
    tracing::debug!("matcher stopped");
}

async fn apply_control(
    request: MatcherControl,
    origins: &mut HashMap<Arc<Origin>, OriginState>,
    store: &StoreHandle,
) {
    match request {
        MatcherControl::Attach { origin, routes } => match origins.get_mut(&origin) {
            Some(state) => {
                state.sessions = sessions_for(&routes);
                state.routes = routes;
            }
            None => {
                origins.insert(
                    origin,
                    OriginState {
                        decoder: Decoder::new(),
                        sessions: sessions_for(&routes),
                        routes,
                        counts: OriginCounts::default(),
                        lag_seconds: None,
                    },
                );
            }
        },
        MatcherControl::Stats(answer) => {
            let stats = origins
                .iter()
                .map(|(origin, state)| crate::metrics::SourceMetrics {
                    source: origin.to_string(),
                    lines_read: state.counts.lines,
                    lines_matched: state.counts.failures,
                    read_lag_seconds: state.lag_seconds,
                })
                .collect();
            let _ = answer.send(stats);
        }
        MatcherControl::Detach {
            origin,
            forget_position,
        } => {
            origins.remove(&origin);
            if forget_position {
                store
                    .send(StoreRequest::ForgetPosition(origin.position_key()))
                    .await;
            }
        }
    }
}

async fn match_batch(
    batch: LineBatch,
    origins: &mut HashMap<Arc<Origin>, OriginState>,
    dirty_positions: &mut HashMap<String, Position>,
    failures: &mpsc::Sender<JailEvent>,
    clock: &SharedClock,
    refusals: &mut RefusalWarnings,
) {
    let Some(state) = origins.get_mut(&batch.origin) else {
        tracing::debug!(origin = %batch.origin, "lines from a source with no jail; dropped");
        return;
    };
    let now = clock.now();
    let mut last_position = None;
    let mut found = Vec::new();
    for (line_index, line) in batch.lines.iter().enumerate() {
        state.counts.lines += 1;
        if let Some(position) = &line.position {
            last_position = Some(position);
        }
        let Some(record) = state.decoder.push_at(&line.text, now) else {
            continue;
        };
        if let Some(time) = record.time {
            state.lag_seconds = Some((now - time).as_seconds_f64().max(0.0));
        }
        judge(
            &record,
            &state.routes,
            &mut state.sessions,
            &batch.origin,
            now,
            line_index,
            &mut found,
            refusals,
        );
    }
    // Lines, not failures: one line failing in two jails counts once.
    let mut matched_lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();
    matched_lines.dedup();
    state.counts.failures += matched_lines.len() as u64;
    let found: Vec<FailureEvent> = found.into_iter().map(|(_, failure)| failure).collect();
    for failure in found {
        if failures.send(JailEvent::Failure(failure)).await.is_err() {
            return;
        }
    }
    if let Some(position) = last_position {
        // One copy per batch: only the last position is stored.
        dirty_positions.insert(batch.origin.position_key(), position.clone());
    }
}

fn sessions_for(routes: &[Route]) -> Vec<Option<Sessions>> {
    routes
        .iter()
        .map(|route| route.filter.uses_sessions().then(Sessions::new))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn judge(
    record: &Record<'_>,
    routes: &[Route],
    sessions: &mut [Option<Sessions>],
    origin: &Arc<Origin>,
    now: chrono::DateTime<chrono::Utc>,
    line_index: usize,
    found: &mut Vec<(usize, FailureEvent)>,
    refusals: &mut RefusalWarnings,
) {
    for (route, sessions) in routes.iter().zip(sessions.iter_mut()) {
        match route.filter.evaluate_in(record, now, sessions.as_mut()) {
            Verdict::Failure(failure) => found.push((
                line_index,
                FailureEvent {
                    jail: route.jail.clone(),
                    host: failure.host,
                    time: failure.time.unwrap_or(now),
                    line: record.text.to_string(),
                    origin: origin.clone(),
                },
            )),
            // Whoever wrote the line chose the address and how often it comes: warnings are
            // rate-limited per jail, the rest goes to debug.
            Verdict::NotAClient {
                address, reason, ..
            } => match refusals.record(&route.jail, now) {
                Some(refused) => tracing::warn!(
                    jail = %route.jail,
                    host = %address,
                    origin = %origin,
                    refused_since_last_warning = refused,
                    "a failure line names {address}, {reason}; not counted (the next such \
                     lines of this jail are logged at debug level, with a warning at most every \
                     {} minutes)",
                    crate::address::REFUSAL_WARNING_INTERVAL.num_minutes()
                ),
                None => tracing::debug!(
                    jail = %route.jail,
                    host = %address,
                    origin = %origin,
                    "a failure line names {address}, {reason}; not counted"
                ),
            },
            Verdict::Ignored { .. } | Verdict::Missed => {}
        }
    }
}

async fn flush_positions(
    dirty: &mut HashMap<String, Position>,
    store: &StoreHandle,
    clock: &SharedClock,
) {
    if dirty.is_empty() {
        return;
    }
    let positions: Vec<(String, Position)> = dirty.drain().collect();
    store
        .send(StoreRequest::SavePositions {
            positions,
            now: clock.now(),
        })
        .await;
}
