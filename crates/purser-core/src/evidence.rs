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
        PresealedEvidence::new(draft, head.seq + 1, closed_at).seal(&head.hash)
    }

    /// The chain hash fed with every field but the previous hash, which comes last:
    /// what [`PresealedEvidence`] computes ahead of knowing it.
    fn hasher_before_prev(seq: i64, closed_at: Timestamp, fields: Fields<'_>) -> ChainHasher {
        let mut hasher = ChainHasher::new("purser-hour-evidence-v1");
        hasher
            .int(seq)
            .int(closed_at.as_microsecond())
            .text(fields.account_id)
            .int(fields.hour.as_microsecond())
            .text(fields.input_digest)
            .int(fields.n_events as i64)
            .text(fields.result)
            .text(fields.result_digest);
        hasher
    }
}

/// The hashed fields an entry holds whether stored or still a draft, borrowed.
struct Fields<'a> {
    account_id: &'a str,
    hour: Timestamp,
    input_digest: &'a str,
    n_events: u64,
    result: &'a str,
    result_digest: &'a str,
}

impl<'a> Fields<'a> {
    fn of_draft(draft: &'a HourEvidenceDraft, result_digest: &'a str) -> Fields<'a> {
        Fields {
            account_id: &draft.account_id,
            hour: draft.hour,
            input_digest: &draft.input_digest,
            n_events: draft.n_events,
            result: &draft.result,
            result_digest,
        }
    }
}

/// A draft hashed as far as it can be before the hash of the entry before it is known:
/// the result's digest and every chain field but the last. Closing an hour does this
/// for each account on every core, so that chaining an hour's accounts in order (which
/// only one thread can do) costs one more hash block each, not a pass over each result.
pub struct PresealedEvidence {
    seq: i64,
    closed_at: Timestamp,
    draft: HourEvidenceDraft,
    result_digest: String,
    hasher: ChainHasher,
}

impl PresealedEvidence {
    /// Hashes `draft` as the entry at `seq`, closed at `closed_at`.
    pub fn new(draft: HourEvidenceDraft, seq: i64, closed_at: Timestamp) -> PresealedEvidence {
        let result_digest = hex::encode(Sha256::digest(draft.result.as_bytes()));
        let hasher = HourEvidence::hasher_before_prev(
            seq,
            closed_at,
            Fields::of_draft(&draft, &result_digest),
        );
        PresealedEvidence {
            seq,
            closed_at,
            draft,
            result_digest,
            hasher,
        }
    }

    /// The sequence number it was hashed for: it may only follow the entry before it.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn draft(&self) -> &HourEvidenceDraft {
        &self.draft
    }

    /// Completes the entry after the one whose hash is `prev_hash`.
    pub fn seal(self, prev_hash: &str) -> HourEvidence {
        let PresealedEvidence {
            seq,
            closed_at,
            draft,
            result_digest,
            mut hasher,
        } = self;
        hasher.text(prev_hash);
        HourEvidence {
            seq,
            closed_at,
            account_id: draft.account_id,
            hour: draft.hour,
            input_digest: draft.input_digest,
            n_events: draft.n_events,
            result: draft.result,
            result_digest,
            prev_hash: prev_hash.to_owned(),
            hash: hasher.finish(),
        }
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
        let fields = Fields {
            account_id: &self.account_id,
            hour: self.hour,
            input_digest: &self.input_digest,
            n_events: self.n_events,
            result: &self.result,
            result_digest: &self.result_digest,
        };
        let mut hasher = HourEvidence::hasher_before_prev(seq, self.closed_at, fields);
        hasher.text(&self.prev_hash);
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
    fn presealed_ahead_and_chained_after_is_the_same_chain() {
        let sealed = chain();
        let closed_at = sealed[0].closed_at;
        // Hashed ahead, out of order (as closing threads finish), then chained in order.
        let mut presealed: Vec<PresealedEvidence> = sealed
            .iter()
            .rev()
            .map(|e| {
                let draft = HourEvidenceDraft {
                    account_id: e.account_id.clone(),
                    hour: e.hour,
                    input_digest: e.input_digest.clone(),
                    n_events: e.n_events,
                    result: e.result.clone(),
                };
                PresealedEvidence::new(draft, e.seq, closed_at)
            })
            .collect();
        presealed.reverse();
        let mut head = Checkpoint::genesis();
        for (pre, expected) in presealed.into_iter().zip(&sealed) {
            assert_eq!(pre.seq(), head.seq + 1);
            let evidence = pre.seal(&head.hash);
            assert_eq!(&evidence, expected);
            head = evidence.head();
        }
        assert_eq!(
            verify_chain(&sealed, Some(&head), None),
            Ok(head.clone()),
            "the verifier recomputes the same hashes"
        );
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
