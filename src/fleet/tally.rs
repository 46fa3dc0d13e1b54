//! Failures counted across the fleet (`share_failures`): the one round trip that adds a batch
//! of this member's failures to their addresses' sets and reads back what each set holds
//! within the jail's findtime, checked entry by entry.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use redis::aio::MultiplexedConnection;

use super::{FailureMark, Keys, RecordError, Signer, decode_failure, encode_failure};
use crate::messages::{FailureShare, FleetCount};

/// Most entries read back per address, newest first: enough to see maxretry past entries
/// that do not check, and bounded when one address floods every member at once (its set is
/// deleted at the ban).
fn read_limit(maxretry: u32) -> usize {
    usize::try_from(maxretry)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .clamp(16, 1000)
}

/// What one batch came to.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Addresses at or past their jail's maxretry, one per jail and address.
    pub(super) reached: Vec<FleetCount>,
    /// Entries that did not check (another key, or written by something else), with the
    /// member they claim.
    pub(super) refused: Vec<(String, RecordError)>,
}

/// Adds `failures`, seen by `member`, and counts each address's failures in force at `now_ms`.
pub(super) async fn add_and_count(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
    signer: &Signer,
    member: &str,
    failures: &[FailureShare],
    now_ms: i64,
) -> redis::RedisResult<Tally> {
    let mut pipe = redis::pipe();
    for failure in failures {
        let key = keys.failures(&failure.jail, failure.host);
        let cutoff = now_ms.saturating_sub(failure.findtime_ms);
        let mark = FailureMark {
            origin: member.to_string(),
            at_ms: failure.at_ms,
            nonce: rand::random(),
        };
        pipe.cmd("ZADD")
            .arg(&key)
            .arg(failure.at_ms)
            .arg(encode_failure(&failure.jail, failure.host, &mark, signer))
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .ignore();
        // The set goes by itself once its newest failure is out of the window.
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(failure.findtime_ms.max(1))
            .ignore();
        pipe.cmd("ZREVRANGEBYSCORE")
            .arg(&key)
            .arg("+inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(read_limit(failure.maxretry));
    }
    let sets: Vec<Vec<String>> = pipe.query_async(connection).await?;
    let mut tally = Tally::default();
    // Several failures of one address in a batch: the last read saw them all.
    let mut reached: HashMap<(String, IpAddr), FleetCount> = HashMap::new();
    for (failure, entries) in failures.iter().zip(sets) {
        let cutoff = now_ms.saturating_sub(failure.findtime_ms);
        let mut counted = 0u32;
        let mut members = BTreeSet::new();
        for entry in &entries {
            match decode_failure(&failure.jail, failure.host, entry, signer) {
                // The signed time decides, not the score anyone could have set.
                Ok(mark) if mark.at_ms >= cutoff => {
                    counted += 1;
                    members.insert(mark.origin);
                }
                Ok(_) => {}
                Err(error) => {
                    let claimed = entry.split(' ').nth(1).unwrap_or("?").to_string();
                    tally.refused.push((claimed, error));
                }
            }
        }
        if counted >= failure.maxretry {
            reached.insert(
                (failure.jail.clone(), failure.host),
                FleetCount {
                    jail: failure.jail.clone(),
                    host: failure.host,
                    failures: counted,
                    members: members.into_iter().collect(),
                },
            );
        }
    }
    tally.reached = reached.into_values().collect();
    Ok(tally)
}
