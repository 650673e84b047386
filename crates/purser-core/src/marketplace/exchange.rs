//! Every request Purser makes to a marketplace and what came back, kept as evidence
//! and chained like the hour records (see [`crate::chain`]): what was sent for any
//! billed hour, and what the marketplace answered, can be shown to an auditor, and an
//! exchange cannot be edited or removed without verification naming it.
//!
//! Exchanges never hold secrets: clients record the URL and body only, never the
//! authorisation header, a token or a signature.

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::account::Marketplace;
use crate::chain::{ChainHasher, Chained, Checkpoint};

/// One request and its answer, as a client made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    pub started_at: Timestamp,
    pub marketplace: Marketplace,
    /// `services.check`, `services.report`, `batchUsageEvent`, `BatchMeterUsage`, `token`.
    pub operation: String,
    pub method: String,
    pub url: String,
    pub request_body: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub response_body: Option<String>,
    /// What went wrong when no answer came (timeout, connection refused or dropped).
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// The records the request carried.
    pub record_keys: Vec<Uuid>,
}

/// An exchange in its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeEvidence {
    pub seq: i64,
    #[serde(flatten)]
    pub exchange: Exchange,
    pub prev_hash: String,
    pub hash: String,
}

impl ExchangeEvidence {
    /// Places an exchange after the chain's current head.
    pub fn seal(exchange: Exchange, head: &Checkpoint) -> ExchangeEvidence {
        let mut evidence = ExchangeEvidence {
            seq: head.seq + 1,
            exchange,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        evidence.hash = evidence.hash_as(evidence.seq);
        evidence
    }

    /// The record keys as stored: space-separated, in the order sent.
    pub fn keys_text(&self) -> String {
        keys_text(&self.exchange.record_keys)
    }
}

pub fn keys_text(keys: &[Uuid]) -> String {
    keys.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Chained for ExchangeEvidence {
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
        let e = &self.exchange;
        let mut hasher = ChainHasher::new("purser-marketplace-exchange-v1");
        hasher
            .int(seq)
            .int(e.started_at.as_microsecond())
            .text(e.marketplace.as_str())
            .text(&e.operation)
            .text(&e.method)
            .text(&e.url)
            .text(&e.request_body)
            .optional(e.status.map(|s| s.to_string()).as_deref())
            .optional(e.response_body.as_deref())
            .optional(e.error.as_deref())
            .int(e.elapsed_ms as i64)
            .text(&keys_text(&e.record_keys))
            .text(&self.prev_hash);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ChainBreak, verify_chain};

    fn exchange(body: &str) -> Exchange {
        Exchange {
            started_at: "2026-11-10T14:20:00Z".parse().expect("ts"),
            marketplace: Marketplace::Aws,
            operation: "BatchMeterUsage".into(),
            method: "POST".into(),
            url: "https://metering.marketplace.us-east-1.amazonaws.com/".into(),
            request_body: body.into(),
            status: Some(200),
            response_body: Some("{}".into()),
            error: None,
            elapsed_ms: 52,
            record_keys: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
        }
    }

    #[test]
    fn an_edited_exchange_breaks_the_chain() {
        let mut head = Checkpoint::genesis();
        let mut chain: Vec<ExchangeEvidence> = (0..3)
            .map(|i| {
                let e = ExchangeEvidence::seal(exchange(&format!("{{\"n\":{i}}}")), &head);
                head = e.head();
                e
            })
            .collect();
        assert!(verify_chain(chain.iter(), Some(&head), None).is_ok());
        chain[1].exchange.response_body = Some("{\"forged\":true}".into());
        assert!(matches!(
            verify_chain(chain.iter(), Some(&head), None),
            Err(ChainBreak::Edited { seq: 2 })
        ));
    }
}
