//! Benchmark (a) of metering: Purser's core in memory over a stream of events.
//!
//! The stream (NDJSON, as `gen-telemetry` writes it) is read in chunks of whole lines
//! (a line belongs to the chunk it starts in, so workers read their chunks at once,
//! without a lock), so memory never holds more than a few chunks whatever the stream's
//! length. Worker threads (one per core) each take the next chunk and:
//! 1. parse and validate it ([`BatchReader::parse`], as `parse_batch` with the NDJSON
//!    framing, each worker reusing its buffers from chunk to chunk): the events and
//!    their identity ([`EventKey`]);
//! 2. measure each event with every meter of its type ([`Meter::value`],
//!    [`Meter::group_text`]), outside any lock;
//! 3. under the state's lock, deduplicate on the event's key (nothing else is done
//!    under it);
//! 4. add the kept events' samples to the worker's own aggregates of their hour
//!    ([`HourAggregate::add`]), outside any lock.
//!
//! The state keeps, per open hour, the keys seen in it (a resent event has the same
//! time, hence the same hour, as its first copy). An hour is closed once it ended more
//! than the out-of-order horizon before the newest event time seen, so state holds a
//! few hours whatever the stream's length. Chunks are processed in parallel and may
//! complete out of order, so "seen" means in the completed prefix of the stream: every
//! event still in flight comes later in the stream than the events the watermark
//! counts, hence is at most the producers' delay older than it. An event arriving for
//! an hour already closed is counted as late (and left out); with a horizon longer
//! than the producers' delay there is none.
//!
//! A worker hands its aggregates of an hour over once it has seen the hour closed
//! (after aggregating its chunk, so everything it kept for the hour is in); the hour
//! is finalised, the workers' aggregates merged ([`HourAggregate::merge`]) and its
//! values computed, once every worker has handed it over, in hour order.
//!
//! Results are reduced to checksums that `bench/duckdb_hourly.py` computes the same
//! way: rows per meter, the totals of the sums, and the total of the time-weighted
//! averages rounded down to a whole unit. The time-weighted average has no carry-in
//! from the previous hour, as DuckDB's query has none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow};
use purser_core::events::{BatchReader, EventKey, Framing};
use purser_core::meter::{Aggregation, HourAggregate, Meter, MeterDraft, Sample};
use purser_core::time::Window;
use rust_decimal::Decimal;

/// How far the pipeline goes: everything ([`Stage::Full`]) for the benchmark, the
/// others to see where time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Read the chunks and count their lines.
    Read,
    /// And parse and validate their events.
    Parse,
    /// And measure the events with the meters.
    Measure,
    /// And deduplicate, aggregate and finalise hours.
    Full,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (each reads, parses, measures and applies chunks).
    pub threads: usize,
    /// A chunk's size before it is cut at its last newline.
    pub chunk_bytes: usize,
    /// How long after its end an hour may still receive events, counted in event time
    /// from the newest event seen (producers' delay, resends, and a margin).
    pub horizon_seconds: i64,
    pub stage: Stage,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: 2,
            // A chunk and its events' text fit in a core's L2 cache (2 MiB here): parsing
            // reads what the file read just wrote, measuring what parsing wrote; 8 MiB
            // chunks cost some 15% more time.
            chunk_bytes: 2 << 20,
            horizon_seconds: 150 * 60,
            stage: Stage::Full,
        }
    }
}

/// One meter's results over every finalised hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterTotals {
    pub name: String,
    pub aggregation: Option<Aggregation>,
    /// Result rows: account × hour × group with a value.
    pub rows: u64,
    /// The total of the rows' values.
    pub total: Decimal,
    /// The total of the rows' values rounded down to a whole unit (what DuckDB's
    /// integer division gives for the time-weighted average).
    pub total_of_floors: Decimal,
    /// Rows whose value could not be computed (overflow).
    pub failed: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub stage: Option<Stage>,
    pub threads: usize,
    pub chunk_bytes: usize,
    pub chunks: u64,
    pub bytes: u64,
    /// Lines read (stage `Read`), otherwise events parsed (valid or rejected).
    pub events: u64,
    pub rejected_events: u64,
    /// Events no meter reads, or whose value a meter could not read.
    pub unmeasured_events: u64,
    pub unique_events: u64,
    pub duplicate_events: u64,
    /// Events for an hour already finalised (left out of the results).
    pub late_events: u64,
    /// Samples an aggregate refused (overflow).
    pub refused_samples: u64,
    /// The most hours held at once, and the most event keys held at once.
    pub max_open_hours: usize,
    pub max_open_keys: usize,
    pub hours_finalised: u64,
    pub meters: Vec<MeterTotals>,
    pub seconds: f64,
    /// Where the workers' time went.
    pub worker_seconds: Seconds,
}

impl Report {
    pub fn meter(&self, name: &str) -> Option<&MeterTotals> {
        self.meters.iter().find(|m| m.name == name)
    }
}

/// The meters DuckDB's baseline computes, declared as Purser's demo declares them
/// (without the dimensions they feed: rating is not part of this benchmark).
pub fn meters() -> anyhow::Result<Vec<Meter>> {
    let draft = |name: &str, event_type: &str, path: &str, aggregation: &str| MeterDraft {
        name: name.into(),
        event_type: event_type.into(),
        value_path: Some(path.into()),
        aggregation: aggregation.into(),
        unit: "bytes".into(),
        ..MeterDraft::default()
    };
    [
        MeterDraft {
            group_by: Some("$.cluster_id".into()),
            ..draft(
                "storage.capacity",
                "storage.capacity.sampled",
                "$.bytes_stored",
                "time_weighted_avg",
            )
        },
        draft(
            "storage.written",
            "storage.io.counted",
            "$.bytes_written",
            "sum",
        ),
        draft("storage.read", "storage.io.counted", "$.bytes_read", "sum"),
    ]
    .iter()
    .map(|d| d.validate().map_err(|e| anyhow!("meter {}: {e}", d.name)))
    .collect()
}

/// Runs the pipeline over the file at `path`.
pub fn run(path: &Path, meters: &[Meter], options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.threads > 0, "at least one thread");
    anyhow::ensure!(meters.len() < 256, "at most 255 meters");
    let started = Instant::now();
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ChunkReader::new(file, options.chunk_bytes.max(1 << 10))?;
    let interners = Interners::default();
    let state = Mutex::new(State::new(options.horizon_seconds));
    let finishing = Mutex::new(Finishing::new(meters, options.threads));
    let tallies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.threads)
            .map(|id| {
                let (reader, interners, state, finishing) =
                    (&reader, &interners, &state, &finishing);
                scope
                    .spawn(move || worker(id, reader, interners, state, finishing, meters, options))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("a worker panicked"))?)
            .collect::<anyhow::Result<Vec<Tally>>>()
    })?;
    let state = state.into_inner().map_err(|_| anyhow!("state poisoned"))?;
    // Every worker handed everything over as it finished: all hours are finalised.
    let finishing = finishing
        .into_inner()
        .map_err(|_| anyhow!("results poisoned"))?;
    let seconds = started.elapsed().as_secs_f64();
    let mut report = Report {
        stage: Some(options.stage),
        threads: options.threads,
        chunk_bytes: options.chunk_bytes,
        seconds,
        ..Report::default()
    };
    for tally in &tallies {
        report.chunks += tally.chunks;
        report.bytes += tally.bytes;
        report.events += tally.events;
        report.rejected_events += tally.rejected_events;
        report.unmeasured_events += tally.unmeasured_events;
        report.refused_samples += tally.refused_samples;
        let (sum, add) = (&mut report.worker_seconds, tally.seconds);
        sum.read += add.read;
        sum.parse += add.parse;
        sum.measure += add.measure;
        sum.wait += add.wait;
        sum.dedup += add.dedup;
        sum.apply += add.apply;
        sum.free += add.free;
    }
    report.unique_events = state.unique;
    report.duplicate_events = state.duplicates;
    report.late_events = state.late;
    report.max_open_hours = state.max_open_hours;
    report.max_open_keys = state.max_open_keys;
    report.hours_finalised = finishing.hours_finalised;
    report.meters = finishing.totals;
    Ok(report)
}

/// The longest line a chunk may be extended to hold.
const MAX_LINE_BYTES: usize = 256 << 20;

/// Cuts the file into chunks of whole lines without a lock: chunk `k` holds the lines
/// that start in bytes `[k × size, (k + 1) × size)` of the file, read with positioned
/// reads, so workers read their chunks at the same time and none waits for another's
/// read. (A line crossing the end belongs to the chunk it starts in; a chunk in which
/// no line starts is empty.)
struct ChunkReader {
    file: File,
    chunk_bytes: u64,
    file_bytes: u64,
    next_seq: AtomicU64,
}

impl ChunkReader {
    fn new(file: File, chunk_bytes: usize) -> anyhow::Result<ChunkReader> {
        let file_bytes = file.metadata()?.len();
        Ok(ChunkReader {
            file,
            chunk_bytes: chunk_bytes.max(1) as u64,
            file_bytes,
            next_seq: AtomicU64::new(0),
        })
    }

    /// Reads the next chunk into `buf`: its sequence number and where its lines are in
    /// `buf`, or `None` at the end. `buf` stays initialised to its length across calls,
    /// so memory is zeroed once, not per chunk.
    fn next(&self, buf: &mut Vec<u8>) -> anyhow::Result<Option<(u64, Range<usize>)>> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let start = seq.saturating_mul(self.chunk_bytes);
        if start >= self.file_bytes {
            return Ok(None);
        }
        let end = start.saturating_add(self.chunk_bytes).min(self.file_bytes);
        // From the byte before the chunk (does a line start at its first byte?) to its
        // end, then on to the end of the line crossing it.
        let from = start.saturating_sub(1);
        let mut filled = self.read_into(buf, 0, from, end)?;
        let first = if start == 0 {
            Some(0)
        } else {
            let read = buf.get(..filled).unwrap_or_default();
            read.iter().position(|&b| b == b'\n').map(|i| i + 1)
        };
        let Some(first) = first.filter(|&f| from + (f as u64) < end) else {
            // No line starts here.
            return Ok(Some((seq, 0..0)));
        };
        loop {
            let at = from + filled as u64;
            if buf.get(..filled).and_then(<[u8]>::last) == Some(&b'\n') || at >= self.file_bytes {
                break;
            }
            let more = (64u64 << 10).min(self.file_bytes - at);
            let searched = filled;
            filled = self.read_into(buf, filled, at, at + more)?;
            let new = buf.get(searched..filled).unwrap_or_default();
            if let Some(newline) = new.iter().position(|&b| b == b'\n') {
                filled = searched + newline + 1;
                break;
            }
            anyhow::ensure!(
                filled <= MAX_LINE_BYTES,
                "a line longer than {MAX_LINE_BYTES} bytes"
            );
        }
        Ok(Some((seq, first..filled)))
    }

    /// Reads bytes `[from, to)` of the file into `buf` at `at`; where they end in `buf`.
    fn read_into(&self, buf: &mut Vec<u8>, at: usize, from: u64, to: u64) -> anyhow::Result<usize> {
        let end = at + usize::try_from(to - from)?;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        let target = buf.get_mut(at..end).unwrap_or_default();
        self.file.read_exact_at(target, from)?;
        Ok(end)
    }
}

/// What one worker counted.
#[derive(Debug, Default)]
struct Tally {
    chunks: u64,
    bytes: u64,
    events: u64,
    rejected_events: u64,
    unmeasured_events: u64,
    refused_samples: u64,
    seconds: Seconds,
}

/// Where the workers' time went, summed over workers (wall time of each step).
#[derive(Debug, Clone, Copy, Default)]
pub struct Seconds {
    /// Reading chunks (positioned reads, no waiting for other workers).
    pub read: f64,
    /// `BatchReader::parse`: parsing and validating.
    pub parse: f64,
    /// The meters reading values and groups from `data`.
    pub measure: f64,
    /// Waiting for the state's lock.
    pub wait: f64,
    /// Deduplicating and closing hours, under the lock.
    pub dedup: f64,
    /// Aggregating the kept events into the worker's own aggregates, handing closed
    /// hours over and finalising them (outside the state's lock).
    pub apply: f64,
    /// Dropping the parsed events (their buffers kept for the next chunk).
    pub free: f64,
}

/// One event as measured, ready to be applied.
struct Measured {
    hour: i64,
    key: EventKey,
    /// The account (the event's subject), interned.
    account: u32,
    /// Its contributions: `contributions[first..first + n]`.
    first: u32,
    n: u8,
    /// Whether deduplication kept it (its first copy).
    unique: bool,
}

struct Contribution {
    meter: u8,
    /// The group, interned; 0 for none.
    group: u32,
    sample: Sample,
}

fn lock<T>(mutex: &Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    mutex
        .lock()
        .map_err(|_| anyhow!("another worker failed while holding a lock"))
}

fn worker(
    id: usize,
    reader: &ChunkReader,
    interners: &Interners,
    state: &Mutex<State>,
    finishing: &Mutex<Finishing>,
    meters: &[Meter],
    options: &Options,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut partials = Partials::new();
    let mut handed_before = i64::MIN;
    let mut buf = Vec::new();
    let mut batches = BatchReader::default();
    let mut accounts = LocalInterner::default();
    let mut groups = LocalInterner::default();
    let mut contributions: Vec<Contribution> = Vec::new();
    let mut measured: Vec<Measured> = Vec::new();
    // The meters of each event type, looked up once per event.
    let mut by_type: Vec<(&str, Vec<u8>)> = Vec::new();
    for (index, meter) in meters.iter().enumerate() {
        let index = u8::try_from(index)?;
        match by_type.iter_mut().find(|(t, _)| *t == meter.event_type) {
            Some((_, indices)) => indices.push(index),
            None => by_type.push((&meter.event_type, vec![index])),
        }
    }
    let mut clock = Instant::now();
    let mut lap = |into: &mut f64| {
        let now = Instant::now();
        *into += now.duration_since(clock).as_secs_f64();
        clock = now;
    };
    loop {
        let next = reader.next(&mut buf)?;
        lap(&mut tally.seconds.read);
        let Some((seq, lines)) = next else {
            break;
        };
        let chunk = buf.get(lines).unwrap_or_default();
        tally.chunks += 1;
        tally.bytes += chunk.len() as u64;
        if options.stage == Stage::Read {
            tally.events += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            continue;
        }
        let batch = batches.parse(chunk, Framing::Ndjson)?;
        lap(&mut tally.seconds.parse);
        let rejected = batch.n_rejected_events() as u64;
        tally.events += batch.events.len() as u64 + rejected;
        tally.rejected_events += rejected;
        if options.stage != Stage::Parse {
            contributions.clear();
            measured.clear();
            let mut newest: Option<i64> = None;
            'events: for (_, event) in &batch.events {
                let time = event.time();
                let first = contributions.len();
                let indices = by_type
                    .iter()
                    .find(|(t, _)| *t == event.event_type())
                    .map_or(&[][..], |(_, indices)| indices);
                for &index in indices {
                    let Some(meter) = meters.get(usize::from(index)) else {
                        continue;
                    };
                    let measured = meter
                        .value(event)
                        .ok()
                        .and_then(|value| meter.group_text(event).ok().map(|group| (value, group)));
                    let Some((value, group)) = measured else {
                        // The whole event waits (in Purser, in the quarantine).
                        contributions.truncate(first);
                        tally.unmeasured_events += 1;
                        continue 'events;
                    };
                    contributions.push(Contribution {
                        meter: index,
                        group: match group {
                            Some(group) => groups.id(&group, &interners.groups)?,
                            None => 0,
                        },
                        sample: Sample {
                            time,
                            key: event.key(),
                            value,
                        },
                    });
                }
                let n = contributions.len() - first;
                if n == 0 {
                    tally.unmeasured_events += 1;
                    continue;
                }
                let micros = time.as_microsecond();
                newest = Some(newest.map_or(micros, |t| t.max(micros)));
                measured.push(Measured {
                    hour: Window::hour(time).start.as_second(),
                    key: event.key(),
                    account: accounts.id(event.subject(), &interners.accounts)?,
                    first: u32::try_from(first)?,
                    n: u8::try_from(n)?,
                    unique: false,
                });
            }
            lap(&mut tally.seconds.measure);
            if options.stage == Stage::Full {
                let mut state = lock(state)?;
                lap(&mut tally.seconds.wait);
                let closed_before = state.apply(seq, newest, &mut measured);
                drop(state);
                lap(&mut tally.seconds.dedup);
                partials.add(meters, &measured, &contributions);
                if closed_before > handed_before {
                    let hours = partials.take_before(closed_before);
                    lock(finishing)?.hand_over(id, closed_before, hours);
                    handed_before = closed_before;
                }
                lap(&mut tally.seconds.apply);
            }
        }
        // The buffers hold the next chunk's events.
        batches.recycle(batch);
        lap(&mut tally.seconds.free);
    }
    // Nothing more from this worker: everything it holds is handed over.
    let hours = partials.take_before(i64::MAX);
    lock(finishing)?.hand_over(id, i64::MAX, hours);
    tally.refused_samples = partials.refused;
    Ok(tally)
}

/// A hasher for keys that are already uniform hashes (an [`EventKey`] is SHA-256):
/// their first eight bytes are the hash.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 ^= if bytes.len() >= 8 {
            word_at(bytes, 0)
        } else {
            short_word(bytes)
        };
    }
    // The slice's length prefix adds nothing.
    fn write_usize(&mut self, _: usize) {}
}

/// A fast non-cryptographic hasher for small internal keys: a few integers, or short
/// strings (account ids, cluster ids) read eight bytes at a time.
#[derive(Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0xf1_35_7a_ea_2e_62_a9_c5);
    }
}

/// Eight bytes at `at` (the caller checks they exist).
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Up to eight bytes as one word, without a byte loop or a call to `memcpy`.
fn short_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let half = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    match n {
        0 => 0,
        1..=3 => {
            let byte = |i: usize| bytes.get(i).map_or(0, |&b| u64::from(b));
            byte(0) | (byte(n / 2) << 8) | (byte(n - 1) << 16) | ((n as u64) << 56)
        }
        // The first and the last four bytes (overlapping when fewer than eight).
        _ => half(0) | (half(n - 4) << 32) ^ ((n as u64) << 59),
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        // Multiplying only carries differences upwards, and the table indexes with the
        // low bits: MurmurHash3's finaliser spreads them over every bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n > 8 {
            // Whole words, then the last eight bytes (overlapping): no byte loop.
            let mut start = 0;
            while start + 8 < n {
                self.add(word_at(bytes, start));
                start += 8;
            }
            self.add(word_at(bytes, n - 8) ^ ((n as u64) << 59));
        } else {
            self.add(short_word(bytes));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

type KeySet = HashSet<EventKey, BuildHasherDefault<PrehashedKey>>;
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Where a sample is aggregated within an hour (account and group interned).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct AggregateKey {
    account: u32,
    group: u32,
    meter: u8,
}

/// Strings seen often (accounts, groups) as small numbers, from 1 (0 stands for no
/// group), shared by the workers.
#[derive(Default)]
struct Interners {
    accounts: Mutex<FxMap<Box<str>, u32>>,
    groups: Mutex<FxMap<Box<str>, u32>>,
}

/// A worker's copy of the ids it has met: the shared map is locked only for a
/// string the worker meets for the first time.
#[derive(Default)]
struct LocalInterner {
    ids: FxMap<Box<str>, u32>,
}

impl LocalInterner {
    fn id(&mut self, text: &str, shared: &Mutex<FxMap<Box<str>, u32>>) -> anyhow::Result<u32> {
        if let Some(&id) = self.ids.get(text) {
            return Ok(id);
        }
        let mut shared = lock(shared)?;
        let next = u32::try_from(shared.len() + 1)?;
        let id = *shared.entry(text.into()).or_insert(next);
        self.ids.insert(text.into(), id);
        Ok(id)
    }
}

type Aggregates = FxMap<AggregateKey, HourAggregate>;

/// What is shared under the state's lock: deduplication and the stream's progress.
struct State {
    horizon_micros: i64,
    /// The keys seen in each open hour.
    hours: BTreeMap<i64, KeySet>,
    /// Every hour starting before this (seconds) is closed: its events are late.
    closed_before: i64,
    /// Chunks applied out of order, with their newest event time.
    completed: BTreeMap<u64, Option<i64>>,
    next_seq: u64,
    /// The newest event time in the stream's completed prefix (microseconds).
    watermark: i64,
    unique: u64,
    duplicates: u64,
    late: u64,
    open_keys: usize,
    /// The most keys an hour held so far.
    size_hint: usize,
    max_open_hours: usize,
    max_open_keys: usize,
}

impl State {
    fn new(horizon_seconds: i64) -> State {
        State {
            horizon_micros: horizon_seconds.saturating_mul(1_000_000),
            hours: BTreeMap::new(),
            closed_before: i64::MIN,
            completed: BTreeMap::new(),
            next_seq: 0,
            watermark: i64::MIN,
            unique: 0,
            duplicates: 0,
            late: 0,
            open_keys: 0,
            size_hint: 0,
            max_open_hours: 0,
            max_open_keys: 0,
        }
    }

    /// Deduplicates one chunk's events (marking those to aggregate), then closes the
    /// hours the stream has moved far enough past. Returns the hours now closed:
    /// every hour starting before it.
    fn apply(&mut self, seq: u64, newest: Option<i64>, measured: &mut [Measured]) -> i64 {
        let mut current: Option<(i64, &mut KeySet)> = None;
        for event in measured.iter_mut() {
            if event.hour < self.closed_before {
                self.late += 1;
                continue;
            }
            let keys = match current.take() {
                Some((start, keys)) if start == event.hour => keys,
                _ => {
                    let hint = self.size_hint;
                    self.hours.entry(event.hour).or_insert_with(|| {
                        KeySet::with_capacity_and_hasher(hint, BuildHasherDefault::default())
                    })
                }
            };
            if keys.insert(event.key) {
                self.unique += 1;
                self.open_keys += 1;
                event.unique = true;
            } else {
                self.duplicates += 1;
            }
            current = Some((event.hour, keys));
        }
        self.max_open_hours = self.max_open_hours.max(self.hours.len());
        self.max_open_keys = self.max_open_keys.max(self.open_keys);
        self.completed.insert(seq, newest);
        while let Some(newest) = self.completed.remove(&self.next_seq) {
            self.next_seq += 1;
            if let Some(newest) = newest {
                self.watermark = self.watermark.max(newest);
            }
        }
        if self.watermark != i64::MIN {
            // Hours that ended at or before the cutoff receive nothing more.
            let cutoff = self.watermark.saturating_sub(self.horizon_micros);
            self.close_before(cutoff.div_euclid(1_000_000));
        }
        self.closed_before
    }

    /// Closes every hour that ended at or before `cutoff` (seconds): those starting
    /// before the start of the hour holding it. Their keys are no longer needed.
    fn close_before(&mut self, cutoff: i64) {
        let before = cutoff.div_euclid(3_600) * 3_600;
        if before <= self.closed_before {
            return;
        }
        self.closed_before = before;
        while let Some(entry) = self.hours.first_entry() {
            if *entry.key() >= before {
                break;
            }
            let keys = entry.remove();
            self.open_keys -= keys.len();
            self.size_hint = self.size_hint.max(keys.len());
        }
    }
}

/// A worker's own aggregates of the events it kept, per hour, outside any lock: a
/// worker's additions stay in its own core's caches and never wait for another
/// worker. An hour is handed over to [`Finishing`] once the worker has seen it closed,
/// which it checks only after aggregating its chunk: every event it kept for the hour
/// is then in. (Merging is exact and independent of how the events were split, so
/// the results are those of one aggregate.)
struct Partials {
    hours: BTreeMap<i64, Aggregates>,
    /// The most aggregates an hour held so far.
    size_hint: usize,
    /// Samples an aggregate refused (overflow).
    refused: u64,
}

impl Partials {
    fn new() -> Partials {
        Partials {
            hours: BTreeMap::new(),
            size_hint: 0,
            refused: 0,
        }
    }

    /// Adds the samples of the chunk's events that deduplication kept.
    fn add(&mut self, meters: &[Meter], measured: &[Measured], contributions: &[Contribution]) {
        let mut current: Option<(i64, &mut Aggregates)> = None;
        for event in measured.iter().filter(|e| e.unique) {
            let aggregates = match current.take() {
                Some((start, aggregates)) if start == event.hour => aggregates,
                _ => {
                    let hint = self.size_hint;
                    self.hours.entry(event.hour).or_insert_with(|| {
                        Aggregates::with_capacity_and_hasher(hint, BuildHasherDefault::default())
                    })
                }
            };
            let first = event.first as usize;
            let range = first..first + usize::from(event.n);
            for contribution in contributions.get(range).unwrap_or_default() {
                let meter = contribution.meter;
                let key = AggregateKey {
                    account: event.account,
                    group: contribution.group,
                    meter,
                };
                let sample = contribution.sample;
                let added = aggregates
                    .entry(key)
                    .or_insert_with(|| {
                        let aggregation = meters
                            .get(usize::from(meter))
                            .map_or(Aggregation::Count, |m| m.aggregation);
                        HourAggregate::new(aggregation, Window::hour(sample.time))
                    })
                    .add(sample);
                if added.is_err() {
                    self.refused += 1;
                }
            }
            current = Some((event.hour, aggregates));
        }
    }

    /// Takes out the hours starting before `before`.
    fn take_before(&mut self, before: i64) -> Vec<(i64, Aggregates)> {
        let later = self.hours.split_off(&before);
        let taken = std::mem::replace(&mut self.hours, later);
        for aggregates in taken.values() {
            self.size_hint = self.size_hint.max(aggregates.len());
        }
        taken.into_iter().collect()
    }
}

/// Where the workers' aggregates of closed hours meet: an hour is finalised (its
/// values computed, its state dropped) once every worker has handed it over, in hour
/// order.
struct Finishing {
    /// For each worker, the hours before which it has handed everything over.
    handed_before: Vec<i64>,
    hours: BTreeMap<i64, Aggregates>,
    hours_finalised: u64,
    totals: Vec<MeterTotals>,
}

impl Finishing {
    fn new(meters: &[Meter], workers: usize) -> Finishing {
        Finishing {
            handed_before: vec![i64::MIN; workers],
            hours: BTreeMap::new(),
            hours_finalised: 0,
            totals: meters
                .iter()
                .map(|m| MeterTotals {
                    name: m.name.clone(),
                    aggregation: Some(m.aggregation),
                    ..MeterTotals::default()
                })
                .collect(),
        }
    }

    /// A worker's aggregates of the hours before `before`, all it will ever have of
    /// them; then every hour all workers have handed over is finalised.
    fn hand_over(&mut self, worker: usize, before: i64, hours: Vec<(i64, Aggregates)>) {
        for (start, aggregates) in hours {
            match self.hours.entry(start) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(aggregates);
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    let failed = merge_into(entry.get_mut(), aggregates);
                    self.fail(failed);
                }
            }
        }
        if let Some(handed) = self.handed_before.get_mut(worker) {
            *handed = (*handed).max(before);
        }
        let complete_before = self.handed_before.iter().copied().min().unwrap_or(i64::MAX);
        while let Some(entry) = self.hours.first_entry() {
            if *entry.key() >= complete_before {
                break;
            }
            let aggregates = entry.remove();
            self.finalise(aggregates);
        }
    }

    /// Rows whose aggregates could not be merged exactly fail.
    fn fail(&mut self, meters: Vec<u8>) {
        for meter in meters {
            if let Some(totals) = self.totals.get_mut(usize::from(meter)) {
                totals.failed += 1;
            }
        }
    }

    fn finalise(&mut self, aggregates: Aggregates) {
        self.hours_finalised += 1;
        for (key, aggregate) in aggregates {
            let Some(totals) = self.totals.get_mut(usize::from(key.meter)) else {
                continue;
            };
            match aggregate.value(None) {
                Ok(Some(value)) => {
                    totals.rows += 1;
                    let total = totals.total.checked_add(value);
                    let floors = totals.total_of_floors.checked_add(value.floor());
                    match (total, floors) {
                        (Some(total), Some(floors)) => {
                            totals.total = total;
                            totals.total_of_floors = floors;
                        }
                        _ => totals.failed += 1,
                    }
                }
                Ok(None) => {}
                Err(_) => totals.failed += 1,
            }
        }
    }
}

/// Merges `other`'s aggregates into `into`; the meters of those that could not be
/// merged exactly.
fn merge_into(into: &mut Aggregates, other: Aggregates) -> Vec<u8> {
    let mut failed = Vec::new();
    for (key, aggregate) in other {
        match into.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                if entry.get_mut().merge(&aggregate).is_err() {
                    failed.push(key.meter);
                }
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(aggregate);
            }
        }
    }
    failed
}

/// The process's peak resident memory in MiB (Linux: `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(id: &str, event_type: &str, time: &str, data: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"polaris://t/c1","type":"{event_type}","subject":"acct-1","time":"{time}","data":{data}}}"#
        )
    }

    #[test]
    fn resent_events_count_once_and_hours_are_finalised() {
        let io = |id: &str, time: &str, w: u64| {
            line(
                id,
                "storage.io.counted",
                time,
                &format!(r#"{{"cluster_id":"c1","bytes_written":{w},"bytes_read":1}}"#),
            )
        };
        let cap = |id: &str, time: &str, b: u64| {
            line(
                id,
                "storage.capacity.sampled",
                time,
                &format!(r#"{{"cluster_id":"c1","bytes_stored":{b}}}"#),
            )
        };
        let mut lines = vec![
            io("1", "2026-11-16T00:00:00Z", 10),
            cap("2", "2026-11-16T00:00:00Z", 100),
            cap("3", "2026-11-16T00:30:00Z", 200),
            io("1", "2026-11-16T00:00:00Z", 10),
            "not json".to_owned(),
        ];
        // Hours later, so the first hours are finalised while the stream goes on.
        for h in 1..10 {
            lines.push(io(
                &format!("h{h}"),
                &format!("2026-11-16T{h:02}:10:00Z"),
                1,
            ));
        }
        let mut file = tempfile();
        for l in &lines {
            writeln!(file.0, "{l}").expect("write");
        }
        // One worker, so that chunks are applied in file order and the finalising of
        // hours does not depend on which worker wins a race.
        let options = Options {
            threads: 1,
            chunk_bytes: 1 << 10,
            horizon_seconds: 3_600,
            ..Options::default()
        };
        let meters = meters().expect("meters");
        let report = run(&file.1, &meters, &options).expect("run");
        assert_eq!(report.events, 14);
        assert_eq!(report.rejected_events, 1);
        assert_eq!(report.duplicate_events, 1);
        assert_eq!(report.unique_events, 12);
        assert_eq!(report.late_events, 0);
        assert!(report.max_open_hours < 10, "{}", report.max_open_hours);
        let written = report.meter("storage.written").expect("meter");
        assert_eq!((written.rows, written.total), (10, Decimal::from(19)));
        let capacity = report.meter("storage.capacity").expect("meter");
        // 100 for 30 minutes, 200 for 30 minutes.
        assert_eq!((capacity.rows, capacity.total), (1, Decimal::from(150)));
        std::fs::remove_file(&file.1).expect("remove");
    }

    #[test]
    fn an_event_for_a_finalised_hour_is_counted_late() {
        // Padded (an extension attribute) to a chunk each.
        let io = |id: &str, time: &str| {
            line(
                id,
                "storage.io.counted",
                time,
                r#"{"cluster_id":"c1","bytes_written":1,"bytes_read":1}"#,
            )
            .replacen('{', &format!(r#"{{"pad":"{}","#, "p".repeat(1_100)), 1)
        };
        let mut file = tempfile();
        for l in [
            io("1", "2026-11-16T00:10:00Z"),
            io("2", "2026-11-16T05:10:00Z"),
            io("3", "2026-11-16T00:20:00Z"),
        ] {
            writeln!(file.0, "{l}").expect("write");
        }
        // One worker, a line per chunk: the second line moves the watermark past the
        // first hour before the third arrives.
        let options = Options {
            threads: 1,
            chunk_bytes: 1 << 10,
            horizon_seconds: 3_600,
            ..Options::default()
        };
        let report = run(&file.1, &meters().expect("meters"), &options).expect("run");
        std::fs::remove_file(&file.1).expect("remove");
        assert_eq!(report.late_events, 1);
        let written = report.meter("storage.written").expect("meter");
        assert_eq!((written.rows, written.total), (2, Decimal::from(2)));
    }

    #[test]
    fn workers_and_chunks_do_not_change_the_results() {
        let shape = crate::telemetry::Shape {
            accounts: 20,
            clusters_per_account: 2,
            days: 1,
            ..crate::telemetry::Shape::default()
        };
        let mut file = tempfile();
        crate::telemetry::generate(&shape, &mut file.0).expect("generate");
        let meters = meters().expect("meters");
        let report = |threads: usize, chunk_bytes: usize| {
            let options = Options {
                threads,
                chunk_bytes,
                ..Options::default()
            };
            run(&file.1, &meters, &options).expect("run")
        };
        let one = report(1, 1 << 20);
        assert!(one.unique_events > 10_000, "{}", one.unique_events);
        assert!(one.duplicate_events > 0);
        assert_eq!(one.late_events, 0);
        for (threads, chunk_bytes) in [(1, 1 << 10), (2, 1 << 10), (3, 3_000), (4, 64 << 10)] {
            let other = report(threads, chunk_bytes);
            let what = format!("{threads} workers, {chunk_bytes}-byte chunks");
            assert_eq!(other.events, one.events, "{what}");
            assert_eq!(other.unique_events, one.unique_events, "{what}");
            assert_eq!(other.duplicate_events, one.duplicate_events, "{what}");
            assert_eq!(other.late_events, 0, "{what}");
            assert_eq!(other.hours_finalised, one.hours_finalised, "{what}");
            for (a, b) in other.meters.iter().zip(&one.meters) {
                assert_eq!(
                    (&a.name, a.rows, a.total_of_floors, a.failed),
                    (&b.name, b.rows, b.total_of_floors, b.failed),
                    "{what}"
                );
                if a.aggregation == Some(Aggregation::Sum) {
                    assert_eq!(a.total, b.total, "{what}");
                }
            }
        }
        std::fs::remove_file(&file.1).expect("remove");
    }

    #[test]
    fn chunks_are_whole_lines_whatever_their_length() {
        let long = "x".repeat(5_000);
        let texts = [
            format!("a\n{long}\nb\nlast"),
            format!("a\n{long}\nb\n"),
            format!("{long}\n"),
            "one line, no newline".to_owned(),
            "\n\n\nshort\n\n".to_owned(),
            (0..2_000).map(|i| format!("line {i}\n")).collect(),
            String::new(),
        ];
        for text in texts {
            let mut file = tempfile();
            write!(file.0, "{text}").expect("write");
            for chunk_bytes in [1 << 10, 1 << 12, 4_999, 5_000, 5_001, 1 << 20] {
                let reader = ChunkReader::new(File::open(&file.1).expect("open"), chunk_bytes)
                    .expect("reader");
                let mut buf = Vec::new();
                let mut chunks = Vec::new();
                while let Some((seq, lines)) = reader.next(&mut buf).expect("read") {
                    let chunk = String::from_utf8(buf[lines].to_vec()).expect("utf8");
                    chunks.push((seq, chunk));
                }
                let seqs: Vec<u64> = chunks.iter().map(|(seq, _)| *seq).collect();
                assert_eq!(seqs, (0..chunks.len() as u64).collect::<Vec<_>>());
                let joined: String = chunks.iter().map(|(_, chunk)| chunk.as_str()).collect();
                assert_eq!(joined, text, "every byte once, in order ({chunk_bytes})");
                // Whole lines: every chunk but the file's last line ends with a newline.
                let (_, last) = chunks
                    .iter()
                    .rev()
                    .find(|(_, c)| !c.is_empty())
                    .cloned()
                    .unwrap_or_default();
                for (_, chunk) in &chunks {
                    assert!(
                        chunk.is_empty() || chunk.ends_with('\n') || *chunk == last,
                        "{chunk:?}"
                    );
                }
            }
            std::fs::remove_file(&file.1).expect("remove");
        }
    }

    fn tempfile() -> (File, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "purser-bench-core-{}-{}.ndjson",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        (File::create(&path).expect("create"), path)
    }
}
