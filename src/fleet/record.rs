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
        let bytes = hex::decode(signature).map_err(|_| RecordError::BadSignature)?;
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
    serde_json::from_str(json).map_err(|error| RecordError::Malformed(error.to_string()))
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
        });
        let wire = encode_message(&unban, &signer);
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
}
