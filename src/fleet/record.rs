//! Bans and unbans as the members exchange them, and their signatures.
//!
//! On the wire a message is `SIG JSON`: `SIG` is the hex HMAC-SHA256 of the JSON bytes exactly
//! as stored (so no canonical form is needed), or `-` when the fleet signs nothing. A member
//! with a key refuses anything whose signature does not check, unsigned included.

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A ban in force somewhere in the fleet: what one Redis key holds and what the feed carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    /// The member that made the ban (from a log or the command line).
    pub origin: String,
    /// The jail, matched by name on every member.
    pub jail: String,
    /// The banned address.
    pub ip: IpAddr,
    /// When the ban started, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// When it ends, in milliseconds since the epoch; `None` for a ban without end.
    pub end_ms: Option<i64>,
    /// How many times the origin has banned this address (for increments).
    pub count: u32,
}

impl BanRecord {
    /// What is left of the ban at `now_ms`: `None` when it is over, `Some(None)` when it
    /// never ends. Each member applies the same end, so the remaining time is the same
    /// everywhere whatever the delay.
    pub fn remaining(&self, now_ms: i64) -> Option<Option<Duration>> {
        match self.end_ms {
            None => Some(None),
            Some(end) if end > now_ms => Some(Some(Duration::from_millis(
                u64::try_from(end - now_ms).ok()?,
            ))),
            Some(_) => None,
        }
    }
}

/// An unban spreading through the feed; the ban's key is deleted along with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbanRecord {
    /// The member the unban was asked on.
    pub origin: String,
    /// The jail.
    pub jail: String,
    /// The address set free.
    pub ip: IpAddr,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The end the lifted ban had where it was lifted (`None`: it had none). Where Redis
    /// holds no ban to take the time left from, the unban is recorded until then; once past
    /// it, an unban not yet sent has nothing left to lift.
    pub end_ms: Option<i64>,
}

/// One message of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedMessage {
    /// A new or renewed ban.
    Ban(BanRecord),
    /// A ban lifted.
    Unban(UnbanRecord),
}

impl FeedMessage {
    /// The member the message comes from: its own messages a member skips.
    pub fn origin(&self) -> &str {
        match self {
            FeedMessage::Ban(ban) => &ban.origin,
            FeedMessage::Unban(unban) => &unban.origin,
        }
    }
}

/// Why a message from Redis is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not `SIG JSON`, or JSON that is not a message.
    #[error("not a logjail fleet message: {0}")]
    Malformed(String),
    /// Signed with another key, changed after signing, or unsigned where a key is set.
    #[error("the signature does not check (another HMAC key, or written by something else)")]
    BadSignature,
    /// `fleet.hmac_key_file` is empty.
    #[error("the HMAC key is empty")]
    EmptyKey,
}

/// Signs and checks messages with the fleet's shared key, or passes them unsigned.
#[derive(Clone)]
pub struct Signer {
    /// The keyed MAC, ready to be cloned for each message.
    mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself, not even in debug logs.
        f.debug_struct("Signer")
            .field("signs", &self.mac.is_some())
            .finish()
    }
}

impl Signer {
    /// A fleet that signs nothing (and accepts only unsigned messages' content as is).
    pub fn unsigned() -> Self {
        Signer { mac: None }
    }

    /// A signer with `key` (the content of `fleet.hmac_key_file`); an empty key is refused,
    /// since it would sign with nothing secret.
    pub fn with_key(key: &[u8]) -> Result<Self, RecordError> {
        if key.is_empty() {
            return Err(RecordError::EmptyKey);
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| RecordError::EmptyKey)?;
        Ok(Signer { mac: Some(mac) })
    }

    fn sign(&self, payload: &[u8]) -> String {
        match &self.mac {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(payload);
                hex::encode(mac.finalize().into_bytes())
            }
            None => "-".to_string(),
        }
    }

    fn check(&self, signature: &str, payload: &[u8]) -> Result<(), RecordError> {
        let Some(mac) = &self.mac else {
            return Ok(());
        };
        // Into a fixed array: a new member checks 100,000 of these before it starts.
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(signature, &mut bytes).map_err(|_| RecordError::BadSignature)?;
        let mut mac = mac.clone();
        mac.update(payload);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&bytes)
            .map_err(|_| RecordError::BadSignature)
    }
}

/// The wire form of `message`, signed.
pub fn encode_message(message: &FeedMessage, signer: &Signer) -> String {
    // Serializing plain data with `String` keys cannot fail.
    let json = serde_json::to_string(message).unwrap_or_default();
    format!("{} {json}", signer.sign(json.as_bytes()))
}

/// A message read back from Redis, its signature checked.
pub fn decode_message(text: &str, signer: &Signer) -> Result<FeedMessage, RecordError> {
    let (signature, json) = text
        .split_once(' ')
        .ok_or_else(|| RecordError::Malformed("no signature".to_string()))?;
    signer.check(signature, json.as_bytes())?;
    serde_json::from_str::<WireMessage>(json)
        .map_err(|error| RecordError::Malformed(error.to_string()))?
        .into_message()
}

/// Either message as one flat object, read in one pass: serde reads an internally tagged enum
/// by buffering the whole object first, which doubles the cost of a new member's catch-up.
#[derive(Deserialize)]
struct WireMessage {
    kind: WireKind,
    origin: String,
    jail: String,
    ip: IpAddr,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    count: Option<u32>,
    at_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Ban,
    Unban,
}

impl WireMessage {
    fn into_message(self) -> Result<FeedMessage, RecordError> {
        let missing = |field: &str| RecordError::Malformed(format!("missing field `{field}`"));
        Ok(match self.kind {
            WireKind::Ban => FeedMessage::Ban(BanRecord {
                origin: self.origin,
                jail: self.jail,
                ip: self.ip,
                start_ms: self.start_ms.ok_or_else(|| missing("start_ms"))?,
                end_ms: self.end_ms,
                count: self.count.ok_or_else(|| missing("count"))?,
            }),
            WireKind::Unban => FeedMessage::Unban(UnbanRecord {
                origin: self.origin,
                jail: self.jail,
                ip: self.ip,
                at_ms: self.at_ms.ok_or_else(|| missing("at_ms"))?,
                end_ms: self.end_ms,
            }),
        })
    }
}

/// One failure in a fleet-wide count (`PREFIX:fail:JAIL:IP`, a sorted set scored by time).
/// On the wire `SIG ORIGIN AT_MS NONCE`: the signature covers the jail and address too, so an
/// entry copied into another address's set does not count there. The score only serves to
/// trim the set; counts use the signed time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureMark {
    /// The member that saw the failure.
    pub origin: String,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// Tells apart two failures a member saw in the same millisecond.
    pub nonce: u64,
}

fn failure_payload(jail: &str, ip: IpAddr, origin: &str, at_ms: i64, nonce: u64) -> String {
    format!("fail {jail} {ip} {origin} {at_ms} {nonce}")
}

/// The sorted-set member for `mark`, failure of `ip` in `jail`, signed.
pub fn encode_failure(jail: &str, ip: IpAddr, mark: &FailureMark, signer: &Signer) -> String {
    let payload = failure_payload(jail, ip, &mark.origin, mark.at_ms, mark.nonce);
    format!(
        "{} {} {} {}",
        signer.sign(payload.as_bytes()),
        mark.origin,
        mark.at_ms,
        mark.nonce
    )
}

/// A sorted-set member read back from `jail`'s set of `ip`, its signature checked.
pub fn decode_failure(
    jail: &str,
    ip: IpAddr,
    entry: &str,
    signer: &Signer,
) -> Result<FailureMark, RecordError> {
    let malformed = || RecordError::Malformed(format!("not a failure entry: {entry:.80}"));
    let mut words = entry.split(' ');
    let (Some(signature), Some(origin), Some(at_ms), Some(nonce), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(malformed());
    };
    let at_ms: i64 = at_ms.parse().map_err(|_| malformed())?;
    let nonce: u64 = nonce.parse().map_err(|_| malformed())?;
    let payload = failure_payload(jail, ip, origin, at_ms, nonce);
    signer.check(signature, payload.as_bytes())?;
    Ok(FailureMark {
        origin: origin.to_string(),
        at_ms,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban() -> BanRecord {
        BanRecord {
            origin: "a".into(),
            jail: "sshd".into(),
            ip: "203.0.113.7".parse().unwrap(),
            start_ms: 1_000,
            end_ms: Some(601_000),
            count: 2,
        }
    }

    #[test]
    fn a_signed_message_reads_back_with_the_same_key_only() {
        let key = Signer::with_key(b"fleet secret").unwrap();
        let message = FeedMessage::Ban(ban());
        let wire = encode_message(&message, &key);
        assert_eq!(decode_message(&wire, &key), Ok(message.clone()));
        let other = Signer::with_key(b"another").unwrap();
        assert_eq!(
            decode_message(&wire, &other),
            Err(RecordError::BadSignature)
        );
        // Changed after signing: the end pushed back.
        let forged = wire.replace("601000", "901000");
        assert_ne!(forged, wire);
        assert_eq!(
            decode_message(&forged, &key),
            Err(RecordError::BadSignature)
        );
    }

    #[test]
    fn every_field_a_message_needs_is_required_and_a_ban_without_end_reads_back() {
        let signer = Signer::unsigned();
        let forever = FeedMessage::Ban(BanRecord {
            end_ms: None,
            ..ban()
        });
        let wire = encode_message(&forever, &signer);
        assert_eq!(decode_message(&wire, &signer), Ok(forever));
        for (text, missing) in [
            (
                r#"- {"kind":"ban","origin":"a","jail":"j","ip":"192.0.2.1","count":1}"#,
                "start_ms",
            ),
            (
                r#"- {"kind":"ban","origin":"a","jail":"j","ip":"192.0.2.1","start_ms":1}"#,
                "count",
            ),
            (
                r#"- {"kind":"unban","origin":"a","jail":"j","ip":"192.0.2.1"}"#,
                "at_ms",
            ),
            (
                r#"- {"kind":"ban","jail":"j","ip":"192.0.2.1","start_ms":1,"count":1}"#,
                "origin",
            ),
        ] {
            match decode_message(text, &signer) {
                Err(RecordError::Malformed(why)) => assert!(why.contains(missing), "{why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // A signature that is not 32 bytes of hex is refused before any MAC is computed.
        let key = Signer::with_key(b"k").unwrap();
        let signed = encode_message(&FeedMessage::Ban(ban()), &key);
        let (signature, json) = signed.split_once(' ').unwrap();
        for bad in [
            &signature[..62],
            &format!("{signature}00"),
            &signature.replace(&signature[..1], "z"),
        ] {
            assert_eq!(
                decode_message(&format!("{bad} {json}"), &key),
                Err(RecordError::BadSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_member_with_a_key_refuses_unsigned_messages() {
        let unsigned = encode_message(&FeedMessage::Ban(ban()), &Signer::unsigned());
        assert!(unsigned.starts_with("- "));
        assert_eq!(
            decode_message(&unsigned, &Signer::with_key(b"k").unwrap()),
            Err(RecordError::BadSignature)
        );
        assert!(decode_message(&unsigned, &Signer::unsigned()).is_ok());
        assert_eq!(Signer::with_key(b"").err(), Some(RecordError::EmptyKey));
    }

    #[test]
    fn unbans_carry_their_origin_and_garbage_is_malformed() {
        let signer = Signer::unsigned();
        let unban = FeedMessage::Unban(UnbanRecord {
            origin: "c".into(),
            jail: "sshd".into(),
            ip: "2001:db8::1".parse().unwrap(),
            at_ms: 5,
            end_ms: Some(3_600_005),
        });
        let wire = encode_message(&unban, &signer);
        assert_eq!(decode_message(&wire, &signer), Ok(unban));
        // From a member that does not send the lifted ban's end: read as a ban without end.
        let bare = format!(
            "{} {{\"kind\":\"unban\",\"origin\":\"c\",\"jail\":\"sshd\",\"ip\":\"192.0.2.1\",\"at_ms\":5}}",
            wire.split_once(' ').unwrap().0
        );
        let Ok(FeedMessage::Unban(old)) = decode_message(&bare, &signer) else {
            panic!("an unban without end_ms reads");
        };
        assert_eq!((old.at_ms, old.end_ms), (5, None));
        assert_eq!(decode_message(&wire, &signer).unwrap().origin(), "c");
        assert!(matches!(
            decode_message("nonsense", &signer),
            Err(RecordError::Malformed(_))
        ));
        assert!(matches!(
            decode_message("- {\"kind\":\"other\"}", &signer),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn the_remaining_time_is_the_same_end_for_everyone() {
        let record = ban();
        assert_eq!(
            record.remaining(301_000),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(record.remaining(601_000), None);
        let forever = BanRecord {
            end_ms: None,
            ..ban()
        };
        assert_eq!(forever.remaining(i64::MAX), Some(None));
    }

    #[test]
    fn a_failure_entry_counts_only_for_its_own_jail_and_address_and_key() {
        let key = Signer::with_key(b"fleet secret").unwrap();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let mark = FailureMark {
            origin: "b".into(),
            at_ms: 1_700_000_000_000,
            nonce: 42,
        };
        let entry = encode_failure("sshd", ip, &mark, &key);
        assert_eq!(decode_failure("sshd", ip, &entry, &key), Ok(mark.clone()));
        // Copied into another address's set, or another jail's: refused.
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert_eq!(
            decode_failure("sshd", other, &entry, &key),
            Err(RecordError::BadSignature)
        );
        assert_eq!(
            decode_failure("nginx", ip, &entry, &key),
            Err(RecordError::BadSignature)
        );
        // Moved in time, or written without the key.
        let moved = entry.replace("1700000000000", "1700000600000");
        assert_eq!(
            decode_failure("sshd", ip, &moved, &key),
            Err(RecordError::BadSignature)
        );
        let unsigned = encode_failure("sshd", ip, &mark, &Signer::unsigned());
        assert_eq!(
            decode_failure("sshd", ip, &unsigned, &key),
            Err(RecordError::BadSignature)
        );
        // A fleet without a key reads unsigned entries; junk is malformed either way.
        assert_eq!(
            decode_failure("sshd", ip, &unsigned, &Signer::unsigned()),
            Ok(mark)
        );
        assert!(matches!(
            decode_failure("sshd", ip, "- b soon 1", &Signer::unsigned()),
            Err(RecordError::Malformed(_))
        ));
    }
}
