//! Metering evidence: what each closed hour was computed from and what it came to.
//!
//! When an account's hour closes, its record holds the digest of its exact input (the set of
//! events behind it) and of its result (quantities and rating), and is chained like
//! the audit log (see [`crate::chain`]): finance and auditors can trace any billed
//! quantity back to its events, and a closed hour cannot change without verification
//! naming it.

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::chain::{ChainHasher, Chained, Checkpoint};

/// The digest of an exact set of events, given their identity keys (the hash of each
/// event's `source` and `id`). Keys are sorted and deduplicated first, so the digest
/// depends on which events, never on the order or the number of times they arrived.
/// Returns the digest and the number of distinct events.
pub fn input_digest<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> (String, u64) {
    // Sorted by their bytes and deduplicated, without copying each key.
    let mut keys: Vec<K> = keys.into_iter().collect();
    keys.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    keys.dedup_by(|a, b| a.as_ref() == b.as_ref());
    let mut hasher = Sha256::new();
    hasher.update(b"purser-input-v1");
    for key in &keys {
        let key = key.as_ref();
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key);
    }
    (hex::encode(hasher.finalize()), keys.len() as u64)
}

/// A closed hour's evidence, before it takes its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourEvidenceDraft {
    pub account_id: String,
    /// The start of the hour (UTC).
    pub hour: Timestamp,
    /// [`input_digest`] of the events aggregated into the hour.
    pub input_digest: String,
    pub n_events: u64,
    /// The result as canonical JSON text (decimals as strings): every meter's
    /// aggregate, the dimension quantities, late adjustments and the rating
    /// (see [`crate::closing::AccountHour`]).
    pub result: String,
}

/// A closed hour's evidence as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourEvidence {
    pub seq: i64,
    pub closed_at: Timestamp,
    pub account_id: String,
    pub hour: Timestamp,
    pub input_digest: String,
    pub n_events: u64,
    pub result: String,
    /// SHA-256 of `result`, so a quantity can be checked without the chain.
    pub result_digest: String,
    pub prev_hash: String,
    pub hash: String,
}

impl HourEvidence {
    /// Places a draft after the chain's current head.
    pub fn seal(draft: HourEvidenceDraft, head: &Checkpoint, closed_at: Timestamp) -> HourEvidence {
        let mut evidence = HourEvidence {
            seq: head.seq + 1,
            closed_at,
            result_digest: hex::encode(Sha256::digest(draft.result.as_bytes())),
            account_id: draft.account_id,
            hour: draft.hour,
            input_digest: draft.input_digest,
            n_events: draft.n_events,
            result: draft.result,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        evidence.hash = evidence.hash_as(evidence.seq);
        evidence
    }
}

impl Chained for HourEvidence {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn prev_hash(&self) -> &str {
        &self.prev_hash
    }

    fn hash(&self) -> &str {
        &self.hash
    }

    fn hash_as(&self, seq: i64) -> String {
        let mut hasher = ChainHasher::new("purser-hour-evidence-v1");
        hasher
            .int(seq)
            .int(self.closed_at.as_microsecond())
            .text(&self.account_id)
            .int(self.hour.as_microsecond())
            .text(&self.input_digest)
            .int(self.n_events as i64)
            .text(&self.result)
            .text(&self.result_digest)
            .text(&self.prev_hash);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ChainBreak, verify_chain};

    fn ts(value: &str) -> Timestamp {
        value.parse().expect("timestamp")
    }

    #[test]
    fn the_input_digest_depends_on_the_set_not_the_arrival() {
        let (a, n) = input_digest([b"k1".as_slice(), b"k2", b"k3"]);
        let (b, _) = input_digest([b"k3".as_slice(), b"k1", b"k2", b"k1"]);
        assert_eq!(a, b, "order and resends do not matter");
        assert_eq!(n, 3);
        let (c, _) = input_digest([b"k1".as_slice(), b"k2"]);
        assert_ne!(a, c, "a missing event changes it");
        let (empty, n) = input_digest(Vec::<Vec<u8>>::new());
        assert_eq!(n, 0);
        assert_ne!(empty, c);
    }

    fn chain() -> Vec<HourEvidence> {
        let mut head = Checkpoint::genesis();
        (0..4)
            .map(|i| {
                let (digest, n) = input_digest([format!("event-{i}")]);
                let draft = HourEvidenceDraft {
                    account_id: "acct-1".into(),
                    hour: ts("2026-11-16T00:00:00Z") + jiff::SignedDuration::from_hours(i),
                    input_digest: digest,
                    n_events: n,
                    result: format!(r#"{{"quantity":"{}.5"}}"#, 10 + i),
                };
                let evidence = HourEvidence::seal(draft, &head, ts("2026-11-16T06:00:00Z"));
                head = evidence.head();
                evidence
            })
            .collect()
    }

    #[test]
    fn closed_hours_chain_and_a_changed_quantity_is_named() {
        let mut hours = chain();
        let head = hours[3].head();
        assert_eq!(verify_chain(&hours, Some(&head), None), Ok(head));
        hours[1].result = r#"{"quantity":"99.5"}"#.into();
        assert_eq!(
            verify_chain(&hours, None, None),
            Err(ChainBreak::Edited { seq: 2 })
        );
    }
}
