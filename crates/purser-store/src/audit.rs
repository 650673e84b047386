//! The audit log in storage: appends inside the caller's transaction, filtered reads
//! for auditors, and a walk in sequence order for verification.

use jiff::Timestamp;
use purser_core::AccountScope;
use purser_core::audit::{AuditDraft, AuditEntry, ChainBreak, ChainVerifier, Checkpoint};

use crate::db::{Handle, Row, Value};
use crate::{Page, PageRequest, Store, StoreError, from_micros, placeholders};

/// Which entries an auditor wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact actor (`user:ana`) or a prefix ending in `*` (`user:ana*`).
    pub actor: Option<String>,
    pub account_id: Option<String>,
    /// Exact action (`account.update`) or a prefix ending in `*` (`session.*`).
    pub action: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

const COLUMNS: &str =
    "seq, at, actor, action, account_id, boundary, target, details, request_id, prev_hash, hash";

/// Appends an entry inside an open transaction. Locking the head row serialises
/// appends from every process, so sequence numbers never collide or skip.
pub(crate) async fn append(tx: &mut Handle, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
    let row = tx
        .query_one(
            "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash",
            &[],
        )
        .await?;
    let head = Checkpoint {
        seq: row.int(0)?,
        hash: row.text(1)?,
    };
    let entry = AuditEntry::seal(draft, &head, Timestamp::now());
    tx.execute(
        &format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            Value::Int(entry.seq),
            Value::Int(entry.at.as_microsecond()),
            (&entry.actor).into(),
            (&entry.action).into(),
            entry.account_id.clone().into(),
            entry.boundary.clone().into(),
            entry.target.clone().into(),
            (&entry.details).into(),
            entry.request_id.clone().into(),
            (&entry.prev_hash).into(),
            (&entry.hash).into(),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[Value::Int(entry.seq), (&entry.hash).into()],
    )
    .await?;
    Ok(entry)
}

fn entry_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.int(0)?,
        at: from_micros(row.int(1)?)?,
        actor: row.text(2)?,
        action: row.text(3)?,
        account_id: row.opt_text(4)?,
        boundary: row.opt_text(5)?,
        target: row.opt_text(6)?,
        details: row.text(7)?,
        request_id: row.opt_text(8)?,
        prev_hash: row.text(9)?,
        hash: row.text(10)?,
    })
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub n_entries: u64,
    pub head: Checkpoint,
}

impl Store {
    /// Records an event that changes nothing else (a sign-in, a denied attempt).
    pub async fn record(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        let mut tx = self.db.begin().await?;
        let entry = append(&mut tx, draft).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Entries newest first. Entries about an account are shown only within the
    /// reader's scope: the log holds before/after copies of account data, so it is
    /// account data too.
    pub async fn audit_entries(
        &self,
        scope: &AccountScope,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let mut conditions = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(boundaries) = scope.visible_boundaries() {
            let list = placeholders(params.len() + 1, boundaries.len());
            params.extend(boundaries.iter().map(|b| Value::from(b.as_str())));
            conditions.push(if list.is_empty() {
                "boundary IS NULL".to_owned()
            } else {
                format!("(boundary IS NULL OR boundary IN ({list}))")
            });
        }
        let mut exact_or_prefix = |column: &str, value: &Option<String>| {
            if let Some(value) = value {
                match value.strip_suffix('*') {
                    Some(prefix) => {
                        params.push(format!("{}%", escape_like(prefix)).into());
                        conditions.push(format!("{column} LIKE ${} ESCAPE '\\'", params.len()));
                    }
                    None => {
                        params.push(value.into());
                        conditions.push(format!("{column} = ${}", params.len()));
                    }
                }
            }
        };
        exact_or_prefix("actor", &filter.actor);
        exact_or_prefix("action", &filter.action);
        if let Some(account_id) = &filter.account_id {
            params.push(account_id.into());
            conditions.push(format!("account_id = ${}", params.len()));
        }
        if let Some(from) = filter.from {
            params.push(Value::Int(from.as_microsecond()));
            conditions.push(format!("at >= ${}", params.len()));
        }
        if let Some(to) = filter.to {
            params.push(Value::Int(to.as_microsecond()));
            conditions.push(format!("at < ${}", params.len()));
        }
        if let Some(cursor) = &page.after {
            let seq: i64 = cursor.parse().map_err(|_| invalid_cursor())?;
            params.push(Value::Int(seq));
            conditions.push(format!("seq < ${}", params.len()));
        }
        let limit = page.limit();
        params.push(Value::Int(limit as i64 + 1));
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log {} ORDER BY seq DESC LIMIT ${}",
            where_clause(&conditions),
            params.len()
        );
        let mut handle = self.db.read().await?;
        let rows = handle.query(&sql, &params).await?;
        let mut items = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The head recorded beside the log.
    pub async fn audit_recorded_head(&self) -> Result<Checkpoint, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await?;
        Ok(Checkpoint {
            seq: row.int(0)?,
            hash: row.text(1)?,
        })
    }

    /// Walks the whole log in sequence order, in batches, and verifies the chain, the
    /// recorded head, and, when given, that the log still extends `checkpoint`.
    pub async fn verify_audit(
        &self,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Result<Verification, ChainBreak>, StoreError> {
        // Read the recorded head first: entries appended during the walk then only
        // extend the chain past it.
        let recorded = self.audit_recorded_head().await?;
        let mut verifier = ChainVerifier::new(checkpoint);
        let mut handle = self.db.read().await?;
        let mut after = 0i64;
        const BATCH: i64 = 1_000;
        'walk: loop {
            let rows = handle
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
                    ),
                    &[Value::Int(after), Value::Int(BATCH)],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.int(0)?;
            for row in &rows {
                let entry = entry_from_row(row)?;
                if entry.seq > recorded.seq {
                    // Appended after the head was read: not part of this verification.
                    break 'walk;
                }
                if let Err(chain_break) = verifier.push(&entry) {
                    return Ok(Err(chain_break));
                }
            }
        }
        // Entries past the head that no append recorded were written around Purser.
        let max_seq = handle
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM audit_log", &[])
            .await?
            .int(0)?;
        let head_now = self.audit_recorded_head().await?;
        if max_seq > head_now.seq {
            return Ok(Err(ChainBreak::Inserted {
                seq: head_now.seq + 1,
                count: max_seq - head_now.seq,
            }));
        }
        let n_entries = verifier.n_verified();
        Ok(verifier
            .finish(Some(&recorded))
            .map(|head| Verification { n_entries, head }))
    }
}

pub(crate) fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

pub(crate) fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub(crate) fn invalid_cursor() -> StoreError {
    StoreError::Invalid(purser_core::ValidationErrors::single(
        "cursor",
        "is not a cursor this list returned",
    ))
}
