//! The fleet's protocol over Redis, without the connection: where things live (key layout),
//! what a shared ban looks like on the wire, and how members sign it.
//!
//! Layout, under one prefix so that several fleets can share a server:
//!
//! ```text
//!  PREFIX:ban:JAIL:IP     one key per ban in force, PX = its remaining time,
//!                         value = a signed BanRecord (origin member, jail, ip, start, end, count)
//!  PREFIX:unban:JAIL:IP   a signed UnbanRecord, PX = what the lifted ban had left, so that
//!                         a member away from the feed lifts the ban when it returns
//!  PREFIX:feed            pub/sub channel: every ban and unban as a signed FeedMessage,
//!                         for latency; the keys are the truth a (re)connecting member loads
//!  PREFIX:member:NAME     a member's last heartbeat, for `status` (members seen, lag)
//!  PREFIX:fail:JAIL:IP    share_failures: one sorted set per address, one signed entry per
//!                         failure (FailureMark), scored by its time, trimmed to findtime,
//!                         PX = findtime; deleted when the address is banned
//! ```
//!
//! The keys carry the durable state so that a member that was down catches up by a SCAN
//! alone; the feed only makes the common case fast. Every message names its origin member so
//! that a member ignores its own.

mod keys;
mod pull;
mod record;
mod tally;
pub mod task;
mod writes;

pub use keys::{BanKey, Keys};
pub use record::{
    BanRecord, FailureMark, FeedMessage, RecordError, Signer, UnbanRecord, decode_failure,
    decode_message, encode_failure, encode_message,
};
