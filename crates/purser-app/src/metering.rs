//! The metering commands: `purser ingest`, `verify`, `evidence`, `usage`.
//!
//! `ingest` writes to the database directly (on SQLite only while no server holds
//! it; on PostgreSQL beside running servers), through the same store calls as
//! `POST /v1/events`. It streams the file in chunks cut at line ends, so memory stays
//! flat however large the file: a parser thread prepares the next chunk while the
//! current one is stored. A chunk counts as acknowledged once stored; re-running the
//! same file after a crash adds nothing twice (deduplication on source + id).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Instant;

use jiff::Timestamp;
use purser_core::AccountScope;
use purser_core::events::Framing;
use purser_store::metering::{
    Granularity, IngestReport, MeteringSettings, PreparedBatch, UsageOf, prepare_batch,
};
use purser_store::{OpenMode, Store};

use crate::{AppError, Config, open_store};

/// Events are stored in chunks of about this many bytes: large enough that each
/// transaction is worth its fsync, small enough that memory stays low.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What `purser ingest` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestSummary {
    pub bytes: u64,
    pub batches: u64,
    pub events: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub quarantined: u64,
    pub rejected: u64,
    pub late: u64,
    pub seconds: f64,
    pub hours_closed: usize,
    /// The first rejections, with their line numbers (from 1).
    pub first_rejections: Vec<String>,
}

impl IngestSummary {
    fn add(&mut self, report: &IngestReport, first_line: u64) {
        self.batches += 1;
        self.events += report.events as u64;
        self.accepted += report.accepted as u64;
        self.duplicate += report.duplicate as u64;
        self.quarantined += report.quarantined as u64;
        self.rejected += report.rejected as u64;
        self.late += report.late as u64;
        for rejection in &report.rejections {
            if self.first_rejections.len() >= 20 {
                break;
            }
            self.first_rejections.push(format!(
                "line {}: {}{}",
                first_line + rejection.index as u64,
                rejection
                    .field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default(),
                rejection.reason
            ));
        }
    }
}

/// Options of `purser ingest`.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Close the hours that are due once the file is in.
    pub close: bool,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

/// Reads NDJSON from `path` (`-` for standard input) into the database.
pub async fn ingest_file(
    config: &Config,
    path: &Path,
    options: IngestOptions,
) -> Result<IngestSummary, AppError> {
    let store = open_store(config, OpenMode::Write).await?;
    let settings = config.metering.settings();
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| AppError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let progress = options.progress.then(|| {
        let bar = match size {
            Some(size) => indicatif::ProgressBar::new(size),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let meters = store.meters().await?;
    // Parser threads (one per core) take turns reading the next chunk, then prepare
    // it in parallel; the store takes prepared chunks in file order, so a chunk
    // counts as acknowledged only once every chunk before it is stored.
    let parsers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<PreparedChunk>(parsers);
    let source = std::sync::Arc::new(SharedSource {
        state: std::sync::Mutex::new(ChunkSource {
            reader: BufReader::with_capacity(1024 * 1024, input),
            next_chunk: 0,
            line_number: 1,
            in_flight: 0,
            done: false,
        }),
        turn: std::sync::Condvar::new(),
        // Chunks read but not yet stored: bounds memory however uneven the chunks.
        limit: 2 * parsers as u64,
    });
    let _stop_parsers = StopOnDrop(source.clone());
    let workers: Vec<_> = (0..parsers)
        .map(|_| {
            let (source, sender, meters) = (source.clone(), sender.clone(), meters.clone());
            std::thread::spawn(move || prepare_chunks(&source, &sender, &meters, &settings))
        })
        .collect();
    drop(sender);
    let scope = AccountScope::system("ingest", &store.boundary_rules().await?);
    let mut summary = IngestSummary::default();
    // Chunks prepared ahead of their turn wait here (bounded by `source.limit`).
    let mut waiting = std::collections::BTreeMap::new();
    let mut next_to_store = 0u64;
    while let Some((sequence, message)) = receiver.recv().await {
        waiting.insert(sequence, message);
        while let Some(message) = waiting.remove(&next_to_store) {
            next_to_store += 1;
            let (prepared, first_line, bytes) = message?;
            let report = store.ingest(&scope, "cli", prepared).await?;
            source.stored_one();
            summary.add(&report, first_line);
            summary.bytes += bytes;
            if let Some(bar) = &progress {
                bar.inc(bytes);
                bar.set_message(format!(
                    "{} events, {} accepted",
                    summary.events, summary.accepted
                ));
            }
        }
    }
    if let Some((_, Err(e))) = waiting.pop_first() {
        return Err(e);
    }
    for worker in workers {
        let _ = worker.join();
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if options.close {
        let now = store.now().await?;
        summary.hours_closed = close_all_due(&store, now, &settings).await?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Closes every due hour, in runs of at most a month (each run commits a day at a
/// time, and computes the next hour while the one before is written or committed).
pub async fn close_all_due(
    store: &Store,
    now: Timestamp,
    settings: &MeteringSettings,
) -> Result<usize, AppError> {
    let mut n = 0;
    loop {
        let closed = store.close_due_hours(now, settings, 31 * 24).await?;
        if closed.is_empty() {
            return Ok(n);
        }
        n += closed.len();
    }
}

/// A chunk as read: its sequence number, its first line and its bytes.
type RawChunk = (u64, u64, Vec<u8>);

/// The input, read one chunk at a time by whichever parser thread is free.
struct ChunkSource {
    reader: BufReader<Box<dyn Read + Send>>,
    next_chunk: u64,
    line_number: u64,
    /// Chunks read and not yet stored.
    in_flight: u64,
    /// The input ended, failed, or the store stopped taking chunks.
    done: bool,
}

struct SharedSource {
    state: std::sync::Mutex<ChunkSource>,
    /// Signalled when a chunk is stored or reading stops.
    turn: std::sync::Condvar,
    limit: u64,
}

impl SharedSource {
    /// The next chunk to prepare (sequence, first line, bytes), once fewer than
    /// `limit` are waiting to be stored; `None` when reading has stopped. A read
    /// error is the last chunk: its sequence and the error. The chunk is read into
    /// `spare`, the caller's buffer from the chunk before.
    fn take(&self, spare: Vec<u8>) -> Option<Result<RawChunk, (u64, std::io::Error)>> {
        let mut state = self.state.lock().ok()?;
        while state.in_flight >= self.limit && !state.done {
            state = self.turn.wait(state).ok()?;
        }
        if state.done {
            return None;
        }
        match state.read_next(spare) {
            Ok(next) => next.map(Ok),
            Err(e) => {
                state.done = true;
                Some(Err((state.next_chunk, e)))
            }
        }
    }

    fn stored_one(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.turn.notify_one();
    }
}

type PreparedChunk = (u64, Result<(PreparedBatch, u64, u64), AppError>);

/// A parser thread: prepares chunks until the input ends or the store stops.
fn prepare_chunks(
    source: &SharedSource,
    sender: &tokio::sync::mpsc::Sender<PreparedChunk>,
    meters: &[purser_core::meter::Meter],
    settings: &MeteringSettings,
) {
    // Each thread reads into the same buffer chunk after chunk: a fresh 4 MiB a chunk
    // cost zeroing and faulting its pages in every time.
    let mut spare = Vec::new();
    while let Some(next) = source.take(std::mem::take(&mut spare)) {
        let message = match next {
            Ok((sequence, first_line, chunk)) => {
                let prepared =
                    prepare_batch(&chunk, Framing::Ndjson, meters, Timestamp::now(), settings)
                        .map_err(|e| AppError::Invalid(format!("near line {first_line}: {e}")))
                        .map(|p| (p, first_line, chunk.len() as u64));
                spare = chunk;
                (sequence, prepared)
            }
            Err((sequence, e)) => (
                sequence,
                Err(AppError::Invalid(format!("cannot read the input: {e}"))),
            ),
        };
        if sender.blocking_send(message).is_err() {
            return;
        }
    }
}

/// Stops the parser threads when ingest ends, however it ends.
struct StopOnDrop(std::sync::Arc<SharedSource>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.done = true;
        }
        self.0.turn.notify_all();
    }
}

impl ChunkSource {
    /// The next chunk with its sequence number and first line; `None` at the end.
    fn read_next(&mut self, spare: Vec<u8>) -> std::io::Result<Option<RawChunk>> {
        let chunk = read_chunk(&mut self.reader, spare)?;
        if chunk.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let sequence = self.next_chunk;
        let first_line = self.line_number;
        self.next_chunk += 1;
        self.in_flight += 1;
        self.line_number += memchr::memchr_iter(b'\n', &chunk).count() as u64;
        Ok(Some((sequence, first_line, chunk)))
    }
}

/// Reads up to about [`CHUNK_BYTES`] into `chunk` (whatever it held), ending at a
/// line end (or the input's end).
fn read_chunk(reader: &mut impl BufRead, mut chunk: Vec<u8>) -> std::io::Result<Vec<u8>> {
    // Only what the buffer never held is zeroed (all of it the first time); one grown
    // by a very long line is given back, so memory stays flat after it.
    chunk.truncate(CHUNK_BYTES);
    chunk.shrink_to(2 * CHUNK_BYTES);
    chunk.resize(CHUNK_BYTES, 0);
    // Whole blocks first, then the rest of the line the last one ends in.
    let mut filled = 0;
    while filled < CHUNK_BYTES {
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    if filled == CHUNK_BYTES && chunk.last() != Some(&b'\n') {
        reader.read_until(b'\n', &mut chunk)?;
    }
    Ok(chunk)
}

pub fn print_ingest_summary(summary: &IngestSummary) {
    let mut out = std::io::stdout().lock();
    let rate = if summary.seconds > 0.0 {
        summary.events as f64 / summary.seconds
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "{} events in {} batches ({:.1} MiB) in {:.1} s ({:.0} events/s)",
        summary.events,
        summary.batches,
        summary.bytes as f64 / (1024.0 * 1024.0),
        summary.seconds,
        rate
    );
    let _ = writeln!(
        out,
        "  accepted {}  (late {})\n  duplicate {}\n  quarantined {}\n  rejected {}",
        summary.accepted, summary.late, summary.duplicate, summary.quarantined, summary.rejected
    );
    if summary.hours_closed > 0 {
        let _ = writeln!(out, "  hours closed {}", summary.hours_closed);
    }
    for line in &summary.first_rejections {
        let _ = writeln!(out, "  rejected: {line}");
    }
}

/// `purser verify`: prints what differs and returns whether everything verified.
pub async fn verify(config: &Config, from: Timestamp, to: Timestamp) -> Result<bool, AppError> {
    let store = open_store(config, OpenMode::ReadOnly).await?;
    let report = store.verify_metering(from, to).await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "checked {} closed hours ({} account-hours) and {} batches from {from} to {to}",
        report.hours, report.account_hours, report.batches
    );
    if report.findings.is_empty() {
        let _ = writeln!(out, "everything verifies");
        return Ok(true);
    }
    let _ = writeln!(out, "{} differences:", report.findings.len());
    for finding in &report.findings {
        let _ = writeln!(
            out,
            "  account {}  hour {}  meter {}: {}",
            finding.account_id.as_deref().unwrap_or("-"),
            finding
                .hour
                .map_or_else(|| "-".to_owned(), |h| h.to_string()),
            finding.meter.as_deref().unwrap_or("-"),
            finding.problem
        );
    }
    Ok(false)
}

/// `purser evidence ACCOUNT --hour`: the chained record and the events behind it.
pub async fn evidence(
    config: &Config,
    account_id: &str,
    hour: Timestamp,
    json: bool,
) -> Result<(), AppError> {
    let store = open_store(config, OpenMode::ReadOnly).await?;
    let scope = AccountScope::system("evidence", &store.boundary_rules().await?);
    let trace = store
        .hour_trace(&scope, account_id, hour)
        .await
        .map_err(|e| match e {
            purser_store::StoreError::NotFound => AppError::Invalid(format!(
                "no closed hour of account {account_id} at {hour} (is the account id right, and has the hour closed?)"
            )),
            other => other.into(),
        })?;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&trace).unwrap_or_default()
        );
        return Ok(());
    }
    let e = &trace.evidence;
    let _ = writeln!(out, "account {}  hour {}", e.account_id, e.hour);
    let _ = writeln!(out, "  evidence seq {}  closed {}", e.seq, e.closed_at);
    let _ = writeln!(
        out,
        "  input  {} events, digest {}",
        e.n_events, e.input_digest
    );
    let _ = writeln!(out, "  result digest {}", e.result_digest);
    let _ = writeln!(
        out,
        "  chain  prev {}\n         hash {}",
        e.prev_hash, e.hash
    );
    let _ = writeln!(
        out,
        "  result {}",
        serde_json::to_string_pretty(&trace.result).unwrap_or_default()
    );
    let _ = writeln!(out, "  events ({}):", trace.events.len());
    for event in &trace.events {
        let _ = writeln!(
            out,
            "    {}  {}  {}{}  {}  batch {}{}",
            event.time,
            event.event_key,
            event.meter,
            event
                .group
                .as_deref()
                .map(|g| format!("[{g}]"))
                .unwrap_or_default(),
            event.value,
            event.batch_id,
            event
                .late_from
                .map(|h| format!("  late, from {h}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `purser usage ACCOUNT`: closed usage as a table or CSV.
pub async fn usage(
    config: &Config,
    account_id: &str,
    range: (Timestamp, Timestamp),
    of: UsageOf,
    granularity: Granularity,
    name: Option<&str>,
    csv: bool,
) -> Result<(), AppError> {
    let store = open_store(config, OpenMode::ReadOnly).await?;
    let scope = AccountScope::system("usage", &store.boundary_rules().await?);
    let rows = store
        .usage_named(&scope, account_id, range.0, range.1, of, granularity, name)
        .await?;
    let mut out = std::io::stdout().lock();
    if csv {
        let text = purser_http::api::metering::usage_csv(&rows)
            .map_err(|e| AppError::Invalid(format!("cannot write CSV: {e}")))?;
        let _ = out.write_all(text.as_bytes());
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:<22} {:<22} {:<10} {:>22} {:>16} {:>12}",
        "start", "name", "group", "quantity", "overage", "amount"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<22} {:<22} {:<10} {:>22} {:>16} {:>12}",
            row.start.to_string(),
            row.name,
            row.group.unwrap_or_default(),
            row.quantity,
            row.overage_quantity.unwrap_or_default(),
            row.overage_amount
                .map(|a| format!("{a} {}", row.currency.unwrap_or_default()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
