//! What a member writes to Redis for its bans and unbans, as pipeline steps.
//!
//! A live ban is a plain `SET`: it is the newest word on its address. The two writes a
//! (re)connecting member makes are not: they carry what it decided while away, and another
//! member may change the same address while that member's sync reads Redis (a SCAN and its
//! MGET are not one snapshot). So each is a Lua script that Redis runs whole, deciding on
//! what Redis holds at that instant rather than on what the sync read a moment before:
//!
//! - [`add_restore`] puts back a ban of this member that Redis lacks, unless another member
//!   holds the address now or lifted it after the ban began (that unban's message is on its
//!   way to this member through the feed it subscribed to before the sync);
//! - [`add_unban`], for an unban made while Redis was away, lifts the ban and records the
//!   unban unless the ban held is newer (banned again by another member since), and publishes
//!   it only when it stands. A live unban lifts whatever is held: it is the newest word, and a
//!   clock a little behind another member's must not keep a ban the operator lifted.
//!
//! The scripts read the times in the records without checking their signatures: Lua cannot
//! check an HMAC. A writer to Redis who forges a record can thus stop a restore or a late
//! unban, as they could by deleting keys; they still cannot make any member ban.

use std::sync::LazyLock;

use super::{BanRecord, FeedMessage, Keys, Signer, UnbanRecord, encode_message};

/// The value of a record as Lua reads it: the JSON after the signature, or `nil`.
const READ_RECORD: &str = "local function record(value) \
if not value then return nil end \
local space = string.find(value, ' ', 1, true) \
if not space then return nil end \
local ok, decoded = pcall(cjson.decode, string.sub(value, space + 1)) \
if ok and type(decoded) == 'table' then return decoded end \
return nil end ";

/// KEYS: ban, unban. ARGV: the ban's message, PX in ms (0: no end), the ban's start, the
/// feed. Returns 1 when the ban was put back and announced.
const RESTORE_SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end \
local lifted = record(redis.call('GET', KEYS[2])) \
if lifted and type(lifted.at_ms) == 'number' and lifted.at_ms >= tonumber(ARGV[3]) then \
return 0 end \
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
else redis.call('SET', KEYS[1], ARGV[1]) end \
redis.call('DEL', KEYS[2]) \
redis.call('PUBLISH', ARGV[4], ARGV[1]) \
return 1";

/// KEYS: ban, unban. ARGV: the unban's message, the time a ban must have begun after to stand
/// against it ('' for none), the feed, what the lifted ban had left where it was lifted in ms
/// ('' for no end), the unban's time. Records the unban for as long as the ban held had left
/// (for ever for one without end), or, where Redis holds none (it lost the ban, or never had
/// it), for what the lifted ban had left, so that a member pushing the ban back later finds
/// the record; but never over a later unban's record. Returns what the ban held had left in
/// ms (-2: none held), or -3 when a newer ban stands and nothing was done.
const UNBAN_SCRIPT: &str = "local since = tonumber(ARGV[2]) \
if since then local held = record(redis.call('GET', KEYS[1])) \
if held and type(held.start_ms) == 'number' and held.start_ms > since then return -3 end end \
local left = redis.call('PTTL', KEYS[1]) \
redis.call('DEL', KEYS[1]) \
local keep = left \
if left == -2 then \
local prior = record(redis.call('GET', KEYS[2])) \
if prior and type(prior.at_ms) == 'number' and prior.at_ms >= tonumber(ARGV[5]) then \
keep = 0 else local lifted = tonumber(ARGV[4]) \
if not lifted then keep = -1 else keep = lifted end end end \
if keep > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', keep) \
elseif keep == -1 then redis.call('SET', KEYS[2], ARGV[1]) end \
redis.call('PUBLISH', ARGV[3], ARGV[1]) \
return left";

/// When an unban is sent, which decides whether a ban in Redis can stand against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnbanSent {
    /// As it is made: the newest word on its address, whatever Redis holds.
    Live,
    /// After Redis was away: a ban another member made after it stands.
    Late,
}

/// The scripts as Redis caches them: each connection loads them once ([`add_load_scripts`])
/// and then names them by their SHA1, not sending their text with each ban (100,000 bans put
/// back after Redis lost its data would otherwise carry some 60 MB of Lua).
static RESTORE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{READ_RECORD}{RESTORE_SCRIPT}")));
static UNBAN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{READ_RECORD}{UNBAN_SCRIPT}")));

/// Loads both scripts into Redis's cache: before the first pipeline of a connection that may
/// run them (a restarted Redis has an empty cache, and a new connection follows it).
pub(super) fn add_load_scripts(pipe: &mut redis::Pipeline) {
    pipe.load_script(&RESTORE).ignore();
    pipe.load_script(&UNBAN).ignore();
}

/// Milliseconds `ban` has left at `now_ms` for `PX`: `None` for a ban without end.
fn px(ban: &BanRecord, now_ms: i64) -> Option<u64> {
    match ban.remaining(now_ms) {
        Some(Some(remaining)) => Some(
            u64::try_from(remaining.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        _ => None,
    }
}

/// Writes `ban`, the newest word on its address: an earlier unban of it no longer holds.
pub(super) fn add_ban(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    signer: &Signer,
    ban: &BanRecord,
    now_ms: i64,
) {
    let value = encode_message(&FeedMessage::Ban(ban.clone()), signer);
    let set = pipe.cmd("SET").arg(keys.ban(&ban.jail, ban.ip)).arg(&value);
    // Redis drops the key when the ban ends, so a member loading later never sees it.
    if let Some(ms) = px(ban, now_ms) {
        set.arg("PX").arg(ms);
    }
    set.ignore();
    pipe.cmd("DEL").arg(keys.unban(&ban.jail, ban.ip)).ignore();
    pipe.cmd("PUBLISH").arg(keys.feed()).arg(value).ignore();
}

/// Puts back this member's `ban` that Redis was found to lack, and announces it, unless
/// Redis holds the address or an unban after the ban's start by the time it runs.
pub(super) fn add_restore(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    signer: &Signer,
    ban: &BanRecord,
    now_ms: i64,
) {
    let value = encode_message(&FeedMessage::Ban(ban.clone()), signer);
    pipe.invoke_script(
        RESTORE
            .key(keys.ban(&ban.jail, ban.ip))
            .key(keys.unban(&ban.jail, ban.ip))
            .arg(value)
            .arg(px(ban, now_ms).unwrap_or(0))
            .arg(ban.start_ms)
            .arg(keys.feed()),
    )
    .ignore();
}

/// Lifts a ban in Redis, records the unban so that a member away from the feed lifts it when
/// it returns, and publishes it; a [`UnbanSent::Late`] one not where another member banned
/// the address after it.
pub(super) fn add_unban(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    signer: &Signer,
    unban: &UnbanRecord,
    sent: UnbanSent,
    now_ms: i64,
) {
    let message = encode_message(&FeedMessage::Unban(unban.clone()), signer);
    pipe.invoke_script(
        UNBAN
            .key(keys.ban(&unban.jail, unban.ip))
            .key(keys.unban(&unban.jail, unban.ip))
            .arg(message)
            .arg(match sent {
                UnbanSent::Live => String::new(),
                UnbanSent::Late => unban.at_ms.to_string(),
            })
            .arg(keys.feed())
            .arg(match unban.end_ms {
                Some(end_ms) => end_ms.saturating_sub(now_ms).max(0).to_string(),
                None => String::new(),
            })
            .arg(unban.at_ms),
    )
    .ignore();
}

/// Against a real `redis-server` (Debian's package), on a socket in a folder of the test's:
/// what the scripts decide depends on Redis's Lua and `cjson`, which no fake has.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::IpAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::fleet::decode_message;

    const JAIL: &str = "sshd";

    struct Server {
        child: Child,
        client: redis::Client,
        _dir: tempfile::TempDir,
    }

    impl Server {
        async fn connection(&self) -> redis::aio::MultiplexedConnection {
            self.client
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }

        /// Runs one command whose reply does not matter.
        async fn send(&self, command: &redis::Cmd) {
            command
                .query_async::<()>(&mut self.connection().await)
                .await
                .unwrap();
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) starts");
        let client = redis::Client::open(format!("unix://{}", socket.display())).unwrap();
        let server = Server {
            child,
            client,
            _dir: dir,
        };
        // Started when it answers; the real time waited is Redis's own start.
        for _ in 0..500 {
            if let Ok(mut connection) = server.client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer on {}", socket.display());
    }

    fn host() -> IpAddr {
        "203.0.113.9".parse().unwrap()
    }

    fn ban(origin: &str, start_ms: i64) -> BanRecord {
        BanRecord {
            origin: origin.to_string(),
            jail: JAIL.to_string(),
            ip: host(),
            start_ms,
            end_ms: Some(start_ms + 3_600_000),
            count: 1,
        }
    }

    /// An unban at `at_ms` of a ban that had an hour left.
    fn unban(origin: &str, at_ms: i64) -> UnbanRecord {
        UnbanRecord {
            origin: origin.to_string(),
            jail: JAIL.to_string(),
            ip: host(),
            at_ms,
            end_ms: Some(at_ms + 3_600_000),
        }
    }

    /// Runs `pipe`, then says what it published: the feed is read up to a marker published
    /// after it, so that "nothing" is known without waiting for it.
    async fn run(server: &Server, pipe: redis::Pipeline) -> Vec<FeedMessage> {
        let keys = Keys::default();
        let mut pubsub = server.client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(keys.feed()).await.unwrap();
        let mut connection = server.connection().await;
        pipe.query_async::<()>(&mut connection).await.unwrap();
        redis::cmd("PUBLISH")
            .arg(keys.feed())
            .arg("end")
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let mut published = Vec::new();
        let mut feed = pubsub.into_on_message();
        loop {
            let text: String = feed.next().await.unwrap().get_payload().unwrap();
            if text == "end" {
                return published;
            }
            published.push(decode_message(&text, &Signer::unsigned()).unwrap());
        }
    }

    /// A key's value and its PTTL.
    async fn get(server: &Server, key: &str) -> (Option<String>, i64) {
        redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query_async(&mut server.connection().await)
            .await
            .unwrap()
    }

    async fn set(server: &Server, key: &str, value: &str) {
        server.send(redis::cmd("SET").arg(key).arg(value)).await;
    }

    async fn del(server: &Server, key: &str) {
        server.send(redis::cmd("DEL").arg(key)).await;
    }

    fn restore(ban: &BanRecord, now_ms: i64) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        add_load_scripts(&mut pipe);
        add_restore(
            &mut pipe,
            &Keys::default(),
            &Signer::unsigned(),
            ban,
            now_ms,
        );
        pipe
    }

    /// `unban`, sent at the time it was made.
    fn lift(unban: &UnbanRecord, sent: UnbanSent) -> redis::Pipeline {
        lift_at(unban, sent, unban.at_ms)
    }

    /// `unban`, sent at `now_ms`.
    fn lift_at(unban: &UnbanRecord, sent: UnbanSent, now_ms: i64) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        add_load_scripts(&mut pipe);
        add_unban(
            &mut pipe,
            &Keys::default(),
            &Signer::unsigned(),
            unban,
            sent,
            now_ms,
        );
        pipe
    }

    fn wire(message: FeedMessage) -> String {
        encode_message(&message, &Signer::unsigned())
    }

    #[tokio::test]
    async fn a_restore_puts_back_a_missing_ban_with_its_remaining_time_and_announces_it() {
        let server = server().await;
        let keys = Keys::default();
        let start = 1_000_000;
        let mine = ban("a", start);
        // An unban older than the ban: the ban was made after it and is the newer word.
        set(
            &server,
            &keys.unban(JAIL, host()),
            &wire(FeedMessage::Unban(unban("c", start - 1))),
        )
        .await;

        let published = run(&server, restore(&mine, start + 600_000)).await;
        assert_eq!(published, vec![FeedMessage::Ban(mine.clone())]);
        let (value, left) = get(&server, &keys.ban(JAIL, host())).await;
        assert_eq!(value, Some(wire(FeedMessage::Ban(mine))));
        assert!(
            (2_999_000..=3_000_000).contains(&left),
            "50 minutes of the hour left: {left} ms"
        );
        assert_eq!(
            get(&server, &keys.unban(JAIL, host())).await.0,
            None,
            "the older unban is gone"
        );
    }

    #[tokio::test]
    async fn a_restore_leaves_an_address_another_member_holds_or_lifted_since_the_ban_began() {
        let server = server().await;
        let keys = Keys::default();
        let start = 1_000_000;
        let mine = ban("a", start);

        let theirs = wire(FeedMessage::Ban(ban("b", start + 5)));
        set(&server, &keys.ban(JAIL, host()), &theirs).await;
        assert_eq!(run(&server, restore(&mine, start + 10)).await, vec![]);
        assert_eq!(
            get(&server, &keys.ban(JAIL, host())).await.0,
            Some(theirs),
            "B's ban stays"
        );

        del(&server, &keys.ban(JAIL, host())).await;
        let lifted = wire(FeedMessage::Unban(unban("c", start)));
        set(&server, &keys.unban(JAIL, host()), &lifted).await;
        assert_eq!(
            run(&server, restore(&mine, start + 10)).await,
            vec![],
            "not announced"
        );
        assert_eq!(
            get(&server, &keys.ban(JAIL, host())).await.0,
            None,
            "not put back"
        );
        assert_eq!(
            get(&server, &keys.unban(JAIL, host())).await.0,
            Some(lifted),
            "C's unban stays"
        );
    }

    #[tokio::test]
    async fn a_late_unban_leaves_a_newer_ban_and_a_live_one_lifts_it() {
        let server = server().await;
        let keys = Keys::default();
        let at = 1_000_000;
        let newer = wire(FeedMessage::Ban(ban("b", at + 1)));
        server
            .send(
                redis::cmd("SET")
                    .arg(keys.ban(JAIL, host()))
                    .arg(&newer)
                    .arg("PX")
                    .arg(600_000),
            )
            .await;

        let late = unban("a", at);
        assert_eq!(
            run(&server, lift(&late, UnbanSent::Late)).await,
            vec![],
            "not published"
        );
        assert_eq!(
            get(&server, &keys.ban(JAIL, host())).await.0,
            Some(newer),
            "B's ban stands"
        );
        assert_eq!(
            get(&server, &keys.unban(JAIL, host())).await.0,
            None,
            "nothing recorded"
        );

        let published = run(&server, lift(&late, UnbanSent::Live)).await;
        assert_eq!(published, vec![FeedMessage::Unban(late.clone())]);
        assert_eq!(
            get(&server, &keys.ban(JAIL, host())).await.0,
            None,
            "lifted"
        );
        let (record, left) = get(&server, &keys.unban(JAIL, host())).await;
        assert_eq!(record, Some(wire(FeedMessage::Unban(late))));
        assert!(
            (590_000..=600_000).contains(&left),
            "recorded for what the ban had left: {left} ms"
        );
    }

    #[tokio::test]
    async fn a_late_unban_of_an_older_ban_lifts_it_and_one_of_no_ban_is_published_and_recorded() {
        let server = server().await;
        let keys = Keys::default();
        let at = 1_000_000;
        set(
            &server,
            &keys.ban(JAIL, host()),
            &wire(FeedMessage::Ban(ban("a", at - 1))),
        )
        .await;
        let late = unban("a", at);
        let published = run(&server, lift(&late, UnbanSent::Late)).await;
        assert_eq!(published, vec![FeedMessage::Unban(late.clone())]);
        assert_eq!(get(&server, &keys.ban(JAIL, host())).await.0, None);
        let (record, left) = get(&server, &keys.unban(JAIL, host())).await;
        assert_eq!(record, Some(wire(FeedMessage::Unban(late.clone()))));
        assert_eq!(left, -1, "a ban without expiry is recorded lifted for good");

        // Redis lost the ban (a restart without persistence): members that hold it still
        // learn of the unban, and it is recorded for what the lifted ban had left, so that
        // its member pushing it back afterwards finds the unban and leaves it.
        del(&server, &keys.unban(JAIL, host())).await;
        let other = unban("c", at + 10);
        assert_eq!(
            run(&server, lift(&other, UnbanSent::Late)).await,
            vec![FeedMessage::Unban(other.clone())]
        );
        let (record, left) = get(&server, &keys.unban(JAIL, host())).await;
        assert_eq!(record, Some(wire(FeedMessage::Unban(other))));
        assert!(
            (3_599_000..=3_600_000).contains(&left),
            "the hour the lifted ban had: {left} ms"
        );
        assert_eq!(
            run(&server, restore(&ban("a", at - 1), at + 20)).await,
            vec![]
        );
        assert_eq!(
            get(&server, &keys.ban(JAIL, host())).await.0,
            None,
            "not put back"
        );

        // A lifted ban without end: recorded for good; one already over: not recorded.
        del(&server, &keys.unban(JAIL, host())).await;
        let endless = UnbanRecord {
            end_ms: None,
            ..unban("c", at + 30)
        };
        run(&server, lift(&endless, UnbanSent::Late)).await;
        assert_eq!(get(&server, &keys.unban(JAIL, host())).await.1, -1);
        del(&server, &keys.unban(JAIL, host())).await;
        let over = UnbanRecord {
            end_ms: Some(at),
            ..unban("c", at + 40)
        };
        assert_eq!(
            run(&server, lift(&over, UnbanSent::Late)).await,
            vec![FeedMessage::Unban(over)],
            "still published"
        );
        assert_eq!(get(&server, &keys.unban(JAIL, host())).await.0, None);
    }

    #[tokio::test]
    async fn an_unban_of_no_ban_sent_late_keeps_what_was_left_and_never_covers_a_later_unban() {
        let server = server().await;
        let keys = Keys::default();
        let at = 1_000_000;
        // Sent half an hour after it was made: the record keeps the half hour left.
        let late = unban("a", at);
        run(&server, lift_at(&late, UnbanSent::Late, at + 1_800_000)).await;
        let (record, left) = get(&server, &keys.unban(JAIL, host())).await;
        assert_eq!(record, Some(wire(FeedMessage::Unban(late))));
        assert!(
            (1_799_000..=1_800_000).contains(&left),
            "half an hour: {left} ms"
        );

        // C lifted the same ban later, live, for the month it had left; A's older unban,
        // sent now, is still published but leaves C's record as it is.
        let later = UnbanRecord {
            end_ms: Some(at + 30 * 86_400_000),
            ..unban("c", at + 50)
        };
        run(&server, lift(&later, UnbanSent::Live)).await;
        let older = unban("a", at + 10);
        assert_eq!(
            run(&server, lift(&older, UnbanSent::Late)).await,
            vec![FeedMessage::Unban(older)],
            "still published"
        );
        let (record, left) = get(&server, &keys.unban(JAIL, host())).await;
        assert_eq!(
            record,
            Some(wire(FeedMessage::Unban(later))),
            "C's record stays"
        );
        assert!(left > 29 * 86_400_000, "with its month: {left} ms");
    }
}
