//! The marketplace ledger on SQLite and PostgreSQL alike: planning closed hours into
//! records once, claiming them under leases, recording outcomes and exchanges,
//! expiring what missed its window (carrying only what certainly was not taken), and
//! reconciling a period.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_core::marketplace::{DeliveryState, RecordOutcome};
use purser_store::Store;
use purser_store::marketplace::{Finding, LedgerFilter};
use purser_store::metering::MeteringSettings;
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends};
use rust_decimal::Decimal;

fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn hours(n: i64) -> Timestamp {
    base_hour() + SignedDuration::from_hours(n)
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

const GIB: u64 = 1 << 30;

/// An AWS account whose private offer commits to a sliver of data written, so that
/// writes are overage, and sells capacity without a commitment.
async fn setup(store: &Store) -> String {
    let written = fixtures::gib_meter(
        "storage.written",
        "com.polaris.io",
        "bytes_written",
        "data_written_gib",
    );
    let offer = fixtures::private_offer(
        Marketplace::Aws,
        &[
            ("capacity_tib_hours", "CapacityTiBHours"),
            ("data_written_gib", "DataWrittenGiB"),
        ],
    );
    let offer = fixtures::define(store, &[written], offer).await;
    let customer = fixtures::Customer {
        external_id: "acme".into(),
        name: "Acme".into(),
        boundary: "standard",
        index: 0,
        around: base_hour(),
        committed: "0.000000001",
        committed_dimensions: &["data_written_gib"],
    };
    fixtures::customer(store, &offer, &customer).await
}

async fn write(store: &Store, id: &str, hour: i64, gib: u64) {
    let line = fixtures::written_event(
        id,
        "acme",
        hours(hour) + SignedDuration::from_mins(10),
        gib * GIB,
    );
    assert_eq!(fixtures::ingest(store, &[line]).await, 1);
}

both_backends!(
    closed_hours_are_planned_once_sent_under_leases_and_reconciled,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let account = setup(&store).await;
        write(&store, "w0", 0, 3).await;
        write(&store, "w1", 1, 5).await;
        write(&store, "w2", 2, 7).await;
        // Hours 0 to 2 close a quarter of an hour after hour 2's end.
        store
            .close_due_hours(
                hours(3) + SignedDuration::from_mins(16),
                &MeteringSettings::default(),
                1000,
            )
            .await
            .unwrap();

        let now = Timestamp::now();
        let plan = store.plan_marketplace_hours(now, 1000).await.unwrap();
        assert_eq!(plan.first_hour, Some(hours(0)));
        assert_eq!(plan.hours, 3, "{plan:?}");
        // AWS wants a record for every hour and dimension, zero when nothing is owed.
        assert_eq!(plan.records, plan.hours * 2);
        // Planning again plans nothing twice.
        let again = store.plan_marketplace_hours(now, 1000).await.unwrap();
        assert_eq!(again.records, 0);

        let first_hours = store
            .marketplace_records(&LedgerFilter {
                from: Some(hours(0)),
                to: Some(hours(3)),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        let quantity = |hour: i64, dimension: &str| {
            first_hours
                .iter()
                .find(|r| r.record.hour == hours(hour) && r.record.dimension == dimension)
                .map(|r| r.record.quantity)
                .unwrap()
        };
        // The commitment's sliver is not owed; AWS takes six digits, the rest is carried.
        assert_eq!(quantity(0, "data_written_gib"), dec("2.999999"));
        assert_eq!(quantity(0, "capacity_tib_hours"), Decimal::ZERO);
        // 5 GiB plus what hour 0 carried (0.000000999), cut to six digits.
        assert_eq!(quantity(1, "data_written_gib"), dec("5"));
        assert!(first_hours.iter().all(|r| r.state == DeliveryState::Due));
        assert!(first_hours.iter().all(|r| r.record.account_id == account));

        // Pretend it is half past hour 2 (hours 0 and 1 closed): claim under two owners.
        let sim = hours(2) + SignedDuration::from_mins(30);
        let lease = SignedDuration::from_secs(60);
        let a = store
            .claim_marketplace_records(Marketplace::Aws, "a", lease, sim, 2)
            .await
            .unwrap();
        let b = store
            .claim_marketplace_records(Marketplace::Aws, "b", lease, sim, 2)
            .await
            .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 2);
        assert!(
            a.iter()
                .all(|r| r.record.hour == hours(0) && r.state == DeliveryState::Sending)
        );
        assert!(b.iter().all(|r| r.record.hour == hours(1)));
        let written0 = a
            .iter()
            .find(|r| r.record.dimension == "data_written_gib")
            .unwrap();
        let capacity0 = a
            .iter()
            .find(|r| r.record.dimension == "capacity_tib_hours")
            .unwrap();

        // Written is taken; capacity's answer is lost (it may have been applied).
        let summary = store
            .record_marketplace_submission(
                sim,
                &[
                    (
                        written0.record.key,
                        RecordOutcome::Accepted {
                            marketplace_id: Some("mr-1".into()),
                        },
                    ),
                    (
                        capacity0.record.key,
                        RecordOutcome::Retry {
                            reason: "no answer within 30 s".into(),
                            may_have_applied: true,
                        },
                    ),
                ],
                vec![fixtures::exchange(vec![
                    written0.record.key,
                    capacity0.record.key,
                ])],
                None,
            )
            .await
            .unwrap();
        assert_eq!((summary.accepted, summary.retrying), (1, 1));
        // Not claimable before its retry delay; then sent again under the same key.
        let soon = store
            .claim_marketplace_records(Marketplace::Aws, "a", lease, sim, 10)
            .await
            .unwrap();
        assert!(soon.iter().all(|r| r.record.key != capacity0.record.key));
        let later = sim + SignedDuration::from_mins(10);
        let retried = store
            .claim_marketplace_records(Marketplace::Aws, "a", lease, later, 1)
            .await
            .unwrap();
        assert_eq!(retried[0].record.key, capacity0.record.key);
        assert!(retried[0].uncertain);
        assert_eq!(retried[0].attempts, 2);
        store
            .record_marketplace_submission(
                later,
                &[(
                    capacity0.record.key,
                    RecordOutcome::AlreadyAccepted {
                        marketplace_id: Some("mr-2".into()),
                    },
                )],
                vec![fixtures::exchange(vec![capacity0.record.key])],
                None,
            )
            .await
            .unwrap();
        // A late answer of another kind never moves an accepted record back.
        store
            .record_marketplace_submission(
                later,
                &[(
                    written0.record.key,
                    RecordOutcome::Refused {
                        code: "X".into(),
                        message: "late".into(),
                    },
                )],
                vec![],
                None,
            )
            .await
            .unwrap();

        // A day later: owner b never answered for hour 1 (uncertain: not carried);
        // hour 2 was never sent (carried where AWS allows).
        let day_later = hours(2) + SignedDuration::from_hours(25);
        let expired = store.expire_marketplace_records(day_later).await.unwrap();
        assert!(expired >= 4, "{expired}");
        let report = store
            .reconcile_marketplaces(hours(0), hours(3))
            .await
            .unwrap();
        let finding = |hour: i64, dimension: &str| {
            report
                .lines
                .iter()
                .find(|l| l.hour == hours(hour) && l.dimension == dimension)
                .map(|l| l.finding)
                .unwrap()
        };
        assert_eq!(finding(0, "data_written_gib"), Finding::Clean);
        assert_eq!(finding(0, "capacity_tib_hours"), Finding::Clean);
        assert_eq!(finding(1, "data_written_gib"), Finding::Missing);
        assert_eq!(finding(2, "data_written_gib"), Finding::Carried);
        assert!(!report.is_clean());
        assert!(report.chain_break.is_none());
        assert!(report.unplanned_hours.is_empty());

        // The exchanges that carried a record are its evidence, chained.
        let evidence = store
            .marketplace_exchanges_for(capacity0.record.key)
            .await
            .unwrap();
        assert_eq!(evidence.len(), 2);
        assert_eq!(evidence[1].prev_hash, evidence[0].hash);
        assert!(store.verify_marketplace_exchanges().await.unwrap().is_ok());
        let accepted = store
            .marketplace_records(&LedgerFilter {
                state: Some(DeliveryState::Accepted),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(accepted.len(), 2);
        assert_eq!(
            accepted
                .iter()
                .find(|r| r.record.key == capacity0.record.key)
                .and_then(|r| r.marketplace_id.clone()),
            Some("mr-2".into())
        );
    }
);

both_backends!(
    a_conflicting_duplicate_is_an_alert_and_never_resent,
    |db: TestDatabase| async move {
        let store = db.open().await;
        setup(&store).await;
        write(&store, "w0", 0, 3).await;
        store
            .close_due_hours(
                hours(1) + SignedDuration::from_mins(16),
                &MeteringSettings::default(),
                1000,
            )
            .await
            .unwrap();
        store
            .plan_marketplace_hours(Timestamp::now(), 1000)
            .await
            .unwrap();
        let sim = hours(1);
        let lease = SignedDuration::from_secs(60);
        let claimed = store
            .claim_marketplace_records(Marketplace::Aws, "a", lease, sim, 1)
            .await
            .unwrap();
        let key = claimed[0].record.key;
        store
            .record_marketplace_submission(
                sim,
                &[(
                    key,
                    RecordOutcome::Conflict {
                        accepted_quantity: Some(dec("9")),
                        message: "DuplicateRecord".into(),
                    },
                )],
                vec![fixtures::exchange(vec![key])],
                None,
            )
            .await
            .unwrap();
        let again = store
            .claim_marketplace_records(
                Marketplace::Aws,
                "a",
                lease,
                sim + SignedDuration::from_hours(1),
                100,
            )
            .await
            .unwrap();
        assert!(again.iter().all(|r| r.record.key != key));
        let report = store
            .reconcile_marketplaces(hours(0), hours(1))
            .await
            .unwrap();
        let line = report
            .lines
            .iter()
            .find(|l| l.finding == Finding::Conflict)
            .unwrap();
        assert_eq!(line.accepted, dec("9"));
        assert!(!report.is_clean());
    }
);

both_backends!(
    the_first_planning_reaches_back_a_day_and_later_ones_miss_no_hour,
    |db: TestDatabase| async move {
        let store = db.open().await;
        setup(&store).await;
        // Usage three days ago, closed long before marketplace billing was planned.
        write(&store, "w0", 0, 3).await;
        let closed = store
            .close_due_hours(Timestamp::now(), &MeteringSettings::default(), 1000)
            .await
            .unwrap();
        let last = closed.last().unwrap().hour;
        let plan = store
            .plan_marketplace_hours(Timestamp::now(), 1000)
            .await
            .unwrap();
        // Only the last day of closed hours is planned: the old usage is not carried in.
        assert_eq!(plan.first_hour, Some(last - SignedDuration::from_hours(23)));
        assert_eq!(plan.hours, 24);
        let old = store
            .marketplace_records(&LedgerFilter {
                to: Some(hours(1)),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        assert!(old.is_empty());
        assert!(
            store
                .marketplace_records(&LedgerFilter::default())
                .await
                .unwrap()
                .iter()
                .all(|r| r.record.quantity.is_zero() && r.carried_in.is_zero())
        );
    }
);
