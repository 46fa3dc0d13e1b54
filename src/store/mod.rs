//! The store: active bans, ban history, sources' read positions and the definitions of jails
//! defined at run time (by container labels), in one SQLite file.
//!
//! Every write is its own transaction in WAL mode with `synchronous=FULL`, so a ban that was
//! reported as stored survives `kill -9` and power loss alike. One owner (the store task) holds
//! the connection; nothing else opens the file while logjail runs.

pub mod task;

pub use task::StoreHandle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::fleet::UnbanRecord;

pub use crate::messages::{BanRecord, DefinitionKind, JailDefinition, Position};

/// Bumped whenever the schema changes; older files are migrated on open.
/// 2: `positions.cursor` (journal sources resume by cursor).
/// 3: `jail_definitions` (jails defined by container labels keep their bans across restarts).
/// 4: `bans.fleet_member` (the fleet member a shared ban came from, for `logjail banned`).
/// 5: `fleet_unbans` (unbans Redis has not taken yet survive a restart).
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per ban in force. `end_ms` NULL means permanent.
CREATE TABLE IF NOT EXISTS bans (
    jail      TEXT    NOT NULL,
    host      TEXT    NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER,
    ban_count INTEGER NOT NULL,
    failures  INTEGER NOT NULL,
    origin    TEXT,
    matches   TEXT    NOT NULL DEFAULT '[]',
    -- The fleet member that made the ban; NULL when it was made here.
    fleet_member TEXT,
    PRIMARY KEY (jail, host)
);
-- Every ban ever made, for bantime increments of repeat offenders.
CREATE TABLE IF NOT EXISTS ban_history (
    jail     TEXT    NOT NULL,
    host     TEXT    NOT NULL,
    start_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ban_history_host ON ban_history (host, jail);
-- How far each source has read: a file by identity and offset, a stream by time, the
-- journal by cursor (with its time, to fall back on).
CREATE TABLE IF NOT EXISTS positions (
    source       TEXT PRIMARY KEY,
    device       INTEGER,
    inode        INTEGER,
    offset       INTEGER,
    time_ns      INTEGER,
    seen_at_time INTEGER,
    updated_ms   INTEGER NOT NULL,
    cursor       TEXT,
    head         BLOB
);
-- Jails defined at run time rather than in the configuration file (by a container's labels),
-- as the labels that defined them: at start their bans are put back in the firewall before
-- any source runs, with the same chains, ports and verdict, whether or not the container is
-- still there.
CREATE TABLE IF NOT EXISTS jail_definitions (
    jail         TEXT PRIMARY KEY,
    kind         TEXT    NOT NULL,
    defined_by   TEXT    NOT NULL,
    host_network INTEGER NOT NULL,
    labels       TEXT    NOT NULL,
    updated_ms   INTEGER NOT NULL
);
-- Unbans of shared bans made while Redis was away and not sent to it yet: a member restarted
-- before Redis returns still sends them, and does not take those bans back from the fleet.
CREATE TABLE IF NOT EXISTS fleet_unbans (
    jail   TEXT    NOT NULL,
    host   TEXT    NOT NULL,
    origin TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    -- The end the lifted ban had; NULL when it had none.
    end_ms INTEGER,
    PRIMARY KEY (jail, host)
);
"#;

/// Brings a store of schema version 1 to version 2. `CREATE TABLE IF NOT EXISTS` leaves an
/// existing table as it is, so the new columns are added here; rows keep their values and get
/// no cursor (they resume by time) and no file head (their files are taken as the same).
const MIGRATE_1_TO_2: &str = "ALTER TABLE positions ADD COLUMN cursor TEXT;
ALTER TABLE positions ADD COLUMN head BLOB;";

/// Brings a store of schema version 3 to version 4: bans made before the fleet existed were
/// all made here, which a NULL member says.
const MIGRATE_3_TO_4: &str = "ALTER TABLE bans ADD COLUMN fleet_member TEXT;";

/// Store failures, naming the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot create its directory: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path}: schema version {found} is newer than this logjail understands ({SCHEMA_VERSION})"
    )]
    TooNew { path: PathBuf, found: i64 },
}

/// The SQLite store. Not `Sync`: one task owns it.
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Directory {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let connection = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Store::init(connection, path.to_path_buf())
    }

    /// A store that lives in memory, for `logjail regex --bans` and tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Store::init(connection, path)
    }

    fn init(connection: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let store = Store { connection, path };
        store.sqlite(|c| {
            // WAL keeps readers out of the writer's way; FULL makes each commit durable.
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.execute_batch(SCHEMA)
        })?;
        let found: Option<i64> = store.sqlite(|c| {
            c.query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
        })?;
        match found {
            Some(version) if version > SCHEMA_VERSION => {
                return Err(StoreError::TooNew {
                    path: store.path,
                    found: version,
                });
            }
            Some(version) if version < SCHEMA_VERSION => store.migrate(version)?,
            Some(_) => {}
            None => store.sqlite(|c| {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map(|_| ())
            })?,
        }
        Ok(store)
    }

    /// Migrates a store written by an older logjail, in one transaction: a failure leaves the
    /// file as it was.
    fn migrate(&self, from: i64) -> Result<(), StoreError> {
        self.sqlite(|c| {
            let transaction = c.unchecked_transaction()?;
            if from < 2 {
                transaction.execute_batch(MIGRATE_1_TO_2)?;
            }
            // Versions 3 and 5 only added tables (`jail_definitions`, `fleet_unbans`), which
            // `SCHEMA` has just made. Bans of
            // label-defined jails written before it have no definition: the daemon holds them
            // until the container's labels define their jail again.
            if from < 4 {
                transaction.execute_batch(MIGRATE_3_TO_4)?;
            }
            transaction.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION.to_string()],
            )?;
            transaction.commit()
        })?;
        tracing::info!(path = %self.path.display(), from, to = SCHEMA_VERSION, "store schema migrated");
        Ok(())
    }

    fn sqlite<T>(
        &self,
        operation: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        operation(&self.connection).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a ban (replacing one of the same jail and host) and its history entry, in one
    /// transaction.
    pub fn save_ban(&mut self, ban: &BanRecord) -> Result<(), StoreError> {
        self.save_bans(std::slice::from_ref(ban))
    }

    /// Records many bans in one transaction (restores and bulk bans).
    pub fn save_bans(&mut self, bans: &[BanRecord]) -> Result<(), StoreError> {
        self.in_transaction(|transaction| {
            let mut insert_ban = transaction.prepare_cached(
                "INSERT OR REPLACE INTO bans
                 (jail, host, start_ms, end_ms, ban_count, failures, origin, matches,
                  fleet_member)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut insert_history = transaction.prepare_cached(
                "INSERT INTO ban_history (jail, host, start_ms) VALUES (?1, ?2, ?3)",
            )?;
            for ban in bans {
                let matches = serde_json::to_string(&ban.matches).unwrap_or_else(|_| "[]".into());
                let host = ban.host.to_string();
                insert_ban.execute(params![
                    ban.jail,
                    host,
                    millis(ban.start),
                    ban.end.map(millis),
                    ban.ban_count,
                    ban.failures,
                    ban.origin,
                    matches,
                    ban.fleet_member
                ])?;
                insert_history.execute(params![ban.jail, host, millis(ban.start)])?;
            }
            Ok(())
        })
    }

    /// Runs `work` in one transaction, committed when it succeeds (rolled back when not).
    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let run = |connection: &mut Connection| {
            let transaction = connection.transaction()?;
            let value = work(&transaction)?;
            transaction.commit()?;
            Ok(value)
        };
        run(&mut self.connection).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Forgets a ban in force (an unban); its history stays for increments.
    pub fn remove_ban(&mut self, jail: &str, host: IpAddr) -> Result<bool, StoreError> {
        let removed = self.sqlite(|c| {
            c.execute(
                "DELETE FROM bans WHERE jail = ?1 AND host = ?2",
                params![jail, host.to_string()],
            )
        })?;
        Ok(removed > 0)
    }

    /// Bans still in force at `now` (permanent ones included), oldest first.
    pub fn active_bans(&self, now: DateTime<Utc>) -> Result<Vec<BanRecord>, StoreError> {
        self.sqlite(|c| {
            let mut statement = c.prepare(
                "SELECT jail, host, start_ms, end_ms, ban_count, failures, origin, matches,
                        fleet_member
                 FROM bans WHERE end_ms IS NULL OR end_ms > ?1 ORDER BY start_ms",
            )?;
            let rows = statement.query_map(params![millis(now)], |row| {
                let host: String = row.get(1)?;
                let matches: String = row.get(7)?;
                Ok((
                    host,
                    BanRecord {
                        jail: row.get(0)?,
                        host: IpAddr::from([0, 0, 0, 0]),
                        start: from_millis(row.get(2)?),
                        end: row.get::<_, Option<i64>>(3)?.map(from_millis),
                        ban_count: row.get(4)?,
                        failures: row.get(5)?,
                        origin: row.get(6)?,
                        matches: serde_json::from_str(&matches).unwrap_or_default(),
                        fleet_member: row.get(8)?,
                    },
                ))
            })?;
            let mut bans = Vec::new();
            for row in rows {
                let (host, mut ban) = row?;
                // A row whose address does not parse was not written by us: skip it.
                if let Ok(address) = host.parse() {
                    ban.host = address;
                    bans.push(ban);
                }
            }
            Ok(bans)
        })
    }

    /// Drops bans that ended before `now`; returns how many.
    pub fn purge_expired(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.sqlite(|c| {
            c.execute(
                "DELETE FROM bans WHERE end_ms IS NOT NULL AND end_ms <= ?1",
                params![millis(now)],
            )
        })
    }

    /// Ban counts per (jail, host) from the history since `since`, to seed the jails'
    /// increment bookkeeping at start.
    pub fn ban_history(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<(String, IpAddr), u32>, StoreError> {
        self.sqlite(|c| {
            let mut statement = c.prepare(
                "SELECT jail, host, COUNT(*) FROM ban_history WHERE start_ms >= ?1 GROUP BY jail, host",
            )?;
            let rows = statement.query_map(params![millis(since)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u32>(2)?,
                ))
            })?;
            let mut counts = HashMap::new();
            for row in rows {
                let (jail, host, count) = row?;
                if let Ok(address) = host.parse() {
                    counts.insert((jail, address), count);
                }
            }
            Ok(counts)
        })
    }

    /// Saves read positions, all in one transaction.
    pub fn save_positions(
        &mut self,
        positions: &[(String, Position)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(wrap)?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO positions
                     (source, device, inode, offset, time_ns, seen_at_time, updated_ms, cursor,
                      head)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(wrap)?;
            for (source, position) in positions {
                let row = match position {
                    Position::File {
                        device,
                        inode,
                        offset,
                        head,
                    } => (
                        Some(*device as i64),
                        Some(*inode as i64),
                        Some(*offset as i64),
                        None,
                        None,
                        None,
                        Some(&head[..]),
                    ),
                    &Position::Time { time, seen_at_time } => (
                        None,
                        None,
                        None,
                        time.timestamp_nanos_opt(),
                        Some(i64::from(seen_at_time)),
                        None,
                        None,
                    ),
                    Position::Cursor {
                        cursor,
                        time,
                        seen_at_time,
                    } => (
                        None,
                        None,
                        None,
                        time.timestamp_nanos_opt(),
                        Some(i64::from(*seen_at_time)),
                        Some(cursor.as_str()),
                        None,
                    ),
                };
                statement
                    .execute(params![
                        source,
                        row.0,
                        row.1,
                        row.2,
                        row.3,
                        row.4,
                        millis(now),
                        row.5,
                        row.6
                    ])
                    .map_err(wrap)?;
            }
        }
        transaction.commit().map_err(wrap)
    }

    /// Records (or replaces) the definition of a jail defined at run time.
    pub fn save_definition(
        &mut self,
        definition: &JailDefinition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(&definition.labels).unwrap_or_else(|_| "{}".into());
        self.sqlite(|c| {
            c.execute(
                "INSERT OR REPLACE INTO jail_definitions
                 (jail, kind, defined_by, host_network, labels, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    definition.jail,
                    definition.kind.name(),
                    definition.defined_by,
                    definition.host_network,
                    labels,
                    millis(now)
                ],
            )
        })
        .map(|_| ())
    }

    /// Forgets a jail's definition (the jail is gone, or the configuration file took it over).
    pub fn remove_definition(&mut self, jail: &str) -> Result<(), StoreError> {
        self.sqlite(|c| {
            c.execute(
                "DELETE FROM jail_definitions WHERE jail = ?1",
                params![jail],
            )
        })
        .map(|_| ())
    }

    /// Replaces the unbans waiting for Redis with `unbans`, in one transaction.
    pub fn replace_fleet_unbans(&mut self, unbans: &[UnbanRecord]) -> Result<(), StoreError> {
        self.in_transaction(|transaction| {
            transaction.execute("DELETE FROM fleet_unbans", [])?;
            let mut insert = transaction.prepare_cached(
                "INSERT OR REPLACE INTO fleet_unbans (jail, host, origin, at_ms, end_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for unban in unbans {
                insert.execute(params![
                    unban.jail,
                    unban.ip.to_string(),
                    unban.origin,
                    unban.at_ms,
                    unban.end_ms
                ])?;
            }
            Ok(())
        })
    }

    /// The unbans waiting for Redis; a row whose address does not read is skipped with a
    /// warning.
    pub fn fleet_unbans(&self) -> Result<Vec<UnbanRecord>, StoreError> {
        let rows = self.sqlite(|c| {
            let mut statement = c.prepare(
                "SELECT jail, host, origin, at_ms, end_ms FROM fleet_unbans ORDER BY at_ms",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(jail, host, origin, at_ms, end_ms)| match host.parse() {
                Ok(ip) => Some(UnbanRecord {
                    origin,
                    jail,
                    ip,
                    at_ms,
                    end_ms,
                }),
                Err(_) => {
                    tracing::warn!(%jail, %host, "stored fleet unban with an unreadable address; skipped");
                    None
                }
            })
            .collect())
    }

    /// Every stored jail definition, by jail name. A row of a kind this logjail does not know
    /// (written by a newer one) or with unreadable labels is skipped with a warning.
    pub fn definitions(&self) -> Result<Vec<JailDefinition>, StoreError> {
        let rows = self.sqlite(|c| {
            let mut statement = c.prepare(
                "SELECT jail, kind, defined_by, host_network, labels FROM jail_definitions
                 ORDER BY jail",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, bool>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut definitions = Vec::new();
        for (jail, kind, defined_by, host_network, labels) in rows {
            let Some(kind) = DefinitionKind::from_name(&kind) else {
                tracing::warn!(%jail, %kind, "stored jail definition of an unknown kind; skipped");
                continue;
            };
            let Ok(labels) = serde_json::from_str(&labels) else {
                tracing::warn!(%jail, "stored jail definition with unreadable labels; skipped");
                continue;
            };
            definitions.push(JailDefinition {
                jail,
                kind,
                defined_by,
                host_network,
                labels,
            });
        }
        Ok(definitions)
    }

    /// All stored read positions by source key.
    pub fn load_positions(&self) -> Result<HashMap<String, Position>, StoreError> {
        self.sqlite(|c| {
            let mut statement = c.prepare(
                "SELECT source, device, inode, offset, time_ns, seen_at_time, cursor, head
                 FROM positions",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<Vec<u8>>>(7)?,
                ))
            })?;
            let mut positions = HashMap::new();
            for row in rows {
                let (source, device, inode, offset, time_ns, seen, cursor, head) = row?;
                let seen_at_time = seen.unwrap_or(0).try_into().unwrap_or(0);
                let position = match (device, inode, offset, time_ns, cursor) {
                    (Some(device), Some(inode), Some(offset), _, _) => Position::File {
                        device: device as u64,
                        inode: inode as u64,
                        offset: offset as u64,
                        head: head.unwrap_or_default().into(),
                    },
                    (_, _, _, Some(nanos), Some(cursor)) => Position::Cursor {
                        cursor,
                        time: DateTime::from_timestamp_nanos(nanos),
                        seen_at_time,
                    },
                    (_, _, _, Some(nanos), None) => Position::Time {
                        time: DateTime::from_timestamp_nanos(nanos),
                        seen_at_time,
                    },
                    _ => continue,
                };
                positions.insert(source, position);
            }
            Ok(positions)
        })
    }

    /// Forgets the position of a source that is gone for good (a destroyed container).
    pub fn forget_position(&mut self, source: &str) -> Result<(), StoreError> {
        self.sqlite(|c| c.execute("DELETE FROM positions WHERE source = ?1", params![source]))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn ban(jail: &str, host: &str, start: i64, end: Option<i64>) -> BanRecord {
        BanRecord {
            jail: jail.to_string(),
            host: host.parse().unwrap(),
            start: at(start),
            end: end.map(at),
            ban_count: 1,
            failures: 5,
            origin: Some("container web (0123456789ab)".to_string()),
            matches: vec!["Failed password for root from 1.2.3.4".to_string()],
            fleet_member: None,
        }
    }

    #[test]
    fn bans_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/logjail.db");
        {
            let mut store = Store::open(&path).unwrap();
            store
                .save_ban(&ban("sshd", "1.2.3.4", 0, Some(600)))
                .unwrap();
            store
                .save_ban(&ban("sshd", "2001:db8::1", 0, None))
                .unwrap();
            store.save_ban(&ban("web", "5.6.7.8", 0, Some(60))).unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let active = store.active_bans(at(120)).unwrap();
        let hosts: Vec<String> = active.iter().map(|b| b.host.to_string()).collect();
        assert_eq!(hosts, vec!["1.2.3.4", "2001:db8::1"]);
        assert_eq!(active[0], ban("sshd", "1.2.3.4", 0, Some(600)));
        assert_eq!(store.purge_expired(at(120)).unwrap(), 1);
        assert!(
            store
                .remove_ban("sshd", "1.2.3.4".parse().unwrap())
                .unwrap()
        );
        assert!(
            !store
                .remove_ban("sshd", "1.2.3.4".parse().unwrap())
                .unwrap()
        );
        assert_eq!(store.active_bans(at(10_000)).unwrap().len(), 1);
    }

    #[test]
    fn history_counts_every_ban() {
        let mut store = Store::in_memory().unwrap();
        store
            .save_ban(&ban("sshd", "1.2.3.4", 0, Some(60)))
            .unwrap();
        store
            .save_ban(&ban("sshd", "1.2.3.4", 100, Some(200)))
            .unwrap();
        store
            .save_ban(&ban("web", "1.2.3.4", 100, Some(200)))
            .unwrap();
        let history = store.ban_history(at(0)).unwrap();
        let host: IpAddr = "1.2.3.4".parse().unwrap();
        assert_eq!(history[&("sshd".to_string(), host)], 2);
        assert_eq!(history[&("web".to_string(), host)], 1);
        assert_eq!(
            store.ban_history(at(50)).unwrap()[&("sshd".to_string(), host)],
            1
        );
    }

    #[test]
    fn positions_round_trip() {
        let mut store = Store::in_memory().unwrap();
        let file = Position::File {
            device: 2049,
            inode: u64::from(u32::MAX) + 7,
            offset: 12_345,
            head: std::sync::Arc::from(&b"Nov 26 07:00:01 web sshd[1]: \xff\x00 binary too"[..]),
        };
        let time = Position::Time {
            time: at(5) + chrono::Duration::nanoseconds(123_456_789),
            seen_at_time: 3,
        };
        let cursor = Position::Cursor {
            cursor: "s=8236a7fc8e75460b9a3bda3907b518c2;i=2;b=0123456789abcdef0123456789abcdef;m=7d0;t=6612bf233aac7;x=f47379db3ad7b05b".into(),
            time: at(6) + chrono::Duration::microseconds(7),
            seen_at_time: 2,
        };
        let saved = [
            ("file:/var/log/auth.log".to_string(), file),
            ("container:abc".to_string(), time),
            ("journal:ssh.service".to_string(), cursor),
        ];
        store.save_positions(&saved, at(0)).unwrap();
        let loaded = store.load_positions().unwrap();
        assert_eq!(loaded, saved.iter().cloned().collect());
        // A journal source that falls back to time stores no cursor any more.
        let by_time = Position::Time {
            time: at(8),
            seen_at_time: 1,
        };
        store
            .save_positions(&[("journal:ssh.service".into(), by_time.clone())], at(1))
            .unwrap();
        assert_eq!(
            store.load_positions().unwrap()["journal:ssh.service"],
            by_time
        );
        store.forget_position("container:abc").unwrap();
        assert_eq!(store.load_positions().unwrap().len(), 2);
    }

    /// The schema of version 1, as logjail wrote it before positions had a cursor.
    const SCHEMA_V1: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bans (
    jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER,
    ban_count INTEGER NOT NULL, failures INTEGER NOT NULL, origin TEXT,
    matches TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (jail, host)
);
CREATE TABLE ban_history (jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL);
CREATE INDEX ban_history_host ON ban_history (host, jail);
CREATE TABLE positions (
    source TEXT PRIMARY KEY, device INTEGER, inode INTEGER, offset INTEGER, time_ns INTEGER,
    seen_at_time INTEGER, updated_ms INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"#;

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logjail.db");
        let journal_time = at(9) + chrono::Duration::microseconds(11);
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA_V1).unwrap();
            old.execute(
                "INSERT INTO positions (source, device, inode, offset, time_ns, seen_at_time, updated_ms)
                 VALUES ('file:/var/log/auth.log', 2049, 77, 4096, NULL, NULL, 1),
                        ('journal:ssh.service', NULL, NULL, NULL, ?1, 2, 1)",
                params![journal_time.timestamp_nanos_opt().unwrap()],
            )
            .unwrap();
            old.execute(
                "INSERT INTO bans (jail, host, start_ms, end_ms, ban_count, failures, origin, matches)
                 VALUES ('sshd', '192.0.2.5', ?1, NULL, 1, 5, 'journal', '[\"m\"]')",
                params![millis(at(0))],
            )
            .unwrap();
        }

        let mut store = Store::open(&path).unwrap();
        let positions = store.load_positions().unwrap();
        assert_eq!(
            positions["file:/var/log/auth.log"],
            Position::File {
                device: 2049,
                inode: 77,
                offset: 4096,
                // Not kept by version 1: unknown, the file is taken as the same.
                head: std::sync::Arc::from(&[][..]),
            }
        );
        // Stored by time, resumed by time.
        assert_eq!(
            positions["journal:ssh.service"],
            Position::Time {
                time: journal_time,
                seen_at_time: 2
            }
        );
        let bans = store.active_bans(at(1)).unwrap();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].matches, ["m"]);
        let cursor = Position::Cursor {
            cursor: "s=1;i=2".into(),
            time: journal_time,
            seen_at_time: 3,
        };
        store
            .save_positions(&[("journal:ssh.service".into(), cursor.clone())], at(2))
            .unwrap();
        drop(store);

        // Migrated once: the version says so, and opening again changes nothing.
        let store = Store::open(&path).unwrap();
        let version: String = store
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        assert_eq!(
            store.load_positions().unwrap()["journal:ssh.service"],
            cursor
        );
        assert_eq!(store.load_positions().unwrap().len(), 2);
    }

    /// The schema of version 2, as logjail wrote it before it kept jail definitions.
    const SCHEMA_V2: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bans (
    jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER,
    ban_count INTEGER NOT NULL, failures INTEGER NOT NULL, origin TEXT,
    matches TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (jail, host)
);
CREATE TABLE ban_history (jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL);
CREATE INDEX ban_history_host ON ban_history (host, jail);
CREATE TABLE positions (
    source TEXT PRIMARY KEY, device INTEGER, inode INTEGER, offset INTEGER, time_ns INTEGER,
    seen_at_time INTEGER, updated_ms INTEGER NOT NULL, cursor TEXT, head BLOB
);
INSERT INTO meta (key, value) VALUES ('schema_version', '2');
"#;

    fn web_definition(port: &str) -> JailDefinition {
        JailDefinition {
            jail: "web".to_string(),
            kind: DefinitionKind::ContainerLabels,
            defined_by: "container shop".to_string(),
            host_network: false,
            labels: [
                (
                    "logjail.jail.web.filter".to_string(),
                    "wordpress".to_string(),
                ),
                ("logjail.jail.web.port".to_string(), port.to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn a_version_2_store_is_migrated_and_keeps_jail_definitions_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logjail.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA_V2).unwrap();
            // A label jail's ban, written when definitions were not kept.
            old.execute(
                "INSERT INTO bans (jail, host, start_ms, end_ms, ban_count, failures, origin, matches)
                 VALUES ('web', '198.51.100.9', ?1, ?2, 1, 3, 'container shop (0123)', '[]')",
                params![millis(at(0)), millis(at(3600))],
            )
            .unwrap();
            old.execute(
                "INSERT INTO ban_history (jail, host, start_ms) VALUES ('web', '198.51.100.9', ?1)",
                params![millis(at(0))],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.active_bans(at(1)).unwrap().len(), 1);
        assert_eq!(store.ban_history(at(0)).unwrap().len(), 1);
        assert!(store.definitions().unwrap().is_empty());
        store.save_definition(&web_definition("80"), at(1)).unwrap();
        drop(store);

        let mut store = Store::open(&path).unwrap();
        let version: String = store
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        assert_eq!(store.definitions().unwrap(), vec![web_definition("80")]);
        // Redefined with other labels: replaced, not added.
        store
            .save_definition(&web_definition("8080"), at(2))
            .unwrap();
        assert_eq!(store.definitions().unwrap(), vec![web_definition("8080")]);
        store.remove_definition("web").unwrap();
        assert!(store.definitions().unwrap().is_empty());
    }

    /// The schema of version 3, as logjail wrote it before the fleet.
    const SCHEMA_V3: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bans (
    jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER,
    ban_count INTEGER NOT NULL, failures INTEGER NOT NULL, origin TEXT,
    matches TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (jail, host)
);
CREATE TABLE ban_history (jail TEXT NOT NULL, host TEXT NOT NULL, start_ms INTEGER NOT NULL);
CREATE INDEX ban_history_host ON ban_history (host, jail);
CREATE TABLE positions (
    source TEXT PRIMARY KEY, device INTEGER, inode INTEGER, offset INTEGER, time_ns INTEGER,
    seen_at_time INTEGER, updated_ms INTEGER NOT NULL, cursor TEXT, head BLOB
);
CREATE TABLE jail_definitions (
    jail TEXT PRIMARY KEY, kind TEXT NOT NULL, defined_by TEXT NOT NULL,
    host_network INTEGER NOT NULL, labels TEXT NOT NULL, updated_ms INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', '3');
"#;

    #[test]
    fn a_version_3_store_is_migrated_its_bans_made_here_and_fleet_bans_keep_their_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logjail.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA_V3).unwrap();
            old.execute(
                "INSERT INTO bans (jail, host, start_ms, end_ms, ban_count, failures, origin, matches)
                 VALUES ('sshd', '203.0.113.4', ?1, ?2, 1, 5, 'file /var/log/auth.log', '[]')",
                params![millis(at(0)), millis(at(3600))],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let bans = store.active_bans(at(1)).unwrap();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].origin.as_deref(), Some("file /var/log/auth.log"));
        assert_eq!(bans[0].fleet_member, None, "made here, before the fleet");

        let shared = BanRecord {
            fleet_member: Some("node-a".to_string()),
            ..ban("sshd", "198.51.100.2", 10, Some(7200))
        };
        store.save_bans(std::slice::from_ref(&shared)).unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        let version: String = store
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        let bans = store.active_bans(at(20)).unwrap();
        assert_eq!(bans.len(), 2);
        assert_eq!(bans[1], shared);
        assert_eq!(
            store.fleet_unbans().unwrap(),
            vec![],
            "version 5's table is there"
        );
    }

    #[test]
    fn fleet_unbans_are_replaced_whole_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logjail.db");
        let unban = |jail: &str, ip: &str, at_ms| UnbanRecord {
            origin: "node-b".to_string(),
            jail: jail.to_string(),
            ip: ip.parse().unwrap(),
            at_ms,
            // One of them had no end.
            end_ms: (at_ms != 10).then_some(at_ms + 600_000),
        };
        {
            let mut store = Store::open(&path).unwrap();
            store
                .replace_fleet_unbans(&[
                    unban("sshd", "198.51.100.7", 20),
                    unban("web", "2001:db8::7", 10),
                ])
                .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(
            store.fleet_unbans().unwrap(),
            vec![
                unban("web", "2001:db8::7", 10),
                unban("sshd", "198.51.100.7", 20)
            ],
            "oldest first"
        );
        store
            .replace_fleet_unbans(&[unban("sshd", "198.51.100.8", 30)])
            .unwrap();
        assert_eq!(
            store.fleet_unbans().unwrap(),
            vec![unban("sshd", "198.51.100.8", 30)]
        );
        store.replace_fleet_unbans(&[]).unwrap();
        drop(store);
        assert_eq!(Store::open(&path).unwrap().fleet_unbans().unwrap(), vec![]);
    }

    #[test]
    fn a_definition_of_an_unknown_kind_is_skipped() {
        let mut store = Store::in_memory().unwrap();
        store.save_definition(&web_definition("80"), at(0)).unwrap();
        store
            .connection
            .execute(
                "INSERT INTO jail_definitions VALUES ('pod', 'from-the-future', 'x', 0, '{}', 0)",
                [],
            )
            .unwrap();
        assert_eq!(store.definitions().unwrap(), vec![web_definition("80")]);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection
            .execute(
                "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        drop(connection);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
