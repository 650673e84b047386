//! `bench-marketplace`: benchmark of marketplace submission. One closed hour for
//! `--accounts` marketplace accounts (a third on each marketplace) × 3 dimensions is
//! submitted through the real clients to the fakes, which answer after `--latency-ms`
//! and enforce the published request-rate quotas (AWS: 10 BatchMeterUsage requests a
//! second, so 25 records a request bound the run at accounts × 3 / 3 / 25 / 10
//! seconds). Reports the time until every record is accepted, and its ratio to that
//! bound.
//!
//!     target/release/bench-marketplace [--accounts 10000] [--latency-ms 50] [--database-url URL]
//!
//! Without `--database-url`, SQLite in a temporary directory; with it, an empty
//! PostgreSQL database. Prints one JSON line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use purser_app::marketplace::{Submitter, config_for_fakes, register_with_fakes};
use purser_core::Marketplace;
use purser_core::marketplace::DeliveryState;
use purser_fakes::{FakeConfig, FakeMarketplaces};
use purser_marketplace::{AwsClient, AzureClient, GcpClient, MeteringClient};
use purser_store::marketplace::LedgerFilter;
use purser_store::metering::{MeteringSettings, hour_start};
use purser_store::{Location, OpenMode, Store};
use purser_testkit::marketplace as fixtures;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmark submitting one hour to the three marketplaces' fakes")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// How long each fake takes to answer.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// An empty PostgreSQL database; SQLite in a temporary directory without it.
    #[arg(long)]
    database_url: Option<String>,
    /// Google checks in flight at once.
    #[arg(long, default_value_t = 32)]
    gcp_concurrency: usize,
}

/// (dimension, meter, field of `data`).
const DIMENSIONS: [(&str, &str, &str); 3] = [
    ("data_written_gib", "storage.written", "bytes_written"),
    ("data_read_gib", "storage.read", "bytes_read"),
    ("snapshots_gib", "storage.snapshots", "bytes_snapshotted"),
];

/// Meters, offers, accounts with bound entitlements, and one hour of usage, closed.
async fn fixture(store: &Store, accounts: usize, hour: Timestamp) -> anyhow::Result<()> {
    let meters: Vec<_> = DIMENSIONS
        .iter()
        .map(|(dimension, name, field)| {
            fixtures::gib_meter(name, "storage.io.counted", field, dimension)
        })
        .collect();
    let keys: Vec<&str> = DIMENSIONS.iter().map(|(key, _, _)| *key).collect();
    let sold: Vec<(&str, &str)> = keys.iter().map(|k| (*k, *k)).collect();
    let mut lines = Vec::new();
    for marketplace in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
        let offer =
            fixtures::define(store, &meters, fixtures::private_offer(marketplace, &sold)).await;
        let share = accounts / 3 + usize::from(marketplace == Marketplace::Aws) * (accounts % 3);
        let customers = fixtures::customers(store, &offer, share, hour, "0.001", &keys).await;
        for (i, external) in customers.iter().enumerate() {
            lines.push(format!(
                r#"{{"specversion":"1.0","id":"io-{external}","source":"polaris://us/clusters/c1","type":"storage.io.counted","subject":"{external}","time":"{}","data":{{"bytes_written":{},"bytes_read":{},"bytes_snapshotted":{}}}}}"#,
                hour + SignedDuration::from_mins(10),
                (1 + i as u64 % 7) << 30,
                (2 + i as u64 % 5) << 30,
                (1 + i as u64 % 3) << 29,
            ));
        }
    }
    if fixtures::ingest(store, &lines).await != lines.len() {
        bail!("not every usage event of the fixture was accepted");
    }
    let closes = hour + SignedDuration::from_mins(76);
    store
        .close_due_hours(closes, &MeteringSettings::default(), 1000)
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (location, backend) = match &args.database_url {
        Some(url) => (Location::Postgres(url.clone()), "postgres"),
        None => (Location::sqlite_in(dir.path()), "sqlite"),
    };
    let store = Store::open(&location, OpenMode::Write)
        .await
        .context("open the database")?;
    // A past hour, played on a simulated clock: Google's window is an hour after the
    // hour's end, whatever the minute the benchmark starts at.
    let hour = hour_start(Timestamp::now() - SignedDuration::from_hours(72))?;
    let setup = Instant::now();
    fixture(&store, args.accounts, hour).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();

    let now = hour + SignedDuration::from_mins(80);
    let mut fake = FakeConfig {
        latency: Duration::from_millis(args.latency_ms),
        clock: purser_fakes::FakeClock::fixed(now),
        ..FakeConfig::default()
    };
    // The published quota, as the fakes enforce by default.
    fake.aws.requests_per_second = 10;
    let fakes = FakeMarketplaces::start(fake.clone()).await?;
    register_with_fakes(&fakes, &store.bound_entitlements().await?);
    let mut config = config_for_fakes(&fakes, &fake);
    if let Some(gcp) = config.gcp.as_mut() {
        gcp.concurrency = args.gcp_concurrency;
    }
    let clock = Arc::new(Mutex::new(now));
    let read: purser_marketplace::Clock = {
        let clock = clock.clone();
        Arc::new(move || clock.lock().map(|t| *t).unwrap_or(now))
    };
    let (Some(gcp), Some(azure), Some(aws)) = (&config.gcp, &config.azure, &config.aws) else {
        bail!("the fakes' configuration names every marketplace");
    };
    let clients: Vec<Arc<dyn MeteringClient>> = vec![
        Arc::new(GcpClient::new(gcp)?),
        Arc::new(AzureClient::new(azure)?),
        Arc::new(AwsClient::new(aws)?.with_clock(read.clone())),
    ];
    let submitter = Submitter::new(clients, "bench".into())
        .with_clock(read)
        .with_budget(Duration::from_secs(600));

    let started = Instant::now();
    let mut runs = 0;
    loop {
        runs += 1;
        submitter.run(&store).await?;
        let open = store
            .marketplace_records(&LedgerFilter::default())
            .await?
            .iter()
            .filter(|r| !r.state.is_final())
            .count();
        if open == 0 || runs > 20 {
            break;
        }
        // Past any retry delay.
        let later = clock.lock().map(|t| *t).unwrap_or(now) + SignedDuration::from_secs(30);
        if let Ok(mut t) = clock.lock() {
            *t = later;
        }
        fakes.clock().set(later);
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = store.marketplace_records(&LedgerFilter::default()).await?;
    let accepted = records
        .iter()
        .filter(|r| r.state == DeliveryState::Accepted)
        .count();
    let aws_records = records
        .iter()
        .filter(|r| r.marketplace == Marketplace::Aws)
        .count();
    let quota = f64::from(fake.aws.requests_per_second);
    let aws_requests = aws_records.div_ceil(25);
    let bound = aws_requests as f64 / quota;
    println!(
        "{}",
        json!({
            "benchmark": "marketplace-submit",
            "backend": backend,
            "accounts": args.accounts,
            "records": records.len(),
            "accepted": accepted,
            "aws_records": aws_records,
            "aws_requests": aws_requests,
            "latency_ms": args.latency_ms,
            "seconds": (seconds * 100.0).round() / 100.0,
            "quota_bound_seconds": (bound * 100.0).round() / 100.0,
            "ratio_to_bound": ((seconds / bound) * 1000.0).round() / 1000.0,
            "runs": runs,
            "setup_seconds": (setup_seconds * 10.0).round() / 10.0,
            "fakes_billed": fakes.aws().records().len() + fakes.azure().events().len() + fakes.gcp().usage().len(),
        })
    );
    if accepted != records.len() {
        bail!(
            "{} of {} records were not accepted",
            records.len() - accepted,
            records.len()
        );
    }
    Ok(())
}
