//! Hash chains: the shape shared by the audit log and metering's evidence.
//!
//! Each entry holds the SHA-256 of its own content and the hash of the entry before
//! it, over a canonical, length-prefixed byte encoding ([`ChainHasher`]), so anyone can
//! recompute a hash with standard tools. [`ChainVerifier`] walks a chain in sequence
//! order and names the first entry that was edited, deleted, inserted or reordered. A
//! chain alone cannot show that its operator rewrote all of it, so a [`Checkpoint`]
//! (sequence and hash of the head), kept elsewhere, lets verification prove the chain
//! still extends what was seen before.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How far from its stored sequence number the verifier looks for where a moved entry
/// came from, to tell a deletion or insertion from an edit.
const MOVE_SEARCH_WINDOW: i64 = 1_000;

/// An entry of a hash chain.
pub trait Chained {
    fn seq(&self) -> i64;
    fn prev_hash(&self) -> &str;
    fn hash(&self) -> &str;
    /// The hash this entry's content would have if it stood at `seq`.
    fn hash_as(&self, seq: i64) -> String;

    fn head(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq(),
            hash: self.hash().to_owned(),
        }
    }
}

/// SHA-256 over length-prefixed fields: `None` and `Some("")` differ, and no field can
/// run into the next.
pub struct ChainHasher(Sha256);

impl ChainHasher {
    /// Starts a hash for a chain of `kind` (`purser-audit-v1`), so entries of one chain
    /// can never pass for entries of another.
    pub fn new(kind: &str) -> Self {
        let mut hasher = ChainHasher(Sha256::new());
        hasher.field(Some(kind.as_bytes()));
        hasher
    }

    pub fn field(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            None => self.0.update([0u8]),
            Some(bytes) => {
                self.0.update([1u8]);
                self.0.update((bytes.len() as u64).to_be_bytes());
                self.0.update(bytes);
            }
        }
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.field(Some(text.as_bytes()))
    }

    pub fn optional(&mut self, text: Option<&str>) -> &mut Self {
        self.field(text.map(str::as_bytes))
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.field(Some(&value.to_be_bytes()))
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
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

    /// Continues a walk after `head`, an entry the caller has just verified itself
    /// (re-hashed and found equal to a checkpoint): verifying a long log from a
    /// checkpoint onwards instead of from its start.
    pub fn resume(head: Checkpoint) -> Self {
        Self {
            head,
            checkpoint: None,
            pending_move: None,
            n_verified: 0,
        }
    }

    pub fn push(&mut self, entry: &impl Chained) -> Result<(), ChainBreak> {
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
            None => return Err(ChainBreak::Edited { seq: entry.seq() }),
            Some(original) if original != entry.seq() => {
                // The entry is intact but renumbered.
                if original > entry.seq() {
                    self.pending_move = Some((entry.seq(), original));
                    // Decided by the next entry (or at the end).
                    self.head = entry.head();
                    return Ok(());
                }
                return Err(ChainBreak::Inserted {
                    seq: original,
                    count: entry.seq() - original,
                });
            }
            Some(_) => {}
        }
        if entry.seq() > expected {
            return Err(ChainBreak::Deleted {
                seq: expected,
                count: entry.seq() - expected,
            });
        }
        if entry.seq() < expected {
            return Err(ChainBreak::Inserted {
                seq: entry.seq(),
                count: 1,
            });
        }
        if entry.prev_hash() != self.head.hash {
            // Intact and in place, but chained to another predecessor: the entry before
            // it was replaced by one written to look valid.
            return Err(ChainBreak::Inserted {
                seq: self.head.seq,
                count: 1,
            });
        }
        if let Some(checkpoint) = &self.checkpoint
            && checkpoint.seq == entry.seq()
            && checkpoint.hash != entry.hash()
        {
            return Err(ChainBreak::CheckpointMismatch {
                seq: entry.seq(),
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
    fn written_as(&self, entry: &impl Chained) -> Option<i64> {
        if entry.hash_as(entry.seq()) == entry.hash() {
            return Some(entry.seq());
        }
        let low = (entry.seq() - MOVE_SEARCH_WINDOW).max(1);
        (low..=entry.seq() + MOVE_SEARCH_WINDOW)
            .filter(|&seq| seq != entry.seq())
            .find(|&seq| entry.hash_as(seq) == entry.hash())
    }
}

/// Verifies a whole log held in memory (tests, small logs).
pub fn verify_chain<'a, T: Chained + 'a>(
    entries: impl IntoIterator<Item = &'a T>,
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

    fn digest(build: impl FnOnce(&mut ChainHasher)) -> String {
        let mut hasher = ChainHasher::new("test-v1");
        build(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn fields_cannot_run_into_each_other_or_pass_for_absent() {
        assert_ne!(
            digest(|h| {
                h.text("ab").text("c");
            }),
            digest(|h| {
                h.text("a").text("bc");
            })
        );
        assert_ne!(
            digest(|h| {
                h.optional(None);
            }),
            digest(|h| {
                h.optional(Some(""));
            })
        );
    }

    #[test]
    fn chains_of_different_kinds_never_share_a_hash() {
        let audit = {
            let mut h = ChainHasher::new("purser-audit-v1");
            h.int(1).text("x");
            h.finish()
        };
        let hours = {
            let mut h = ChainHasher::new("purser-hour-evidence-v1");
            h.int(1).text("x");
            h.finish()
        };
        assert_ne!(audit, hours);
        assert_eq!(audit.len(), 64);
    }
}
