//! The audit log's hash chain.
//!
//! Every entry holds the SHA-256 of its own content and of the entry before it, over a
//! canonical, length-prefixed byte encoding (not JSON, whose spelling can vary), so an
//! auditor can recompute any hash with standard tools. [`ChainVerifier`] walks a log
//! in sequence order and names the first entry that was edited, deleted, inserted or
//! reordered. A chain alone cannot show that its operator rewrote all of it, so a
//! [`Checkpoint`] (sequence and hash of the head), kept outside Purser, lets
//! verification prove the log still extends what was seen before.

use std::fmt;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How far from its stored sequence number the verifier looks for where a moved entry
/// came from, to tell a deletion or insertion from an edit.
const MOVE_SEARCH_WINDOW: i64 = 1_000;

/// Who is acting, and in which request: every audit entry names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `user:ana`, `user:ana (token ci)`, `system:close-hours`, `anonymous`.
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            name: name.into(),
            request_id,
        }
    }

    /// An entry by this actor in this request.
    pub fn draft(&self, action: impl Into<String>) -> AuditDraft {
        AuditDraft::new(self.name.clone(), action).request_id(self.request_id.clone())
    }
}

/// An event to be recorded, before it takes its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// Who did it: `user:ana`, `user:ana (token ci)`, `system:close-hours`, `anonymous`.
    pub actor: String,
    /// What happened, as `noun.verb` (`account.create`, `session.sign_in_failed`).
    pub action: String,
    /// The account concerned, if any: the log is filtered by it.
    pub account_id: Option<String>,
    /// That account's boundary at the time, so that the log itself is only shown to
    /// those cleared for it.
    pub boundary: Option<String>,
    /// Another object concerned (a user, a token, a boundary).
    pub target: Option<String>,
    /// Before and after, reasons, counts: anything an auditor needs.
    pub details: serde_json::Value,
    pub request_id: Option<String>,
}

impl AuditDraft {
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            account_id: None,
            boundary: None,
            target: None,
            details: serde_json::Value::Null,
            request_id: None,
        }
    }

    pub fn account(mut self, account_id: &str, boundary: &str) -> Self {
        self.account_id = Some(account_id.to_owned());
        self.boundary = Some(boundary.to_owned());
        self
    }

    /// Marks an entry that concerns accounts of one boundary without naming one
    /// account, so the log shows it only to those cleared for that boundary.
    pub fn boundary(mut self, boundary: &str) -> Self {
        self.boundary = Some(boundary.to_owned());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub account_id: Option<String>,
    pub boundary: Option<String>,
    pub target: Option<String>,
    /// The details exactly as hashed: JSON text with sorted keys.
    pub details: String,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Places a draft after the chain's current head.
    pub fn seal(draft: AuditDraft, head: &Checkpoint, at: Timestamp) -> AuditEntry {
        // serde_json's map is ordered by key, so this text is canonical for the value.
        let details = draft.details.to_string();
        let mut entry = AuditEntry {
            seq: head.seq + 1,
            at,
            actor: draft.actor,
            action: draft.action,
            account_id: draft.account_id,
            boundary: draft.boundary,
            target: draft.target,
            details,
            request_id: draft.request_id,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.hash_as(entry.seq);
        entry
    }

    /// The hash this entry would have if it stood at `seq`.
    fn hash_as(&self, seq: i64) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: Option<&[u8]>| match bytes {
            None => hasher.update([0u8]),
            Some(bytes) => {
                hasher.update([1u8]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
        };
        field(Some(b"purser-audit-v1"));
        field(Some(&seq.to_be_bytes()));
        field(Some(&self.at.as_microsecond().to_be_bytes()));
        field(Some(self.actor.as_bytes()));
        field(Some(self.action.as_bytes()));
        field(self.account_id.as_deref().map(str::as_bytes));
        field(self.boundary.as_deref().map(str::as_bytes));
        field(self.target.as_deref().map(str::as_bytes));
        field(Some(self.details.as_bytes()));
        field(self.request_id.as_deref().map(str::as_bytes));
        field(Some(self.prev_hash.as_bytes()));
        hex::encode(hasher.finalize())
    }

    pub fn head(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// The head of the chain at some moment: `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

impl Checkpoint {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let (seq, hash) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("`{value}` is not a checkpoint (expected SEQ:HASH)"))?;
        let seq: i64 = seq
            .parse()
            .map_err(|_| format!("`{seq}` is not a sequence number"))?;
        let valid_hash = hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit());
        if seq < 0 || !valid_hash {
            return Err(format!(
                "`{value}` is not a checkpoint (a sequence number, `:`, and 64 hex digits)"
            ));
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// The first place where the log stops being the log that was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq} was edited: its content no longer matches its hash")]
    Edited { seq: i64 },
    #[error("{count} entr{} deleted before entry {seq}", if *count == 1 { "y was" } else { "ies were" })]
    Deleted { seq: i64, count: i64 },
    #[error("{count} entr{} inserted at entry {seq}", if *count == 1 { "y was" } else { "ies were" })]
    Inserted { seq: i64, count: i64 },
    #[error("entries were reordered: entry {seq} was written as entry {written_as}")]
    Reordered { seq: i64, written_as: i64 },
    #[error("entry {seq} does not match the checkpoint {checkpoint}: the log was rewritten")]
    CheckpointMismatch { seq: i64, checkpoint: Checkpoint },
    #[error(
        "the log ends at entry {last} but the checkpoint {checkpoint} is later: entries were deleted"
    )]
    CheckpointMissing { last: i64, checkpoint: Checkpoint },
}

impl ChainBreak {
    /// The first entry concerned.
    pub fn seq(&self) -> i64 {
        match self {
            ChainBreak::Edited { seq }
            | ChainBreak::Deleted { seq, .. }
            | ChainBreak::Inserted { seq, .. }
            | ChainBreak::Reordered { seq, .. }
            | ChainBreak::CheckpointMismatch { seq, .. } => *seq,
            ChainBreak::CheckpointMissing { last, .. } => *last + 1,
        }
    }
}

/// Walks a log in sequence order, one entry at a time, so a log of any length is
/// verified in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    head: Checkpoint,
    checkpoint: Option<Checkpoint>,
    /// An entry found at `seq` that was written at a later sequence: a deletion, unless
    /// the next entry turns out to be the one written at `seq` (a reorder).
    pending_move: Option<(i64, i64)>,
    n_verified: u64,
}

impl ChainVerifier {
    /// `checkpoint`: a head seen earlier, which the log must still contain.
    pub fn new(checkpoint: Option<Checkpoint>) -> Self {
        Self {
            head: Checkpoint::genesis(),
            checkpoint,
            pending_move: None,
            n_verified: 0,
        }
    }

    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let expected = self.head.seq + 1;
        let written_as = self.written_as(entry);
        if let Some((seq, moved_from)) = self.pending_move.take() {
            return Err(if written_as == Some(seq) {
                ChainBreak::Reordered {
                    seq,
                    written_as: moved_from,
                }
            } else {
                ChainBreak::Deleted {
                    seq,
                    count: moved_from - seq,
                }
            });
        }
        match written_as {
            None => return Err(ChainBreak::Edited { seq: entry.seq }),
            Some(original) if original != entry.seq => {
                // The entry is intact but renumbered.
                if original > entry.seq {
                    self.pending_move = Some((entry.seq, original));
                    // Decided by the next entry (or at the end).
                    self.head = entry.head();
                    return Ok(());
                }
                return Err(ChainBreak::Inserted {
                    seq: original,
                    count: entry.seq - original,
                });
            }
            Some(_) => {}
        }
        if entry.seq > expected {
            return Err(ChainBreak::Deleted {
                seq: expected,
                count: entry.seq - expected,
            });
        }
        if entry.seq < expected {
            return Err(ChainBreak::Inserted {
                seq: entry.seq,
                count: 1,
            });
        }
        if entry.prev_hash != self.head.hash {
            // Intact and in place, but chained to another predecessor: the entry before
            // it was replaced by one written to look valid.
            return Err(ChainBreak::Inserted {
                seq: self.head.seq,
                count: 1,
            });
        }
        if let Some(checkpoint) = &self.checkpoint
            && checkpoint.seq == entry.seq
            && checkpoint.hash != entry.hash
        {
            return Err(ChainBreak::CheckpointMismatch {
                seq: entry.seq,
                checkpoint: checkpoint.clone(),
            });
        }
        self.head = entry.head();
        self.n_verified += 1;
        Ok(())
    }

    /// Ends the walk. `recorded_head` is the head storage kept beside the log (it
    /// catches entries deleted from the end, which the chain alone cannot).
    pub fn finish(self, recorded_head: Option<&Checkpoint>) -> Result<Checkpoint, ChainBreak> {
        if let Some((seq, moved_from)) = self.pending_move {
            return Err(ChainBreak::Deleted {
                seq,
                count: moved_from - seq,
            });
        }
        if let Some(recorded) = recorded_head {
            if recorded.seq > self.head.seq {
                return Err(ChainBreak::Deleted {
                    seq: self.head.seq + 1,
                    count: recorded.seq - self.head.seq,
                });
            }
            if recorded.seq < self.head.seq {
                return Err(ChainBreak::Inserted {
                    seq: recorded.seq + 1,
                    count: self.head.seq - recorded.seq,
                });
            }
            if recorded.hash != self.head.hash {
                return Err(ChainBreak::Edited { seq: recorded.seq });
            }
        }
        if let Some(checkpoint) = self.checkpoint
            && checkpoint.seq > self.head.seq
        {
            return Err(ChainBreak::CheckpointMissing {
                last: self.head.seq,
                checkpoint,
            });
        }
        Ok(self.head)
    }

    pub fn n_verified(&self) -> u64 {
        self.n_verified
    }

    /// The sequence number the entry's hash was computed at, if any nearby.
    fn written_as(&self, entry: &AuditEntry) -> Option<i64> {
        if entry.hash_as(entry.seq) == entry.hash {
            return Some(entry.seq);
        }
        let low = (entry.seq - MOVE_SEARCH_WINDOW).max(1);
        (low..=entry.seq + MOVE_SEARCH_WINDOW)
            .filter(|&seq| seq != entry.seq)
            .find(|&seq| entry.hash_as(seq) == entry.hash)
    }
}

/// Verifies a whole log held in memory (tests, small logs).
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    recorded_head: Option<&Checkpoint>,
    checkpoint: Option<Checkpoint>,
) -> Result<Checkpoint, ChainBreak> {
    let mut verifier = ChainVerifier::new(checkpoint);
    for entry in entries {
        verifier.push(entry)?;
    }
    verifier.finish(recorded_head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut head = Checkpoint::genesis();
        let mut entries = Vec::new();
        for i in 0..n {
            let draft = AuditDraft::new("user:ana", "account.update")
                .account("acc-1", "standard")
                .details(
                    serde_json::json!({"i": i, "before": {"name": "A"}, "after": {"name": "B"}}),
                );
            let at = Timestamp::from_second(1_700_000_000 + i).expect("valid time");
            let entry = AuditEntry::seal(draft, &head, at);
            head = entry.head();
            entries.push(entry);
        }
        entries
    }

    fn renumber(entries: &mut [AuditEntry]) {
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.seq = i as i64 + 1;
        }
    }

    #[test]
    fn an_untouched_chain_verifies_to_its_head() {
        let entries = chain(5);
        let head = entries[4].head();
        assert_eq!(verify_chain(&entries, Some(&head), None), Ok(head.clone()));
        assert_eq!(
            verify_chain(&entries, Some(&head), Some(entries[2].head())),
            Ok(head)
        );
    }

    #[test]
    fn an_edit_is_named() {
        let mut entries = chain(5);
        entries[2].details = entries[2].details.replace("\"B\"", "\"C\"");
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Edited { seq: 3 })
        );
    }

    #[test]
    fn a_deletion_is_named_with_or_without_renumbering() {
        let mut entries = chain(6);
        entries.remove(2);
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Deleted { seq: 3, count: 1 })
        );
        renumber(&mut entries);
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Deleted { seq: 3, count: 1 })
        );
    }

    #[test]
    fn a_deletion_at_the_end_is_caught_by_the_recorded_head() {
        let mut entries = chain(5);
        let head = entries[4].head();
        entries.truncate(3);
        assert!(
            verify_chain(&entries, None, None).is_ok(),
            "the chain alone cannot tell"
        );
        assert_eq!(
            verify_chain(&entries, Some(&head), None),
            Err(ChainBreak::Deleted { seq: 4, count: 2 })
        );
    }

    #[test]
    fn an_insertion_is_named() {
        let mut entries = chain(5);
        let forged = AuditEntry::seal(
            AuditDraft::new("user:mallory", "account.update"),
            &entries[1].head(),
            Timestamp::from_second(1_700_000_010).expect("valid time"),
        );
        entries.insert(2, forged);
        renumber(&mut entries);
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Inserted { seq: 3, count: 1 })
        );
    }

    #[test]
    fn a_replaced_entry_is_named_even_when_self_consistent() {
        let mut entries = chain(5);
        entries[2] = AuditEntry::seal(
            AuditDraft::new("user:mallory", "account.update"),
            &entries[1].head(),
            Timestamp::from_second(1_700_000_010).expect("valid time"),
        );
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Inserted { seq: 3, count: 1 })
        );
    }

    #[test]
    fn a_reorder_is_named() {
        let mut entries = chain(5);
        entries.swap(1, 2);
        renumber(&mut entries);
        assert_eq!(
            verify_chain(&entries, None, None),
            Err(ChainBreak::Reordered {
                seq: 2,
                written_as: 3
            })
        );
    }

    #[test]
    fn a_full_rewrite_passes_the_chain_but_not_the_checkpoint() {
        let original = chain(5);
        let checkpoint = original[3].head();
        // The operator rewrites every entry from scratch: a valid chain of other content.
        let mut head = Checkpoint::genesis();
        let rewritten: Vec<_> = (0..5)
            .map(|i| {
                let entry = AuditEntry::seal(
                    AuditDraft::new("user:mallory", "account.update"),
                    &head,
                    Timestamp::from_second(1_700_000_000 + i).expect("valid time"),
                );
                head = entry.head();
                entry
            })
            .collect();
        assert!(verify_chain(&rewritten, None, None).is_ok());
        assert_eq!(
            verify_chain(&rewritten, None, Some(checkpoint.clone())),
            Err(ChainBreak::CheckpointMismatch {
                seq: 4,
                checkpoint: checkpoint.clone()
            })
        );
        assert_eq!(
            verify_chain(&rewritten[..2], None, Some(checkpoint.clone())),
            Err(ChainBreak::CheckpointMissing {
                last: 2,
                checkpoint
            })
        );
    }

    #[test]
    fn checkpoints_parse_and_print() {
        let head = chain(1)[0].head();
        assert_eq!(Checkpoint::parse(&head.to_string()), Ok(head));
        assert!(Checkpoint::parse("12").is_err());
        assert!(Checkpoint::parse("x:abc").is_err());
        assert!(Checkpoint::parse("3:abc").is_err());
    }
}
