//! The audit log: who did what, chained (see [`crate::chain`]) so that an edit,
//! deletion, insertion or reordering is found by verification.

use jiff::Timestamp;
use serde::Serialize;

use crate::chain::ChainHasher;
pub use crate::chain::{
    ChainBreak, ChainVerifier, Chained, Checkpoint, GENESIS_HASH, verify_chain,
};

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
}

impl Chained for AuditEntry {
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
        let mut hasher = ChainHasher::new("purser-audit-v1");
        hasher
            .int(seq)
            .int(self.at.as_microsecond())
            .text(&self.actor)
            .text(&self.action)
            .optional(self.account_id.as_deref())
            .optional(self.boundary.as_deref())
            .optional(self.target.as_deref())
            .text(&self.details)
            .optional(self.request_id.as_deref())
            .text(&self.prev_hash);
        hasher.finish()
    }
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
