//! `bench-reconcile`: benchmark of reconciling a month of marketplace billing.
//! `--accounts` marketplace accounts (a third on each marketplace, created through the
//! store as the submission benchmark creates them) × 3 dimensions × `--days` × 24
//! hours of ledger records are loaded directly into the ledger
//! (`Store::load_marketplace_records`), with one record in `--off-every` left off (in
//! turn refused, conflicting, missing, carried, pending) and the rest accepted; the
//! roll-up is then rebuilt with the code migration 8 backfills it with. The exchange
//! chain gets `--exchanges` exchanges through the real outcome path, a checkpoint as
//! the submission job stores one, and as many again after it (an hour's worth at
//! this scale, where the job checkpoints every minute).
//!
//! Then times, `--runs` times each, `Store::reconcile_marketplaces` over the month
//! (what `purser reconcile --from --to` runs), over its first day alone, over a period
//! that starts and ends mid-day, the scoped reconciliation the API and page run, and the
//! marketplace pages' reads (the overview's 48 hours, an hour's records). Checks every
//! count and sum against what was loaded.
//!
//!     target/release/bench-reconcile [--accounts 10000] [--days 31] [--data-dir DIR | --database-url URL]
//!
//! A ledger already loaded in the database (same accounts and days) is reused, so
//! runs can be repeated without loading again. Prints one JSON line.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use purser_core::marketplace::exchange::Exchange;
use purser_core::marketplace::rules::Rules;
use purser_core::marketplace::{DeliveryState, RecordOutcome, UsageRecord, record_key};
use purser_core::{Marketplace, Role};
use purser_store::marketplace::{Finding, LedgerRecord};
use purser_store::{Location, OpenMode, Store};
use purser_testkit::marketplace as fixtures;
use rust_decimal::Decimal;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmark reconciling a month of marketplace records")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    #[arg(long, default_value_t = 31)]
    days: i64,
    /// One record in this many is not accepted.
    #[arg(long, default_value_t = 1_000)]
    off_every: usize,
    /// Exchanges before the stored checkpoint, and as many after it.
    #[arg(long, default_value_t = 11_000)]
    exchanges: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A PostgreSQL database (created empty if missing); SQLite without it.
    #[arg(long)]
    database_url: Option<String>,
    /// The SQLite data directory (kept, so a later run reuses the ledger); a
    /// temporary one without it.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

const DIMENSIONS: [(&str, &str); 3] = [
    ("data_written_gib", "DataWrittenGiB"),
    ("data_read_gib", "DataReadGiB"),
    ("snapshots_gib", "SnapshotsGiB"),
];

/// What the loaded ledger holds, to check every reconciliation against.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Expected {
    records: i64,
    due: Decimal,
    accepted: Decimal,
    off: [i64; 5],
}

/// The month: the first of a month well in the past, so that nothing is pending by
/// the clock (the loaded records say what they are).
fn month_start() -> anyhow::Result<Timestamp> {
    Ok("2026-10-01T00:00:00Z".parse()?)
}

async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let (base, name) = url
        .rsplit_once('/')
        .context("a database URL ends with the database's name")?;
    let db = purser_store::Db::open_postgres(&format!("{base}/postgres"), 1).await?;
    let mut handle = db.read().await?;
    let exists = handle
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[name.into()],
        )
        .await?
        .is_some();
    if !exists {
        handle.batch(&format!("CREATE DATABASE \"{name}\"")).await?;
    }
    Ok(())
}

async fn build(store: &Store, args: &Args) -> anyhow::Result<(Expected, f64, f64)> {
    let start = month_start()?;
    let meters: Vec<_> = DIMENSIONS
        .iter()
        .map(|(key, _)| {
            fixtures::gib_meter(&format!("storage.{key}"), "storage.io.counted", key, key)
        })
        .collect();
    for marketplace in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
        let offer = fixtures::define(
            store,
            &meters,
            fixtures::private_offer(marketplace, &DIMENSIONS),
        )
        .await;
        let share =
            args.accounts / 3 + usize::from(marketplace == Marketplace::Aws) * (args.accounts % 3);
        let keys: Vec<&str> = DIMENSIONS.iter().map(|(k, _)| *k).collect();
        fixtures::customers(store, &offer, share, start, "0.001", &keys).await;
    }
    let bound = store.bound_entitlements().await?;

    let load = Instant::now();
    let mut expected = Expected::default();
    let mut n = 0usize;
    for day in 0..args.days {
        let mut records = Vec::with_capacity(bound.len() * 3 * 24);
        for h in 0..24 {
            let hour = start + SignedDuration::from_hours(day * 24 + h);
            for (entitlement, offer) in &bound {
                let Some(rules) = Rules::of(offer.marketplace) else {
                    continue;
                };
                let Some(binding) = &entitlement.marketplace_binding else {
                    continue;
                };
                for dimension in &offer.dimensions {
                    n += 1;
                    let quantity = Decimal::new((n % 50_000_000) as i64 + 1, 6);
                    let key = record_key(
                        offer.marketplace,
                        &entitlement.account_id,
                        dimension.key.as_str(),
                        hour,
                    );
                    let planned = hour + SignedDuration::from_mins(76);
                    let mut record = LedgerRecord {
                        record: UsageRecord {
                            key,
                            account_id: entitlement.account_id.clone(),
                            dimension: dimension.key.to_string(),
                            marketplace_dimension: dimension.marketplace_name.clone(),
                            hour,
                            quantity,
                            whole_units: false,
                            binding: binding.clone(),
                        },
                        marketplace: offer.marketplace,
                        route: binding.route(),
                        entitlement_id: entitlement.id.clone(),
                        owed: quantity,
                        carried_in: Decimal::ZERO,
                        state: DeliveryState::Accepted,
                        attempts: 1,
                        uncertain: false,
                        next_attempt_at: hour + SignedDuration::from_hours(1),
                        deadline: rules.deadline(hour),
                        alert_at: rules.alert_at(hour),
                        outcome: Some(serde_json::to_value(RecordOutcome::Accepted {
                            marketplace_id: Some(format!("mr-{key}")),
                        })?),
                        marketplace_id: Some(format!("mr-{key}")),
                        planned_at: planned,
                        first_sent_at: Some(planned + SignedDuration::from_secs(1)),
                        settled_at: Some(planned + SignedDuration::from_secs(2)),
                        carried_out: false,
                    };
                    expected.records += 1;
                    expected.due += quantity;
                    if n % args.off_every == 7 {
                        let kind = (n / args.off_every) % 5;
                        expected.off[kind] += 1;
                        record.marketplace_id = None;
                        let (state, outcome) = match kind {
                            0 => (
                                DeliveryState::Refused,
                                RecordOutcome::Refused {
                                    code: "CustomerNotSubscribed".into(),
                                    message: "the customer is not subscribed".into(),
                                },
                            ),
                            1 => {
                                expected.accepted += quantity + Decimal::ONE;
                                (
                                    DeliveryState::Conflict,
                                    RecordOutcome::Conflict {
                                        accepted_quantity: Some(quantity + Decimal::ONE),
                                        message: "DuplicateRecord".into(),
                                    },
                                )
                            }
                            2 | 3 => {
                                record.uncertain = kind == 2;
                                record.carried_out = kind == 3;
                                (
                                    DeliveryState::Expired,
                                    RecordOutcome::Expired {
                                        message: "its window closed".into(),
                                    },
                                )
                            }
                            _ => {
                                record.settled_at = None;
                                (
                                    DeliveryState::Due,
                                    RecordOutcome::Retry {
                                        reason: "throttled".into(),
                                        may_have_applied: false,
                                    },
                                )
                            }
                        };
                        record.state = state;
                        record.outcome = Some(serde_json::to_value(outcome)?);
                    } else {
                        expected.accepted += quantity;
                    }
                    records.push(record);
                }
            }
        }
        store.load_marketplace_records(&records).await?;
        eprintln!(
            "loaded day {} of {} ({} records, {:.0} s)",
            day + 1,
            args.days,
            expected.records,
            load.elapsed().as_secs_f64()
        );
    }
    let load_seconds = load.elapsed().as_secs_f64();
    let rebuild = Instant::now();
    store.rebuild_marketplace_rollup().await?;
    let rebuild_seconds = rebuild.elapsed().as_secs_f64();

    // The chain: exchanges through the real outcome path, a checkpoint, as many again.
    let at = start + SignedDuration::from_hours(args.days * 24 + 2);
    for half in 0..2 {
        let mut left = args.exchanges;
        while left > 0 {
            let batch: Vec<Exchange> = (0..left.min(500))
                .map(|i| bench_exchange(at, half * args.exchanges + i))
                .collect();
            left -= batch.len();
            store
                .record_marketplace_submission(at, &[], batch, None)
                .await?;
        }
        if half == 0 {
            store.checkpoint_marketplace_exchanges(at).await?;
        }
    }
    Ok((expected, load_seconds, rebuild_seconds))
}

/// An exchange the size of an AWS BatchMeterUsage request of 25 records and its answer.
fn bench_exchange(at: Timestamp, i: usize) -> Exchange {
    let mut exchange = fixtures::exchange(Vec::new());
    let record = |r: usize| {
        format!(
            r#"{{"CustomerAWSAccountId":"{:012}","LicenseArn":"arn:aws:license-manager::{:012}:license:l-{:016x}","Dimension":"DataWrittenGiB","Timestamp":{},"QuantityAsDecimal":"12.345678"}}"#,
            200_000 + r,
            200_000 + r,
            r,
            at.as_second()
        )
    };
    let records: Vec<String> = (0..25).map(|r| record(i * 25 + r)).collect();
    exchange.started_at = at;
    exchange.request_body = format!(r#"{{"UsageRecords":[{}]}}"#, records.join(","));
    exchange.response_body = Some(format!(
        r#"{{"Results":[{}],"UnprocessedRecords":[]}}"#,
        records
            .iter()
            .map(|r| format!(
                r#"{{"UsageRecord":{r},"MeteringRecordId":"mr-{i}","Status":"Success"}}"#
            ))
            .collect::<Vec<_>>()
            .join(",")
    ));
    exchange
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let (location, backend) = match &args.database_url {
        Some(url) => {
            create_database_if_missing(url).await?;
            (Location::Postgres(url.clone()), "postgres")
        }
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| temp.path().to_owned());
            (Location::sqlite_in(&dir), "sqlite")
        }
    };
    let store = Store::open(&location, OpenMode::Write)
        .await
        .context("open the database")?;
    let start = month_start()?;
    let end = start + SignedDuration::from_hours(args.days * 24);
    let cache = store.db().dialect();
    let existing = {
        let mut handle = store.db().read().await?;
        handle
            .query_one("SELECT COUNT(*) FROM marketplace_accepted_days", &[])
            .await?
            .int(0)?
    };
    let (expected, load_seconds, rebuild_seconds, reused) = if existing == 0 {
        let (expected, load, rebuild) = build(&store, &args).await?;
        if cache == purser_store::Dialect::Postgres {
            // What autovacuum would have done after a month of writes.
            let mut tx = store.db().begin().await?;
            tx.batch("ANALYZE").await?;
            tx.commit().await?;
        }
        (Some(expected), load, rebuild, false)
    } else {
        (None, 0.0, 0.0, true)
    };

    let admin = purser_testkit::scope("root", &[Role::Admin], &["us-gov"], Some("US"));
    let mid_from = start + SignedDuration::from_mins(13 * 60 + 34);
    let mid_to = end - SignedDuration::from_mins(10 * 60 + 26);
    let mut month = Vec::new();
    let mut mid_month = Vec::new();
    let mut scoped = Vec::new();
    let mut one_day = Vec::new();
    let mut overview = Vec::new();
    let mut hour_records = Vec::new();
    let mut first = None;
    // The pages at this scale: the overview's last 48 hours, and one hour's records of
    // one marketplace (a page of 50), as an administrator sees them.
    let last_hour = end - SignedDuration::from_hours(1);
    let overview_from = end - SignedDuration::from_hours(48);
    for _ in 0..args.runs {
        // One day: what the month costs apart from its per-day share.
        let t = Instant::now();
        store
            .reconcile_marketplaces(start, start + SignedDuration::from_hours(24))
            .await?;
        one_day.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let report = store.reconcile_marketplaces(start, end).await?;
        month.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let partial = store.reconcile_marketplaces(mid_from, mid_to).await?;
        mid_month.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let view = store.marketplace_reconciliation(&admin, start, end).await?;
        scoped.push(t.elapsed().as_secs_f64());
        if view.summaries != report.summaries || partial.records() >= report.records() {
            bail!("the scoped and partial reconciliations disagree with the whole one");
        }
        let t = Instant::now();
        let hours = store
            .marketplace_hours(&admin, None, overview_from, end, end)
            .await?;
        overview.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let page = store
            .marketplace_record_views(
                &admin,
                &purser_store::marketplace_views::RecordQuery {
                    marketplace: Some(Marketplace::Aws),
                    account_id: None,
                    hour: Some(last_hour),
                    state: None,
                    limit: 50,
                    offset: 0,
                },
                end,
            )
            .await?;
        hour_records.push(t.elapsed().as_secs_f64());
        let overview_records: i64 = hours.iter().map(|h| h.records).sum();
        if overview_records != args.accounts as i64 * 3 * 48 || page.items.len() != 50 {
            bail!(
                "the overview counted {overview_records} records, the records page showed {}",
                page.items.len()
            );
        }
        first.get_or_insert((report, partial));
    }
    let Some((report, partial)) = first else {
        bail!("--runs must be at least 1");
    };
    let found = Expected {
        records: report.records(),
        due: report.summaries.iter().map(|s| s.due).sum(),
        accepted: report.summaries.iter().map(|s| s.accepted).sum(),
        off: [
            report.count(Finding::Refused),
            report.count(Finding::Conflict),
            report.count(Finding::Missing),
            report.count(Finding::Carried),
            report.count(Finding::Pending),
        ],
    };
    if let Some(expected) = &expected
        && *expected != found
    {
        bail!("reconcile found {found:?}, the ledger holds {expected:?}");
    }
    if report.chain_break.is_some() || report.exchanges.checkpoint.is_none() {
        bail!("the exchange chain: {:?}", report.exchanges);
    }
    println!(
        "{}",
        json!({
            "benchmark": "marketplace-reconcile",
            "backend": backend,
            "accounts": args.accounts,
            "days": args.days,
            "records": found.records,
            "lines_not_clean": report.lines.len(),
            "off": found.off,
            "reused_ledger": reused,
            "load_seconds": (load_seconds * 10.0).round() / 10.0,
            "rollup_rebuild_seconds": (rebuild_seconds * 10.0).round() / 10.0,
            "exchanges": report.exchanges.head,
            "exchanges_walked": report.exchanges.head - report.exchanges.walked_from + 1,
            "month_seconds": month.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "month_median_seconds": (median(&mut month) * 1000.0).round() / 1000.0,
            "mid_month_records": partial.records(),
            "mid_month_median_seconds": (median(&mut mid_month) * 1000.0).round() / 1000.0,
            "scoped_median_seconds": (median(&mut scoped) * 1000.0).round() / 1000.0,
            "one_day_median_seconds": (median(&mut one_day) * 1000.0).round() / 1000.0,
            "overview_48h_median_seconds": (median(&mut overview) * 1000.0).round() / 1000.0,
            "hour_records_page_median_seconds": (median(&mut hour_records) * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
