//! The marketplace ledger: what each account owes its marketplace per dimension and
//! hour, where each record's delivery stands, and every exchange with a marketplace.
//!
//! Exactly once rests on three things kept here:
//! - **one row per account × dimension × hour** (`UNIQUE`), planned from closed hours
//!   in order under the `marketplace_head` lock, so no hour is planned twice and no
//!   quantity is owed twice;
//! - **a record is sent only under a lease** (`sending`, with owner and expiry; claimed
//!   with `FOR UPDATE SKIP LOCKED` on PostgreSQL), and always under its stable key, so
//!   a crash between sending and recording leads to a resend the marketplace
//!   recognises (Google's operationId, AWS's identical record, Azure's duplicate with
//!   its accepted message), never to a second bill;
//! - **what is uncertain is never carried**: a record whose request may have been
//!   applied is only ever resent under its own key; only usage that certainly was not
//!   taken is carried into a later hour once its window closes.
//!
//! Every exchange is appended to a hash chain in the transaction that records its
//! outcomes, so what the ledger says and what was sent cannot disagree.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_core::chain::{Chained, Checkpoint};
use purser_core::closing::{AccountHour, DimensionHour, RatedDimension};
use purser_core::commercial::{DimensionKey, Entitlement, Offer, RatedHour};

/// An entitlement bound to a marketplace, with its offer.
pub type BoundEntitlement = (Entitlement, Offer);
use purser_core::marketplace::exchange::{Exchange, ExchangeEvidence};
use purser_core::marketplace::planning::{Position, plan_account_hour};
use purser_core::marketplace::rules::Rules;
use purser_core::marketplace::{
    Binding, DeliveryState, RecordOutcome, Route, UsageRecord, retry_delay,
};
use purser_core::money::{Currency, Money};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::db::{Dialect, Handle, Row, Value};
use crate::marketplace_rollup::{ChainWalk, ExchangeCheck, Method};
use crate::marketplace_views::MarketplaceSummary;
use crate::{Store, StoreError, corrupt, decimal, from_micros, json_text};

const HOUR_MICROS: i64 = 3_600_000_000;

/// How far back the first planning of a database reaches from the last closed hour.
const FIRST_PLANNING_LOOKBACK_HOURS: i64 = 23;

/// What one planning run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub hours: usize,
    pub first_hour: Option<Timestamp>,
    pub last_hour: Option<Timestamp>,
    pub records: usize,
}

/// A record of the ledger, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRecord {
    pub record: UsageRecord,
    pub marketplace: Marketplace,
    /// Directly to the marketplace, or through Tackle (migration 9).
    pub route: Route,
    pub entitlement_id: String,
    pub owed: Decimal,
    pub carried_in: Decimal,
    pub state: DeliveryState,
    pub attempts: i64,
    pub uncertain: bool,
    pub next_attempt_at: Timestamp,
    pub deadline: Timestamp,
    pub alert_at: Timestamp,
    pub outcome: Option<serde_json::Value>,
    pub marketplace_id: Option<String>,
    pub planned_at: Timestamp,
    pub first_sent_at: Option<Timestamp>,
    pub settled_at: Option<Timestamp>,
    pub carried_out: bool,
}

pub(crate) const RECORD_COLUMNS: &str = "record_key, marketplace, account_id, entitlement_id, dimension, marketplace_dimension, hour, \
     quantity, owed, carried_in, binding, state, attempts, uncertain, next_attempt_at, deadline, alert_at, \
     outcome, marketplace_id, planned_at, first_sent_at, settled_at, carried_out, whole_units, route";

/// How many columns [`RECORD_COLUMNS`] names: reads that select more after them
/// (an account's name, its boundary) find those from here.
pub(crate) const RECORD_COLUMN_COUNT: usize = 25;

pub(crate) fn record_from_row(row: &Row) -> Result<LedgerRecord, StoreError> {
    let key =
        Uuid::parse_str(&row.text(0)?).map_err(|e| corrupt("marketplace_records.record_key", e))?;
    let binding: Binding = serde_json::from_str(&row.text(10)?)
        .map_err(|e| corrupt("marketplace_records.binding", e))?;
    let opt_time = |value: Option<i64>| value.map(from_micros).transpose();
    Ok(LedgerRecord {
        record: UsageRecord {
            key,
            account_id: row.text(2)?,
            dimension: row.text(4)?,
            marketplace_dimension: row.text(5)?,
            hour: from_micros(row.int(6)?)?,
            quantity: decimal(&row.text(7)?, "marketplace_records.quantity")?,
            whole_units: row.int(23)? != 0,
            binding,
        },
        marketplace: Marketplace::parse(&row.text(1)?)
            .map_err(|e| corrupt("marketplace_records.marketplace", e))?,
        route: Route::parse(&row.text(24)?).map_err(|e| corrupt("marketplace_records.route", e))?,
        entitlement_id: row.text(3)?,
        owed: decimal(&row.text(8)?, "marketplace_records.owed")?,
        carried_in: decimal(&row.text(9)?, "marketplace_records.carried_in")?,
        state: DeliveryState::parse(&row.text(11)?)
            .map_err(|e| corrupt("marketplace_records.state", e))?,
        attempts: row.int(12)?,
        uncertain: row.int(13)? != 0,
        next_attempt_at: from_micros(row.int(14)?)?,
        deadline: from_micros(row.int(15)?)?,
        alert_at: from_micros(row.int(16)?)?,
        outcome: row
            .opt_text(17)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt("marketplace_records.outcome", e))?,
        marketplace_id: row.opt_text(18)?,
        planned_at: from_micros(row.int(19)?)?,
        first_sent_at: opt_time(row.opt_int(20)?)?,
        settled_at: opt_time(row.opt_int(21)?)?,
        carried_out: row.int(22)? != 0,
    })
}

/// Which ledger records to list.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub marketplace: Option<Marketplace>,
    pub account_id: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub state: Option<DeliveryState>,
    pub limit: Option<i64>,
}

/// Locks the marketplace head for this transaction: (planned through, exchange head).
async fn lock_head(tx: &mut Handle) -> Result<(Option<i64>, Checkpoint), StoreError> {
    let row = tx
        .query_one(
            "UPDATE marketplace_head SET exchange_seq = exchange_seq WHERE id = 1 \
             RETURNING planned_through, exchange_seq, exchange_hash",
            &[],
        )
        .await?;
    Ok((
        row.opt_int(0)?,
        Checkpoint {
            seq: row.int(1)?,
            hash: row.text(2)?,
        },
    ))
}

/// An account's closed hour as the ledger needs it: its dimensions and their rating,
/// read back from `dimension_hours`.
fn account_hour_from_rows(
    account_id: &str,
    hour: Timestamp,
    rows: &[&Row],
) -> Result<AccountHour, StoreError> {
    let mut dimensions = Vec::new();
    let mut rating = Vec::new();
    for row in rows {
        let dimension = DimensionKey::parse(&row.text(1)?)
            .map_err(|e| corrupt("dimension_hours.dimension", e))?;
        let quantity = decimal(&row.text(3)?, "dimension_hours.quantity")?;
        dimensions.push(DimensionHour {
            dimension: dimension.clone(),
            quantity,
            adjustment: decimal(&row.text(4)?, "dimension_hours.adjustment")?,
        });
        if let (Some(entitlement_id), Some(period_start)) = (row.opt_text(5)?, row.opt_int(6)?) {
            let text = |i: usize, what: &str| -> Result<Decimal, StoreError> {
                decimal(&row.opt_text(i)?.unwrap_or_default(), what)
            };
            let currency = Currency::parse(&row.opt_text(12)?.unwrap_or_default())
                .map_err(|e| corrupt("dimension_hours.currency", e))?;
            rating.push(RatedDimension {
                dimension,
                entitlement_id,
                period_start: from_micros(period_start)?,
                committed: text(7, "dimension_hours.committed")?,
                rated: RatedHour {
                    quantity,
                    consumed_after: text(8, "dimension_hours.consumed_after")?,
                    within_commit: text(9, "dimension_hours.within_commit")?,
                    overage_quantity: text(10, "dimension_hours.overage_quantity")?,
                    overage_amount: Money {
                        amount: text(11, "dimension_hours.overage_amount")?,
                        currency,
                    },
                },
            });
        }
    }
    Ok(AccountHour {
        account_id: account_id.to_owned(),
        hour,
        meters: Vec::new(),
        adjustments: Vec::new(),
        dimensions,
        rating,
        unpriced: Vec::new(),
        unentitled: false,
    })
}

impl Store {
    /// Plans every closed hour not yet planned, in order from where planning left off:
    /// every account whose entitlement in force is bound to a marketplace gets its
    /// records for the hour. Idempotent: an hour is planned once, under the head's
    /// lock, in one transaction with its records; a backlog is planned
    /// `hours_per_transaction` at a time, so no transaction holds the head for long.
    pub async fn plan_marketplace_hours(
        &self,
        now: Timestamp,
        hours_per_transaction: usize,
    ) -> Result<PlanSummary, StoreError> {
        let catalogue = self.rating_catalogue().await?;
        let mut summary = PlanSummary::default();
        loop {
            let slice = self
                .plan_hours(&catalogue, now, hours_per_transaction)
                .await?;
            if slice.hours == 0 {
                return Ok(summary);
            }
            summary.hours += slice.hours;
            summary.records += slice.records;
            summary.first_hour = summary.first_hour.or(slice.first_hour);
            summary.last_hour = slice.last_hour;
        }
    }

    /// Plans at most `max_hours` closed hours in one transaction.
    async fn plan_hours(
        &self,
        catalogue: &crate::metering::RatingCatalogue,
        now: Timestamp,
        max_hours: usize,
    ) -> Result<PlanSummary, StoreError> {
        let mut tx = self.db.begin().await?;
        let (planned_through, _) = lock_head(&mut tx).await?;
        let closed_through = tx
            .query_one("SELECT closed_through FROM metering_head WHERE id = 1", &[])
            .await?
            .opt_int(0)?;
        let Some(closed_through) = closed_through else {
            return Ok(PlanSummary::default());
        };
        // Where to start: after the last planned hour. The very first planning of a
        // database starts no earlier than a day before the last closed hour: hours
        // closed before marketplace billing existed were never owed to a marketplace,
        // and planning them would carry their whole usage into today's records. (A
        // day is the widest window any marketplace gives, see `rules`.)
        let first = match planned_through {
            Some(planned) => planned + HOUR_MICROS,
            None => match tx
                .query_one("SELECT MIN(hour) FROM closed_hours", &[])
                .await?
                .opt_int(0)?
            {
                Some(first) => {
                    first.max(closed_through - FIRST_PLANNING_LOOKBACK_HOURS * HOUR_MICROS)
                }
                None => return Ok(PlanSummary::default()),
            },
        };
        if first > closed_through {
            return Ok(PlanSummary::default());
        }
        let last = closed_through.min(first + (max_hours.max(1) as i64 - 1) * HOUR_MICROS);

        // Bound accounts and their positions.
        let bound: Vec<&str> = catalogue
            .by_account
            .iter()
            .filter(|(_, es)| es.iter().any(|e| e.marketplace_binding.is_some()))
            .map(|(account, _)| account.as_str())
            .collect();
        let mut positions: HashMap<String, BTreeMap<DimensionKey, Position>> = HashMap::new();
        for row in tx
            .query(
                "SELECT account_id, dimension, position FROM marketplace_positions",
                &[],
            )
            .await?
        {
            let dimension = DimensionKey::parse(&row.text(1)?)
                .map_err(|e| corrupt("marketplace_positions.dimension", e))?;
            let position: Position = serde_json::from_str(&row.text(2)?)
                .map_err(|e| corrupt("marketplace_positions.position", e))?;
            positions
                .entry(row.text(0)?)
                .or_default()
                .insert(dimension, position);
        }

        let mut summary = PlanSummary::default();
        let mut records: Vec<Vec<Value>> = Vec::new();
        let mut touched: BTreeMap<(String, String), (Marketplace, i64)> = BTreeMap::new();
        let mut hour = first;
        while hour <= last {
            let at = from_micros(hour)?;
            let rows = tx
                .query(
                    "SELECT account_id, dimension, hour, quantity, adjustment, entitlement_id, period_start, \
                     committed, consumed_after, within_commit, overage_quantity, overage_amount, currency \
                     FROM dimension_hours WHERE hour = $1 ORDER BY account_id, dimension",
                    &[Value::Int(hour)],
                )
                .await?;
            let mut by_account: HashMap<String, Vec<&Row>> = HashMap::new();
            for row in &rows {
                by_account.entry(row.text(0)?).or_default().push(row);
            }
            for account_id in &bound {
                let Some((entitlement, offer)) = catalogue.in_force(account_id, at) else {
                    continue;
                };
                let Some(binding) = &entitlement.marketplace_binding else {
                    continue;
                };
                // The cloud's rules, or Tackle's over them for an account routed
                // through Tackle.
                let Some(rules) = Rules::for_binding(offer.marketplace, binding) else {
                    continue;
                };
                let account_rows = by_account
                    .get(*account_id)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let closed = account_hour_from_rows(account_id, at, account_rows)?;
                let account_positions = positions.entry((*account_id).to_owned()).or_default();
                for planned in plan_account_hour(
                    &rules,
                    &closed,
                    entitlement,
                    binding,
                    offer,
                    account_positions,
                ) {
                    touched.insert(
                        ((*account_id).to_owned(), planned.dimension.to_string()),
                        (rules.marketplace, hour),
                    );
                    let Some(record) = planned.record else {
                        continue;
                    };
                    records.push(vec![
                        record.key.to_string().into(),
                        rules.marketplace.as_str().into(),
                        record.account_id.clone().into(),
                        entitlement.id.clone().into(),
                        record.dimension.clone().into(),
                        record.marketplace_dimension.clone().into(),
                        Value::Int(hour),
                        record.quantity.to_string().into(),
                        planned.owed.to_string().into(),
                        planned.carried_in.to_string().into(),
                        json_text(&record.binding)?.into(),
                        DeliveryState::Due.as_str().into(),
                        Value::Int(0),
                        Value::Int(0),
                        // Sendable from the hour's end (it is closed by now anyway).
                        Value::Int(hour + HOUR_MICROS),
                        Value::Int(rules.deadline(at).as_microsecond()),
                        Value::Int(rules.alert_at(at).as_microsecond()),
                        Value::Int(now.as_microsecond()),
                        Value::Int(0),
                        Value::Int(i64::from(record.whole_units)),
                        record.binding.route().as_str().into(),
                    ]);
                }
            }
            summary.hours += 1;
            summary.first_hour.get_or_insert(at);
            summary.last_hour = Some(at);
            hour += HOUR_MICROS;
        }
        summary.records = records.len();
        crate::metering::insert_rows(
            &mut tx,
            "marketplace_records",
            &[
                "record_key",
                "marketplace",
                "account_id",
                "entitlement_id",
                "dimension",
                "marketplace_dimension",
                "hour",
                "quantity",
                "owed",
                "carried_in",
                "binding",
                "state",
                "attempts",
                "uncertain",
                "next_attempt_at",
                "deadline",
                "alert_at",
                "planned_at",
                "carried_out",
                "whole_units",
                "route",
            ],
            records,
        )
        .await?;
        let mut rows = Vec::with_capacity(touched.len());
        for ((account_id, dimension), (marketplace, through)) in touched {
            let Some(position) = DimensionKey::parse(&dimension)
                .ok()
                .and_then(|d| positions.get(&account_id)?.get(&d).cloned())
            else {
                continue;
            };
            rows.push(vec![
                account_id.into(),
                dimension.into(),
                marketplace.as_str().into(),
                json_text(&position)?.into(),
                Value::Int(through),
            ]);
        }
        upsert_positions(&mut tx, rows).await?;
        tx.execute(
            "UPDATE marketplace_head SET planned_through = $1 WHERE id = 1",
            &[Value::Int(last)],
        )
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Closes the window of every record not yet delivered whose deadline has passed.
    /// A record certainly never taken has its quantity carried to the account's next
    /// hour where the marketplace allows it; one that may have been taken (an answer
    /// was lost) is not carried, and stays for reconciliation to show.
    pub async fn expire_marketplace_records(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.db.begin().await?;
        lock_head(&mut tx).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM marketplace_records \
                     WHERE deadline <= $1 AND (state = 'due' OR (state = 'sending' AND lease_until < $1))"
                ),
                &[Value::Int(now.as_microsecond())],
            )
            .await?;
        let mut expired = 0;
        for row in &rows {
            let record = record_from_row(row)?;
            let uncertain = record.uncertain || record.state == DeliveryState::Sending;
            let carry = !uncertain
                && Rules::for_binding(record.marketplace, &record.record.binding)
                    .is_some_and(|r| r.carries_missed_usage)
                && record.record.quantity > Decimal::ZERO;
            let outcome = RecordOutcome::Expired {
                message: format!(
                    "its window closed at {} before the marketplace took it{}",
                    record.deadline,
                    if carry {
                        "; its quantity is carried into the account's next hour"
                    } else if uncertain {
                        "; an earlier attempt may have been taken, so it is not carried (reconcile shows it)"
                    } else {
                        ""
                    }
                ),
            };
            tx.execute(
                "UPDATE marketplace_records SET state = 'expired', outcome = $1, settled_at = $2, \
                 carried_out = $3, uncertain = $4, lease_owner = NULL, lease_until = NULL WHERE record_key = $5",
                &[
                    json_text(&outcome)?.into(),
                    Value::Int(now.as_microsecond()),
                    Value::Int(i64::from(carry)),
                    Value::Int(i64::from(uncertain)),
                    record.record.key.to_string().into(),
                ],
            )
            .await?;
            if carry {
                let row = tx
                    .query_opt(
                        "SELECT position, through_hour FROM marketplace_positions WHERE account_id = $1 AND dimension = $2",
                        &[record.record.account_id.as_str().into(), record.record.dimension.as_str().into()],
                    )
                    .await?;
                let (mut position, through) = match row {
                    Some(row) => (
                        serde_json::from_str::<Position>(&row.text(0)?)
                            .map_err(|e| corrupt("marketplace_positions.position", e))?,
                        row.int(1)?,
                    ),
                    None => (Position::default(), record.record.hour.as_microsecond()),
                };
                position.missed += record.record.quantity;
                upsert_position(
                    &mut tx,
                    &record.record.account_id,
                    &record.record.dimension,
                    record.marketplace,
                    &position,
                    through,
                )
                .await?;
            }
            expired += 1;
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Claims up to `limit` records of `marketplace` sent by `route` that are due (or
    /// whose sender's lease ran out) for `owner` until `now + lease`, oldest hour
    /// first. A client claims only its own route's records: the direct AWS client
    /// never one routed through Tackle, Tackle's client never one meant for AWS.
    pub async fn claim_marketplace_records(
        &self,
        marketplace: Marketplace,
        route: Route,
        owner: &str,
        lease: SignedDuration,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut tx = self.db.begin().await?;
        let lock = match self.db.dialect() {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let until = now.checked_add(lease).unwrap_or(Timestamp::MAX);
        let rows = tx
            .query(
                &format!(
                    "UPDATE marketplace_records SET state = 'sending', lease_owner = $1, lease_until = $2, \
                     attempts = attempts + 1, first_sent_at = COALESCE(first_sent_at, $3), \
                     uncertain = CASE WHEN state = 'sending' THEN 1 ELSE uncertain END \
                     WHERE record_key IN ( \
                        SELECT record_key FROM marketplace_records \
                        WHERE marketplace = $4 AND route = $6 AND deadline > $3 AND \
                              ((state = 'due' AND next_attempt_at <= $3) OR (state = 'sending' AND lease_until < $3)) \
                        ORDER BY hour, record_key LIMIT $5 {lock}) \
                     RETURNING {RECORD_COLUMNS}"
                ),
                &[
                    owner.into(),
                    Value::Int(until.as_microsecond()),
                    Value::Int(now.as_microsecond()),
                    marketplace.as_str().into(),
                    Value::Int(limit as i64),
                    route.as_str().into(),
                ],
            )
            .await?;
        tx.commit().await?;
        let mut records = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by_key(|r| (r.record.hour, r.record.key));
        Ok(records)
    }

    /// Records what a submission to a marketplace came to: its exchanges appended to
    /// the chain and each record's outcome, in one transaction. A record already
    /// settled (by another process that took over its lease) keeps its state; a
    /// record accepted before is never moved back.
    pub async fn record_marketplace_submission(
        &self,
        now: Timestamp,
        outcomes: &[(Uuid, RecordOutcome)],
        exchanges: Vec<Exchange>,
        retry_after: Option<Duration>,
    ) -> Result<SubmissionSummary, StoreError> {
        let mut tx = self.db.begin().await?;
        let (_, mut head) = lock_head(&mut tx).await?;
        for exchange in exchanges {
            let evidence = ExchangeEvidence::seal(exchange, &head);
            let e = &evidence.exchange;
            tx.execute(
                "INSERT INTO marketplace_exchanges (seq, started_at, marketplace, operation, method, url, request_body, \
                 status, response_body, error, elapsed_ms, record_keys, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    Value::Int(evidence.seq),
                    Value::Int(e.started_at.as_microsecond()),
                    e.marketplace.as_str().into(),
                    e.operation.as_str().into(),
                    e.method.as_str().into(),
                    e.url.as_str().into(),
                    e.request_body.as_str().into(),
                    e.status.map_or(Value::Null, |s| Value::Int(i64::from(s))),
                    e.response_body.as_deref().map_or(Value::Null, Value::from),
                    e.error.as_deref().map_or(Value::Null, Value::from),
                    Value::Int(e.elapsed_ms as i64),
                    evidence.keys_text().into(),
                    evidence.prev_hash.as_str().into(),
                    evidence.hash.as_str().into(),
                ],
            )
            .await?;
            head = evidence.head();
        }
        tx.execute(
            "UPDATE marketplace_head SET exchange_seq = $1, exchange_hash = $2 WHERE id = 1",
            &[Value::Int(head.seq), head.hash.as_str().into()],
        )
        .await?;

        let mut summary = SubmissionSummary::default();
        // Where each record stands now, read in a few statements rather than one a
        // record: a submission of thousands of records is recorded in milliseconds.
        let mut current: HashMap<String, (i64, DeliveryState, bool)> = HashMap::new();
        // What the roll-up needs of each record: account, marketplace, hour, quantity.
        let mut rolled: HashMap<String, (String, Marketplace, i64, Decimal)> = HashMap::new();
        let keys: Vec<String> = outcomes.iter().map(|(k, _)| k.to_string()).collect();
        for chunk in keys.chunks(500) {
            let sql = format!(
                "SELECT record_key, attempts, state, uncertain, account_id, marketplace, hour, quantity \
                 FROM marketplace_records WHERE record_key IN ({})",
                crate::placeholders(1, chunk.len())
            );
            let params: Vec<Value> = chunk.iter().map(|k| k.as_str().into()).collect();
            for row in tx.query(&sql, &params).await? {
                let state = DeliveryState::parse(&row.text(2)?)
                    .map_err(|e| corrupt("marketplace_records.state", e))?;
                current.insert(row.text(0)?, (row.int(1)?, state, row.int(3)? != 0));
                if state != DeliveryState::Accepted {
                    rolled.insert(
                        row.text(0)?,
                        (
                            row.text(4)?,
                            Marketplace::parse(&row.text(5)?)
                                .map_err(|e| corrupt("marketplace_records.marketplace", e))?,
                            row.int(6)?,
                            decimal(&row.text(7)?, "marketplace_records.quantity")?,
                        ),
                    );
                }
            }
        }
        let mut retries: Vec<Vec<Value>> = Vec::new();
        let mut settled: Vec<Vec<Value>> = Vec::new();
        for ((_, outcome), key_text) in outcomes.iter().zip(&keys) {
            let known = current.get(key_text).copied();
            // Tackle's 409 is read against whether an earlier attempt may have reached
            // Tackle (core: `DeliveryState::after_given`); a record not in the ledger
            // counts as a first attempt.
            let uncertain_before = known.is_some_and(|(_, _, uncertain)| uncertain);
            let state_after = DeliveryState::after_given(outcome, uncertain_before);
            match outcome {
                RecordOutcome::Accepted { .. } | RecordOutcome::AlreadyAccepted { .. } => {
                    summary.accepted += 1
                }
                RecordOutcome::AlreadyForwarded { .. } => {
                    if state_after == DeliveryState::Accepted {
                        summary.accepted += 1
                    } else {
                        summary.conflicts += 1
                    }
                }
                RecordOutcome::Retry { .. } => summary.retrying += 1,
                RecordOutcome::Conflict { .. } => summary.conflicts += 1,
                RecordOutcome::Refused { .. } => summary.refused += 1,
                RecordOutcome::Expired { .. } => summary.expired += 1,
            }
            let Some((attempts, state_now, uncertain)) = known else {
                continue;
            };
            // An acceptance is final; another process's final answer stands.
            if state_now == DeliveryState::Accepted
                || (state_now.is_final() && state_after != DeliveryState::Accepted)
            {
                continue;
            }
            if let RecordOutcome::Retry {
                may_have_applied, ..
            } = outcome
            {
                let jitter: f64 = rand::random();
                let delay = retry_delay(attempts.max(1) as u32 - 1, jitter, retry_after);
                let next = now
                    .checked_add(
                        SignedDuration::try_from(delay).unwrap_or(SignedDuration::from_secs(300)),
                    )
                    .unwrap_or(now);
                retries.push(vec![
                    key_text.as_str().into(),
                    Value::Int(next.as_microsecond()),
                    json_text(outcome)?.into(),
                    Value::Int(i64::from(uncertain || *may_have_applied)),
                ]);
            } else {
                let marketplace_id = match outcome {
                    RecordOutcome::Accepted { marketplace_id }
                    | RecordOutcome::AlreadyAccepted { marketplace_id } => marketplace_id.clone(),
                    _ => None,
                };
                settled.push(vec![
                    key_text.as_str().into(),
                    state_after.as_str().into(),
                    json_text(outcome)?.into(),
                    marketplace_id.map_or(Value::Null, Value::from),
                ]);
            }
        }
        // `UPDATE … FROM (VALUES …)`: both dialects name the columns column1, column2, …;
        // integers are cast so PostgreSQL does not take them for text.
        for chunk in retries.chunks(200) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 4;
                    format!(
                        "(${}, CAST(${} AS BIGINT), ${}, CAST(${} AS BIGINT))",
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4
                    )
                })
                .collect();
            let sql = format!(
                "UPDATE marketplace_records SET state = 'due', next_attempt_at = v.column2, outcome = v.column3, \
                 uncertain = v.column4, lease_owner = NULL, lease_until = NULL \
                 FROM (VALUES {}) AS v WHERE record_key = v.column1",
                rows.join(", ")
            );
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            tx.execute(&sql, &params).await?;
        }
        for chunk in settled.chunks(200) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 4;
                    format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4)
                })
                .collect();
            let at = chunk.len() * 4 + 1;
            let sql = format!(
                "UPDATE marketplace_records SET state = v.column2, outcome = v.column3, \
                 marketplace_id = COALESCE(v.column4, marketplace_id), settled_at = ${at}, \
                 lease_owner = NULL, lease_until = NULL \
                 FROM (VALUES {}) AS v WHERE record_key = v.column1",
                rows.join(", ")
            );
            let mut params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            params.push(Value::Int(now.as_microsecond()));
            tx.execute(&sql, &params).await?;
        }
        // The roll-up gains the records this transaction made accepted: those not
        // accepted before it and accepted now, read back rather than inferred from the
        // outcomes, so that it holds whatever the statements above did.
        let candidates: Vec<String> = settled
            .iter()
            .filter(|row| matches!(&row[1], Value::Text(state) if state == DeliveryState::Accepted.as_str()))
            .filter_map(|row| match &row[0] {
                Value::Text(key) if rolled.contains_key(key) => Some(key.clone()),
                _ => None,
            })
            .collect();
        let mut newly_accepted = Vec::new();
        for chunk in candidates.chunks(500) {
            // The state is compared here: given `state = 'accepted'`, SQLite's planner
            // would take the state index over the keys.
            let sql = format!(
                "SELECT record_key, state FROM marketplace_records WHERE record_key IN ({})",
                crate::placeholders(1, chunk.len())
            );
            let params: Vec<Value> = chunk.iter().map(|k| k.as_str().into()).collect();
            for row in tx.query(&sql, &params).await? {
                if row.text(1)? != DeliveryState::Accepted.as_str() {
                    continue;
                }
                if let Some(record) = rolled.remove(&row.text(0)?) {
                    newly_accepted.push(record);
                }
            }
        }
        crate::marketplace_rollup::add_accepted(&mut tx, &newly_accepted).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Ledger records, oldest hour first.
    pub async fn marketplace_records(
        &self,
        filter: &LedgerFilter,
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut bind = |clause: &str, value: Value, params: &mut Vec<Value>| {
            params.push(value);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(m) = filter.marketplace {
            bind("marketplace = ?", m.as_str().into(), &mut params);
        }
        if let Some(a) = &filter.account_id {
            bind("account_id = ?", a.as_str().into(), &mut params);
        }
        if let Some(from) = filter.from {
            bind("hour >= ?", Value::Int(from.as_microsecond()), &mut params);
        }
        if let Some(to) = filter.to {
            bind("hour < ?", Value::Int(to.as_microsecond()), &mut params);
        }
        if let Some(state) = filter.state {
            bind("state = ?", state.as_str().into(), &mut params);
        }
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM marketplace_records");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY hour, account_id, dimension");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let mut handle = self.db.read().await?;
        let rows = handle.query(&sql, &params).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Every entitlement bound to a marketplace, with its offer: whom the marketplaces
    /// bill, for registering them with test marketplaces and for pages.
    pub async fn bound_entitlements(&self) -> Result<Vec<BoundEntitlement>, StoreError> {
        let catalogue = self.rating_catalogue().await?;
        let mut bound: Vec<_> = catalogue
            .by_account
            .values()
            .flatten()
            .filter(|e| e.marketplace_binding.is_some())
            .filter_map(|e| {
                catalogue
                    .offers
                    .get(&e.offer_id)
                    .map(|o| (e.clone(), o.clone()))
            })
            .collect();
        bound.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(bound)
    }

    /// Records still undelivered whose alarm time has come: the marketplace's window
    /// closes soon and the revenue is at risk. At most `limit`, oldest first, with the
    /// total count.
    pub async fn marketplace_at_risk(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<(i64, Vec<LedgerRecord>), StoreError> {
        let mut handle = self.db.read().await?;
        let count = handle
            .query_one(
                "SELECT COUNT(*) FROM marketplace_records WHERE state IN ('due', 'sending') AND alert_at <= $1",
                &[Value::Int(now.as_microsecond())],
            )
            .await?
            .int(0)?;
        let rows = handle
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM marketplace_records WHERE state IN ('due', 'sending') AND alert_at <= $1 \
                     ORDER BY deadline, record_key LIMIT $2"
                ),
                &[Value::Int(now.as_microsecond()), Value::Int(limit.max(0))],
            )
            .await?;
        Ok((
            count,
            rows.iter().map(record_from_row).collect::<Result<_, _>>()?,
        ))
    }

    /// The exchanges that carried a record, oldest first.
    pub async fn marketplace_exchanges_for(
        &self,
        key: Uuid,
    ) -> Result<Vec<ExchangeEvidence>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!("SELECT {EXCHANGE_COLUMNS} FROM marketplace_exchanges WHERE record_keys LIKE $1 ORDER BY seq"),
                &[format!("%{key}%").into()],
            )
            .await?;
        rows.iter().map(exchange_from_row).collect()
    }

    /// Walks the whole exchange chain against its recorded head.
    pub async fn verify_marketplace_exchanges(
        &self,
    ) -> Result<Result<Checkpoint, purser_core::chain::ChainBreak>, StoreError> {
        let mut handle = self.db.read().await?;
        let recorded = crate::marketplace_rollup::recorded_head(&mut handle).await?;
        crate::marketplace_rollup::walk_exchanges(&mut handle, None, &recorded).await
    }
}

/// What recording a submission came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SubmissionSummary {
    pub accepted: usize,
    pub retrying: usize,
    pub conflicts: usize,
    pub refused: usize,
    pub expired: usize,
}

pub(crate) const EXCHANGE_COLUMNS: &str = "seq, started_at, marketplace, operation, method, url, request_body, status, response_body, error, elapsed_ms, record_keys, prev_hash, hash";

pub(crate) fn exchange_from_row(row: &Row) -> Result<ExchangeEvidence, StoreError> {
    let keys = row
        .text(11)?
        .split_whitespace()
        .map(Uuid::parse_str)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt("marketplace_exchanges.record_keys", e))?;
    Ok(ExchangeEvidence {
        seq: row.int(0)?,
        exchange: Exchange {
            started_at: from_micros(row.int(1)?)?,
            marketplace: Marketplace::parse(&row.text(2)?)
                .map_err(|e| corrupt("marketplace_exchanges.marketplace", e))?,
            operation: row.text(3)?,
            method: row.text(4)?,
            url: row.text(5)?,
            request_body: row.text(6)?,
            status: row.opt_int(7)?.map(|s| s as u16),
            response_body: row.opt_text(8)?,
            error: row.opt_text(9)?,
            elapsed_ms: row.int(10)? as u64,
            record_keys: keys,
        },
        prev_hash: row.text(12)?,
        hash: row.text(13)?,
    })
}

async fn upsert_position(
    tx: &mut Handle,
    account_id: &str,
    dimension: &str,
    marketplace: Marketplace,
    position: &Position,
    through: i64,
) -> Result<(), StoreError> {
    upsert_positions(
        tx,
        vec![vec![
            account_id.into(),
            dimension.into(),
            marketplace.as_str().into(),
            json_text(position)?.into(),
            Value::Int(through),
        ]],
    )
    .await
}

/// Writes positions (account, dimension, marketplace, position, through) in multi-row
/// statements: planning an hour touches every bound account's dimensions.
async fn upsert_positions(tx: &mut Handle, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
    for chunk in rows.chunks(200) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", crate::placeholders(i * 5 + 1, 5)))
            .collect();
        let sql = format!(
            "INSERT INTO marketplace_positions (account_id, dimension, marketplace, position, through_hour) \
             VALUES {} ON CONFLICT (account_id, dimension) DO UPDATE SET marketplace = excluded.marketplace, \
             position = excluded.position, through_hour = excluded.through_hour",
            values.join(", ")
        );
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

/// What reconciling a period found for one record (or one unplanned hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileLine {
    pub marketplace: Marketplace,
    pub account_id: String,
    pub dimension: String,
    pub hour: Timestamp,
    /// What the hour owed, and what was due to be sent for it (carries included).
    pub owed: Decimal,
    pub due: Decimal,
    /// Whether any request carried it.
    pub sent: bool,
    /// What the marketplace holds for it, as far as Purser knows.
    pub accepted: Decimal,
    pub state: DeliveryState,
    pub finding: Finding,
    pub detail: Option<String>,
}

impl ReconcileLine {
    /// The line of one ledger record.
    pub(crate) fn of(record: &LedgerRecord) -> ReconcileLine {
        let (finding, accepted, detail) = finding_of(record);
        ReconcileLine {
            marketplace: record.marketplace,
            account_id: record.record.account_id.clone(),
            dimension: record.record.dimension.clone(),
            hour: record.record.hour,
            owed: record.owed,
            due: record.record.quantity,
            sent: record.attempts > 0,
            accepted,
            state: record.state,
            finding,
            detail,
        }
    }
}

/// How a record stands against what the marketplace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Accepted as due.
    Clean,
    /// Still within its window, not yet accepted.
    Pending,
    /// Missed its window; its quantity rode on a later record.
    Carried,
    /// Missed its window and was not carried: revenue lost or unknown.
    Missing,
    /// The marketplace refused it.
    Refused,
    /// The marketplace holds another quantity for the hour.
    Conflict,
    /// A second witness (the marketplace's own listing) holds more than was sent.
    OverReported,
}

impl Finding {
    /// Whether this finding means something is off.
    pub fn is_off(self) -> bool {
        matches!(
            self,
            Finding::Missing | Finding::Refused | Finding::Conflict | Finding::OverReported
        )
    }
}

/// A period's reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Per marketplace with records in the period, in marketplace order: how many
    /// records, how many of each finding, what was due and what was accepted.
    pub summaries: Vec<MarketplaceSummary>,
    /// Every line that is not clean (pending, carried, missing, refused, conflicting),
    /// oldest hour first; clean lines are counted in `summaries` only.
    pub lines: Vec<ReconcileLine>,
    /// Closed hours in the period not yet planned.
    pub unplanned_hours: Vec<Timestamp>,
    /// The exchange chain's verification, as text when broken.
    pub chain_break: Option<String>,
    /// What of the chain was verified, and how.
    pub exchanges: ExchangeCheck,
    /// Where a marketplace's own listing (Azure's usage events) disagrees with what
    /// the ledger says it accepted.
    pub witness: Vec<WitnessLine>,
    /// The marketplaces whose own listing was consulted.
    pub witnessed_by: Vec<Marketplace>,
    /// Why a marketplace's listing could not be consulted, when it could not.
    pub witness_unavailable: Vec<String>,
}

/// A marketplace's own account of a day, against the ledger's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessLine {
    pub marketplace: Marketplace,
    /// The resource (SaaS subscription) billed.
    pub resource: String,
    pub dimension: String,
    /// The day (UTC) the marketplace reports on.
    pub day: Timestamp,
    /// What the ledger says the marketplace accepted that day.
    pub ledger: Decimal,
    /// What the marketplace says it processed.
    pub marketplace_says: Decimal,
    /// `OverReported` when the marketplace holds more than Purser sent, `Missing` when
    /// it shows less than it accepted.
    pub finding: Finding,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.chain_break.is_none()
            && self.witness.is_empty()
            && self.lines.iter().all(|l| !l.finding.is_off())
    }

    /// How many records of the period have this finding.
    pub fn count(&self, finding: Finding) -> i64 {
        self.summaries.iter().map(|s| s.count(finding)).sum()
    }

    /// How many records the period holds.
    pub fn records(&self) -> i64 {
        self.summaries.iter().map(|s| s.records).sum()
    }
}

fn finding_of(record: &LedgerRecord) -> (Finding, Decimal, Option<String>) {
    let detail = record.outcome.as_ref().and_then(|o| {
        o.get("message")
            .or_else(|| o.get("reason"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    match record.state {
        DeliveryState::Accepted => (Finding::Clean, record.record.quantity, None),
        DeliveryState::Due | DeliveryState::Sending => (Finding::Pending, Decimal::ZERO, detail),
        // A zero record that missed its window owed nothing.
        DeliveryState::Expired if record.record.quantity.is_zero() => {
            (Finding::Clean, Decimal::ZERO, detail)
        }
        DeliveryState::Expired if record.carried_out => (Finding::Carried, Decimal::ZERO, detail),
        DeliveryState::Expired => (Finding::Missing, Decimal::ZERO, detail),
        DeliveryState::Refused => (Finding::Refused, Decimal::ZERO, detail),
        DeliveryState::Conflict => {
            let accepted = record
                .outcome
                .as_ref()
                .and_then(|o| o.get("accepted_quantity"))
                .and_then(|q| q.as_str())
                .and_then(|q| q.parse().ok())
                .unwrap_or_default();
            (Finding::Conflict, accepted, detail)
        }
    }
}

impl Store {
    /// Reconciles `[from, to)`: per marketplace, account, dimension and hour, what was
    /// owed and due, whether it was sent and what the marketplace holds; every closed
    /// hour not yet planned; and the exchange chain. Reads the roll-up of accepted
    /// records and the records not accepted, and walks the chain from its latest
    /// checkpoint (`marketplace_rollup`).
    pub async fn reconcile_marketplaces(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<ReconcileReport, StoreError> {
        self.reconcile_marketplaces_by(from, to, Method::RollUp, ChainWalk::FromCheckpoint)
            .await
    }

    /// Reconciles `[from, to)` reading the ledger and walking the chain as told: with
    /// `Method::EveryRecord` and `ChainWalk::Whole`, a recomputation from the records
    /// and every exchange alone (`purser reconcile --full`), which must come to the
    /// same report.
    pub async fn reconcile_marketplaces_by(
        &self,
        from: Timestamp,
        to: Timestamp,
        method: Method,
        walk: ChainWalk,
    ) -> Result<ReconcileReport, StoreError> {
        let (summaries, lines) = self
            .tally_marketplace_records(None, from, to, method)
            .await?
            .finish();
        let exchanges = self.check_marketplace_exchanges(walk).await?;
        Ok(ReconcileReport {
            from: Some(from),
            to: Some(to),
            summaries,
            lines: lines.into_iter().map(|(_, line)| line).collect(),
            unplanned_hours: self.unplanned_hours(from, to).await?,
            chain_break: exchanges.chain_break.clone(),
            exchanges,
            ..ReconcileReport::default()
        })
    }

    /// Closed hours in `[from, to)` after the last one planned (all of them when
    /// nothing was planned yet).
    pub(crate) async fn unplanned_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Timestamp>, StoreError> {
        let mut handle = self.db.read().await?;
        let planned = handle
            .query_one(
                "SELECT planned_through FROM marketplace_head WHERE id = 1",
                &[],
            )
            .await?
            .opt_int(0)?;
        let after = planned.unwrap_or(i64::MIN).max(from.as_microsecond() - 1);
        let rows = handle
            .query(
                "SELECT hour FROM closed_hours WHERE hour > $1 AND hour < $2 ORDER BY hour",
                &[Value::Int(after), Value::Int(to.as_microsecond())],
            )
            .await?;
        rows.iter().map(|row| from_micros(row.int(0)?)).collect()
    }
}
