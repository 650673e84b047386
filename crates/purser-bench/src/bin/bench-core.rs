//! `bench-core`: benchmark (a) of metering, Purser's core in memory (parse, validate,
//! deduplicate, aggregate per hour) over an NDJSON stream of events.
//!
//!     target/release/bench-core bench/events.ndjson [--threads 2] [--chunk-mib 2]
//!
//! Prints one JSON line with the same fields as `bench/duckdb_hourly.py` (events,
//! seconds, events_per_second, peak_rss_mib, result rows and checksums), so the two
//! can be compared directly. `--stage` stops early to see where time goes.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use purser_bench::core_pipeline::{self, Options, Stage};
use serde_json::json;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StageArg {
    /// Read the file in chunks and count lines.
    Read,
    /// And parse and validate the events.
    Parse,
    /// And measure them with the meters.
    Measure,
    /// And deduplicate, aggregate and finalise hours (the benchmark).
    Full,
}

#[derive(Parser)]
#[command(about = "Benchmark Purser's metering core in memory over an NDJSON stream")]
struct Args {
    /// The events (NDJSON), e.g. bench/events.ndjson from gen-telemetry.
    events: PathBuf,
    /// Worker threads (one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Chunk size in MiB (cut at the last newline); small enough that a chunk and its
    /// events stay in a core's cache.
    #[arg(long, default_value_t = 2)]
    chunk_mib: usize,
    /// How long after its end an hour may still receive events, in minutes of event
    /// time behind the newest event seen (producers' delay, resends, margin).
    #[arg(long, default_value_t = 150)]
    horizon_minutes: i64,
    #[arg(long, value_enum, default_value_t = StageArg::Full)]
    stage: StageArg,
}

fn round3(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        threads: args.threads,
        chunk_bytes: args.chunk_mib.max(1) << 20,
        horizon_seconds: args.horizon_minutes.saturating_mul(60),
        stage: match args.stage {
            StageArg::Read => Stage::Read,
            StageArg::Parse => Stage::Parse,
            StageArg::Measure => Stage::Measure,
            StageArg::Full => Stage::Full,
        },
    };
    let meters = core_pipeline::meters()?;
    let report = core_pipeline::run(&args.events, &meters, &options)?;
    let meter = |name: &str| report.meter(name).cloned().unwrap_or_default();
    let (capacity, written, read) = (
        meter("storage.capacity"),
        meter("storage.written"),
        meter("storage.read"),
    );
    let seconds = report.seconds.max(1e-9);
    println!(
        "{}",
        json!({
            "engine": "purser-core",
            "stage": format!("{:?}", args.stage).to_lowercase(),
            "threads": report.threads,
            "chunk_mib": args.chunk_mib,
            "events": report.events,
            "unique_events": report.unique_events,
            "duplicate_events": report.duplicate_events,
            "rejected_events": report.rejected_events,
            "unmeasured_events": report.unmeasured_events,
            "late_events": report.late_events,
            "refused_samples": report.refused_samples,
            "seconds": round3(report.seconds),
            "events_per_second": (report.events as f64 / seconds).round(),
            "mib_per_second": (report.bytes as f64 / (1 << 20) as f64 / seconds).round(),
            "peak_rss_mib": core_pipeline::peak_rss_mib().map(f64::round),
            "max_open_hours": report.max_open_hours,
            "max_open_keys": report.max_open_keys,
            "hours_finalised": report.hours_finalised,
            "io_hour_rows": written.rows,
            "capacity_hour_rows": capacity.rows,
            "io_bytes_written": written.total.to_string(),
            "io_bytes_read": read.total.to_string(),
            "capacity_twa_floor_sum": capacity.total_of_floors.to_string(),
            "failed_rows": capacity.failed + written.failed + read.failed,
            "worker_seconds": {
                "read": round3(report.worker_seconds.read),
                "parse": round3(report.worker_seconds.parse),
                "measure": round3(report.worker_seconds.measure),
                "lock_wait": round3(report.worker_seconds.wait),
                "dedup": round3(report.worker_seconds.dedup),
                "apply": round3(report.worker_seconds.apply),
                "free": round3(report.worker_seconds.free),
            },
        })
    );
    Ok(())
}
