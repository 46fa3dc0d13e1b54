//! The store task: one thread owns the SQLite connection; everyone else sends it messages.
//!
//! SQLite calls block, so they run on a dedicated thread rather than on the async workers;
//! a bounded channel keeps a burst of bans from queueing without limit.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::fleet::UnbanRecord;
use crate::messages::Position;
use crate::messages::StoreRequest;
use crate::store::{BanRecord, JailDefinition, Store, StoreError};

/// Sends requests to the store thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    sender: mpsc::Sender<StoreRequest>,
}

/// Requests waiting for the store thread before senders wait in turn.
const STORE_QUEUE: usize = 4096;

impl StoreHandle {
    /// Sends a request; if the store thread is gone (shutting down), the request is dropped
    /// with a warning: losing a write then is better than hanging the pipeline.
    pub async fn send(&self, request: StoreRequest) {
        if self.sender.send(request).await.is_err() {
            tracing::warn!("store is closed; a write was dropped");
        }
    }

    /// The stored read positions; empty if the store cannot answer.
    pub async fn positions(&self) -> HashMap<String, Position> {
        let (answer, wait) = oneshot::channel();
        if self
            .sender
            .send(StoreRequest::Positions(answer))
            .await
            .is_err()
        {
            return HashMap::new();
        }
        wait.await.unwrap_or_default()
    }

    /// Waits until everything sent so far is on disk.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(StoreRequest::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// What the daemon reads from the store at start.
#[derive(Debug, Default)]
pub struct Recovered {
    pub bans: Vec<BanRecord>,
    pub positions: HashMap<String, Position>,
    pub history: HashMap<(String, IpAddr), u32>,
    /// Jails defined at run time by an earlier run.
    pub definitions: Vec<JailDefinition>,
    /// Unbans of shared bans that Redis had not taken when the last run stopped.
    pub fleet_unbans: Vec<UnbanRecord>,
}

/// Most bans written in one transaction.
const SAVE_BATCH: usize = 10_000;

/// Reads what the daemon needs to resume, then moves the store to its own thread.
pub fn start(
    mut store: Store,
    now: DateTime<Utc>,
    history_since: DateTime<Utc>,
) -> Result<(StoreHandle, Recovered, std::thread::JoinHandle<()>), StoreError> {
    let recovered = Recovered {
        bans: store.active_bans(now)?,
        positions: store.load_positions()?,
        history: store.ban_history(history_since)?,
        definitions: store.definitions()?,
        fleet_unbans: store.fleet_unbans()?,
    };
    // Expired rows go only after the active ones were read (and will be re-applied).
    store.purge_expired(now)?;
    let (sender, mut receiver) = mpsc::channel(STORE_QUEUE);
    let thread = std::thread::Builder::new()
        .name("logjail-store".into())
        .spawn(move || {
            let mut pending = receiver.blocking_recv();
            while let Some(request) = pending.take() {
                let result = match request {
                    StoreRequest::SaveBan(ban) => {
                        // Bans queued together (the fleet's bans loaded at start, a burst
                        // from another member) go in one transaction, not one fsync each.
                        let mut batch = vec![ban];
                        loop {
                            match receiver.try_recv() {
                                Ok(StoreRequest::SaveBan(ban)) if batch.len() < SAVE_BATCH => {
                                    batch.push(ban);
                                }
                                Ok(other) => {
                                    pending = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        store.save_bans(&batch)
                    }
                    StoreRequest::SaveBans(bans) => bans
                        .chunks(SAVE_BATCH)
                        .try_for_each(|chunk| store.save_bans(chunk)),
                    other => apply(&mut store, other),
                };
                if let Err(error) = result {
                    tracing::error!(%error, "store write failed");
                }
                if pending.is_none() {
                    pending = receiver.blocking_recv();
                }
            }
        })
        .map_err(|source| StoreError::Directory {
            path: std::path::PathBuf::from("<store thread>"),
            source,
        })?;
    Ok((StoreHandle { sender }, recovered, thread))
}

fn apply(store: &mut Store, request: StoreRequest) -> Result<(), StoreError> {
    match request {
        StoreRequest::SaveBan(ban) => store.save_ban(&ban),
        StoreRequest::SaveBans(bans) => bans
            .chunks(SAVE_BATCH)
            .try_for_each(|chunk| store.save_bans(chunk)),
        StoreRequest::RemoveBan { jail, host } => store.remove_ban(&jail, host).map(|_| ()),
        StoreRequest::SavePositions { positions, now } => store.save_positions(&positions, now),
        StoreRequest::ForgetPosition(source) => store.forget_position(&source),
        StoreRequest::SaveDefinition { definition, now } => store.save_definition(&definition, now),
        StoreRequest::RemoveDefinition(jail) => store.remove_definition(&jail),
        StoreRequest::ReplaceFleetUnbans(unbans) => store.replace_fleet_unbans(&unbans),
        StoreRequest::PurgeExpired(now) => store.purge_expired(now).map(|_| ()),
        StoreRequest::Flush(done) => {
            let _ = done.send(());
            Ok(())
        }
        StoreRequest::Positions(answer) => {
            let positions = store.load_positions()?;
            let _ = answer.send(positions);
            Ok(())
        }
        StoreRequest::Definitions(answer) => {
            let definitions = store.definitions()?;
            let _ = answer.send(definitions);
            Ok(())
        }
    }
}
