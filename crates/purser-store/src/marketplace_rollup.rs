//! Reconciling a period without reading every record, and verifying the exchange
//! chain without re-hashing all of it.
//!
//! A month of 10,000 accounts × 3 dimensions is 22 million records; in a healthy month
//! nearly all of them are accepted, and an accepted record's line is always the same
//! (clean, accepted what was due). So what was accepted is rolled up per account ×
//! marketplace × UTC day (`marketplace_accepted_days`), and reconciliation reads:
//! - the roll-up for the period's whole days (310,000 rows for that month);
//! - the accepted records of the hours at either end that do not fill a whole day;
//! - every record not accepted, one by one, through the index that holds only those
//!   (`marketplace_records_unaccepted`): these are the lines a reconciliation lists.
//!
//! The roll-up changes in one place only: `record_marketplace_submission`, the one
//! transaction that makes records accepted, adds them (`add_accepted`); no record ever
//! leaves `accepted`. Planning and expiry never touch it. `rebuild` recomputes it from
//! the records (the migration's backfill, and a ledger loaded in bulk), and
//! `Method::EveryRecord` reconciles from the records alone: tests prove both give the
//! same report.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use purser_core::chain::{ChainBreak, ChainVerifier, Chained, Checkpoint};
use purser_core::marketplace::DeliveryState;
use purser_core::{AccountScope, Marketplace};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::{Handle, Row, Value};
use crate::marketplace::{
    EXCHANGE_COLUMNS, Finding, ReconcileLine, exchange_from_row, record_from_row,
};
use crate::marketplace_views::{MarketplaceSummary, record_columns, scope_join_rows_first};
use crate::{Store, StoreError, corrupt, decimal, from_micros, placeholders};

const DAY_MICROS: i64 = 86_400_000_000;

/// The start of the UTC day holding `instant` (microseconds).
fn day_of(instant: i64) -> i64 {
    instant - instant.rem_euclid(DAY_MICROS)
}

/// How a reconciliation reads the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The roll-up for what was accepted, records only for the rest.
    RollUp,
    /// Every record of the period, as an auditor's own recomputation would.
    EveryRecord,
}

/// A reconciliation's counts per marketplace and the lines that are not clean, with
/// each line's account boundary when the read was scoped.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    summaries: BTreeMap<Marketplace, MarketplaceSummary>,
    lines: Vec<(Option<String>, ReconcileLine)>,
}

impl Tally {
    fn summary(&mut self, marketplace: Marketplace) -> &mut MarketplaceSummary {
        self.summaries
            .entry(marketplace)
            .or_insert_with(|| MarketplaceSummary::new(marketplace))
    }

    /// `records` accepted records holding `quantity` in all: clean lines.
    fn add_accepted(&mut self, marketplace: Marketplace, records: i64, quantity: Decimal) {
        self.summary(marketplace)
            .add(Finding::Clean, records, quantity, quantity);
    }

    fn add_line(&mut self, boundary: Option<String>, line: ReconcileLine) {
        self.summary(line.marketplace)
            .add(line.finding, 1, line.due, line.accepted);
        if line.finding != Finding::Clean {
            self.lines.push((boundary, line));
        }
    }

    /// Per marketplace in marketplace order, and the lines oldest hour first.
    pub(crate) fn finish(
        mut self,
    ) -> (
        Vec<MarketplaceSummary>,
        Vec<(Option<String>, ReconcileLine)>,
    ) {
        self.lines.sort_by(|a, b| {
            (a.1.hour, &a.1.account_id, &a.1.dimension).cmp(&(
                b.1.hour,
                &b.1.account_id,
                &b.1.dimension,
            ))
        });
        (self.summaries.into_values().collect(), self.lines)
    }
}

/// The records' (or roll-up rows') accounts as `scope` may see them: the join and its
/// condition, and the boundary column to select. Without a scope (Purser's own
/// reconciliation) nothing is joined. `None` when the scope sees nothing.
fn scoped(scope: Option<&AccountScope>, params: &mut Vec<Value>) -> Option<(String, &'static str)> {
    match scope {
        None => Some(("WHERE 1 = 1".to_owned(), "CAST(NULL AS TEXT)")),
        Some(scope) => scope_join_rows_first(scope, params).map(|join| (join, "a.boundary")),
    }
}

/// Adds records just made accepted to the roll-up: (account, marketplace, hour,
/// quantity) each. In the caller's transaction, under the marketplace head's lock, so
/// the read-then-write of each row is never interleaved with another's.
pub(crate) async fn add_accepted(
    tx: &mut Handle,
    accepted: &[(String, Marketplace, i64, Decimal)],
) -> Result<(), StoreError> {
    // Per day and marketplace, each account's count and sum to add.
    let mut deltas: BTreeMap<(i64, Marketplace), HashMap<String, (i64, Decimal)>> = BTreeMap::new();
    for (account_id, marketplace, hour, quantity) in accepted {
        let entry = deltas
            .entry((day_of(*hour), *marketplace))
            .or_default()
            .entry(account_id.clone())
            .or_default();
        entry.0 += 1;
        entry.1 += *quantity;
    }
    for ((day, marketplace), mut sums) in deltas {
        // Sums are exact decimals: read, add in Rust, write back.
        let mut accounts: Vec<&String> = sums.keys().collect();
        accounts.sort();
        let accounts: Vec<String> = accounts.into_iter().cloned().collect();
        for chunk in accounts.chunks(500) {
            let sql = format!(
                "SELECT account_id, records, quantity FROM marketplace_accepted_days \
                 WHERE day = $1 AND marketplace = $2 AND account_id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut params = vec![Value::Int(day), marketplace.as_str().into()];
            params.extend(chunk.iter().map(|a| Value::from(a.as_str())));
            for row in tx.query(&sql, &params).await? {
                if let Some(sum) = sums.get_mut(&row.text(0)?) {
                    sum.0 += row.int(1)?;
                    sum.1 += decimal(&row.text(2)?, "marketplace_accepted_days.quantity")?;
                }
            }
        }
        let rows: Vec<Vec<Value>> = sums
            .into_iter()
            .map(|(account_id, (records, quantity))| {
                vec![
                    Value::Int(day),
                    marketplace.as_str().into(),
                    account_id.into(),
                    Value::Int(records),
                    quantity.to_string().into(),
                ]
            })
            .collect();
        for chunk in rows.chunks(200) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(i * 5 + 1, 5)))
                .collect();
            let sql = format!(
                "INSERT INTO marketplace_accepted_days (day, marketplace, account_id, records, quantity) \
                 VALUES {} ON CONFLICT (day, marketplace, account_id) DO UPDATE SET \
                 records = excluded.records, quantity = excluded.quantity",
                values.join(", ")
            );
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            tx.execute(&sql, &params).await?;
        }
    }
    Ok(())
}

/// Recomputes the whole roll-up from the records, a day at a time (so memory holds
/// one day's accounts): migration 8's backfill, and a ledger loaded in bulk.
pub(crate) async fn rebuild(tx: &mut Handle) -> Result<(), StoreError> {
    tx.execute("DELETE FROM marketplace_accepted_days", &[])
        .await?;
    let span = tx
        .query_one("SELECT MIN(hour), MAX(hour) FROM marketplace_records", &[])
        .await?;
    let (Some(first), Some(last)) = (span.opt_int(0)?, span.opt_int(1)?) else {
        return Ok(());
    };
    let mut day = day_of(first);
    while day <= last {
        let rows = tx
            .query(
                // The state is filtered below: see `tally_marketplace_records`.
                "SELECT account_id, marketplace, quantity, state FROM marketplace_records \
                 WHERE hour >= $1 AND hour < $2",
                &[Value::Int(day), Value::Int(day + DAY_MICROS)],
            )
            .await?;
        let mut sums: HashMap<(String, Marketplace), (i64, Decimal)> = HashMap::new();
        for row in &rows {
            if row.text(3)? != DeliveryState::Accepted.as_str() {
                continue;
            }
            let entry = sums
                .entry((row.text(0)?, marketplace_of(row, 1)?))
                .or_default();
            entry.0 += 1;
            entry.1 += decimal(&row.text(2)?, "marketplace_records.quantity")?;
        }
        let rows: Vec<Vec<Value>> = sums
            .into_iter()
            .map(|((account_id, marketplace), (records, quantity))| {
                vec![
                    Value::Int(day),
                    marketplace.as_str().into(),
                    account_id.into(),
                    Value::Int(records),
                    quantity.to_string().into(),
                ]
            })
            .collect();
        crate::metering::insert_rows(
            tx,
            "marketplace_accepted_days",
            &["day", "marketplace", "account_id", "records", "quantity"],
            rows,
        )
        .await?;
        day += DAY_MICROS;
    }
    Ok(())
}

fn marketplace_of(row: &Row, index: usize) -> Result<Marketplace, StoreError> {
    Marketplace::parse(&row.text(index)?).map_err(|e| corrupt("marketplace", e))
}

/// How the exchange chain was verified for a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExchangeCheck {
    /// The chain's recorded head: how many exchanges there are.
    pub head: i64,
    /// The first exchange this verification re-hashed (1, or 0 for an empty chain,
    /// when it walked the whole chain).
    pub walked_from: i64,
    /// The stored checkpoint the walk started from, when it started from one: every
    /// exchange up to it was re-hashed and linked when it was made.
    pub checkpoint: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checkpoint_verified_at: Option<Timestamp>,
    /// How the chain breaks, when it does.
    pub chain_break: Option<String>,
}

impl ExchangeCheck {
    pub fn verifies(&self) -> bool {
        self.chain_break.is_none()
    }
}

/// Which part of the chain to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainWalk {
    /// From the latest stored checkpoint (re-hashing the checkpoint's exchange first).
    FromCheckpoint,
    /// From the first exchange.
    Whole,
}

/// One row of the roll-up: what an account had accepted by its marketplace on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedDay {
    pub day: Timestamp,
    pub marketplace: Marketplace,
    pub account_id: String,
    pub records: i64,
    pub quantity: Decimal,
}

impl Store {
    /// The roll-up as stored, by day, marketplace and account.
    pub async fn marketplace_accepted_days(&self) -> Result<Vec<AcceptedDay>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT day, marketplace, account_id, records, quantity FROM marketplace_accepted_days \
                 ORDER BY day, marketplace, account_id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AcceptedDay {
                    day: from_micros(row.int(0)?)?,
                    marketplace: marketplace_of(row, 1)?,
                    account_id: row.text(2)?,
                    records: row.int(3)?,
                    quantity: decimal(&row.text(4)?, "marketplace_accepted_days.quantity")?,
                })
            })
            .collect()
    }

    /// Writes ledger records exactly as given, in one transaction, bypassing planning
    /// and outcomes: for building a benchmark's month of ledger in minutes. The
    /// roll-up is not kept by this: `rebuild_marketplace_rollup` afterwards makes it
    /// what the write paths would have.
    pub async fn load_marketplace_records(
        &self,
        records: &[crate::marketplace::LedgerRecord],
    ) -> Result<(), StoreError> {
        let opt_time =
            |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::Int(t.as_microsecond()));
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            rows.push(vec![
                r.record.key.to_string().into(),
                r.marketplace.as_str().into(),
                r.record.account_id.as_str().into(),
                r.entitlement_id.as_str().into(),
                r.record.dimension.as_str().into(),
                r.record.marketplace_dimension.as_str().into(),
                Value::Int(r.record.hour.as_microsecond()),
                r.record.quantity.to_string().into(),
                r.owed.to_string().into(),
                r.carried_in.to_string().into(),
                crate::json_text(&r.record.binding)?.into(),
                r.state.as_str().into(),
                Value::Int(r.attempts),
                Value::Int(i64::from(r.uncertain)),
                Value::Int(r.next_attempt_at.as_microsecond()),
                Value::Int(r.deadline.as_microsecond()),
                Value::Int(r.alert_at.as_microsecond()),
                match &r.outcome {
                    Some(outcome) => crate::json_text(outcome)?.into(),
                    None => Value::Null,
                },
                r.marketplace_id.as_deref().map_or(Value::Null, Value::from),
                Value::Int(r.planned_at.as_microsecond()),
                opt_time(r.first_sent_at),
                opt_time(r.settled_at),
                Value::Int(i64::from(r.carried_out)),
                Value::Int(i64::from(r.record.whole_units)),
                r.route.as_str().into(),
            ]);
        }
        let columns: Vec<&str> = crate::marketplace::RECORD_COLUMNS
            .split(',')
            .map(str::trim)
            .collect();
        let mut tx = self.db.begin().await?;
        crate::metering::insert_rows(&mut tx, "marketplace_records", &columns, rows).await?;
        tx.commit().await
    }

    /// Recomputes the roll-up from the records with migration 8's backfill: for a
    /// ledger loaded in bulk (the benchmark), and to prove the two agree.
    pub async fn rebuild_marketplace_rollup(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        rebuild(&mut tx).await?;
        tx.commit().await
    }

    /// Counts and the lines not clean of `[from, to)`, as `scope` may see them (all of
    /// them without a scope).
    pub(crate) async fn tally_marketplace_records(
        &self,
        scope: Option<&AccountScope>,
        from: Timestamp,
        to: Timestamp,
        method: Method,
    ) -> Result<Tally, StoreError> {
        let (from, to) = (from.as_microsecond(), to.as_microsecond());
        let mut tally = Tally::default();
        let mut params = Vec::new();
        let Some((join, boundary)) = scoped(scope, &mut params) else {
            return Ok(tally);
        };
        let n = params.len();
        let range = format!("AND r.hour >= ${} AND r.hour < ${}", n + 1, n + 2);
        let in_range = |params: &[Value], start: i64, end: i64| {
            let mut params = params.to_vec();
            params.extend([Value::Int(start), Value::Int(end)]);
            params
        };
        let mut handle = self.db.read().await?;
        let every_line = match method {
            Method::EveryRecord => "",
            Method::RollUp => {
                // Whole UTC days from the roll-up; the hours at either end outside
                // them from their accepted records.
                let first_day = day_of(from) + if day_of(from) == from { 0 } else { DAY_MICROS };
                let end_day = day_of(to);
                let edges = if first_day < end_day {
                    let rows = handle
                        .query(
                            &format!(
                                "SELECT r.marketplace, r.records, r.quantity FROM marketplace_accepted_days r {join} \
                                 AND r.day >= ${} AND r.day < ${}",
                                n + 1,
                                n + 2
                            ),
                            &in_range(&params, first_day, end_day),
                        )
                        .await?;
                    for row in &rows {
                        tally.add_accepted(
                            marketplace_of(row, 0)?,
                            row.int(1)?,
                            decimal(&row.text(2)?, "marketplace_accepted_days.quantity")?,
                        );
                    }
                    vec![(from, first_day), (end_day, to)]
                } else {
                    vec![(from, to)]
                };
                for (start, end) in edges.into_iter().filter(|(a, b)| a < b) {
                    // The state is filtered here, not in SQL: with `state = 'accepted'`
                    // SQLite's planner takes the state index and reads every accepted
                    // record there is.
                    let rows = handle
                        .query(
                            &format!(
                                "SELECT r.marketplace, r.quantity, r.state FROM marketplace_records r {join} {range}"
                            ),
                            &in_range(&params, start, end),
                        )
                        .await?;
                    for row in &rows {
                        if row.text(2)? == DeliveryState::Accepted.as_str() {
                            tally.add_accepted(
                                marketplace_of(row, 0)?,
                                1,
                                decimal(&row.text(1)?, "marketplace_records.quantity")?,
                            );
                        }
                    }
                }
                // The rest, through the index holding only records not accepted.
                "AND r.state <> 'accepted'"
            }
        };
        let rows = handle
            .query(
                &format!(
                    "SELECT {}, {boundary} FROM marketplace_records r {join} {range} {every_line}",
                    record_columns()
                ),
                &in_range(&params, from, to),
            )
            .await?;
        for row in &rows {
            tally.add_line(
                row.opt_text(crate::marketplace::RECORD_COLUMN_COUNT)?,
                ReconcileLine::of(&record_from_row(row)?),
            );
        }
        Ok(tally)
    }

    /// Verifies the exchange chain against its recorded head: from the latest stored
    /// checkpoint (its own exchange re-hashed and compared first) or whole.
    pub async fn check_marketplace_exchanges(
        &self,
        walk: ChainWalk,
    ) -> Result<ExchangeCheck, StoreError> {
        let mut handle = self.db.read().await?;
        check_exchanges(&mut handle, walk).await
    }

    /// Verifies the chain from the latest checkpoint and, when it verifies, stores its
    /// head as the next checkpoint. Run by the submission job at the start of each run,
    /// so that a reconciliation re-hashes at most the exchanges since then.
    pub async fn checkpoint_marketplace_exchanges(
        &self,
        now: Timestamp,
    ) -> Result<ExchangeCheck, StoreError> {
        let mut tx = self.db.begin().await?;
        let check = check_exchanges(&mut tx, ChainWalk::FromCheckpoint).await?;
        if check.verifies() && check.head > check.checkpoint.unwrap_or(0) {
            let hash = tx
                .query_one(
                    "SELECT hash FROM marketplace_exchanges WHERE seq = $1",
                    &[Value::Int(check.head)],
                )
                .await?
                .text(0)?;
            tx.execute(
                "INSERT INTO marketplace_exchange_checkpoints (seq, hash, verified_at, walked_from) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
                &[
                    Value::Int(check.head),
                    hash.into(),
                    Value::Int(now.as_microsecond()),
                    Value::Int(check.walked_from),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(check)
    }
}

async fn check_exchanges(
    handle: &mut Handle,
    walk: ChainWalk,
) -> Result<ExchangeCheck, StoreError> {
    let recorded = recorded_head(handle).await?;
    let mut check = ExchangeCheck {
        head: recorded.seq,
        walked_from: i64::from(recorded.seq > 0),
        ..ExchangeCheck::default()
    };
    let stored = match walk {
        ChainWalk::Whole => None,
        ChainWalk::FromCheckpoint => handle
            .query_opt(
                "SELECT seq, hash, verified_at FROM marketplace_exchange_checkpoints \
                 WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
                &[Value::Int(recorded.seq)],
            )
            .await?
            .map(|row| -> Result<_, StoreError> {
                Ok((
                    Checkpoint {
                        seq: row.int(0)?,
                        hash: row.text(1)?,
                    },
                    from_micros(row.int(2)?)?,
                ))
            })
            .transpose()?,
    };
    let mut start = None;
    if let Some((checkpoint, verified_at)) = stored {
        check.checkpoint = Some(checkpoint.seq);
        check.checkpoint_verified_at = Some(verified_at);
        check.walked_from = checkpoint.seq;
        // The checkpoint's own exchange must still be what was verified then: intact
        // (its content still gives its hash) and with the hash the checkpoint holds.
        let row = handle
            .query_opt(
                &format!("SELECT {EXCHANGE_COLUMNS} FROM marketplace_exchanges WHERE seq = $1"),
                &[Value::Int(checkpoint.seq)],
            )
            .await?;
        let chain_break = match row.map(|row| exchange_from_row(&row)).transpose()? {
            None => Some(ChainBreak::CheckpointMissing {
                last: checkpoint.seq - 1,
                checkpoint: checkpoint.clone(),
            }),
            Some(evidence) if evidence.hash_as(evidence.seq) != evidence.hash => {
                Some(ChainBreak::Edited { seq: evidence.seq })
            }
            Some(evidence) if evidence.hash != checkpoint.hash => {
                Some(ChainBreak::CheckpointMismatch {
                    seq: evidence.seq,
                    checkpoint: checkpoint.clone(),
                })
            }
            Some(_) => None,
        };
        if let Some(chain_break) = chain_break {
            check.chain_break = Some(chain_break.to_string());
            return Ok(check);
        }
        start = Some(checkpoint);
    }
    if let Err(chain_break) = walk_exchanges(handle, start, &recorded).await? {
        check.chain_break = Some(chain_break.to_string());
    }
    Ok(check)
}

pub(crate) async fn recorded_head(handle: &mut Handle) -> Result<Checkpoint, StoreError> {
    let head = handle
        .query_one(
            "SELECT exchange_seq, exchange_hash FROM marketplace_head WHERE id = 1",
            &[],
        )
        .await?;
    Ok(Checkpoint {
        seq: head.int(0)?,
        hash: head.text(1)?,
    })
}

/// Walks the exchanges after `start` (an exchange already verified; the chain's start
/// without one) to the end, against the recorded head, in pages of 1,000.
pub(crate) async fn walk_exchanges(
    handle: &mut Handle,
    start: Option<Checkpoint>,
    recorded: &Checkpoint,
) -> Result<Result<Checkpoint, ChainBreak>, StoreError> {
    let mut after = start.as_ref().map_or(0, |c| c.seq);
    let mut verifier = match start {
        Some(checkpoint) => ChainVerifier::resume(checkpoint),
        None => ChainVerifier::new(None),
    };
    loop {
        let rows = handle
            .query(
                &format!(
                    "SELECT {EXCHANGE_COLUMNS} FROM marketplace_exchanges WHERE seq > $1 ORDER BY seq LIMIT 1000"
                ),
                &[Value::Int(after)],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let evidence = exchange_from_row(row)?;
            after = evidence.seq;
            if let Err(chain_break) = verifier.push(&evidence) {
                return Ok(Err(chain_break));
            }
        }
    }
    Ok(verifier.finish(Some(recorded)))
}
