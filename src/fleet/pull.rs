//! Reading every ban and unban held in Redis: a new member's catch-up before its sources
//! start, and each session's sync after it (re)connects.
//!
//! 100,000 bans are some 25 MB to fetch, 100,000 signatures to check and as many bans to hand
//! over. Done one after the other these steps cost their sum, so they overlap instead: while
//! the caller takes one page, the page after it is checked (HMAC, JSON) on a blocking thread
//! and the one after that is on its way from Redis, its `MGET` sent along with the next
//! `SCAN`. The pull then costs about its slowest step.
//!
//! ```text
//!  fetch_pages (task)  --RawPage-->  decode_pages (blocking thread)  --DecodedPage-->  pull
//!  SCAN + MGET                       signature, JSON, ours or not                      on_bans
//! ```

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::decode_message;
use super::task::{FleetError, FleetHealth, FleetSettings, Refusals};
use super::{BanKey, BanRecord, FeedMessage, Keys, RecordError, Signer, UnbanRecord};
use crate::messages::FleetChange;

/// What a pull found in Redis besides the bans it handed over.
pub(super) struct Pulled {
    /// Every ban key found, with the start of the ban it holds (`i64::MAX` for one that does
    /// not read: a key there, even unreadable, is not this member's to push over).
    pub in_redis: HashMap<String, i64>,
    /// The other members' unbans recorded for addresses that no ban key holds any more
    /// (lifted while this member was away from the feed).
    pub unbans: Vec<UnbanRecord>,
}

/// What a pull keeps besides the bans it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The bans alone: a start, whose unbans wait for the fleet task's first sync.
    Bans,
    /// Also every ban key and the recorded unbans: a sync, which pushes what Redis lacks.
    Everything,
}

/// Keys asked per SCAN step: a few milliseconds of Redis's time per step, and 100,000 bans in
/// 20 round trips.
const SCAN_COUNT: usize = 5000;
/// How long a page's reply may take: about a megabyte, which a slow link to a managed Redis
/// can take longer to carry than the client's default half second (the pipelined SCAN waits
/// behind it too). A server that stops answering still fails the pull, only later.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages held between two steps: enough for each step to find work waiting, few enough that a
/// pull holds a few megabytes, not the whole keyspace, between them.
const PAGES_IN_FLIGHT: usize = 2;

/// Keys and their values, as one SCAN step found them.
type RawPage = Vec<(String, String)>;

/// One page, read.
#[derive(Default)]
struct DecodedPage {
    /// The other members' bans in force.
    bans: Vec<FleetChange>,
    /// The ban keys, with the start of their ban.
    ban_keys: Vec<(String, i64)>,
    /// Unban records, read once every ban key is known.
    unban_values: Vec<String>,
    /// Records that did not read or check.
    refused: Vec<RecordError>,
}

/// Hands every valid ban of another member in force to `on_bans`, a page at a time, and
/// returns the keys found and the unbans to apply (empty for [`Scope::Bans`]).
pub(super) async fn pull(
    settings: &FleetSettings,
    health: &FleetHealth,
    scope: Scope,
    mut on_bans: impl FnMut(Vec<FleetChange>),
) -> Result<Pulled, FleetError> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(PAGE_TIMEOUT));
    let connection = settings
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let now_ms = Utc::now().timestamp_millis();
    let (raw_pages, raw_received) = mpsc::channel(PAGES_IN_FLIGHT);
    let (decoded_pages, mut decoded) = mpsc::channel(PAGES_IN_FLIGHT);
    // Dropping the pull (its caller timed out) stops the fetch; the decoding thread then
    // finds both its channels closed and ends.
    let _fetch = AbortOnDropHandle::new(tokio::spawn(fetch_pages(
        connection,
        settings.keys.bans_and_unbans_pattern(),
        raw_pages,
    )));
    let reader = Reader {
        keys: settings.keys.clone(),
        signer: settings.signer.clone(),
        member: settings.name.clone(),
        now_ms,
        scope,
    };
    tokio::task::spawn_blocking(move || reader.decode_pages(raw_received, decoded_pages));

    let mut in_redis = HashMap::new();
    let mut unban_values = Vec::new();
    let mut refused = Refusals::default();
    while let Some(page) = decoded.recv().await {
        let page = page?;
        for error in &page.refused {
            refused.note(health, "?", error);
        }
        in_redis.extend(page.ban_keys);
        unban_values.extend(page.unban_values);
        if !page.bans.is_empty() {
            on_bans(page.bans);
        }
    }

    // After every ban is seen: an unban counts only where no ban was made since.
    let mut unbans = Vec::new();
    for value in unban_values {
        match decode_message(&value, &settings.signer) {
            Ok(FeedMessage::Unban(unban))
                if unban.origin != settings.name
                    && !in_redis.contains_key(&settings.keys.ban(&unban.jail, unban.ip)) =>
            {
                unbans.push(unban);
            }
            Ok(_) => {}
            Err(error) => refused.note(health, "?", &error),
        }
    }
    health.last_sync_ms.store(now_ms, Ordering::Relaxed);
    Ok(Pulled { in_redis, unbans })
}

/// Walks the keys matching `pattern`, sending each step's keys with their values; an error
/// ends the walk, sent as the last page.
async fn fetch_pages(
    mut connection: MultiplexedConnection,
    pattern: String,
    pages: mpsc::Sender<Result<RawPage, FleetError>>,
) {
    let walk = async {
        let (mut cursor, mut keys) = scan(&mut connection, &pattern, 0).await?;
        loop {
            // The next SCAN goes out with this step's MGET, so that Redis works on one while
            // the other's reply is read.
            let mut scanning = connection.clone();
            let next = async {
                match cursor {
                    0 => None,
                    cursor => Some(scan(&mut scanning, &pattern, cursor).await),
                }
            };
            let (values, next) = tokio::join!(values_of(&mut connection, &keys), next);
            let page = std::mem::take(&mut keys)
                .into_iter()
                .zip(values?)
                // A key gone between SCAN and MGET (expired) reads as nil and is skipped.
                .filter_map(|(key, value)| Some((key, value?)))
                .collect();
            if pages.send(Ok(page)).await.is_err() {
                return Ok(());
            }
            match next {
                None => return Ok(()),
                Some(next) => (cursor, keys) = next?,
            }
        }
    };
    if let Err(error) = walk.await {
        let _ = pages.send(Err(error)).await;
    }
}

async fn scan(
    connection: &mut MultiplexedConnection,
    pattern: &str,
    cursor: u64,
) -> Result<(u64, Vec<String>), FleetError> {
    Ok(redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT)
        .query_async(connection)
        .await?)
}

async fn values_of(
    connection: &mut MultiplexedConnection,
    keys: &[String],
) -> Result<Vec<Option<String>>, FleetError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(redis::cmd("MGET").arg(keys).query_async(connection).await?)
}

/// What decoding needs, owned by the decoding thread.
struct Reader {
    keys: Keys,
    signer: Signer,
    /// This member: its own bans are not handed back to it.
    member: String,
    now_ms: i64,
    scope: Scope,
}

impl Reader {
    /// Runs on a blocking thread until the fetch ends or the pull is dropped.
    fn decode_pages(
        self,
        mut raw: mpsc::Receiver<Result<RawPage, FleetError>>,
        decoded: mpsc::Sender<Result<DecodedPage, FleetError>>,
    ) {
        while let Some(page) = raw.blocking_recv() {
            if decoded
                .blocking_send(page.map(|page| self.decode(page)))
                .is_err()
            {
                return;
            }
        }
    }

    fn decode(&self, page: RawPage) -> DecodedPage {
        let mut decoded = DecodedPage::default();
        for (key, value) in page {
            match self.keys.kind_of(&key) {
                Some(BanKey::Ban) => {}
                Some(BanKey::Unban) => {
                    if self.scope == Scope::Everything {
                        decoded.unban_values.push(value);
                    }
                    continue;
                }
                None => continue,
            }
            match decode_message(&value, &self.signer) {
                Ok(FeedMessage::Ban(ban)) => {
                    if self.scope == Scope::Everything {
                        decoded.ban_keys.push((key, ban.start_ms));
                    }
                    if ban.origin != self.member
                        && let Some(change) = foreign_ban(ban, self.now_ms)
                    {
                        decoded.bans.push(change);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if self.scope == Scope::Everything {
                        decoded.ban_keys.push((key, i64::MAX));
                    }
                    decoded.refused.push(error);
                }
            }
        }
        decoded
    }
}

/// Another member's unban as a change for the jails (`None` for a time out of range).
pub(super) fn foreign_unban(unban: UnbanRecord) -> Option<FleetChange> {
    Some(FleetChange::Unban {
        at: DateTime::from_timestamp_millis(unban.at_ms)?,
        member: unban.origin,
        jail: unban.jail,
        host: unban.ip,
    })
}

/// Another member's ban as a change for the jails, or `None` when it is over.
pub(super) fn foreign_ban(ban: BanRecord, now_ms: i64) -> Option<FleetChange> {
    ban.remaining(now_ms)?;
    Some(FleetChange::Ban {
        member: ban.origin,
        jail: ban.jail,
        host: ban.ip,
        start: DateTime::from_timestamp_millis(ban.start_ms)?,
        end: match ban.end_ms {
            Some(ms) => Some(DateTime::from_timestamp_millis(ms)?),
            None => None,
        },
        ban_count: ban.count,
    })
}
