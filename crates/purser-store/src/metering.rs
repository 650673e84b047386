//! Metering in storage: meters, ingest, the quarantine, closing hours with their
//! evidence, verification and usage queries.
//!
//! What is kept, and why:
//! - `ingest_batches`: the exact bytes of every batch that changed something,
//!   compressed, with their SHA-256. This is the ground truth `purser verify` goes
//!   back to; nothing derived from it is trusted without being recomputable from it.
//! - `usage_slices`: per batch × event hour × booked hour, the sorted keys of the
//!   accepted events (deduplication) and what each contributes to each meter
//!   (closing), packed (see [`slices`]). One compact row per slice instead of one
//!   row per event keeps writes large and few.
//! - `usage_quarantine`: events for an unknown account or meter, one row each.
//! - `closed_hours`, `dimension_hours`, `hour_evidence`: what closing concluded.
//!   `hour_evidence` is chained and its result holds every meter × group of the
//!   account's hour (values and gauge carry-outs are read from it); `dimension_hours`
//!   holds what is billed, one row per account × dimension × hour, for rating and
//!   usage queries.
//!
//! Concurrency: every ingest and every closing locks the one `metering_head` row, so
//! across processes sharing PostgreSQL the dedup decision and the open/closed state
//! of hours are taken one batch at a time. Each process keeps the dedup key sets of
//! recent hours in memory and, under that lock, reads the slices other processes
//! wrote since it last looked (slice ids grow in commit order under the lock).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use purser_core::audit::Actor;
use purser_core::chain::{Chained, Checkpoint, verify_chain};
use purser_core::closing::{
    AccountHour, AccountHourInput, CarryOut, Contribution, LateHour, Series, close_account_hour,
    hour_input_digest,
};
use purser_core::commercial::{DimensionKey, Entitlement, Offer};
use purser_core::events::{EventKey, EventRejection, Framing, UsageEvent, parse_batch};
use purser_core::evidence::{HourEvidence, HourEvidenceDraft, PresealedEvidence};
use purser_core::meter::{Meter, MeterDraft, Sample};
use purser_core::{AccountScope, BoundaryName};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::audit::append;
use crate::db::{Handle, Row, Value};
use crate::{Store, StoreError, corrupt, decimal, from_micros, placeholders};

mod slices;

use slices::{DecodedSlice, ENCODING_PACKED, Numbered, SliceWriter, keys_of};

const HOUR_MICROS: i64 = 3_600_000_000;

/// How many hours' dedup key sets a process keeps in memory; older ones are read
/// back from storage when a late event needs them.
const CACHED_HOURS: usize = 72;

/// Hours closed in one transaction: one commit (and its fsync) for a day of hours
/// when a backlog is closed, while the head stays locked for a fraction of a second.
const HOURS_PER_TRANSACTION: usize = 24;

/// The rules of ingest and closing that operators set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeteringSettings {
    /// How long after its end an hour stays open for late events.
    pub grace: SignedDuration,
    /// Events older than this are refused: no marketplace bills them any more, and an
    /// event that old is more likely a replayed bug than late usage.
    pub max_event_age: SignedDuration,
    /// Events further in the future than this are refused (clock skew allowance).
    pub max_future_skew: SignedDuration,
}

impl Default for MeteringSettings {
    fn default() -> Self {
        MeteringSettings {
            grace: SignedDuration::from_mins(15),
            max_event_age: SignedDuration::from_hours(24 * 7),
            max_future_skew: SignedDuration::from_mins(15),
        }
    }
}

/// The process's view of deduplication state: key sets of recent hours.
#[derive(Default)]
pub(crate) struct DedupCache {
    hours: HashMap<i64, HashSet<EventKey, KeyHash>>,
    /// The greatest slice id whose keys are in `hours`.
    synced_through: i64,
}

/// Event keys are already uniform hashes: their first eight bytes are the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type KeyHash = BuildHasherDefault<KeyHasher>;

pub(crate) type SharedDedup = Arc<Mutex<DedupCache>>;

/// Closing's running state, kept between runs: valid for exactly the hour it says
/// (closed hours never change, so neither does what they carry into the next).
pub(crate) type SharedClosingState = Arc<Mutex<ClosingState>>;

/// An event checked against the meters, ready for the store's decision.
#[derive(Debug)]
pub struct PreparedEvent {
    pub ordinal: usize,
    pub event: UsageEvent,
    /// Its subject's position in [`PreparedBatch::subjects`].
    pub subject: u32,
    /// Its contributions' positions in [`PreparedBatch::contributions`], one for every
    /// meter reading its type; empty when no meter does (the event goes to the
    /// quarantine).
    pub contributions: std::ops::Range<u32>,
}

/// What an event gives one meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedContribution {
    /// The meter's name: a position in [`PreparedBatch::names`].
    pub meter: u32,
    /// The group's name, if the meter groups: a position in [`PreparedBatch::names`].
    pub group: Option<u32>,
    /// Normalised (no trailing zeros), as slices keep it.
    pub value: Decimal,
}

/// A batch parsed and measured, off the async runtime (see [`prepare_batch`]).
///
/// Names are numbered once a batch, and the events are ordered by key, on the
/// preparing thread: the store decides a batch on its one thread, under the lock, and
/// there it only looks positions up, without hashing a name or sorting an event.
#[derive(Debug)]
pub struct PreparedBatch {
    pub framing: Framing,
    pub body_sha256: String,
    pub body_bytes: usize,
    pub compressed: Vec<u8>,
    pub n_events: usize,
    pub events: Vec<PreparedEvent>,
    pub rejected: Vec<EventRejection>,
    /// The subjects the events name, each once.
    pub subjects: Vec<String>,
    /// The meter and group names the contributions use, each once.
    pub names: Vec<Arc<str>>,
    pub contributions: Vec<PreparedContribution>,
    /// Positions in `events`, by key and then ordinal: repeats of a key are adjacent,
    /// the first sent first, and slices are written in key order as they are kept.
    pub by_key: Vec<u32>,
    /// The distinct hours the events fall in, ascending.
    pub hours: Vec<i64>,
}

impl PreparedBatch {
    /// What an event gives each meter: (meter, group, value).
    pub fn contributions_of<'a>(
        &'a self,
        event: &PreparedEvent,
    ) -> impl Iterator<Item = (&'a str, Option<&'a str>, Decimal)> + 'a {
        self.contributions_numbered(event)
            .map(|((_, meter), group, value)| (meter, group.map(|(_, g)| g), value))
    }

    fn name(&self, position: u32) -> &str {
        self.names.get(position as usize).map_or("", |n| &**n)
    }

    /// [`Self::contributions_of`], with each name's position in the batch's table, as
    /// [`SliceWriter::push_numbered`] takes them.
    fn contributions_numbered<'a>(
        &'a self,
        event: &PreparedEvent,
    ) -> impl Iterator<Item = (Numbered<'a>, Option<Numbered<'a>>, Decimal)> + 'a {
        let range = event.contributions.start as usize..event.contributions.end as usize;
        self.contributions
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    (c.meter, self.name(c.meter)),
                    c.group.map(|g| (g, self.name(g))),
                    c.value,
                )
            })
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// The stored batch, when anything in it was kept.
    pub batch_id: Option<i64>,
    pub events: usize,
    pub accepted: usize,
    pub duplicate: usize,
    pub quarantined: usize,
    pub rejected: usize,
    /// Of the rejected, those naming an account the caller is not cleared for.
    pub denied: usize,
    /// Accepted after their hour closed: booked into the next open hour.
    pub late: usize,
    pub rejections: Vec<EventRejection>,
}

/// Parses a body and reads every meter's value from each event. CPU work, no I/O:
/// run it off the async runtime for large bodies.
pub fn prepare_batch(
    body: &[u8],
    framing: Framing,
    meters: &[Meter],
    now: Timestamp,
    settings: &MeteringSettings,
) -> Result<PreparedBatch, purser_core::events::BatchError> {
    let parsed = parse_batch(body, framing)?;
    let n_events = parsed.events.len() + parsed.n_rejected_events();
    let mut rejected = parsed.rejected;
    let mut events = Vec::with_capacity(parsed.events.len());
    let mut contributions = Vec::with_capacity(parsed.events.len() * 2);
    let oldest = now.checked_sub(settings.max_event_age).unwrap_or(now);
    let newest = now.checked_add(settings.max_future_skew).unwrap_or(now);
    // The meters' names come first in the name table; groups are added as they come.
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut by_type: HashMap<&str, Vec<(&Meter, u32)>> = HashMap::new();
    for meter in meters {
        names.push(Arc::from(meter.name.as_str()));
        by_type
            .entry(&meter.event_type)
            .or_default()
            .push((meter, (names.len() - 1) as u32));
    }
    let mut group_positions: HashMap<String, u32> = HashMap::new();
    let mut subjects: Vec<String> = Vec::new();
    let mut subject_positions: HashMap<String, u32> = HashMap::new();
    for (ordinal, event) in parsed.events {
        if event.time() < oldest {
            rejected.push(EventRejection::new(
                ordinal,
                Some("time"),
                format!(
                    "{} is older than the {} Purser accepts",
                    event.time(),
                    describe(settings.max_event_age)
                ),
            ));
            continue;
        }
        if event.time() > newest {
            rejected.push(EventRejection::new(
                ordinal,
                Some("time"),
                format!(
                    "{} is in the future (more than {} ahead of {now})",
                    event.time(),
                    describe(settings.max_future_skew)
                ),
            ));
            continue;
        }
        let start = contributions.len();
        let mut bad = None;
        for (meter, name) in by_type.get(event.event_type()).into_iter().flatten() {
            match meter.measure(&event) {
                Ok(m) if m.sample.value.is_sign_negative() => {
                    bad = Some(format!(
                        "meter `{}` reads {}, and usage is never negative",
                        meter.name, m.sample.value
                    ));
                    break;
                }
                Ok(m) => {
                    let group = m.key.group.map(|group| {
                        if let Some(position) = group_positions.get(&group) {
                            return *position;
                        }
                        names.push(Arc::from(group.as_str()));
                        let position = (names.len() - 1) as u32;
                        group_positions.insert(group, position);
                        position
                    });
                    contributions.push(PreparedContribution {
                        meter: *name,
                        group,
                        value: m.sample.value.normalize(),
                    });
                }
                Err(e) => {
                    bad = Some(format!("meter `{}`: {e}", meter.name));
                    break;
                }
            }
        }
        if let Some(reason) = bad {
            contributions.truncate(start);
            rejected.push(EventRejection::new(ordinal, Some("data"), reason));
            continue;
        }
        let subject = match subject_positions.get(event.subject()) {
            Some(position) => *position,
            None => {
                subjects.push(event.subject().to_owned());
                let position = (subjects.len() - 1) as u32;
                subject_positions.insert(event.subject().to_owned(), position);
                position
            }
        };
        events.push(PreparedEvent {
            ordinal,
            event,
            subject,
            contributions: start as u32..contributions.len() as u32,
        });
    }
    rejected.sort_by_key(|r| r.index);
    let mut by_key: Vec<u32> = (0..events.len() as u32).collect();
    by_key.sort_unstable_by_key(|&i| {
        let event = &events[i as usize];
        (event.event.key(), event.ordinal)
    });
    let mut hours: Vec<i64> = events.iter().map(|e| hour_of(e.event.time())).collect();
    hours.sort_unstable();
    hours.dedup();
    Ok(PreparedBatch {
        framing,
        body_sha256: hex::encode(Sha256::digest(body)),
        body_bytes: body.len(),
        compressed: compress_body(body),
        n_events,
        events,
        rejected,
        subjects,
        names,
        contributions,
        by_key,
        hours,
    })
}

/// A batch's exact bytes as stored: their length (little-endian `u32`) and an lz4 block,
/// the format of `lz4_flex::compress_prepend_size`. Compressed into a buffer each
/// thread keeps, then copied out at its size: `compress_prepend_size` zeroes a fresh
/// buffer of the largest possible output (4 MiB a chunk, faulted in page by page) and
/// then shrinks it (about 5% of storing's time, measured in BENCHMARKS.md).
fn compress_body(body: &[u8]) -> Vec<u8> {
    /// A buffer grown by a larger body than this is not kept.
    const KEEP_BYTES: usize = 8 * 1024 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let needed = lz4_flex::block::get_maximum_output_size(body.len());
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < needed {
            scratch.resize(needed, 0);
        }
        let mut compressed = Vec::new();
        match lz4_flex::block::compress_into(body, &mut scratch[..needed]) {
            Ok(n) => {
                compressed.reserve_exact(4 + n);
                compressed.extend_from_slice(&(body.len() as u32).to_le_bytes());
                compressed.extend_from_slice(&scratch[..n]);
            }
            // The buffer holds the largest output lz4 can give, so this is not reached;
            // the allocating form stays correct if it were.
            Err(_) => compressed = lz4_flex::compress_prepend_size(body),
        }
        if scratch.len() > KEEP_BYTES {
            *scratch = Vec::new();
        }
        compressed
    })
}

/// How many events the rejections concern (an event may have several).
fn distinct_indices(rejections: &[EventRejection]) -> usize {
    let indices: BTreeSet<usize> = rejections.iter().map(|r| r.index).collect();
    indices.len()
}

fn describe(duration: SignedDuration) -> String {
    let hours = duration.as_hours();
    if hours >= 48 && hours % 24 == 0 {
        format!("{} days", hours / 24)
    } else if hours >= 1 && duration.as_secs() % 3600 == 0 {
        format!("{hours} hours")
    } else {
        format!("{} minutes", duration.as_secs() / 60)
    }
}

fn hour_of(time: Timestamp) -> i64 {
    time.as_microsecond().div_euclid(HOUR_MICROS) * HOUR_MICROS
}

/// An account as ingest needs it.
struct KnownAccount {
    id: String,
    boundary: BoundaryName,
}

/// What a batch's subject names, as the caller may see it.
#[derive(Clone, Copy)]
enum Standing<'a> {
    Unknown,
    /// An account the caller is not cleared for: its events are refused.
    Denied(&'a KnownAccount),
    Cleared(&'a KnownAccount),
}

/// What becomes of an event the caller may send, unless it is a repeat.
#[derive(Clone, Copy)]
enum Fate<'a> {
    Accept(&'a KnownAccount),
    Quarantine(&'static str),
}

/// A quarantined event, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuarantinedEvent {
    pub event_key: String,
    pub batch_id: i64,
    pub ordinal: i64,
    pub subject: String,
    pub event_type: String,
    #[schema(value_type = String, format = DateTime)]
    pub event_time: Timestamp,
    /// `unknown_account` or `unknown_meter`.
    pub reason: String,
    pub detail: String,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replayed_at: Option<Timestamp>,
}

/// The result of replaying the quarantine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Events looked at (still quarantined before the replay).
    pub considered: usize,
    pub report: IngestReport,
}

/// One closed hour, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClosedHour {
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub closed_at: Timestamp,
    pub accounts: i64,
    pub events: i64,
    /// Events of earlier hours booked into this one.
    pub late: i64,
}

/// A difference `purser verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyFinding {
    pub account_id: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub hour: Option<Timestamp>,
    pub meter: Option<String>,
    pub problem: String,
}

/// What `purser verify` checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub hours: usize,
    pub account_hours: usize,
    pub batches: usize,
    pub findings: Vec<VerifyFinding>,
}

/// The trace behind an account's hour.
#[derive(Debug, Clone, Serialize)]
pub struct HourTrace {
    pub evidence: HourEvidence,
    pub result: serde_json::Value,
    /// The events behind it, in time order.
    pub events: Vec<TracedEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TracedEvent {
    pub event_key: String,
    pub time: Timestamp,
    pub meter: String,
    pub group: Option<String>,
    pub value: String,
    pub batch_id: i64,
    pub received_at: Timestamp,
    /// The hour the event belongs to when it was booked late into this one.
    pub late_from: Option<Timestamp>,
}

/// One row of a usage query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The start of the hour or day (UTC).
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// The dimension or meter.
    pub name: String,
    pub group: Option<String>,
    pub quantity: String,
    /// Beyond the commitment (dimensions only).
    pub overage_quantity: Option<String>,
    pub overage_amount: Option<String>,
    pub currency: Option<String>,
    /// Commit consumed at the end of the row's last hour (dimensions only).
    pub consumed: Option<String>,
    pub committed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageOf {
    Dimensions,
    Meters,
}

/// Reads a `usage_slices` row's encoding, keys and contributions (columns from
/// `first` on, in that order).
fn slice_columns(row: &Row, first: usize) -> Result<(i64, Vec<u8>, Vec<u8>), StoreError> {
    Ok((
        row.int(first)?,
        row.bytes(first + 1)?,
        row.bytes(first + 2)?,
    ))
}

/// Inserts many rows with few statements (one COPY on PostgreSQL).
pub(crate) async fn insert_rows(
    tx: &mut Handle,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    // A fixed number of rows a statement, so that the statement's text repeats and
    // stays prepared; well below both backends' parameter limits.
    if tx.dialect() == crate::db::Dialect::Postgres {
        return tx.copy_in(table, columns, &rows).await;
    }
    const PER_STATEMENT: usize = 64;
    // On SQLite, a statement that may fail half-way keeps a journal of every page it
    // touches so it can be undone alone; OR FAIL needs none (a failure here fails the
    // whole transaction anyway), which spares a copy of each page written.
    let statement = |n_rows: usize| {
        let mut sql = format!(
            "INSERT OR FAIL INTO {table} ({}) VALUES ",
            columns.join(", ")
        );
        for i in 0..n_rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&placeholders(i * columns.len() + 1, columns.len()));
            sql.push(')');
        }
        sql
    };
    let full = statement(PER_STATEMENT);
    let mut rows = rows.into_iter().peekable();
    let mut params = Vec::with_capacity(PER_STATEMENT * columns.len());
    while rows.peek().is_some() {
        params.clear();
        let mut n_rows = 0;
        for row in rows.by_ref().take(PER_STATEMENT) {
            params.extend(row);
            n_rows += 1;
        }
        if n_rows == PER_STATEMENT {
            tx.execute(&full, &params).await?;
        } else {
            tx.execute(&statement(n_rows), &params).await?;
        }
    }
    Ok(())
}

/// Records, under the metering head's lock, that entitlements changed: closing
/// re-reads them before rating its next hour, and a change waits for an hour being
/// closed to commit, so it applies from an hour that is really still open. Returns
/// the first hour not yet closed, if any hour has closed.
pub(crate) async fn bump_catalogue(tx: &mut Handle) -> Result<Option<Timestamp>, StoreError> {
    let row = tx
        .query_one(
            "UPDATE metering_head SET catalogue_version = catalogue_version + 1 WHERE id = 1 \
             RETURNING closed_through",
            &[],
        )
        .await?;
    row.opt_int(0)?
        .map(|hour| from_micros(hour + HOUR_MICROS))
        .transpose()
}

async fn catalogue_version_in(tx: &mut Handle) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT catalogue_version FROM metering_head WHERE id = 1",
        &[],
    )
    .await?
    .int(0)
}

/// The metering head, as locked by a transaction: what no other transaction can
/// change until it ends.
struct MeteringHead {
    /// The last closed hour.
    closed_through: Option<i64>,
    /// The evidence chain's head.
    evidence: Checkpoint,
    /// Batches stored so far: it moves whenever usage is added (ingest, replay).
    n_batches: i64,
}

/// Locks the metering head for this transaction. Every transaction that adds usage
/// or closes hours takes it first, so they follow one another.
async fn lock_head(tx: &mut Handle) -> Result<MeteringHead, StoreError> {
    let row = tx
        .query_one(
            "UPDATE metering_head SET n_batches = n_batches WHERE id = 1 \
             RETURNING closed_through, evidence_seq, evidence_hash, n_batches",
            &[],
        )
        .await?;
    Ok(MeteringHead {
        closed_through: row.opt_int(0)?,
        evidence: Checkpoint {
            seq: row.int(1)?,
            hash: row.text(2)?,
        },
        n_batches: row.int(3)?,
    })
}

impl Store {
    // ---- meters -------------------------------------------------------------------

    /// Defines a meter. Meters never change once defined: closed hours were computed
    /// with them, and `verify` must compute the same. A different rule is a new meter.
    pub async fn create_meter(&self, actor: &Actor, meter: &Meter) -> Result<(), StoreError> {
        let definition = serde_json::to_string(&MeterDraft::from(meter))
            .map_err(|e| StoreError::Backend(format!("cannot encode a meter: {e}")))?;
        let mut tx = self.db.begin().await?;
        let inserted = tx
            .execute(
                "INSERT INTO meters (name, event_type, definition, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
                &[
                    (&meter.name).into(),
                    (&meter.event_type).into(),
                    definition.into(),
                    Value::Int(Timestamp::now().as_microsecond()),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                field: Some("name".into()),
                message: format!(
                    "a meter named `{}` exists; meters do not change once defined, define a new one",
                    meter.name
                ),
            });
        }
        append(
            &mut tx,
            actor
                .draft("meter.create")
                .target(&meter.name)
                .details(json!({ "after": meter })),
        )
        .await?;
        tx.commit().await
    }

    pub async fn meters(&self) -> Result<Vec<Meter>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query("SELECT name, definition FROM meters ORDER BY name", &[])
            .await?;
        rows.iter()
            .map(|row| {
                let draft: MeterDraft = serde_json::from_str(&row.text(1)?)
                    .map_err(|e| corrupt("meters.definition", e))?;
                draft
                    .validate()
                    .map_err(|e| corrupt("meters.definition", e))
            })
            .collect()
    }

    // ---- ingest -------------------------------------------------------------------

    async fn known_accounts(
        &self,
        subjects: &[String],
    ) -> Result<HashMap<String, KnownAccount>, StoreError> {
        let mut out = HashMap::new();
        let mut handle = self.db.read().await?;
        for chunk in subjects.chunks(500) {
            let sql = format!(
                "SELECT external_id, id, boundary FROM accounts WHERE external_id IN ({})",
                placeholders(1, chunk.len())
            );
            let params: Vec<Value> = chunk.iter().map(|s| Value::from(s.as_str())).collect();
            for row in handle.query(&sql, &params).await? {
                out.insert(
                    row.text(0)?,
                    KnownAccount {
                        id: row.text(1)?,
                        boundary: BoundaryName::parse(&row.text(2)?)
                            .map_err(|e| corrupt("accounts.boundary", e))?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Brings the process's key sets up to date with what other processes stored,
    /// and loads the key sets of `hours` not in memory. Call under the head lock.
    async fn sync_dedup(
        tx: &mut Handle,
        cache: &mut DedupCache,
        hours: &BTreeSet<i64>,
    ) -> Result<(), StoreError> {
        let rows = tx
            .query(
                "SELECT id, hour, keys FROM usage_slices WHERE id > $1 ORDER BY id",
                &[Value::Int(cache.synced_through)],
            )
            .await?;
        for row in rows {
            let hour = row.int(1)?;
            if let Some(set) = cache.hours.get_mut(&hour) {
                set.extend(keys_of(&row.bytes(2)?));
            }
            cache.synced_through = cache.synced_through.max(row.int(0)?);
        }
        for hour in hours {
            if cache.hours.contains_key(hour) {
                continue;
            }
            let mut set = HashSet::default();
            for row in tx
                .query(
                    "SELECT keys FROM usage_slices WHERE hour = $1",
                    &[Value::Int(*hour)],
                )
                .await?
            {
                set.extend(keys_of(&row.bytes(0)?));
            }
            cache.hours.insert(*hour, set);
        }
        if cache.hours.len() > CACHED_HOURS {
            let mut cached: Vec<i64> = cache.hours.keys().copied().collect();
            cached.sort_unstable();
            for hour in cached {
                if cache.hours.len() <= CACHED_HOURS {
                    break;
                }
                if !hours.contains(&hour) {
                    cache.hours.remove(&hour);
                }
            }
        }
        Ok(())
    }

    /// Decides and stores a prepared batch: accepted events become slices, events for
    /// unknown accounts or meters go to the quarantine, repeats count as duplicates,
    /// events for accounts the caller may not see are refused (and audited). Returns
    /// only once everything kept is durable.
    pub async fn ingest(
        &self,
        scope: &AccountScope,
        via: &str,
        mut batch: PreparedBatch,
    ) -> Result<IngestReport, StoreError> {
        // Taken out of the batch, whose tables the slices borrow until they are written.
        let rejected = std::mem::take(&mut batch.rejected);
        let compressed = std::mem::take(&mut batch.compressed);
        let body_sha256 = std::mem::take(&mut batch.body_sha256);
        let accounts = self.known_accounts(&batch.subjects).await?;
        let mut report = IngestReport {
            events: batch.n_events,
            rejections: rejected,
            ..IngestReport::default()
        };

        // Each subject's account and whether the caller is cleared for it, decided
        // once a batch; events refer to their subject by position.
        let standings: Vec<Standing<'_>> = batch
            .subjects
            .iter()
            .map(|subject| match accounts.get(subject) {
                None => Standing::Unknown,
                Some(account) if !scope.permits(&account.boundary) => Standing::Denied(account),
                Some(account) => Standing::Cleared(account),
            })
            .collect();
        let standing_of = |prepared: &PreparedEvent| {
            standings
                .get(prepared.subject as usize)
                .copied()
                .unwrap_or(Standing::Unknown)
        };
        // `None` for an event refused (reported below).
        let fate_of = |prepared: &PreparedEvent| -> Option<Fate<'_>> {
            match standing_of(prepared) {
                Standing::Unknown => Some(Fate::Quarantine("unknown_account")),
                Standing::Denied(_) => None,
                Standing::Cleared(_) if prepared.contributions.is_empty() => {
                    Some(Fate::Quarantine("unknown_meter"))
                }
                Standing::Cleared(account) => Some(Fate::Accept(account)),
            }
        };
        // Refusals first, in the batch's order (they need no lock).
        let mut denied: BTreeMap<&str, (&BoundaryName, usize)> = BTreeMap::new();
        let mut n_quarantine_fates = 0usize;
        for prepared in &batch.events {
            match (standing_of(prepared), fate_of(prepared)) {
                (Standing::Denied(account), _) => {
                    report.denied += 1;
                    denied
                        .entry(account.id.as_str())
                        .or_insert((&account.boundary, 0))
                        .1 += 1;
                    report.rejections.push(EventRejection::new(
                        prepared.ordinal,
                        Some("subject"),
                        "the caller is not cleared for the data boundary of the account this event names",
                    ));
                }
                (_, Some(Fate::Quarantine(_))) => n_quarantine_fates += 1,
                _ => {}
            }
        }
        report.rejections.sort_by_key(|r| r.index);
        report.rejected = distinct_indices(&report.rejections);

        let mut cache = self.dedup.lock().await;
        let mut tx = self.db.begin().await?;
        let closed_through = lock_head(&mut tx).await?.closed_through;
        let hours: BTreeSet<i64> = batch.hours.iter().copied().collect();
        Self::sync_dedup(&mut tx, &mut cache, &hours).await?;

        // An event already in the quarantine is a duplicate if it would be
        // quarantined again, and is accepted (and marked replayed) if its account
        // and meter exist now. Most batches need no look at the quarantine at all.
        let pending = tx
            .query_opt(
                "SELECT 1 FROM usage_quarantine WHERE replayed_at IS NULL LIMIT 1",
                &[],
            )
            .await?
            .is_some();
        let quarantine_keys: Vec<Value> = if pending || n_quarantine_fates > 0 {
            batch
                .events
                .iter()
                .filter(|p| match fate_of(p) {
                    Some(Fate::Quarantine(_)) => true,
                    Some(Fate::Accept(_)) => pending,
                    None => false,
                })
                .map(|p| Value::Bytes(p.event.key().as_bytes().to_vec()))
                .collect()
        } else {
            Vec::new()
        };
        let mut already_quarantined: HashSet<EventKey, KeyHash> = HashSet::default();
        for chunk in quarantine_keys.chunks(500) {
            let sql = format!(
                "SELECT event_key FROM usage_quarantine WHERE event_key IN ({})",
                placeholders(1, chunk.len())
            );
            for row in tx.query(&sql, chunk).await? {
                let bytes = row.bytes(0)?;
                let key: [u8; 16] = bytes
                    .try_into()
                    .map_err(|_| corrupt("usage_quarantine.event_key", "not 16 bytes"))?;
                already_quarantined.insert(EventKey::from_bytes(key));
            }
        }

        // In key order: repeats of a key are adjacent (the first sent first), so the
        // last key kept is all that tells a repeat within the batch.
        let mut last_kept: Option<EventKey> = None;
        let mut hour_keys: (i64, Option<&HashSet<EventKey, KeyHash>>) = (i64::MIN, None);
        let mut slices: BTreeMap<(i64, i64), SliceWriter<'_>> = BTreeMap::new();
        let mut quarantined_events: Vec<(&PreparedEvent, &'static str)> = Vec::new();
        let mut released: Vec<Value> = Vec::new();
        let now = Timestamp::now().as_microsecond();
        for &position in &batch.by_key {
            let Some(prepared) = batch.events.get(position as usize) else {
                return Err(StoreError::Backend(
                    "a batch's key order is out of range".into(),
                ));
            };
            let Some(fate) = fate_of(prepared) else {
                continue;
            };
            let key = prepared.event.key();
            let hour = hour_of(prepared.event.time());
            if hour_keys.0 != hour {
                hour_keys = (hour, cache.hours.get(&hour));
            }
            let stored = hour_keys.1.is_some_and(|s| s.contains(&key));
            let quarantined = !already_quarantined.is_empty() && already_quarantined.contains(&key);
            if stored
                || (quarantined && matches!(fate, Fate::Quarantine(_)))
                || last_kept == Some(key)
            {
                report.duplicate += 1;
                continue;
            }
            last_kept = Some(key);
            match fate {
                Fate::Accept(account) => {
                    if quarantined {
                        released.push(Value::Bytes(key.as_bytes().to_vec()));
                    }
                    let booked = match closed_through {
                        Some(closed) if hour <= closed => {
                            report.late += 1;
                            closed + HOUR_MICROS
                        }
                        _ => hour,
                    };
                    slices.entry((hour, booked)).or_default().push_numbered(
                        key,
                        prepared.event.time().as_microsecond(),
                        (prepared.subject, &account.id),
                        batch.contributions_numbered(prepared),
                    );
                    report.accepted += 1;
                }
                Fate::Quarantine(reason) => {
                    quarantined_events.push((prepared, reason));
                    report.quarantined += 1;
                }
            }
        }
        // Kept in the batch's order, as sent.
        quarantined_events.sort_by_key(|(p, _)| p.ordinal);
        let mut quarantine_rows: Vec<Vec<Value>> = Vec::with_capacity(quarantined_events.len());
        for (prepared, reason) in quarantined_events {
            let detail = match reason {
                "unknown_account" => format!(
                    "no account has the external id `{}`",
                    prepared.event.subject()
                ),
                _ => format!(
                    "no meter reads events of type `{}`",
                    prepared.event.event_type()
                ),
            };
            let event_json = serde_json::to_string(&prepared.event)
                .map_err(|e| StoreError::Backend(format!("cannot encode an event: {e}")))?;
            quarantine_rows.push(vec![
                Value::Bytes(prepared.event.key().as_bytes().to_vec()),
                Value::Null, // batch id, set below
                Value::Int(prepared.ordinal as i64),
                prepared.event.subject().into(),
                prepared.event.event_type().into(),
                Value::Int(prepared.event.time().as_microsecond()),
                reason.into(),
                detail.into(),
                event_json.into(),
                Value::Int(now),
            ]);
        }

        for (account_id, (boundary, n)) in &denied {
            append(
                &mut tx,
                scope
                    .actor
                    .draft("usage.denied")
                    .account(account_id, boundary.as_str())
                    .details(
                        json!({ "events": n, "reason": "not cleared for the account's boundary" }),
                    ),
            )
            .await?;
        }

        let mut new_slice_ids = Vec::new();
        if report.accepted + report.quarantined > 0 {
            let row = tx
                .query_one(
                    "INSERT INTO ingest_batches (received_at, via, actor, request_id, framing, body_sha256, body_bytes, body, \
                     n_events, n_accepted, n_duplicate, n_quarantined, n_rejected) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                    &[
                        Value::Int(now),
                        via.into(),
                        (&scope.actor.name).into(),
                        scope.actor.request_id.clone().into(),
                        batch.framing.as_str().into(),
                        body_sha256.into(),
                        Value::Int(batch.body_bytes as i64),
                        Value::Bytes(compressed),
                        Value::Int(report.events as i64),
                        Value::Int(report.accepted as i64),
                        Value::Int(report.duplicate as i64),
                        Value::Int(report.quarantined as i64),
                        Value::Int(report.rejected as i64),
                    ],
                )
                .await?;
            let batch_id = row.int(0)?;
            report.batch_id = Some(batch_id);
            for ((hour, booked), slice) in std::mem::take(&mut slices) {
                let n_events = slice.len();
                let (key_bytes, contributions) = slice.finish()?;
                let keys: Vec<EventKey> = keys_of(&key_bytes).collect();
                let row = tx
                    .query_one(
                        "INSERT INTO usage_slices (batch_id, hour, booked_hour, received_at, n_events, keys, contributions, encoding) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                        &[
                            Value::Int(batch_id),
                            Value::Int(hour),
                            Value::Int(booked),
                            Value::Int(now),
                            Value::Int(n_events as i64),
                            Value::Bytes(key_bytes),
                            Value::Bytes(contributions),
                            Value::Int(ENCODING_PACKED),
                        ],
                    )
                    .await?;
                new_slice_ids.push((row.int(0)?, hour, keys));
            }
            for row in &mut quarantine_rows {
                row[1] = Value::Int(batch_id);
            }
            insert_rows(
                &mut tx,
                "usage_quarantine",
                &[
                    "event_key",
                    "batch_id",
                    "ordinal",
                    "subject",
                    "event_type",
                    "event_time",
                    "reason",
                    "detail",
                    "event",
                    "received_at",
                ],
                quarantine_rows,
            )
            .await?;
            for key in released {
                tx.execute(
                    "UPDATE usage_quarantine SET replayed_at = $1, replayed_batch = $2 WHERE event_key = $3",
                    &[Value::Int(now), Value::Int(batch_id), key],
                )
                .await?;
            }
            tx.execute(
                "UPDATE metering_head SET n_batches = n_batches + 1 WHERE id = 1",
                &[],
            )
            .await?;
        }
        tx.commit().await?;

        // Only what is committed enters the process's view.
        for (id, hour, keys) in new_slice_ids {
            if let Some(set) = cache.hours.get_mut(&hour) {
                set.extend(keys);
            }
            cache.synced_through = cache.synced_through.max(id);
        }
        drop(cache);
        Ok(report)
    }

    // ---- quarantine ---------------------------------------------------------------

    /// Quarantined events the scope may see. An event naming no account is nobody's
    /// data yet and visible to every reader of metering; once an account with that
    /// external id exists, its events follow the account's boundary.
    pub async fn quarantine(
        &self,
        scope: &AccountScope,
        subject: Option<&str>,
        include_replayed: bool,
        limit: i64,
    ) -> Result<Vec<QuarantinedEvent>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT q.event_key, q.batch_id, q.ordinal, q.subject, q.event_type, q.event_time, q.reason, q.detail, \
                 q.received_at, q.replayed_at, a.boundary \
                 FROM usage_quarantine q LEFT JOIN accounts a ON a.external_id = q.subject \
                 WHERE (CAST($1 AS TEXT) IS NULL OR q.subject = $1) AND (CAST($2 AS BIGINT) = 1 OR q.replayed_at IS NULL) \
                 ORDER BY q.received_at DESC, q.batch_id DESC, q.ordinal",
                &[
                    subject.map(str::to_owned).into(),
                    Value::Int(i64::from(include_replayed)),
                ],
            )
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            if let Some(boundary) = row.opt_text(10)? {
                let boundary =
                    BoundaryName::parse(&boundary).map_err(|e| corrupt("accounts.boundary", e))?;
                if !scope.permits(&boundary) {
                    continue;
                }
            }
            out.push(QuarantinedEvent {
                event_key: hex::encode(row.bytes(0)?),
                batch_id: row.int(1)?,
                ordinal: row.int(2)?,
                subject: row.text(3)?,
                event_type: row.text(4)?,
                event_time: from_micros(row.int(5)?)?,
                reason: row.text(6)?,
                detail: row.text(7)?,
                received_at: from_micros(row.int(8)?)?,
                replayed_at: row.opt_int(9)?.map(from_micros).transpose()?,
            });
            if out.len() as i64 >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Ingests the quarantined events again (after their account or meter was
    /// created). Those accepted now are marked replayed; the others stay.
    pub async fn replay_quarantine(
        &self,
        scope: &AccountScope,
        subject: Option<&str>,
        now: Timestamp,
        settings: &MeteringSettings,
    ) -> Result<ReplayReport, StoreError> {
        let rows = {
            let mut handle = self.db.read().await?;
            handle
                .query(
                    "SELECT event_key, event FROM usage_quarantine \
                     WHERE replayed_at IS NULL AND (CAST($1 AS TEXT) IS NULL OR subject = $1) ORDER BY received_at, batch_id, ordinal",
                    &[subject.map(str::to_owned).into()],
                )
                .await?
        };
        let considered = rows.len();
        if considered == 0 {
            return Ok(ReplayReport::default());
        }
        let mut body = String::new();
        for row in &rows {
            body.push_str(&row.text(1)?);
            body.push('\n');
        }
        // Quarantined events are held however old they grow: the age limit applied
        // when they arrived.
        let settings = MeteringSettings {
            max_event_age: SignedDuration::from_hours(24 * 366 * 10),
            ..*settings
        };
        let meters = self.meters().await?;
        let prepared = prepare_batch(body.as_bytes(), Framing::Ndjson, &meters, now, &settings)
            .map_err(|e| corrupt("usage_quarantine.event", e))?;
        let report = self.ingest(scope, "replay", prepared).await?;
        Ok(ReplayReport { considered, report })
    }

    // ---- closing ------------------------------------------------------------------

    /// The last closed hour's start, if any hour closed.
    pub async fn closed_through(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_one("SELECT closed_through FROM metering_head WHERE id = 1", &[])
            .await?;
        row.opt_int(0)?.map(from_micros).transpose()
    }

    async fn catalogue_version(&self) -> Result<i64, StoreError> {
        let mut handle = self.db.read().await?;
        catalogue_version_in(&mut handle).await
    }

    /// Closes every hour whose grace has passed at `now`, oldest first, at most
    /// `max_hours` of them, up to [`HOURS_PER_TRANSACTION`] in one transaction.
    /// Returns the hours closed.
    pub async fn close_due_hours(
        &self,
        now: Timestamp,
        settings: &MeteringSettings,
        max_hours: usize,
    ) -> Result<Vec<ClosedHour>, StoreError> {
        let mut closed = Vec::new();
        let mut catalogue_read_at = self.catalogue_version().await?;
        let mut catalogue = Arc::new(self.rating_catalogue().await?);
        let meters: Arc<BTreeMap<String, Meter>> = Arc::new(
            self.meters()
                .await?
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
        );
        let grace = settings.grace.as_micros() as i64;
        let is_due = |hour: i64| hour + HOUR_MICROS + grace <= now.as_microsecond();
        let mut kept = self.closing.lock().await;
        // Taken out while hours close: if closing fails half-way, what is kept is the
        // empty state, which reads everything back next time.
        let mut consumption = std::mem::take(&mut *kept);
        let mut due = true;
        // Hours computed and sealed ahead, in order, while earlier ones are written.
        let mut ahead: Option<AheadChain> = None;
        while due && closed.len() < max_hours {
            let mut tx = self.db.begin().await?;
            let locked = lock_head(&mut tx).await?;
            let (mut closed_through, mut head) = (locked.closed_through, locked.evidence);
            // Entitlements change under the same lock (`bump_catalogue`): one that
            // changed since the catalogue was read is read again before an hour is
            // rated, so an hour is never rated under terms already replaced.
            let version = catalogue_version_in(&mut tx).await?;
            if version != catalogue_read_at {
                catalogue = Arc::new(self.rating_catalogue().await?);
                catalogue_read_at = version;
            }
            // What an hour computed in this transaction was computed from.
            let seen = |hour: i64, head: &Checkpoint| AheadOf {
                hour,
                head: head.clone(),
                n_batches: locked.n_batches,
                catalogue: catalogue_read_at,
            };
            let mut in_transaction = 0;
            while closed.len() < max_hours && in_transaction < HOURS_PER_TRANSACTION {
                let next = match closed_through {
                    Some(hour) => hour + HOUR_MICROS,
                    None => {
                        let row = tx
                            .query_one("SELECT min(hour) FROM usage_slices", &[])
                            .await?;
                        match row.opt_int(0)? {
                            Some(hour) => hour,
                            None => {
                                due = false;
                                break;
                            }
                        }
                    }
                };
                if !is_due(next) {
                    due = false;
                    break;
                }
                let computed_ahead = match ahead.as_mut() {
                    Some(chain) => chain.next().await?,
                    None => None,
                };
                let sealed = match computed_ahead {
                    // Computed from what this transaction sees, if nothing it read
                    // changed since: no usage added, no hour closed elsewhere, the
                    // same terms.
                    Some(hour) if hour.of == seen(next, &head) => hour.sealed,
                    _ => {
                        // The chain's hours were computed from something else (or it
                        // ended): its state goes, and the hour is computed here.
                        if let Some(chain) = ahead.take() {
                            consumption = chain.stop().await?;
                        }
                        let placement = Placement::after(&head);
                        let computed = compute_hour(
                            &mut tx,
                            next,
                            &meters,
                            &catalogue,
                            &mut consumption,
                            Some(placement),
                        )
                        .await?;
                        seal_hour(next, computed, head.clone(), placement)?
                    }
                };
                // Closing an hour needs only the results and chain head of the hour
                // before, not its rows: the hours after are computed and sealed on other
                // threads while this one is written, and on through the commit; the next
                // transaction takes them only if the head it locks shows nothing changed
                // in between.
                let after = next + HOUR_MICROS;
                let remaining = max_hours - closed.len() - 1;
                if ahead.is_none() && is_due(after) && remaining > 0 {
                    // Usually read on a reader connection: nobody adds a slice while this
                    // transaction holds the head, and all else the hours after need is
                    // carried in `consumption` or was committed before this transaction
                    // began, so a reader sees what this transaction would.
                    let first = if consumption.continues_to(after) {
                        None
                    } else {
                        Some(read_hour(&mut tx, after, &mut consumption).await?)
                    };
                    ahead = Some(AheadChain::start(ChainStart {
                        first,
                        of: seen(after, &sealed.head),
                        last_due: now.as_microsecond() - HOUR_MICROS - grace,
                        hours: remaining,
                        meters: meters.clone(),
                        catalogue: catalogue.clone(),
                        db: self.db.clone(),
                        state: std::mem::take(&mut consumption),
                    }));
                }
                head = sealed.head.clone();
                let summary = sealed.summary.clone();
                write_hour(&mut tx, sealed).await?;
                closed_through = Some(next);
                in_transaction += 1;
                closed.push(summary);
            }
            if in_transaction == 0 {
                break;
            }
            tx.commit().await?;
        }
        if let Some(chain) = ahead.take() {
            consumption = chain.stop().await?;
        }
        *kept = consumption;
        Ok(closed)
    }

    /// Entitlements (with their offers) by account, for rating.
    pub(crate) async fn rating_catalogue(&self) -> Result<RatingCatalogue, StoreError> {
        let offers: HashMap<String, Offer> = self
            .offers()
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!(
                    "SELECT {} FROM entitlements e JOIN accounts a ON a.id = e.account_id ORDER BY e.start_at DESC, e.id",
                    crate::commercial::ENTITLEMENT_COLUMNS
                ),
                &[],
            )
            .await?;
        let mut by_account: HashMap<String, Vec<Entitlement>> = HashMap::new();
        for row in &rows {
            let (entitlement, _) = crate::commercial::entitlement_from_row(row)?;
            by_account
                .entry(entitlement.account_id.clone())
                .or_default()
                .push(entitlement);
        }
        Ok(RatingCatalogue { offers, by_account })
    }

    pub async fn closed_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ClosedHour>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT hour, closed_at, n_accounts, n_events, n_late FROM closed_hours \
                 WHERE hour >= $1 AND hour < $2 ORDER BY hour",
                &[
                    Value::Int(from.as_microsecond()),
                    Value::Int(to.as_microsecond()),
                ],
            )
            .await?;
        rows.iter().map(closed_hour_from_row).collect()
    }

    // ---- verification -------------------------------------------------------------

    /// Recomputes every closed hour in `[from, to)` from the stored batches and
    /// compares: the batches' bytes against their digests, the slices against the
    /// events in those bytes, each account's hour against its evidence, and the
    /// evidence chain.
    pub async fn verify_metering(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let meters_list = self.meters().await?;
        let meters: BTreeMap<String, Meter> = meters_list
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
        let catalogue = self.rating_catalogue().await?;
        let mut handle = self.db.read().await?;

        // The chain, whole.
        let rows = handle
            .query(
                &format!("SELECT {EVIDENCE_COLUMNS} FROM hour_evidence ORDER BY seq"),
                &[],
            )
            .await?;
        let entries = rows
            .iter()
            .map(evidence_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let head = handle
            .query_one(
                "SELECT evidence_seq, evidence_hash FROM metering_head WHERE id = 1",
                &[],
            )
            .await?;
        let recorded = Checkpoint {
            seq: head.int(0)?,
            hash: head.text(1)?,
        };
        let chain = verify_chain(entries.iter(), Some(&recorded), None);
        if let Err(chain_break) = chain {
            report.findings.push(VerifyFinding {
                account_id: None,
                hour: None,
                meter: None,
                problem: format!("the evidence chain is broken: {chain_break}"),
            });
        }

        // Batches behind the slices booked into the range: bytes, then contents.
        // external id → account id, as ingest resolved each event's subject.
        let accounts: HashMap<String, String> = handle
            .query("SELECT external_id, id FROM accounts", &[])
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<_, StoreError>>()?;
        let batch_ids = handle
            .query(
                "SELECT DISTINCT batch_id FROM usage_slices WHERE booked_hour >= $1 AND booked_hour < $2 ORDER BY batch_id",
                &[
                    Value::Int(from.as_microsecond()),
                    Value::Int(to.as_microsecond()),
                ],
            )
            .await?;
        for row in &batch_ids {
            let batch_id = row.int(0)?;
            report.batches += 1;
            let findings = verify_batch(&mut handle, batch_id, &meters_list, &accounts).await?;
            report.findings.extend(findings);
        }

        // Each closed hour, recomputed.
        let hours = handle
            .query(
                "SELECT hour FROM closed_hours WHERE hour >= $1 AND hour < $2 ORDER BY hour",
                &[
                    Value::Int(from.as_microsecond()),
                    Value::Int(to.as_microsecond()),
                ],
            )
            .await?;
        let mut consumption = ClosingState::default();
        for row in &hours {
            let hour = row.int(0)?;
            report.hours += 1;
            let computed = compute_hour(
                &mut handle,
                hour,
                &meters,
                &catalogue,
                &mut consumption,
                None,
            )
            .await?;
            let stored: HashMap<String, HourEvidence> = handle
                .query(
                    &format!("SELECT {EVIDENCE_COLUMNS} FROM hour_evidence WHERE hour = $1"),
                    &[Value::Int(hour)],
                )
                .await?
                .iter()
                .map(|r| evidence_from_row(r).map(|e| (e.account_id.clone(), e)))
                .collect::<Result<_, _>>()?;
            let at = from_micros(hour)?;
            for (account_id, closed) in &computed {
                report.account_hours += 1;
                match stored.get(account_id) {
                    None => report.findings.push(VerifyFinding {
                        account_id: Some(account_id.clone()),
                        hour: Some(at),
                        meter: None,
                        problem: "usage was stored for this hour but no evidence was recorded"
                            .into(),
                    }),
                    Some(evidence) => {
                        let recomputed = closed.evidence.draft();
                        if evidence.input_digest != recomputed.input_digest
                            || evidence.n_events != recomputed.n_events
                        {
                            report.findings.push(VerifyFinding {
                                account_id: Some(account_id.clone()),
                                hour: Some(at),
                                meter: None,
                                problem: format!(
                                    "the input differs: evidence names {} events ({}), storage holds {} ({})",
                                    evidence.n_events,
                                    evidence.input_digest,
                                    recomputed.n_events,
                                    recomputed.input_digest
                                ),
                            });
                        }
                        report.findings.extend(compare_results(
                            account_id,
                            at,
                            evidence,
                            &recomputed.result,
                        ));
                    }
                }
            }
            for account_id in stored.keys().filter(|a| !computed.contains_key(*a)) {
                report.findings.push(VerifyFinding {
                    account_id: Some(account_id.clone()),
                    hour: Some(at),
                    meter: None,
                    problem: "evidence exists but storage holds no usage for this hour".into(),
                });
            }
        }
        Ok(report)
    }

    /// The evidence of an account's closed hour and the events behind it.
    pub async fn hour_trace(
        &self,
        scope: &AccountScope,
        account_id: &str,
        hour: Timestamp,
    ) -> Result<HourTrace, StoreError> {
        self.account(scope, account_id).await?;
        let hour = hour_of(hour);
        let mut handle = self.db.read().await?;
        let evidence = handle
            .query_opt(
                &format!("SELECT {EVIDENCE_COLUMNS} FROM hour_evidence WHERE account_id = $1 AND hour = $2"),
                &[account_id.into(), Value::Int(hour)],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let evidence = evidence_from_row(&evidence)?;
        let result = serde_json::from_str(&evidence.result)
            .map_err(|e| corrupt("hour_evidence.result", e))?;
        let mut events = Vec::new();
        for row in handle
            .query(
                "SELECT batch_id, hour, received_at, encoding, keys, contributions FROM usage_slices \
                 WHERE booked_hour = $1 ORDER BY id",
                &[Value::Int(hour)],
            )
            .await?
        {
            let late_from = (row.int(1)? != hour).then(|| from_micros(row.int(1)?)).transpose()?;
            let (encoding, keys, contributions) = slice_columns(&row, 3)?;
            let slice = slices::decode(encoding, &keys, &contributions)?;
            for event in &slice.events {
                if slice.account(event.account)? != account_id {
                    continue;
                }
                for c in slice.contributions_of(event) {
                    events.push(TracedEvent {
                        event_key: event.key.to_string(),
                        time: from_micros(event.time)?,
                        meter: slice.name(c.meter)?.to_owned(),
                        group: c.group.map(|g| slice.name(g).map(str::to_owned)).transpose()?,
                        value: c.value.to_string(),
                        batch_id: row.int(0)?,
                        received_at: from_micros(row.int(2)?)?,
                        late_from,
                    });
                }
            }
        }
        events.sort_by(|a, b| {
            (a.time, &a.event_key, &a.meter).cmp(&(b.time, &b.event_key, &b.meter))
        });
        Ok(HourTrace {
            evidence,
            result,
            events,
        })
    }

    // ---- usage --------------------------------------------------------------------

    /// An account's closed usage over `[from, to)`, by dimension or by meter.
    pub async fn usage(
        &self,
        scope: &AccountScope,
        account_id: &str,
        from: Timestamp,
        to: Timestamp,
        of: UsageOf,
        granularity: Granularity,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.usage_named(scope, account_id, from, to, of, granularity, None)
            .await
    }

    /// [`Store::usage`] of one dimension or meter only, when `name` is given. A name
    /// Purser does not know (no meter of that name, no meter or offer with that
    /// dimension) is refused rather than answered with nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn usage_named(
        &self,
        scope: &AccountScope,
        account_id: &str,
        from: Timestamp,
        to: Timestamp,
        of: UsageOf,
        granularity: Granularity,
        name: Option<&str>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.account(scope, account_id).await?;
        if let Some(name) = name {
            let meters = self.meters().await?;
            let known = match of {
                UsageOf::Meters => meters.iter().any(|m| m.name == name),
                UsageOf::Dimensions => {
                    meters.iter().any(|m| {
                        m.dimension
                            .as_ref()
                            .is_some_and(|d| d.dimension.as_str() == name)
                    }) || self
                        .offers()
                        .await?
                        .iter()
                        .any(|o| o.dimensions.iter().any(|d| d.key.as_str() == name))
                }
            };
            if !known {
                let kind = match of {
                    UsageOf::Meters => "meter",
                    UsageOf::Dimensions => "dimension",
                };
                return Err(StoreError::Invalid(
                    purser_core::validation::ValidationErrors::single(
                        "name",
                        format!("no {kind} is named `{name}`"),
                    ),
                ));
            }
        }
        let mut handle = self.db.read().await?;
        let params = [
            account_id.into(),
            Value::Int(from.as_microsecond()),
            Value::Int(to.as_microsecond()),
        ];
        let mut rows: Vec<UsageRow> = match of {
            UsageOf::Dimensions => handle
                .query(
                    "SELECT hour, dimension, quantity, overage_quantity, overage_amount, currency, consumed_after, committed \
                     FROM dimension_hours WHERE account_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, dimension",
                    &params,
                )
                .await?
                .iter()
                .map(|r| {
                    Ok(UsageRow {
                        start: from_micros(r.int(0)?)?,
                        name: r.text(1)?,
                        group: None,
                        quantity: r.text(2)?,
                        overage_quantity: r.opt_text(3)?,
                        overage_amount: r.opt_text(4)?,
                        currency: r.opt_text(5)?,
                        consumed: r.opt_text(6)?,
                        committed: r.opt_text(7)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            // Meters are read from the evidence's results (in meter, group order).
            UsageOf::Meters => {
                let mut out = Vec::new();
                for r in handle
                    .query(
                        "SELECT hour, result FROM hour_evidence \
                         WHERE account_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
                        &params,
                    )
                    .await?
                {
                    let start = from_micros(r.int(0)?)?;
                    for m in result_view(&r.text(1)?)?.meters {
                        let Some(value) = m.value else { continue };
                        out.push(UsageRow {
                            start,
                            name: m.meter,
                            group: m.group,
                            quantity: value,
                            overage_quantity: None,
                            overage_amount: None,
                            currency: None,
                            consumed: None,
                            committed: None,
                        });
                    }
                }
                out
            }
        };
        if let Some(name) = name {
            rows.retain(|r| r.name == name);
        }
        if granularity == Granularity::Day {
            rows = daily(rows, of)?;
        }
        Ok(rows)
    }
}

type DayKey = (i64, String, Option<String>);

/// A dimension's billing period so far, for the account page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodDimension {
    pub dimension: String,
    /// Metered so far this period, late adjustments included.
    pub metered: Decimal,
    /// The commitment for the period, when the dimension is committed.
    pub committed: Option<Decimal>,
    /// Consumed against the commitment after the last closed hour.
    pub consumed: Option<Decimal>,
    /// Consumption projected to the period's end at the pace of its closed hours.
    pub projected: Option<Decimal>,
    pub overage_quantity: Decimal,
    pub overage_amount: Decimal,
    pub currency: Option<String>,
    /// The last closed hour with usage.
    pub last_hour: Timestamp,
}

/// Ingest as received, per hour, from the batches kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestHour {
    pub hour: Timestamp,
    pub batches: i64,
    pub events: i64,
    pub accepted: i64,
    pub duplicate: i64,
    pub quarantined: i64,
    pub rejected: i64,
}

/// An hour not closed yet, with what is booked into it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenHour {
    pub hour: Timestamp,
    pub events: i64,
    /// When it closes (its end plus the grace).
    pub closes_at: Timestamp,
}

/// A late adjustment booked into a closed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateAdjustment {
    pub account_id: String,
    pub account_name: String,
    pub dimension: String,
    /// The hour it was booked into.
    pub hour: Timestamp,
    pub quantity: String,
}

impl Store {
    /// Each dimension of an account's billing period containing `at`, from its closed
    /// hours.
    pub async fn period_usage(
        &self,
        scope: &AccountScope,
        account_id: &str,
        at: Timestamp,
    ) -> Result<Vec<PeriodDimension>, StoreError> {
        self.account(scope, account_id).await?;
        let period = purser_core::commercial::BillingPeriod::containing(at);
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT dimension, hour, quantity, committed, consumed_after, overage_quantity, overage_amount, currency \
                 FROM dimension_hours WHERE account_id = $1 AND hour >= $2 AND hour < $3 ORDER BY dimension, hour",
                &[
                    account_id.into(),
                    Value::Int(period.start.as_microsecond()),
                    Value::Int(period.end.as_microsecond()),
                ],
            )
            .await?;
        let mut out: Vec<PeriodDimension> = Vec::new();
        for row in &rows {
            let dimension = row.text(0)?;
            let hour = from_micros(row.int(1)?)?;
            if out.last().is_none_or(|d| d.dimension != dimension) {
                out.push(PeriodDimension {
                    dimension: dimension.clone(),
                    metered: Decimal::ZERO,
                    committed: None,
                    consumed: None,
                    projected: None,
                    overage_quantity: Decimal::ZERO,
                    overage_amount: Decimal::ZERO,
                    currency: None,
                    last_hour: hour,
                });
            }
            let Some(entry) = out.last_mut() else {
                continue;
            };
            entry.metered += decimal(&row.text(2)?, "dimension_hours.quantity")?;
            entry.last_hour = hour;
            if let Some(committed) = row.opt_text(3)? {
                entry.committed = Some(decimal(&committed, "dimension_hours.committed")?);
            }
            if let Some(consumed) = row.opt_text(4)? {
                entry.consumed = Some(decimal(&consumed, "dimension_hours.consumed_after")?);
            }
            if let Some(overage) = row.opt_text(5)? {
                entry.overage_quantity += decimal(&overage, "dimension_hours.overage_quantity")?;
            }
            if let Some(amount) = row.opt_text(6)? {
                entry.overage_amount += decimal(&amount, "dimension_hours.overage_amount")?;
            }
            if let Some(currency) = row.opt_text(7)? {
                entry.currency = Some(currency);
            }
        }
        let period_hours = Decimal::from(period.hours().max(1));
        for entry in &mut out {
            let elapsed = (entry.last_hour.as_microsecond() + HOUR_MICROS
                - period.start.as_microsecond())
                / HOUR_MICROS;
            if let (Some(consumed), true) = (entry.consumed, elapsed > 0) {
                entry.projected = Some(
                    (consumed * period_hours / Decimal::from(elapsed))
                        .round_dp(2)
                        .normalize(),
                );
            }
            entry.metered = entry.metered.normalize();
        }
        Ok(out)
    }

    /// Batches kept per hour of arrival since `since`.
    pub async fn ingest_activity(&self, since: Timestamp) -> Result<Vec<IngestHour>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT (received_at / 3600000000) * 3600000000 AS hour, count(*), CAST(sum(n_events) AS BIGINT), \
                 CAST(sum(n_accepted) AS BIGINT), CAST(sum(n_duplicate) AS BIGINT), \
                 CAST(sum(n_quarantined) AS BIGINT), CAST(sum(n_rejected) AS BIGINT) \
                 FROM ingest_batches WHERE received_at >= $1 GROUP BY (received_at / 3600000000) ORDER BY hour DESC",
                &[Value::Int(since.as_microsecond())],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(IngestHour {
                    hour: from_micros(r.int(0)?)?,
                    batches: r.int(1)?,
                    events: sum_int(r, 2)?,
                    accepted: sum_int(r, 3)?,
                    duplicate: sum_int(r, 4)?,
                    quarantined: sum_int(r, 5)?,
                    rejected: sum_int(r, 6)?,
                })
            })
            .collect()
    }

    /// Hours with usage booked that have not closed yet.
    pub async fn open_hours(
        &self,
        settings: &MeteringSettings,
    ) -> Result<Vec<OpenHour>, StoreError> {
        let closed = self.closed_through().await?.map(|t| t.as_microsecond());
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT booked_hour, CAST(sum(n_events) AS BIGINT) FROM usage_slices WHERE booked_hour > $1 \
                 GROUP BY booked_hour ORDER BY booked_hour",
                &[Value::Int(closed.unwrap_or(i64::MIN))],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let hour = from_micros(r.int(0)?)?;
                Ok(OpenHour {
                    hour,
                    events: sum_int(r, 1)?,
                    closes_at: hour + SignedDuration::from_hours(1) + settings.grace,
                })
            })
            .collect()
    }

    /// The latest late adjustments in accounts the scope may see.
    pub async fn late_adjustments(
        &self,
        scope: &AccountScope,
        limit: usize,
    ) -> Result<Vec<LateAdjustment>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT d.account_id, a.name, a.boundary, d.dimension, d.hour, d.adjustment \
                 FROM dimension_hours d JOIN accounts a ON a.id = d.account_id \
                 WHERE d.adjustment <> '0' ORDER BY d.hour DESC, d.account_id LIMIT 1000",
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let boundary =
                BoundaryName::parse(&r.text(2)?).map_err(|e| corrupt("accounts.boundary", e))?;
            if !scope.permits(&boundary) {
                continue;
            }
            out.push(LateAdjustment {
                account_id: r.text(0)?,
                account_name: r.text(1)?,
                dimension: r.text(3)?,
                hour: from_micros(r.int(4)?)?,
                quantity: r.text(5)?,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// A `CAST(sum(…) AS BIGINT)` column (NULL over no rows).
fn sum_int(row: &Row, index: usize) -> Result<i64, StoreError> {
    Ok(row.opt_int(index)?.unwrap_or(0))
}

/// Sums hourly rows into UTC days. Dimensions are quantities of a period (TiB-hours,
/// GiB written), so a day is the sum of its hours. A meter's day is also the sum of
/// its hourly values: an amount for counters, unit-hours for gauges.
fn daily(rows: Vec<UsageRow>, of: UsageOf) -> Result<Vec<UsageRow>, StoreError> {
    const DAY_MICROS: i64 = 24 * HOUR_MICROS;
    // (day, name, group) → (first row, quantity, overage, amount)
    let mut days: BTreeMap<DayKey, (UsageRow, Decimal, Decimal, Decimal)> = BTreeMap::new();
    for row in rows {
        let day = row.start.as_microsecond().div_euclid(DAY_MICROS) * DAY_MICROS;
        let quantity = decimal(&row.quantity, "usage quantity")?;
        let overage = row
            .overage_quantity
            .as_deref()
            .map(|q| decimal(q, "overage quantity"))
            .transpose()?
            .unwrap_or_default();
        let amount = row
            .overage_amount
            .as_deref()
            .map(|q| decimal(q, "overage amount"))
            .transpose()?
            .unwrap_or_default();
        let entry = days
            .entry((day, row.name.clone(), row.group.clone()))
            .or_insert_with(|| {
                let mut first = row.clone();
                first.start = from_micros(day).unwrap_or(row.start);
                (first, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
            });
        entry.1 += quantity;
        entry.2 += overage;
        entry.3 += amount;
        entry.0.consumed = row.consumed.clone();
        entry.0.committed = row.committed.clone();
    }
    Ok(days
        .into_values()
        .map(|(mut row, quantity, overage, amount)| {
            row.quantity = quantity.normalize().to_string();
            if of == UsageOf::Dimensions {
                row.overage_quantity = Some(overage.normalize().to_string());
                row.overage_amount = row
                    .currency
                    .as_ref()
                    .map(|_| amount.normalize().to_string());
            }
            row
        })
        .collect())
}

pub(crate) struct RatingCatalogue {
    pub(crate) offers: HashMap<String, Offer>,
    pub(crate) by_account: HashMap<String, Vec<Entitlement>>,
}

impl RatingCatalogue {
    /// The entitlement in force at `hour` (the latest started, if several).
    pub(crate) fn in_force(
        &self,
        account_id: &str,
        hour: Timestamp,
    ) -> Option<(&Entitlement, &Offer)> {
        self.by_account
            .get(account_id)?
            .iter()
            .filter(|e| e.is_in_force(hour))
            .find_map(|e| self.offers.get(&e.offer_id).map(|o| (e, o)))
    }
}

const EVIDENCE_COLUMNS: &str = "seq, closed_at, account_id, hour, input_digest, n_events, result, result_digest, prev_hash, hash";

fn evidence_from_row(row: &Row) -> Result<HourEvidence, StoreError> {
    Ok(HourEvidence {
        seq: row.int(0)?,
        closed_at: from_micros(row.int(1)?)?,
        account_id: row.text(2)?,
        hour: from_micros(row.int(3)?)?,
        input_digest: row.text(4)?,
        n_events: row.int(5)? as u64,
        result: row.text(6)?,
        result_digest: row.text(7)?,
        prev_hash: row.text(8)?,
        hash: row.text(9)?,
    })
}

fn closed_hour_from_row(row: &Row) -> Result<ClosedHour, StoreError> {
    Ok(ClosedHour {
        hour: from_micros(row.int(0)?)?,
        closed_at: from_micros(row.int(1)?)?,
        accounts: row.int(2)?,
        events: row.int(3)?,
        late: row.int(4)?,
    })
}

type Contributions = HashMap<String, Vec<Contribution>>;

/// Meter and group names, shared by every contribution that names them (see
/// [`Contribution`]).
#[derive(Default)]
struct Names(HashMap<String, Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(name.to_owned(), shared.clone());
        shared
    }

    /// The series of a meter and group, by their shared names.
    fn series(&mut self, meter: &str, group: Option<&str>) -> Series {
        (self.get(meter), group.map(|g| self.get(g)))
    }
}

/// Adds what a slice's events contribute to `target`, by account.
fn add_slice(
    slice: &DecodedSlice<'_>,
    names: &mut Names,
    target: &mut Contributions,
) -> Result<(), StoreError> {
    let shared: Vec<Arc<str>> = slice.names.iter().map(|n| names.get(n)).collect();
    let name = |position: u32| {
        shared
            .get(position as usize)
            .cloned()
            .ok_or_else(|| corrupt("usage slice", "a name outside its table"))
    };
    // Gathered per account position first, so each account is looked up once a slice.
    let mut by_account: Vec<Vec<Contribution>> = vec![Vec::new(); slice.accounts.len()];
    for event in &slice.events {
        let time = from_micros(event.time)?;
        let list = by_account
            .get_mut(event.account as usize)
            .ok_or_else(|| corrupt("usage slice", "an account outside its table"))?;
        for c in slice.contributions_of(event) {
            list.push(Contribution {
                meter: name(c.meter)?,
                group: c.group.map(name).transpose()?,
                sample: Sample {
                    time,
                    key: event.key,
                    value: c.value,
                },
            });
        }
    }
    for (account, mut list) in slice.accounts.iter().zip(by_account) {
        if list.is_empty() {
            continue;
        }
        match target.get_mut(&**account) {
            Some(existing) => existing.append(&mut list),
            None => {
                target.insert(account.to_string(), list);
            }
        }
    }
    Ok(())
}

/// Carry-ins for `hour`: the previous hour's last values, from its evidence.
async fn carry_ins(
    handle: &mut Handle,
    hour: i64,
    names: &mut Names,
) -> Result<HashMap<String, CarryOut>, StoreError> {
    let mut out: HashMap<String, CarryOut> = HashMap::new();
    for row in handle
        .query(
            "SELECT account_id, result FROM hour_evidence WHERE hour = $1",
            &[Value::Int(hour - HOUR_MICROS)],
        )
        .await?
    {
        let mut carry = CarryOut::new();
        for m in result_view(&row.text(1)?)?.meters {
            if let Some(value) = m.carry_out {
                let series = names.series(&m.meter, m.group.as_deref());
                carry.insert(series, decimal(&value, "carry_out")?);
            }
        }
        if !carry.is_empty() {
            out.insert(row.text(0)?, carry);
        }
    }
    Ok(out)
}

/// One account's closed hour, as computed.
struct ClosedAccount {
    result: AccountHour,
    /// Of its events, late events booked into this hour.
    n_late: u64,
    evidence: AccountEvidence,
}

/// What an account's computed hour would record as evidence.
enum AccountEvidence {
    /// Recomputed to be compared (verification).
    Draft(HourEvidenceDraft),
    /// To be recorded (closing): hashed ahead for its place in the chain, with the
    /// billed dimensions' rows.
    Presealed(PresealedEvidence, Vec<Vec<Value>>),
}

impl AccountEvidence {
    /// The digest and number of the events behind it ([`hour_input_digest`]) and the
    /// result as canonical JSON.
    fn draft(&self) -> &HourEvidenceDraft {
        match self {
            AccountEvidence::Draft(draft) => draft,
            AccountEvidence::Presealed(presealed, _) => presealed.draft(),
        }
    }
}

/// Where the accounts of an hour being closed take their place in the evidence chain:
/// the first one's sequence number (the others follow in account order) and the
/// time they are recorded as closed.
#[derive(Clone, Copy)]
struct Placement {
    first_seq: i64,
    closed_at: Timestamp,
}

impl Placement {
    /// Right after the chain's `head`, closed now.
    fn after(head: &Checkpoint) -> Placement {
        Placement {
            first_seq: head.seq + 1,
            closed_at: crate::now_micros(),
        }
    }
}

/// Each account's computed hour.
type ComputedHour = BTreeMap<String, ClosedAccount>;

/// Accounts closed on each core once an hour has at least this many.
const PARALLEL_ACCOUNTS: usize = 256;

/// Computes every account's hour from storage: what closing records and what
/// verification recomputes.
async fn compute_hour(
    handle: &mut Handle,
    hour: i64,
    meters: &BTreeMap<String, Meter>,
    catalogue: &RatingCatalogue,
    consumption: &mut ClosingState,
    placement: Option<Placement>,
) -> Result<ComputedHour, StoreError> {
    let reading = read_hour(handle, hour, consumption).await?;
    compute_read_hour(reading, meters, catalogue, consumption, placement)
}

/// What an hour computed ahead was computed from: it is taken only by a transaction
/// that sees the same (the same hour next, chain head, batches stored and terms).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AheadOf {
    hour: i64,
    head: Checkpoint,
    n_batches: i64,
    catalogue: i64,
}

/// An hour computed and sealed ahead of its turn.
struct AheadHour {
    sealed: SealedHour,
    of: AheadOf,
}

/// How many hours computed ahead may wait to be written: enough for computing to go on
/// while a day of hours commits (its fsync takes as long as computing a few hours), at
/// a few megabytes an hour.
const HOURS_AHEAD: usize = 4;

/// Where a chain of hours computed ahead starts.
struct ChainStart {
    /// The first hour as already read, inside the closing transaction, when the state
    /// did not carry all it needs.
    first: Option<HourReading>,
    /// Its first hour and what that is computed from.
    of: AheadOf,
    /// The last hour due.
    last_due: i64,
    /// At most this many hours.
    hours: usize,
    meters: Arc<BTreeMap<String, Meter>>,
    catalogue: Arc<RatingCatalogue>,
    db: crate::db::Db,
    state: ClosingState,
}

/// Hours computed and sealed ahead of their turn, one after another, each from the
/// state and chain head the one before left: closing's computing runs beside its
/// writing instead of taking turns with it.
struct AheadChain {
    hours: tokio::sync::mpsc::Receiver<Result<AheadHour, StoreError>>,
    task: tokio::task::JoinHandle<ClosingState>,
}

impl AheadChain {
    fn start(start: ChainStart) -> AheadChain {
        let (send, hours) = tokio::sync::mpsc::channel(HOURS_AHEAD);
        let task = tokio::spawn(compute_ahead(start, send));
        AheadChain { hours, task }
    }

    /// The next hour computed ahead, or `None` once the chain has ended.
    async fn next(&mut self) -> Result<Option<AheadHour>, StoreError> {
        self.hours.recv().await.transpose()
    }

    /// Stops the chain and returns the closing state it carried.
    async fn stop(self) -> Result<ClosingState, StoreError> {
        let AheadChain { hours, task } = self;
        drop(hours);
        task.await
            .map_err(|e| StoreError::Backend(format!("closing stopped: {e}")))
    }
}

/// Computes and seals a chain's hours in order and sends each to the closing loop,
/// until the last hour due, an error (sent too), or the loop stops listening; returns
/// the closing state after the last hour computed.
async fn compute_ahead(
    start: ChainStart,
    send: tokio::sync::mpsc::Sender<Result<AheadHour, StoreError>>,
) -> ClosingState {
    let ChainStart {
        mut first,
        mut of,
        last_due,
        hours,
        meters,
        catalogue,
        db,
        mut state,
    } = start;
    for _ in 0..hours {
        if of.hour > last_due {
            break;
        }
        let step = compute_ahead_hour(&of, first.take(), &meters, &catalogue, &db, &mut state);
        match step.await {
            Ok(Some(ahead)) => {
                // The hour after is computed from what this one left.
                of = AheadOf {
                    hour: of.hour + HOUR_MICROS,
                    head: ahead.sealed.head.clone(),
                    ..of
                };
                // Fails once the closing loop has stopped the chain.
                if send.send(Ok(ahead)).await.is_err() {
                    break;
                }
            }
            // Left to the closing transaction.
            Ok(None) => break,
            Err(e) => {
                let _ = send.send(Err(e)).await;
                break;
            }
        }
    }
    state
}

/// One hour of a chain: read (unless already read), computed and sealed as `of` says,
/// or `None` when the hour is the closing transaction's to read.
async fn compute_ahead_hour(
    of: &AheadOf,
    first: Option<HourReading>,
    meters: &Arc<BTreeMap<String, Meter>>,
    catalogue: &Arc<RatingCatalogue>,
    db: &crate::db::Db,
    state: &mut ClosingState,
) -> Result<Option<AheadHour>, StoreError> {
    let reading = match first {
        Some(reading) => reading,
        // Past its first hour the state carries what each hour needs from the one
        // before. Late usage is only ever booked into the first hour after those
        // closed, which the closing transaction reads itself; a chain that meets any
        // leaves the hour to it.
        None if state.continues_to(of.hour) => {
            let reading = read_hour(&mut db.read().await?, of.hour, state).await?;
            if !reading.is_on_time() {
                return Ok(None);
            }
            reading
        }
        None => return Ok(None),
    };
    let (meters, catalogue, of) = (meters.clone(), catalogue.clone(), of.clone());
    // Moved to the blocking thread and back; a thread that stopped leaves the empty
    // state, which reads everything back.
    let mut moved = std::mem::take(state);
    let (sealed, kept) = tokio::task::spawn_blocking(move || {
        let placement = Placement::after(&of.head);
        let sealed = compute_read_hour(reading, &meters, &catalogue, &mut moved, Some(placement))
            .and_then(|computed| seal_hour(of.hour, computed, of.head.clone(), placement))
            .map(|sealed| AheadHour { sealed, of });
        (sealed, moved)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("closing stopped: {e}")))?;
    *state = kept;
    sealed.map(Some)
}

/// Slices as read: encoding, keys, contributions.
type RawSlices = Vec<(i64, Vec<u8>, Vec<u8>)>;

/// What closing an hour reads from storage: the contributions booked into it (on
/// time, and late ones by the hour they belong to), what those late hours held
/// before, and the carry-ins.
struct HourReading {
    hour: i64,
    names: Names,
    on_time: RawSlices,
    late_added: BTreeMap<i64, RawSlices>,
    late_before: BTreeMap<i64, RawSlices>,
    late_carry: BTreeMap<i64, HashMap<String, CarryOut>>,
    carry: HashMap<String, CarryOut>,
}

impl HourReading {
    /// Whether it holds only the hour's own events, none booked late into it.
    fn is_on_time(&self) -> bool {
        self.late_added.is_empty()
    }
}

/// Reads what closing `hour` needs, and readies `consumption` for it.
async fn read_hour(
    handle: &mut Handle,
    hour: i64,
    consumption: &mut ClosingState,
) -> Result<HourReading, StoreError> {
    let mut names = Names::default();
    let mut on_time: RawSlices = Vec::new();
    // late hour → its slices booked into this hour
    let mut late_added: BTreeMap<i64, RawSlices> = BTreeMap::new();
    for row in handle
        .query(
            "SELECT hour, encoding, keys, contributions FROM usage_slices WHERE booked_hour = $1 ORDER BY id",
            &[Value::Int(hour)],
        )
        .await?
    {
        let event_hour = row.int(0)?;
        let target = if event_hour == hour {
            &mut on_time
        } else {
            late_added.entry(event_hour).or_default()
        };
        target.push(slice_columns(&row, 1)?);
    }
    let carry = consumption.take_carry_ins(handle, hour, &mut names).await?;

    // For each late hour: what was booked before this hour, and its carry-in.
    let mut late_before: BTreeMap<i64, RawSlices> = BTreeMap::new();
    let mut late_carry: BTreeMap<i64, HashMap<String, CarryOut>> = BTreeMap::new();
    for late_hour in late_added.keys() {
        let mut before: RawSlices = Vec::new();
        for row in handle
            .query(
                "SELECT encoding, keys, contributions FROM usage_slices WHERE hour = $1 AND booked_hour < $2 ORDER BY id",
                &[Value::Int(*late_hour), Value::Int(hour)],
            )
            .await?
        {
            before.push(slice_columns(&row, 0)?);
        }
        late_before.insert(*late_hour, before);
        late_carry.insert(*late_hour, carry_ins(handle, *late_hour, &mut names).await?);
    }
    let period = purser_core::commercial::BillingPeriod::containing(from_micros(hour)?);
    consumption
        .prepare(handle, hour, period.start.as_microsecond())
        .await?;
    Ok(HourReading {
        hour,
        names,
        on_time,
        late_added,
        late_before,
        late_carry,
        carry,
    })
}

/// Closes every account's hour from what was read: CPU work, no I/O, so that it can
/// run while the previous hour's records are written. With a placement, the accounts'
/// evidence is hashed for its places in the chain, ready to be sealed.
fn compute_read_hour(
    reading: HourReading,
    meters: &BTreeMap<String, Meter>,
    catalogue: &RatingCatalogue,
    consumption: &mut ClosingState,
    placement: Option<Placement>,
) -> Result<ComputedHour, StoreError> {
    let HourReading {
        hour,
        mut names,
        on_time,
        late_added,
        late_before,
        mut late_carry,
        mut carry,
    } = reading;
    // Slices are decoded here, off the connection (see `close_due_hours`).
    let mut decode_all = |raw: RawSlices| -> Result<Contributions, StoreError> {
        let mut out = Contributions::new();
        for (encoding, keys, contributions) in raw {
            add_slice(
                &slices::decode(encoding, &keys, &contributions)?,
                &mut names,
                &mut out,
            )?;
        }
        Ok(out)
    };
    let mut on_time = decode_all(on_time)?;
    let mut late_added: BTreeMap<i64, Contributions> = late_added
        .into_iter()
        .map(|(hour, raw)| Ok((hour, decode_all(raw)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut late_before: BTreeMap<i64, Contributions> = late_before
        .into_iter()
        .map(|(hour, raw)| Ok((hour, decode_all(raw)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut accounts: BTreeSet<String> = on_time.keys().cloned().collect();
    for added in late_added.values() {
        accounts.extend(added.keys().cloned());
    }
    let at = from_micros(hour)?;
    // Each account's input is moved out of the maps, not copied: an hour holds every
    // contribution of every account.
    let mut inputs = Vec::with_capacity(accounts.len());
    for account in &accounts {
        let mut late = Vec::new();
        let mut n_late = 0u64;
        for (late_hour, added) in &mut late_added {
            let Some(added) = added.remove(account) else {
                continue;
            };
            n_late += added.len() as u64;
            late.push(LateHour {
                hour: from_micros(*late_hour)?,
                carry_in: late_carry
                    .get_mut(late_hour)
                    .and_then(|c| c.remove(account))
                    .unwrap_or_default(),
                before: late_before
                    .get_mut(late_hour)
                    .and_then(|b| b.remove(account))
                    .unwrap_or_default(),
                added,
            });
        }
        let input = AccountHourInput {
            account_id: account,
            hour: at,
            meters,
            on_time: on_time.remove(account).unwrap_or_default(),
            carry_in: carry.remove(account).unwrap_or_default(),
            late,
            entitlement: catalogue.in_force(account, at),
            consumed_before: consumption.of(account),
        };
        inputs.push((input, n_late));
    }
    // Accounts' hours are independent of each other: close them on every core.
    let results = close_accounts(inputs, placement)?;
    let mut out = BTreeMap::new();
    let mut carry_outs = HashMap::new();
    for (account, closed) in accounts.into_iter().zip(results) {
        let closed = closed?;
        consumption.after(&account, &closed.result);
        let carry_out: CarryOut = closed
            .result
            .meters
            .iter()
            .filter_map(|m| Some((names.series(&m.meter, m.group.as_deref()), m.carry_out?)))
            .collect();
        if !carry_out.is_empty() {
            carry_outs.insert(account.clone(), carry_out);
        }
        out.insert(account, closed);
    }
    consumption.carry = Some((hour + HOUR_MICROS, carry_outs));
    Ok(out)
}

/// Closes one account's hour; with a place in the chain (its sequence number and
/// closing time), also hashes its evidence and lays out its billed dimensions' rows.
fn close_one(
    input: &AccountHourInput<'_>,
    n_late: u64,
    place: Option<(i64, Timestamp)>,
) -> Result<ClosedAccount, StoreError> {
    let (input_digest, n_events) = hour_input_digest(input);
    let result = close_account_hour(input).map_err(|e| {
        StoreError::Corrupt(format!(
            "closing {} at {}: {e}",
            input.account_id, input.hour
        ))
    })?;
    // Serialised and hashed here, on the closing threads, rather than while rows are
    // written or while the hour's accounts are chained.
    let draft = HourEvidenceDraft {
        account_id: input.account_id.to_owned(),
        hour: input.hour,
        input_digest,
        n_events,
        result: result.result_json(),
    };
    let evidence = match place {
        None => AccountEvidence::Draft(draft),
        Some((seq, closed_at)) => {
            let rows = dimension_rows(input.account_id, &result);
            AccountEvidence::Presealed(PresealedEvidence::new(draft, seq, closed_at), rows)
        }
    };
    Ok(ClosedAccount {
        result,
        n_late,
        evidence,
    })
}

/// Closes each account's hour, in order, spread over the machine's cores when there
/// are enough of them to be worth a thread.
fn close_accounts(
    inputs: Vec<(AccountHourInput<'_>, u64)>,
    placement: Option<Placement>,
) -> Result<Vec<Result<ClosedAccount, StoreError>>, StoreError> {
    // The account at `index` of the hour takes the `index`th place after the first.
    let close = |index: usize, (input, n_late): &(AccountHourInput<'_>, u64)| {
        let place = placement.map(|p| (p.first_seq + index as i64, p.closed_at));
        close_one(input, *n_late, place)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || inputs.len() < PARALLEL_ACCOUNTS {
        return Ok(inputs
            .iter()
            .enumerate()
            .map(|(i, x)| close(i, x))
            .collect());
    }
    let per_thread = inputs.len().div_ceil(cores);
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .chunks(per_thread)
            .enumerate()
            .map(|(n, chunk)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, x)| close(n * per_thread + i, x))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(inputs.len());
        for handle in handles {
            out.extend(
                handle
                    .join()
                    .map_err(|_| StoreError::Backend("a closing thread stopped".into()))?,
            );
        }
        Ok(out)
    })
}

/// What each account's billing period has consumed, per rated dimension, and the
/// last values its gauges carry into the next hour, carried from hour to hour while
/// hours are closed (or verified) in order. Read from storage once per run (and per
/// period), then kept up to date from each hour's result, so closing a month of hours
/// does not rescan the month, nor read the previous hour back, for every hour.
#[derive(Default)]
pub(crate) struct ClosingState {
    period_start: Option<i64>,
    /// The hour the state is valid before.
    next_hour: Option<i64>,
    by_account: HashMap<String, BTreeMap<DimensionKey, Decimal>>,
    /// The hour the carry-ins are for, and each account's.
    carry: Option<(i64, HashMap<String, CarryOut>)>,
}

impl ClosingState {
    /// The carry-ins of `hour`: kept from the hour just computed, or read back.
    async fn take_carry_ins(
        &mut self,
        handle: &mut Handle,
        hour: i64,
        names: &mut Names,
    ) -> Result<HashMap<String, CarryOut>, StoreError> {
        match self.carry.take() {
            Some((for_hour, carry)) if for_hour == hour => Ok(carry),
            _ => carry_ins(handle, hour, names).await,
        }
    }

    /// Makes the state hold what was consumed before `hour`.
    async fn prepare(
        &mut self,
        handle: &mut Handle,
        hour: i64,
        period_start: i64,
    ) -> Result<(), StoreError> {
        if self.period_start != Some(period_start) || self.next_hour != Some(hour) {
            self.by_account = consumed_before(handle, hour, period_start).await?;
            self.period_start = Some(period_start);
        }
        self.next_hour = Some(hour + HOUR_MICROS);
        Ok(())
    }

    /// Whether the state holds all `hour` needs from the hours before it: the
    /// consumption and carry-ins of the hour just computed.
    fn continues_to(&self, hour: i64) -> bool {
        self.next_hour == Some(hour) && self.carry.as_ref().is_some_and(|(h, _)| *h == hour)
    }

    fn of(&self, account: &str) -> BTreeMap<DimensionKey, Decimal> {
        self.by_account.get(account).cloned().unwrap_or_default()
    }

    fn after(&mut self, account: &str, result: &AccountHour) {
        let entry = self.by_account.entry(account.to_owned()).or_default();
        // Normalised, as `dimension_hours` stores it: the next hour must be rated the
        // same whether its consumption comes from memory or is read back (a scale
        // carried over would show in the result's text, and verification compares text).
        for rated in &result.rating {
            entry.insert(
                rated.dimension.clone(),
                rated.rated.consumed_after.normalize(),
            );
        }
    }
}

/// What each account's billing period consumed before `hour`, per rated dimension.
async fn consumed_before(
    handle: &mut Handle,
    hour: i64,
    period_start: i64,
) -> Result<HashMap<String, BTreeMap<DimensionKey, Decimal>>, StoreError> {
    let mut out: HashMap<String, BTreeMap<DimensionKey, Decimal>> = HashMap::new();
    // In hour order, so each (account, dimension) ends with its latest figure.
    for row in handle
        .query(
            "SELECT account_id, dimension, consumed_after FROM dimension_hours \
             WHERE period_start = $1 AND hour < $2 AND consumed_after IS NOT NULL ORDER BY hour",
            &[Value::Int(period_start), Value::Int(hour)],
        )
        .await?
    {
        let dimension = DimensionKey::parse(&row.text(1)?)
            .map_err(|e| corrupt("dimension_hours.dimension", e))?;
        out.entry(row.text(0)?)
            .or_default()
            .insert(dimension, decimal(&row.text(2)?, "consumed_after")?);
    }
    Ok(out)
}

/// A closed hour ready to be written: its chained evidence and billed dimensions as
/// rows, the chain's head after it, and its summary.
struct SealedHour {
    summary: ClosedHour,
    head: Checkpoint,
    dimension_rows: Vec<Vec<Value>>,
    evidence_rows: Vec<Vec<Value>>,
}

/// The billed dimensions' rows of an account's closed hour: quantity and, where the
/// dimension is committed, its rating.
fn dimension_rows(account_id: &str, result: &AccountHour) -> Vec<Vec<Value>> {
    let hour = result.hour.as_microsecond();
    let mut by_dimension: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for d in &result.dimensions {
        by_dimension.insert(
            d.dimension.as_str(),
            vec![
                account_id.into(),
                d.dimension.as_str().into(),
                Value::Int(hour),
                d.quantity.to_string().into(),
                d.adjustment.to_string().into(),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        );
    }
    for r in &result.rating {
        let row = by_dimension.entry(r.dimension.as_str()).or_insert_with(|| {
            vec![
                account_id.into(),
                r.dimension.as_str().into(),
                Value::Int(hour),
                r.rated.quantity.normalize().to_string().into(),
                "0".into(),
            ]
        });
        row.truncate(5);
        row.extend([
            (&r.entitlement_id).into(),
            Value::Int(r.period_start.as_microsecond()),
            r.committed.normalize().to_string().into(),
            r.rated.consumed_after.normalize().to_string().into(),
            r.rated.within_commit.normalize().to_string().into(),
            r.rated.overage_quantity.normalize().to_string().into(),
            r.rated.overage_amount.amount.normalize().to_string().into(),
            r.rated.overage_amount.currency.as_str().into(),
        ]);
    }
    by_dimension.into_values().collect()
}

/// Chains each account's evidence after `head`, in account order, and gathers the
/// rows to write. Each account's evidence was hashed ahead for its place
/// ([`Placement`]), so this is one hash block an account: it runs beside the previous
/// hour's writes.
fn seal_hour(
    hour: i64,
    computed: ComputedHour,
    mut head: Checkpoint,
    placement: Placement,
) -> Result<SealedHour, StoreError> {
    let mut dimension_rows = Vec::new();
    let mut evidence_rows = Vec::with_capacity(computed.len());
    let (mut n_events, mut n_late) = (0i64, 0i64);
    let accounts = computed.len() as i64;
    for (account_id, closed) in computed {
        let AccountEvidence::Presealed(presealed, rows) = closed.evidence else {
            return Err(StoreError::Backend(format!(
                "closing {account_id} at {hour}: its evidence was not placed in the chain"
            )));
        };
        // Placed for the entry after the head, or the chain would break.
        if presealed.seq() != head.seq + 1 {
            return Err(StoreError::Backend(format!(
                "closing {account_id} at {hour}: evidence hashed for seq {}, the chain is at {}",
                presealed.seq(),
                head.seq
            )));
        }
        n_events += presealed.draft().n_events as i64;
        n_late += closed.n_late as i64;
        dimension_rows.extend(rows);
        let evidence = presealed.seal(&head.hash);
        head = evidence.head();
        evidence_rows.push(vec![
            Value::Int(evidence.seq),
            Value::Int(evidence.closed_at.as_microsecond()),
            evidence.account_id.into(),
            Value::Int(hour),
            evidence.input_digest.into(),
            Value::Int(evidence.n_events as i64),
            evidence.result.into(),
            evidence.result_digest.into(),
            evidence.prev_hash.into(),
            evidence.hash.into(),
        ]);
    }
    let summary = ClosedHour {
        hour: from_micros(hour)?,
        closed_at: placement.closed_at,
        accounts,
        events: n_events,
        late: n_late,
    };
    Ok(SealedHour {
        summary,
        head,
        dimension_rows,
        evidence_rows,
    })
}

/// Writes a sealed hour inside the caller's transaction.
async fn write_hour(tx: &mut Handle, sealed: SealedHour) -> Result<(), StoreError> {
    let SealedHour {
        summary,
        head,
        dimension_rows,
        evidence_rows,
    } = sealed;
    let hour = summary.hour.as_microsecond();
    insert_rows(
        tx,
        "dimension_hours",
        &[
            "account_id",
            "dimension",
            "hour",
            "quantity",
            "adjustment",
            "entitlement_id",
            "period_start",
            "committed",
            "consumed_after",
            "within_commit",
            "overage_quantity",
            "overage_amount",
            "currency",
        ],
        dimension_rows,
    )
    .await?;
    insert_rows(
        tx,
        "hour_evidence",
        &[
            "seq",
            "closed_at",
            "account_id",
            "hour",
            "input_digest",
            "n_events",
            "result",
            "result_digest",
            "prev_hash",
            "hash",
        ],
        evidence_rows,
    )
    .await?;
    tx.execute(
        "INSERT INTO closed_hours (hour, closed_at, n_accounts, n_events, n_late) VALUES ($1, $2, $3, $4, $5)",
        &[
            Value::Int(hour),
            Value::Int(summary.closed_at.as_microsecond()),
            Value::Int(summary.accounts),
            Value::Int(summary.events),
            Value::Int(summary.late),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE metering_head SET closed_through = $1, evidence_seq = $2, evidence_hash = $3 WHERE id = 1",
        &[Value::Int(hour), Value::Int(head.seq), head.hash.into()],
    )
    .await?;
    Ok(())
}

/// Compares a stored result with the recomputed one, naming meters that differ.
fn compare_results(
    account_id: &str,
    hour: Timestamp,
    evidence: &HourEvidence,
    recomputed: &str,
) -> Vec<VerifyFinding> {
    let expected_digest = hex::encode(Sha256::digest(evidence.result.as_bytes()));
    let mut findings = Vec::new();
    let finding = |meter: Option<String>, problem: String| VerifyFinding {
        account_id: Some(account_id.to_owned()),
        hour: Some(hour),
        meter,
        problem,
    };
    if expected_digest != evidence.result_digest {
        findings.push(finding(
            None,
            "the evidence's result does not match its own digest".into(),
        ));
    }
    if recomputed == evidence.result {
        return findings;
    }
    let stored: Option<AccountHourView> = serde_json::from_str(&evidence.result).ok();
    let fresh: Option<AccountHourView> = serde_json::from_str(recomputed).ok();
    match (stored, fresh) {
        (Some(stored), Some(fresh)) => {
            let names: BTreeSet<(String, Option<String>)> = stored
                .meters
                .iter()
                .chain(fresh.meters.iter())
                .map(|m| (m.meter.clone(), m.group.clone()))
                .collect();
            for (meter, group) in names {
                let pick = |view: &AccountHourView| {
                    view.meters
                        .iter()
                        .find(|m| m.meter == meter && m.group == group)
                        .map(|m| (m.n_events, m.value.clone()))
                };
                let (was, now) = (pick(&stored), pick(&fresh));
                if was != now {
                    findings.push(finding(
                        Some(meter.clone()),
                        format!(
                            "group {:?}: recorded {} events = {:?}, recomputed {} events = {:?}",
                            group,
                            was.as_ref().map_or(0, |w| w.0),
                            was.and_then(|w| w.1),
                            now.as_ref().map_or(0, |n| n.0),
                            now.and_then(|n| n.1),
                        ),
                    ));
                }
            }
            if findings.is_empty() {
                findings.push(finding(
                    None,
                    "the rated result differs from the recomputation (dimensions or rating)".into(),
                ));
            }
        }
        _ => findings.push(finding(None, "the recorded result cannot be read".into())),
    }
    findings
}

#[derive(Deserialize)]
struct AccountHourView {
    meters: Vec<MeterView>,
}

/// A meter × group of a closed hour, as its evidence's result records it.
#[derive(Deserialize)]
struct MeterView {
    meter: String,
    group: Option<String>,
    n_events: u64,
    value: Option<String>,
    #[serde(default)]
    carry_out: Option<String>,
}

fn result_view(result: &str) -> Result<AccountHourView, StoreError> {
    serde_json::from_str(result).map_err(|e| corrupt("hour_evidence.result", e))
}

/// Checks one batch: its bytes against their digest, and its slices against what
/// its events give the meters today.
async fn verify_batch(
    handle: &mut Handle,
    batch_id: i64,
    meters: &[Meter],
    accounts: &HashMap<String, String>,
) -> Result<Vec<VerifyFinding>, StoreError> {
    let mut findings = Vec::new();
    let finding = |problem: String| VerifyFinding {
        account_id: None,
        hour: None,
        meter: None,
        problem: format!("batch {batch_id}: {problem}"),
    };
    let row = handle
        .query_one(
            "SELECT body_sha256, body, framing FROM ingest_batches WHERE id = $1",
            &[Value::Int(batch_id)],
        )
        .await?;
    let body = match lz4_flex::decompress_size_prepended(&row.bytes(1)?) {
        Ok(body) => body,
        Err(e) => {
            findings.push(finding(format!(
                "its stored bytes cannot be decompressed: {e}"
            )));
            return Ok(findings);
        }
    };
    if hex::encode(Sha256::digest(&body)) != row.text(0)? {
        findings.push(finding("its bytes do not match their digest".into()));
        return Ok(findings);
    }
    let framing =
        Framing::parse(&row.text(2)?).map_err(|e| corrupt("ingest_batches.framing", e))?;
    let settings = MeteringSettings {
        max_event_age: SignedDuration::from_hours(24 * 366 * 100),
        max_future_skew: SignedDuration::from_hours(24 * 366 * 100),
        ..MeteringSettings::default()
    };
    let prepared = match prepare_batch(&body, framing, meters, Timestamp::now(), &settings) {
        Ok(p) => p,
        Err(e) => {
            findings.push(finding(format!("its bytes no longer parse: {e}")));
            return Ok(findings);
        }
    };
    // What each event of the batch gives the meters today: account, time, and
    // (meter, group, value) per meter.
    type EventView = (String, i64, Vec<(String, Option<String>, Decimal)>);
    let mut expected: HashMap<EventKey, EventView> = HashMap::new();
    for event in &prepared.events {
        let Some(account) = accounts.get(event.event.subject()).cloned() else {
            continue;
        };
        let contributions = prepared
            .contributions_of(event)
            .map(|(meter, group, value)| (meter.to_owned(), group.map(str::to_owned), value))
            .collect();
        expected.insert(
            event.event.key(),
            (account, event.event.time().as_microsecond(), contributions),
        );
    }
    for row in handle
        .query(
            "SELECT id, encoding, keys, contributions FROM usage_slices WHERE batch_id = $1 ORDER BY id",
            &[Value::Int(batch_id)],
        )
        .await?
    {
        let slice_id = row.int(0)?;
        let (encoding, keys, contributions) = slice_columns(&row, 1)?;
        for key in keys_of(&keys) {
            if !expected.contains_key(&key) {
                findings.push(finding(format!(
                    "slice {slice_id} holds event {key}, which is not in the batch's bytes"
                )));
            }
        }
        let slice = match slices::decode(encoding, &keys, &contributions) {
            Ok(slice) => slice,
            Err(e) => {
                findings.push(finding(format!(
                    "slice {slice_id}'s contributions cannot be read: {e}"
                )));
                continue;
            }
        };
        for event in &slice.events {
            let Some(want) = expected.get(&event.key) else {
                continue; // named above
            };
            let stored: EventView = (
                slice.account(event.account)?.to_owned(),
                event.time,
                slice
                    .contributions_of(event)
                    .iter()
                    .map(|c| {
                        Ok((
                            slice.name(c.meter)?.to_owned(),
                            c.group.map(|g| slice.name(g).map(str::to_owned)).transpose()?,
                            c.value,
                        ))
                    })
                    .collect::<Result<_, StoreError>>()?,
            );
            if *want != stored {
                findings.push(VerifyFinding {
                    account_id: Some(stored.0.clone()),
                    hour: from_micros(stored.1).ok(),
                    meter: stored.2.first().map(|c| c.0.clone()),
                    problem: format!(
                        "batch {batch_id}: event {} contributes differently from what its bytes say",
                        event.key
                    ),
                });
            }
        }
    }
    Ok(findings)
}

/// The hour of an instant, as stored.
pub fn hour_start(at: Timestamp) -> Result<Timestamp, StoreError> {
    from_micros(hour_of(at))
}

#[cfg(test)]
mod tests {
    use super::compress_body;

    /// A body compressed through the kept buffer is what lz4_flex's own allocating form
    /// gives, whatever the bodies before it left in the buffer, and reads back exactly.
    #[test]
    fn bodies_compress_as_lz4_flex_does_whatever_came_before() {
        let line = br#"{"specversion":"1.0","id":"e-1","source":"//polaris/c-1","type":"storage.io.counted","time":"2026-11-16T05:00:00Z","subject":"acct-1","data":{"bytes_written":512}}"#;
        let mut large = Vec::new();
        let mut seed = 7u64;
        while large.len() < 5 * 1024 * 1024 {
            large.extend_from_slice(line);
            // Pseudo-random bytes between lines, so the output is not all matches.
            for _ in 0..16 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                large.push((seed >> 56) as u8);
            }
            large.push(b'\n');
        }
        // Larger than the kept buffer's limit last, then a small one after it.
        let over_limit = vec![0xff; 9 * 1024 * 1024];
        let bodies: [&[u8]; 6] = [&large, b"", line, &large[..100_000], &over_limit, line];
        for body in bodies {
            let compressed = compress_body(body);
            assert_eq!(
                compressed,
                lz4_flex::compress_prepend_size(body),
                "{} bytes",
                body.len()
            );
            assert_eq!(
                lz4_flex::decompress_size_prepended(&compressed).unwrap(),
                body
            );
        }
    }
}
