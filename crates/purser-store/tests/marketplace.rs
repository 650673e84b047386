//! The marketplace ledger on SQLite and PostgreSQL alike: planning closed hours into
//! records once, claiming them under leases, recording outcomes and exchanges,
//! expiring what missed its window (carrying only what certainly was not taken), and
//! reconciling a period.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::marketplace::{DeliveryState, RecordOutcome, Route};
use purser_core::{AccountScope, Marketplace, Role};
use purser_store::marketplace::{Finding, LedgerFilter};
use purser_store::metering::MeteringSettings;
use purser_store::{Dialect, Store};
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends, scope};
use rust_decimal::Decimal;

fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn hours(n: i64) -> Timestamp {
    base_hour() + SignedDuration::from_hours(n)
}

fn admin() -> AccountScope {
    scope("root", &[Role::Admin], &["us-gov"], Some("US"))
}

/// Not cleared for us-gov.
fn finance() -> AccountScope {
    scope("fin", &[Role::Finance], &[], Some("US"))
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
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "a", lease, sim, 2)
            .await
            .unwrap();
        let b = store
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "b", lease, sim, 2)
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
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "a", lease, sim, 10)
            .await
            .unwrap();
        assert!(soon.iter().all(|r| r.record.key != capacity0.record.key));
        let later = sim + SignedDuration::from_mins(10);
        let retried = store
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "a", lease, later, 1)
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
        // Clean lines are counted; every other one is listed.
        let finding = |hour: i64, dimension: &str| {
            report
                .lines
                .iter()
                .find(|l| l.hour == hours(hour) && l.dimension == dimension)
                .map(|l| l.finding)
        };
        assert_eq!(finding(0, "data_written_gib"), None);
        assert_eq!(finding(0, "capacity_tib_hours"), None);
        assert_eq!(finding(1, "data_written_gib"), Some(Finding::Missing));
        assert_eq!(finding(2, "data_written_gib"), Some(Finding::Carried));
        // Hour 0's two, and hours 1 and 2's zero records that expired owing nothing.
        assert_eq!(report.count(Finding::Clean), 4);
        assert_eq!(report.records(), 6);
        assert_eq!(report.lines.len(), 2);
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
        fixtures::close_and_plan(&store, hours(1)).await;
        let sim = hours(1);
        let lease = SignedDuration::from_secs(60);
        let claimed = store
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "a", lease, sim, 1)
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
                Route::Direct,
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

/// The start of the first UTC day after `t`.
fn next_midnight(t: Timestamp) -> Timestamp {
    let day = 86_400_000_000i64;
    let micros = t.as_microsecond();
    Timestamp::from_microsecond(micros - micros.rem_euclid(day) + day).unwrap()
}

/// Plans, sends and expires 50 hours of a standard and a us-gov AWS account through
/// the real paths, so that the ledger holds every finding (accepted, already
/// accepted, refused then accepted, refused, conflicting, missing, carried, zero
/// records expired, pending), across UTC days.
async fn ledger_with_every_finding(store: &Store) -> (String, String) {
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
    let mut ids = Vec::new();
    for (index, (external_id, boundary)) in [("acme", "standard"), ("agency", "us-gov")]
        .into_iter()
        .enumerate()
    {
        let customer = fixtures::Customer {
            external_id: external_id.into(),
            name: external_id.into(),
            boundary,
            index,
            around: base_hour(),
            committed: "0.000000001",
            committed_dimensions: &["data_written_gib"],
        };
        ids.push(fixtures::customer(store, &offer, &customer).await);
    }
    let mut lines = Vec::new();
    for hour in 0..50 {
        for (subject, gib) in [("acme", 3 + hour as u64 % 4), ("agency", 1)] {
            lines.push(fixtures::written_event(
                &format!("{subject}-{hour}"),
                subject,
                hours(hour) + SignedDuration::from_mins(10),
                gib * GIB,
            ));
        }
    }
    assert_eq!(fixtures::ingest(store, &lines).await, lines.len());
    // The first planning reaches back a day only: plan the first hours, then the rest.
    for through in [3, 50] {
        fixtures::close_and_plan(store, hours(through)).await;
    }
    let records = store
        .marketplace_records(&LedgerFilter::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 50 * 2 * 2);

    // Answers, as a marketplace would give them, in two submissions.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for r in &records {
        let hour = r.record.hour.duration_since(base_hour()).as_hours();
        let written = r.record.dimension == "data_written_gib";
        let accepted = RecordOutcome::Accepted {
            marketplace_id: Some(format!("mr-{}", r.record.key)),
        };
        let refused = RecordOutcome::Refused {
            code: "CustomerNotEntitledException".into(),
            message: "not entitled".into(),
        };
        let outcome = match (hour % 10, written) {
            (3, true) if hour == 13 => {
                // Refused, then taken after all: a refused record becomes accepted.
                second.push((r.record.key, accepted.clone()));
                refused
            }
            (3, true) => refused,
            (4, _) => RecordOutcome::AlreadyAccepted {
                marketplace_id: None,
            },
            (5, true) => RecordOutcome::Conflict {
                accepted_quantity: Some(dec("9")),
                message: "DuplicateRecord".into(),
            },
            // The answer was lost: never carried, missing once its window closes.
            (7, _) => RecordOutcome::Retry {
                reason: "timeout".into(),
                may_have_applied: true,
            },
            // Never sent: carried once its window closes (a zero owes nothing).
            (8, _) => continue,
            _ => accepted,
        };
        first.push((r.record.key, outcome));
    }
    let sim = hours(50) + SignedDuration::from_mins(30);
    for outcomes in [first, second] {
        let keys = outcomes.iter().map(|(k, _)| *k).take(3).collect();
        store
            .record_marketplace_submission(sim, &outcomes, vec![fixtures::exchange(keys)], None)
            .await
            .unwrap();
    }
    // Hours up to 20 missed their window; later ones are still pending.
    store
        .expire_marketplace_records(hours(45) + SignedDuration::from_mins(30))
        .await
        .unwrap();
    (ids[0].clone(), ids[1].clone())
}

both_backends!(
    the_rollup_reconciles_exactly_as_every_record_does,
    |db: TestDatabase| async move {
        use purser_store::marketplace_rollup::{ChainWalk, Method};
        let store = db.open().await;
        ledger_with_every_finding(&store).await;
        let midnight = next_midnight(hours(0));
        let day = SignedDuration::from_hours(24);
        let periods = [
            (hours(0), hours(50)),
            (midnight, midnight + day),
            (midnight, hours(50)),
            (
                midnight - SignedDuration::from_hours(1),
                midnight + day + SignedDuration::from_hours(3),
            ),
            (hours(2), hours(5)),
            (hours(0) - day, hours(50) + day),
            (hours(7), hours(7)),
        ];
        let reports = |store: Store| async move {
            let mut all = Vec::new();
            for (from, to) in periods {
                let mut pair = Vec::new();
                for method in [Method::RollUp, Method::EveryRecord] {
                    pair.push((
                        store
                            .reconcile_marketplaces_by(from, to, method, ChainWalk::Whole)
                            .await
                            .unwrap(),
                        store
                            .marketplace_reconciliation_by(&admin(), from, to, method)
                            .await
                            .unwrap(),
                        store
                            .marketplace_reconciliation_by(&finance(), from, to, method)
                            .await
                            .unwrap(),
                    ));
                }
                all.push(pair);
            }
            all
        };
        let all = reports(store.clone()).await;
        for ((from, to), pair) in periods.iter().zip(&all) {
            assert_eq!(pair[0], pair[1], "{from} to {to}");
        }

        // The whole ledger's period holds every finding, and the scopes differ.
        let (whole, admin_view, finance_view) = &all[0][0];
        for finding in [
            Finding::Clean,
            Finding::Pending,
            Finding::Carried,
            Finding::Missing,
            Finding::Refused,
            Finding::Conflict,
        ] {
            assert!(
                whole.count(finding) > 0,
                "{finding:?}: {:?}",
                whole.summaries
            );
        }
        assert_eq!(whole.records(), 200);
        assert!(!whole.is_clean());
        assert_eq!(admin_view.summaries, whole.summaries);
        assert!(finance_view.summaries[0].records < whole.records());
        assert!(!finance_view.off.is_empty());
        // The conflicting records hold what the marketplace says it accepted.
        assert!(
            whole
                .lines
                .iter()
                .filter(|l| l.finding == Finding::Conflict)
                .all(|l| l.accepted == dec("9"))
        );
        // A day the roll-up answers for alone: what its rows say was accepted.
        let rollup = store.marketplace_accepted_days().await.unwrap();
        let (on_day, _, _) = &all[1][0];
        let accepted_that_day: Decimal = rollup
            .iter()
            .filter(|r| r.day == midnight)
            .map(|r| r.quantity)
            .sum();
        let conflicts_that_day: Decimal = on_day
            .lines
            .iter()
            .filter(|l| l.finding == Finding::Conflict)
            .map(|l| l.accepted)
            .sum();
        assert_eq!(
            on_day.summaries[0].accepted,
            accepted_that_day + conflicts_that_day
        );

        // Rebuilding the roll-up (migration 8's backfill) finds what the write paths
        // kept.
        store.rebuild_marketplace_rollup().await.unwrap();
        assert_eq!(store.marketplace_accepted_days().await.unwrap(), rollup);

        // A database that had the ledger before migration 8 (and so before 9 to 11):
        // upgrading fills the roll-up from the records, and reconciles the same; every
        // record it held went directly (migration 9's default).
        let before_11 = match store.db().dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => {
                "DROP INDEX marketplace_records_by_hour_account; \
                 CREATE INDEX marketplace_records_by_hour ON marketplace_records (hour, marketplace);"
            }
        };
        let mut tx = store.db().begin().await.unwrap();
        tx.batch(&format!(
            "{before_11} DROP TABLE marketplace_accepted_days; DROP INDEX marketplace_records_unaccepted; \
             DROP TABLE marketplace_exchange_checkpoints; ALTER TABLE marketplace_records DROP COLUMN route; \
             DROP INDEX dimension_hours_by_hour; DROP INDEX dimension_hours_adjusted; \
             DELETE FROM schema_migrations WHERE version >= 8;",
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
        drop(store);
        let store = db.open().await;
        assert_eq!(store.marketplace_accepted_days().await.unwrap(), rollup);
        let records = store
            .marketplace_records(&LedgerFilter::default())
            .await
            .unwrap();
        assert!(!records.is_empty());
        assert!(records.iter().all(|r| r.route == Route::Direct));
        assert_eq!(reports(store).await, all);
    }
);

both_backends!(
    reconciliation_verifies_the_chain_from_its_latest_checkpoint,
    |db: TestDatabase| async move {
        use purser_store::marketplace_rollup::ChainWalk;
        let store = db.open().await;
        ledger_with_every_finding(&store).await;
        let now = hours(51);
        // No checkpoint yet: the whole chain is walked.
        let whole = store
            .check_marketplace_exchanges(ChainWalk::FromCheckpoint)
            .await
            .unwrap();
        assert_eq!(
            (whole.head, whole.walked_from, whole.checkpoint),
            (2, 1, None)
        );
        let made = store.checkpoint_marketplace_exchanges(now).await.unwrap();
        assert!(made.verifies());
        // Two more exchanges: the walk starts at the checkpoint's own exchange.
        for _ in 0..2 {
            store
                .record_marketplace_submission(now, &[], vec![fixtures::exchange(vec![])], None)
                .await
                .unwrap();
        }
        let report = store
            .reconcile_marketplaces(hours(0), hours(50))
            .await
            .unwrap();
        assert_eq!(report.exchanges.head, 4);
        assert_eq!(report.exchanges.checkpoint, Some(2));
        assert_eq!(report.exchanges.walked_from, 2);
        assert_eq!(report.exchanges.checkpoint_verified_at, Some(now));
        assert!(report.chain_break.is_none());

        // A checkpoint that no longer matches its exchange is a break, whatever the
        // whole walk says.
        let mut tx = store.db().begin().await.unwrap();
        tx.execute(
            "UPDATE marketplace_exchange_checkpoints SET hash = $1 WHERE seq = 2",
            &["0".repeat(64).into()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let broken = store
            .reconcile_marketplaces(hours(0), hours(50))
            .await
            .unwrap();
        assert!(broken.chain_break.is_some(), "{:?}", broken.exchanges);
        assert!(!broken.is_clean());
        assert!(
            store
                .check_marketplace_exchanges(ChainWalk::Whole)
                .await
                .unwrap()
                .verifies()
        );
        // And the job's next checkpoint is refused until someone looks.
        assert!(
            !store
                .checkpoint_marketplace_exchanges(now)
                .await
                .unwrap()
                .verifies()
        );
    }
);

both_backends!(
    tackle_routed_records_are_planned_claimed_and_settled_on_their_own_route,
    |db: TestDatabase| async move {
        let store = db.open().await;
        // One AWS account reported directly (acme) and one routed through Tackle.
        let direct = setup(&store).await;
        let offer = store
            .offers()
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.marketplace == Marketplace::Aws)
            .unwrap();
        let spec = fixtures::Customer {
            external_id: "routed".into(),
            name: "Routed".into(),
            boundary: "standard",
            index: 1,
            around: base_hour(),
            committed: "0.000000001",
            committed_dimensions: &["data_written_gib"],
        };
        let routed = fixtures::customer_bound(
            &store,
            &offer,
            &spec,
            fixtures::tackle_binding(Marketplace::Aws, 1),
        )
        .await;
        write(&store, "w0", 0, 3).await;
        for hour in 0..2 {
            let line = fixtures::written_event(
                &format!("r{hour}"),
                "routed",
                hours(hour) + SignedDuration::from_mins(10),
                2 * GIB,
            );
            assert_eq!(fixtures::ingest(&store, &[line]).await, 1);
        }
        fixtures::close_and_plan(&store, hours(2)).await;
        let all = store
            .marketplace_records(&LedgerFilter::default())
            .await
            .unwrap();
        let of = |account: &str| -> Vec<_> {
            all.iter()
                .filter(|r| r.record.account_id == account)
                .collect()
        };
        // Direct AWS gets zeros for quiet dimensions; through Tackle no zero is
        // planned (Tackle fills them itself): only the written GiB, each hour.
        assert_eq!(of(&direct).len(), 4);
        assert!(of(&direct).iter().all(|r| r.route == Route::Direct));
        let routed_records = of(&routed);
        assert_eq!(routed_records.len(), 2, "{routed_records:?}");
        assert!(routed_records.iter().all(|r| r.route == Route::Tackle
            && r.marketplace == Marketplace::Aws
            && r.record.dimension == "data_written_gib"
            && r.record.quantity > Decimal::ZERO));
        // The cloud's window still binds: AWS's 24 hours.
        assert_eq!(
            routed_records[0].deadline,
            routed_records[0].record.hour + SignedDuration::from_hours(24)
        );

        // Each route claims only its own records.
        let sim = hours(2) + SignedDuration::from_mins(30);
        let lease = SignedDuration::from_secs(60);
        let direct_claim = store
            .claim_marketplace_records(Marketplace::Aws, Route::Direct, "d", lease, sim, 100)
            .await
            .unwrap();
        assert_eq!(direct_claim.len(), 4);
        assert!(direct_claim.iter().all(|r| r.record.account_id == direct));
        let tackle_claim = store
            .claim_marketplace_records(Marketplace::Aws, Route::Tackle, "t", lease, sim, 100)
            .await
            .unwrap();
        assert_eq!(tackle_claim.len(), 2);
        assert!(tackle_claim.iter().all(|r| r.record.account_id == routed));
        let (first, second) = (tackle_claim[0].record.key, tackle_claim[1].record.key);

        // Hour 0: a first attempt answered 409 (Tackle forwarded its own zero for the
        // hour): a conflict. Hour 1: the answer is lost.
        let forwarded = || RecordOutcome::AlreadyForwarded {
            message: "already forwarded".into(),
        };
        let summary = store
            .record_marketplace_submission(
                sim,
                &[
                    (first, forwarded()),
                    (
                        second,
                        RecordOutcome::Retry {
                            reason: "timed out".into(),
                            may_have_applied: true,
                        },
                    ),
                ],
                vec![fixtures::exchange(vec![first, second])],
                None,
            )
            .await
            .unwrap();
        assert_eq!((summary.conflicts, summary.retrying), (1, 1));
        // Resent later, hour 1 is answered 409: our lost PUT was forwarded: accepted.
        let later = sim + SignedDuration::from_mins(10);
        let resent = store
            .claim_marketplace_records(Marketplace::Aws, Route::Tackle, "t", lease, later, 100)
            .await
            .unwrap();
        assert_eq!(
            resent.iter().map(|r| r.record.key).collect::<Vec<_>>(),
            vec![second],
            "a conflict is never resent"
        );
        assert!(resent[0].uncertain);
        let summary = store
            .record_marketplace_submission(
                later,
                &[(second, forwarded())],
                vec![fixtures::exchange(vec![second])],
                None,
            )
            .await
            .unwrap();
        assert_eq!((summary.accepted, summary.conflicts), (1, 0));
        let now_held = store
            .marketplace_records(&LedgerFilter::default())
            .await
            .unwrap();
        let state = |key| {
            now_held
                .iter()
                .find(|r| r.record.key == key)
                .map(|r| r.state)
                .unwrap()
        };
        assert_eq!(state(first), DeliveryState::Conflict);
        assert_eq!(state(second), DeliveryState::Accepted);
        // Reconciliation shows the conflict, and the roll-up counts the acceptance.
        let report = store
            .reconcile_marketplaces(hours(0), hours(2))
            .await
            .unwrap();
        assert_eq!(report.count(Finding::Conflict), 1);
        assert!(!report.is_clean());
    }
);
