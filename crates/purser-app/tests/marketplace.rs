//! Marketplace submission end to end, in process: closed hours planned, sent through
//! the real clients to the fakes (which enforce the published contracts), answers
//! recorded, and the period reconciled, on both backends; then the same with seeded
//! faults (throttling, 5xx, answers lost after the record was applied, dropped
//! connections, partial batches), where every record must still end accepted exactly
//! once.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use purser_app::marketplace::{Submitter, config_for_fakes, register_with_fakes};
use purser_core::Marketplace;
use purser_core::marketplace::{DeliveryState, Route};
use purser_fakes::{FakeClock, FakeConfig, FakeMarketplaces, FaultConfig};
use purser_marketplace::{AzureClient, MeteringClient};
use purser_store::Store;
use purser_store::marketplace::{Finding, LedgerFilter};
use purser_store::marketplace_rollup::{ChainWalk, Method};
use purser_store::metering::MeteringSettings;
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends};
use rust_decimal::Decimal;

/// How many accounts each marketplace has and how many hours are played.
#[derive(Clone, Copy)]
struct Scenario {
    accounts_per_marketplace: usize,
    /// Accounts of each cloud reported through Tackle beside the direct ones.
    tackle_per_marketplace: usize,
    hours: i64,
}

const SMALL: Scenario = Scenario {
    accounts_per_marketplace: 4,
    tackle_per_marketplace: 2,
    hours: 3,
};
const GIB: u64 = 1 << 30;

fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn hours(n: i64) -> Timestamp {
    base_hour() + SignedDuration::from_hours(n)
}

/// Customers on each marketplace, each with a private offer committing to a sliver of
/// data written (so writes are overage) and selling requests without a commitment.
async fn setup(store: &Store, scenario: Scenario) -> Vec<String> {
    let meter = fixtures::gib_meter(
        "storage.written",
        "com.polaris.io",
        "bytes_written",
        "data_written_gib",
    );
    let mut subjects = Vec::new();
    for marketplace in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
        let offer = fixtures::private_offer(
            marketplace,
            &[
                ("data_written_gib", "data_written"),
                ("requests_k", "requests"),
            ],
        );
        let offer = fixtures::define(store, std::slice::from_ref(&meter), offer).await;
        subjects.extend(
            fixtures::customers(
                store,
                &offer,
                scenario.accounts_per_marketplace,
                base_hour(),
                "0.5",
                &["data_written_gib"],
            )
            .await,
        );
        subjects.extend(
            fixtures::tackle_customers(
                store,
                &offer,
                scenario.tackle_per_marketplace,
                base_hour(),
                "0.5",
                &["data_written_gib"],
            )
            .await,
        );
    }
    subjects
}

async fn ingest_usage(store: &Store, subjects: &[String], scenario: Scenario) {
    let mut lines = Vec::new();
    for (n, subject) in subjects.iter().enumerate() {
        for hour in 0..scenario.hours {
            let gib = 1 + (n as u64 + hour as u64) % 4;
            let time = hours(hour) + SignedDuration::from_mins(7);
            lines.push(fixtures::written_event(
                &format!("w-{subject}-{hour}"),
                subject,
                time,
                gib * GIB + 12345,
            ));
        }
    }
    assert_eq!(
        fixtures::ingest(store, &lines).await,
        subjects.len() * scenario.hours as usize
    );
}

/// The fakes and a submitter whose clients point at them, all on one simulated clock.
async fn marketplaces(
    faults: FaultConfig,
    store: &Store,
    timeout_ms: u64,
) -> (FakeMarketplaces, Submitter, Arc<Mutex<Timestamp>>) {
    let clock = FakeClock::fixed(hours(1));
    let mut fake = FakeConfig {
        faults,
        clock: clock.clone(),
        ..FakeConfig::default()
    };
    fake.aws.requests_per_second = 1_000;
    fake.aws.burst = 1_000;
    let fakes = FakeMarketplaces::start(fake.clone()).await.unwrap();
    register_with_fakes(&fakes, &store.bound_entitlements().await.unwrap());
    let mut config = config_for_fakes(&fakes, &fake);
    // Short timeouts, so that an answer held after applying costs the test little.
    config.gcp.as_mut().unwrap().request_timeout_ms = timeout_ms;
    config.azure.as_mut().unwrap().request_timeout_ms = timeout_ms;
    config.tackle.as_mut().unwrap().request_timeout_ms = timeout_ms;
    let aws = config.aws.as_mut().unwrap();
    aws.request_timeout_ms = timeout_ms;
    // The fakes' quota is raised to match: what is tested here is exactly once, not
    // pacing (the benchmark keeps the published quota).
    aws.requests_per_second = Some(1_000);
    let now = Arc::new(Mutex::new(hours(1)));
    let read = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap()) as purser_marketplace::Clock
    };
    let submitter =
        Submitter::from_config_at(&config, "test-submitter".into(), Some(read)).unwrap();
    (fakes, submitter, now)
}

fn set_now(now: &Arc<Mutex<Timestamp>>, fakes: &FakeMarketplaces, at: Timestamp) {
    *now.lock().unwrap() = at;
    fakes.clock().set(at);
}

/// Plays the hours: each closes 15 minutes after its end and the submission job runs
/// every few minutes until nothing is due.
async fn play_hours(
    store: &Store,
    submitter: &Submitter,
    fakes: &FakeMarketplaces,
    now: &Arc<Mutex<Timestamp>>,
    scenario: Scenario,
    runs_per_hour: usize,
) {
    for hour in 0..scenario.hours {
        let mut at = hours(hour + 1) + SignedDuration::from_mins(16);
        set_now(now, fakes, at);
        store
            .close_due_hours(at, &MeteringSettings::default(), 100)
            .await
            .unwrap();
        for _ in 0..runs_per_hour {
            let report = submitter.run(store).await.unwrap();
            assert_eq!(report.conflicts, 0, "{}", report.summary());
            let pending = store
                .marketplace_records(&LedgerFilter {
                    state: Some(DeliveryState::Due),
                    to: Some(hours(hour + 1)),
                    ..LedgerFilter::default()
                })
                .await
                .unwrap()
                .len()
                + store
                    .marketplace_records(&LedgerFilter {
                        state: Some(DeliveryState::Sending),
                        to: Some(hours(hour + 1)),
                        ..LedgerFilter::default()
                    })
                    .await
                    .unwrap()
                    .len();
            if pending == 0 {
                break;
            }
            // Past any retry delay and any lease.
            at += SignedDuration::from_mins(3);
            set_now(now, fakes, at);
        }
    }
}

/// Plays `scenario` against the fakes with `faults`, then proves what the fakes hold is
/// exactly the ledger's accepted records, every record is accepted, and the period
/// reconciles.
async fn exactly_once(
    db: &TestDatabase,
    scenario: Scenario,
    faults: FaultConfig,
    timeout_ms: u64,
    runs_per_hour: usize,
    tackle_faults: Option<FaultConfig>,
) -> (FakeMarketplaces, Store) {
    let store = db.open().await;
    let subjects = setup(&store, scenario).await;
    ingest_usage(&store, &subjects, scenario).await;
    let (fakes, submitter, now) = marketplaces(faults, &store, timeout_ms).await;
    if let Some(faults) = tackle_faults {
        fakes.tackle().set_faults(faults);
    }
    play_hours(&store, &submitter, &fakes, &now, scenario, runs_per_hour).await;

    let ledger = fixtures::billed_by_ledger(&store).await;
    // Per hour: Google and AWS take both dimensions (requests as zero), Azure only what
    // is above zero; through Tackle only what is above zero (Tackle fills zeros).
    let per_hour =
        scenario.accounts_per_marketplace * (2 + 1 + 2) + scenario.tackle_per_marketplace * 3;
    assert_eq!(ledger.len(), per_hour * scenario.hours as usize);
    let routed = ledger.iter().filter(|b| b.1 == Route::Tackle).count();
    assert_eq!(
        routed,
        scenario.tackle_per_marketplace * 3 * scenario.hours as usize
    );
    let all = store
        .marketplace_records(&LedgerFilter::default())
        .await
        .unwrap();
    assert!(
        all.iter().all(|r| r.state == DeliveryState::Accepted),
        "a record is not accepted"
    );
    // What the marketplaces hold is exactly what the ledger says was accepted: no
    // record twice, none missing, every quantity as planned, each by its route (a
    // Tackle-routed hour in Tackle's fake only, a direct one in the cloud's only).
    assert_eq!(fixtures::billed_by_fakes(&fakes), ledger);
    // Tackle's POST, which creates duplicates, was never called.
    assert_eq!(fakes.tackle().counts().posts, 0);
    // Google's reports for a consumer and metric adjoin hour after hour.
    for i in 0..scenario.accounts_per_marketplace {
        let consumer = format!("project_number:{:012}", 100 + i);
        for metric in ["data_written", "requests"] {
            let full = format!("{}/{metric}", fixtures::GCP_SERVICE);
            assert!(
                fakes.gcp().continuity(&consumer, &full).is_empty(),
                "{consumer} {metric}"
            );
        }
    }
    let report = store
        .reconcile_marketplaces(hours(0), hours(scenario.hours))
        .await
        .unwrap();
    assert!(
        report.is_clean(),
        "{:?}",
        report
            .lines
            .iter()
            .filter(|l| l.finding.is_off())
            .collect::<Vec<_>>()
    );
    // Every record is counted clean, none listed; recomputing from every record and
    // every exchange comes to the same report.
    assert_eq!(report.records(), ledger.len() as i64);
    assert_eq!(report.count(Finding::Clean), ledger.len() as i64);
    assert!(report.lines.is_empty());
    let full = store
        .reconcile_marketplaces_by(
            hours(0),
            hours(scenario.hours),
            Method::EveryRecord,
            ChainWalk::Whole,
        )
        .await
        .unwrap();
    assert_eq!(full.summaries, report.summaries);
    // The submission job's runs left a checkpoint; the chain verifies from it.
    assert!(report.exchanges.checkpoint.is_some());
    // Every request and answer is evidence, and the chain holds.
    assert!(store.verify_marketplace_exchanges().await.unwrap().is_ok());
    (fakes, store)
}

/// Each fault at `p`, from seed 7.
fn faults(p: f64, hang_ms: u64) -> FaultConfig {
    FaultConfig {
        seed: 7,
        throttle: p,
        unavailable: p,
        timeout_after_apply: p,
        drop_before_apply: p,
        partial_batch: p,
        hang: Duration::from_millis(hang_ms),
    }
}

fn faults_seen(fakes: &FakeMarketplaces) -> u64 {
    let resent = fakes.gcp().counts().resends
        + fakes.aws().counts().idempotent_resends
        + fakes.azure().counts().duplicates
        + fakes.tackle().counts().conflicts;
    resent
        + fakes.aws().counts().faults
        + fakes.azure().counts().faults
        + fakes.gcp().counts().faults
        + fakes.tackle().counts().faults
}

both_backends!(
    every_hour_reaches_each_marketplace_once_and_reconciles,
    |db: TestDatabase| async move {
        let (fakes, store) = exactly_once(&db, SMALL, FaultConfig::default(), 700, 3, None).await;
        assert_eq!(faults_seen(&fakes), 0);

        // Azure's own listing agrees with the ledger, day by day...
        let config = config_for_fakes(&fakes, &FakeConfig::default());
        // Configured, Tackle adds a client per cloud beside the direct ones.
        let routes = Submitter::from_config(&config, "t".into())
            .unwrap()
            .routes();
        for route in [
            "gcp/direct",
            "azure/direct",
            "aws/direct",
            "gcp/tackle",
            "azure/tackle",
            "aws/tackle",
        ] {
            assert!(routes.iter().any(|r| r == route), "{routes:?}");
        }
        let azure = AzureClient::new(config.azure.as_ref().unwrap()).unwrap();
        let (from, to) = (hours(0), hours(SMALL.hours));
        let witness = purser_app::marketplace::azure_witness(&store, &azure, from, to)
            .await
            .unwrap();
        assert!(witness.is_empty(), "{witness:?}");
        // ...until Azure holds usage Purser never sent: over-reported, by its own word.
        let stray = purser_core::marketplace::UsageRecord {
            key: uuid::Uuid::new_v4(),
            account_id: "not-in-the-ledger".into(),
            dimension: "requests_k".into(),
            marketplace_dimension: "requests".into(),
            hour: hours(0),
            quantity: Decimal::from(5),
            whole_units: false,
            binding: fixtures::binding(Marketplace::Azure, 0),
        };
        let sent = azure.submit(std::slice::from_ref(&stray)).await;
        assert!(sent.outcomes[0].1.is_accepted(), "{:?}", sent.outcomes);
        let witness = purser_app::marketplace::azure_witness(&store, &azure, from, to)
            .await
            .unwrap();
        assert_eq!(witness.len(), 1, "{witness:?}");
        assert_eq!(
            witness[0].finding,
            purser_store::marketplace::Finding::OverReported
        );
        assert_eq!(
            (witness[0].ledger, witness[0].marketplace_says),
            (Decimal::ZERO, Decimal::from(5))
        );
        // Usage Azure holds for a subscription Purser does not bill directly (one
        // whose usage Tackle forwards, or another product's) is not Purser's to judge.
        let elsewhere = "0b5e1c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e";
        fakes
            .azure()
            .add_subscription(elsewhere, "private", &["requests"]);
        let mut foreign = stray.clone();
        foreign.key = uuid::Uuid::new_v4();
        foreign.binding = purser_core::marketplace::Binding::Azure {
            resource_id: elsewhere.into(),
            plan_id: "private".into(),
        };
        let sent = azure.submit(std::slice::from_ref(&foreign)).await;
        assert!(sent.outcomes[0].1.is_accepted(), "{:?}", sent.outcomes);
        let again = purser_app::marketplace::azure_witness(&store, &azure, from, to)
            .await
            .unwrap();
        assert_eq!(again, witness);
        // Overage only: the commitment is not billed again.
        let written: Decimal = fakes
            .aws()
            .records()
            .iter()
            .filter(|r| r.dimension == "data_written")
            .map(|r| r.quantity)
            .sum();
        assert!(written > Decimal::from(10), "{written}");
    }
);

both_backends!(
    faults_never_bill_an_hour_twice_nor_lose_one,
    |db: TestDatabase| async move {
        let (fakes, _store) = exactly_once(&db, SMALL, faults(0.1, 1500), 700, 12, None).await;
        // The faults did happen, and were answered by resending under the same keys.
        assert!(faults_seen(&fakes) > 0, "no fault was injected");
        assert!(fakes.tackle().counts().faults > 0, "no fault at Tackle");
    }
);

both_backends!(
    a_thousand_accounts_over_48_hours_with_faults_are_billed_exactly_once,
    |db: TestDatabase| async move {
        let scenario = Scenario {
            accounts_per_marketplace: 334,
            // The Tackle route is played by the smaller scenarios; this one measures
            // the direct clients' volume.
            tackle_per_marketplace: 0,
            hours: 48,
        };
        let (fakes, _store) = exactly_once(&db, scenario, faults(0.02, 400), 250, 12, None).await;
        assert!(faults_seen(&fakes) > 100, "{}", faults_seen(&fakes));
    }
);

both_backends!(
    answers_lost_after_tackle_forwarded_are_accepted_once_on_resend,
    |db: TestDatabase| async move {
        // Tackle only: answers held after the record was taken (and, without
        // scheduled_at, forwarded at once), dropped connections and throttling. Every
        // resend of a taken record is answered 409, which the ledger reads as ours
        // (the record is uncertain); nothing is billed twice or lost.
        let tackle = FaultConfig {
            seed: 11,
            timeout_after_apply: 0.3,
            drop_before_apply: 0.1,
            throttle: 0.1,
            hang: Duration::from_millis(600),
            ..FaultConfig::default()
        };
        let (fakes, store) =
            exactly_once(&db, SMALL, FaultConfig::default(), 300, 12, Some(tackle)).await;
        let counts = fakes.tackle().counts();
        assert!(
            counts.conflicts > 0,
            "no resend was answered 409: {counts:?}"
        );
        // Each 409 was read as accepted, none as a conflict.
        let conflicts = store
            .marketplace_records(&LedgerFilter {
                state: Some(DeliveryState::Conflict),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        assert!(conflicts.is_empty());
    }
);

both_backends!(
    an_hour_tackle_filled_with_its_own_zero_before_purser_sent_is_a_conflict,
    |db: TestDatabase| async move {
        let scenario = Scenario {
            accounts_per_marketplace: 1,
            tackle_per_marketplace: 1,
            hours: 1,
        };
        let store = db.open().await;
        let subjects = setup(&store, scenario).await;
        ingest_usage(&store, &subjects, scenario).await;
        let (fakes, submitter, now) = marketplaces(FaultConfig::default(), &store, 700).await;
        let at = hours(1) + SignedDuration::from_mins(16);
        set_now(&now, &fakes, at);
        store
            .close_due_hours(at, &MeteringSettings::default(), 100)
            .await
            .unwrap();
        // Purser is late: Tackle has already sent its zeros for hour 0.
        assert!(fakes.tackle().zero_fill(hours(0)) > 0);
        let report = submitter.run(&store).await.unwrap();
        // The three Tackle-routed records (one per cloud) are conflicts: final, alerted,
        // never resent; the direct ones are accepted.
        assert_eq!(report.conflicts, 3, "{}", report.summary());
        let conflicts = store
            .marketplace_records(&LedgerFilter {
                state: Some(DeliveryState::Conflict),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(conflicts.len(), 3);
        assert!(conflicts.iter().all(|r| r.route == Route::Tackle));
        let requests = fakes.tackle().counts().requests;
        set_now(&now, &fakes, at + SignedDuration::from_mins(10));
        submitter.run(&store).await.unwrap();
        assert_eq!(fakes.tackle().counts().requests, requests, "never resent");
        assert!(fakes.tackle().records().iter().all(|r| r.zero_fill));
        let reconciled = store
            .reconcile_marketplaces(hours(0), hours(1))
            .await
            .unwrap();
        assert_eq!(reconciled.count(Finding::Conflict), 3);
        assert!(!reconciled.is_clean());
    }
);
