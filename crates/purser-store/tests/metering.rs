//! Metering in storage, on SQLite and PostgreSQL alike: ingest with deduplication and
//! the quarantine, closing hours with rating and chained evidence, late adjustments,
//! verification that names tampering, traces and usage queries.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::account::{AccountDraft, Owners};
use purser_core::audit::Actor;
use purser_core::commercial::{
    CommitmentDraft, EntitlementDraft, Offer, OfferDimensionDraft, OfferDraft,
};
use purser_core::events::Framing;
use purser_core::meter::{Meter, MeterDraft};
use purser_core::{AccountScope, BoundaryRule, Role};
use purser_store::db::Value;
use purser_store::metering::{
    Granularity, IngestReport, MeteringSettings, UsageOf, UsageRow, prepare_batch,
};
use purser_store::{AuditFilter, PageRequest, Store};
use purser_testkit::{TestDatabase, both_backends, scope};

/// The hour the tests' usage starts: three days before now, so that every hour of it
/// can close.
fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn at(minutes: i64) -> Timestamp {
    base_hour() + SignedDuration::from_mins(minutes)
}

fn admin() -> AccountScope {
    scope(
        "root",
        &[Role::Admin],
        &["us-gov", "sg-gov", "eu-sovereign"],
        Some("US"),
    )
}

async fn account(store: &Store, external_id: &str, boundary: &str) -> purser_core::Account {
    let boundaries: Vec<_> = BoundaryRule::built_in()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let fields = AccountDraft {
        name: format!("Account {external_id}"),
        external_id: external_id.into(),
        marketplace: "gcp".into(),
        marketplace_account_id: Some(format!("E-{external_id}")),
        crm_account_id: None,
        boundary: Some(boundary.into()),
        region: "us-central1".into(),
        owners: Owners::default(),
        status: Some("active".into()),
    }
    .validate(&boundaries)
    .unwrap();
    store.create_account(&admin(), fields).await.unwrap()
}

fn meters() -> Vec<Meter> {
    let capacity = MeterDraft {
        name: "storage.capacity".into(),
        event_type: "com.polaris.capacity".into(),
        value_path: Some("$.bytes_used".into()),
        aggregation: "time_weighted_avg".into(),
        unit: "bytes".into(),
        group_by: Some("$.cluster".into()),
        dimension: Some("capacity_tib_hours".into()),
        conversion: Some("bytes_to_tib".into()),
        factor: None,
    };
    let written = MeterDraft {
        name: "storage.written".into(),
        event_type: "com.polaris.io".into(),
        value_path: Some("$.bytes_written".into()),
        aggregation: "sum".into(),
        unit: "bytes".into(),
        group_by: None,
        dimension: Some("data_written_gib".into()),
        conversion: Some("bytes_to_gib".into()),
        factor: None,
    };
    vec![capacity.validate().unwrap(), written.validate().unwrap()]
}

fn offer() -> Offer {
    let dimension = |key: &str, unit: &str| OfferDimensionDraft {
        key: key.into(),
        marketplace_name: None,
        unit: unit.into(),
        reporting: None,
        settle: None,
    };
    OfferDraft {
        name: "Private".into(),
        kind: "private".into(),
        marketplace: "gcp".into(),
        currency: None,
        dimensions: vec![
            dimension("capacity_tib_hours", "TiB-hour"),
            dimension("data_written_gib", "GiB"),
        ],
        pricing: None,
    }
    .validate("offer-1".into())
    .unwrap()
}

async fn setup(store: &Store) -> (purser_core::Account, purser_core::Account) {
    let open = account(store, "acme", "standard").await;
    let gov = account(store, "agency", "us-gov").await;
    let actor = Actor::new("user:root", None);
    for meter in meters() {
        store.create_meter(&actor, &meter).await.unwrap();
    }
    let offer = store.create_offer(&actor, offer()).await.unwrap();
    let start = base_hour() - SignedDuration::from_hours(24 * 40);
    let entitlement = EntitlementDraft {
        offer_id: offer.id.clone(),
        start: start.to_string(),
        end: (start + SignedDuration::from_hours(24 * 400)).to_string(),
        status: Some("active".into()),
        commitments: std::collections::BTreeMap::from([(
            "data_written_gib".into(),
            CommitmentDraft {
                // Small enough that the test's writes go beyond it.
                committed_per_period: "0.000000001".into(),
                overage_threshold: None,
                overage_price: "0.5".into(),
                overage_reporting: None,
                committed_fee: None,
            },
        )]),
        marketplace_binding: None,
    }
    .validate("ent-1".into(), open.id.0.clone(), &offer)
    .unwrap();
    store
        .create_entitlement(&admin(), entitlement)
        .await
        .unwrap();
    (open, gov)
}

fn capacity(id: &str, subject: &str, minutes: i64, cluster: &str, bytes: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"//polaris/{cluster}","type":"com.polaris.capacity","subject":"{subject}","time":"{}","data":{{"bytes_used":{bytes},"cluster":"{cluster}"}}}}"#,
        at(minutes)
    )
}

fn written(id: &str, subject: &str, minutes: i64, bytes: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"//polaris/io","type":"com.polaris.io","subject":"{subject}","time":"{}","data":{{"bytes_written":{bytes}}}}}"#,
        at(minutes)
    )
}

const TIB: u64 = 1 << 40;
const GIB: u64 = 1 << 30;

async fn ingest(store: &Store, scope: &AccountScope, lines: &[String]) -> IngestReport {
    let body = lines.join("\n");
    let batch = prepare_batch(
        body.as_bytes(),
        Framing::Ndjson,
        &store.meters().await.unwrap(),
        Timestamp::now(),
        &MeteringSettings::default(),
    )
    .unwrap();
    store.ingest(scope, "api", batch).await.unwrap()
}

/// An account's billed dimensions, hour by hour, from the base hour until `to`.
async fn dimensions_until(store: &Store, account_id: &str, to: Timestamp) -> Vec<UsageRow> {
    store
        .usage(
            &admin(),
            account_id,
            base_hour(),
            to,
            UsageOf::Dimensions,
            Granularity::Hour,
        )
        .await
        .unwrap()
}

/// An account's billed dimensions, hour by hour, over the base hour and the next.
async fn first_two_hours(store: &Store, account_id: &str) -> Vec<UsageRow> {
    dimensions_until(store, account_id, at(120)).await
}

/// Recomputes every closed hour from the base hour until `to`: nothing differs.
async fn assert_verifies(store: &Store, to: Timestamp) {
    let report = store.verify_metering(at(0), to).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

fn quantity_in(usage: &[UsageRow], name: &str, hour: Timestamp) -> Option<String> {
    usage
        .iter()
        .find(|r| r.name == name && r.start == hour)
        .map(|r| r.quantity.clone())
}

fn settings() -> MeteringSettings {
    MeteringSettings::default()
}

both_backends!(
    events_are_kept_once_and_hours_close_rated_with_evidence,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let (open, _gov) = setup(&store).await;
        let polaris = admin();
        let batch = vec![
            capacity("c1", "acme", 0, "east", 2 * TIB),
            capacity("c2", "acme", 30, "east", 4 * TIB),
            capacity("c3", "acme", 0, "west", TIB),
            written("w1", "acme", 10, 3 * GIB),
            written("w2", "acme", 70, 5 * GIB),
            // Unknown account and unknown type: quarantined, not dropped.
            written("w3", "nobody", 10, GIB),
            r#"{"specversion":"1.0","id":"x1","source":"//polaris/io","type":"com.polaris.other","subject":"acme","time":"TIME","data":{}}"#
                .replace("TIME", &at(5).to_string()),
            // A negative quantity is refused with its index and field.
            written("w4", "acme", 10, 0).replace("\"bytes_written\":0", "\"bytes_written\":-5"),
            // The same event twice in one batch counts once.
            written("w1", "acme", 10, 3 * GIB),
        ];
        let report = ingest(&store, &polaris, &batch).await;
        assert_eq!(
            (
                report.events,
                report.accepted,
                report.quarantined,
                report.rejected,
                report.duplicate
            ),
            (9, 5, 2, 1, 1),
            "{report:?}"
        );
        assert_eq!(report.rejections[0].index, 7);
        assert_eq!(report.rejections[0].field.as_deref(), Some("data"));
        assert!(report.rejections[0].reason.contains("never negative"));
        assert!(report.batch_id.is_some());

        // Resending the batch changes nothing.
        let again = ingest(&store, &polaris, &batch).await;
        assert_eq!(
            (
                again.accepted,
                again.quarantined,
                again.duplicate,
                again.rejected
            ),
            (0, 0, 8, 1)
        );
        assert_eq!(again.batch_id, None);

        // Close everything due: the base hour and the next, and later empty hours.
        let closed = store
            .close_due_hours(Timestamp::now(), &settings(), 1000)
            .await
            .unwrap();
        assert!(closed.len() >= 70, "closed {}", closed.len());
        assert_eq!(closed[0].hour, base_hour());
        assert_eq!((closed[0].accounts, closed[0].events), (1, 4));
        assert_eq!((closed[1].accounts, closed[1].events), (1, 1));
        // Closing again closes nothing more.
        assert!(
            store
                .close_due_hours(Timestamp::now(), &settings(), 1000)
                .await
                .unwrap()
                .is_empty()
        );

        // Time-weighted capacity: east holds 2 TiB for 30 min then 4 TiB; west 1 TiB.
        let usage = first_two_hours(&store, &open.id.0).await;
        let quantity = |name: &str, hour: Timestamp| quantity_in(&usage, name, hour);
        assert_eq!(quantity("capacity_tib_hours", at(0)).as_deref(), Some("4"));
        assert_eq!(quantity("data_written_gib", at(0)).as_deref(), Some("3"));
        assert_eq!(quantity("data_written_gib", at(60)).as_deref(), Some("5"));
        // Beyond a tiny commitment, the writes are overage at 0.5 a GiB.
        let written_hour = usage
            .iter()
            .find(|r| r.name == "data_written_gib" && r.start == at(60))
            .unwrap();
        assert_eq!(written_hour.overage_quantity.as_deref(), Some("5"));
        assert_eq!(written_hour.overage_amount.as_deref(), Some("2.5"));
        let daily = store
            .usage(
                &admin(),
                &open.id.0,
                base_hour(),
                at(120),
                UsageOf::Dimensions,
                Granularity::Day,
            )
            .await
            .unwrap();
        let written_days: Vec<_> = daily
            .iter()
            .filter(|r| r.name == "data_written_gib")
            .collect();
        let total: rust_decimal::Decimal = written_days
            .iter()
            .map(|r| r.quantity.parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        assert_eq!(total, rust_decimal::Decimal::from(8));

        // One dimension or meter only; a name nothing defines is refused, not empty.
        let named = |of, name: &'static str| {
            let store = &store;
            let account = open.id.0.clone();
            async move {
                store
                    .usage_named(
                        &admin(),
                        &account,
                        base_hour(),
                        at(120),
                        of,
                        Granularity::Hour,
                        Some(name),
                    )
                    .await
            }
        };
        let written_only = named(UsageOf::Dimensions, "data_written_gib")
            .await
            .unwrap();
        assert_eq!(written_only.len(), 2);
        assert!(written_only.iter().all(|r| r.name == "data_written_gib"));
        let capacity_meter = named(UsageOf::Meters, "storage.capacity").await.unwrap();
        assert!(!capacity_meter.is_empty());
        assert!(capacity_meter.iter().all(|r| r.name == "storage.capacity"));
        for (of, name) in [
            (UsageOf::Dimensions, "storage.capacity"),
            (UsageOf::Meters, "data_written_gib"),
            (UsageOf::Meters, "nope"),
        ] {
            match named(of, name).await {
                Err(purser_store::StoreError::Invalid(errors)) => {
                    assert_eq!(errors.errors[0].field, "name");
                    assert!(errors.errors[0].reason.contains(name), "{errors:?}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }

        // A late event for the closed base hour is kept and booked into the next
        // open hour, without touching the closed one.
        let late = ingest(&store, &polaris, &[written("w5", "acme", 20, 7 * GIB)]).await;
        assert_eq!((late.accepted, late.late), (1, 1));
        let closed_through = store.closed_through().await.unwrap().unwrap();
        let next = store
            .close_due_hours(
                Timestamp::now() + SignedDuration::from_hours(2),
                &settings(),
                1,
            )
            .await
            .unwrap();
        assert_eq!(next[0].hour, closed_through + SignedDuration::from_hours(1));
        assert_eq!(next[0].late, 1);
        let adjusted = store
            .usage(
                &admin(),
                &open.id.0,
                next[0].hour,
                next[0].hour + SignedDuration::from_hours(1),
                UsageOf::Dimensions,
                Granularity::Hour,
            )
            .await
            .unwrap();
        assert_eq!(adjusted[0].name, "data_written_gib");
        assert_eq!(adjusted[0].quantity, "7");
        let base = store
            .usage(
                &admin(),
                &open.id.0,
                at(0),
                at(60),
                UsageOf::Dimensions,
                Granularity::Hour,
            )
            .await
            .unwrap();
        assert_eq!(
            base.iter()
                .find(|r| r.name == "data_written_gib")
                .unwrap()
                .quantity,
            "3",
            "a closed hour never changes"
        );

        // The trace of the base hour names its events and matches its evidence.
        let trace = store.hour_trace(&admin(), &open.id.0, at(0)).await.unwrap();
        assert_eq!(trace.evidence.n_events, 4);
        let keys: std::collections::BTreeSet<_> =
            trace.events.iter().map(|e| e.event_key.clone()).collect();
        assert_eq!(keys.len(), 4);
        let late_trace = store
            .hour_trace(&admin(), &open.id.0, next[0].hour)
            .await
            .unwrap();
        assert_eq!(late_trace.events.len(), 1);
        assert_eq!(late_trace.events[0].late_from, Some(at(0)));

        // Everything verifies.
        let verified = store
            .verify_metering(at(0), Timestamp::now() + SignedDuration::from_hours(3))
            .await
            .unwrap();
        assert!(verified.findings.is_empty(), "{:?}", verified.findings);
        assert!(
            verified.hours >= 70 && verified.batches == 2,
            "{verified:?}"
        );
    }
);

both_backends!(
    a_key_sent_twice_in_one_batch_keeps_the_first_sent,
    |db: TestDatabase| async move {
        // The store decides a batch in key order; the first event sent under a key
        // must still be the one kept, whatever its data or hour, and an event for an
        // account nobody has is quarantined once however often it comes.
        let store = db.open().await;
        let (open, _gov) = setup(&store).await;
        let polaris = admin();
        let batch = vec![
            written("a", "acme", 70, 9 * GIB),
            written("z", "acme", 10, 7 * GIB),
            written("m", "acme", 20, 2 * GIB),
            // The same keys again, with other data and in the other hour.
            written("z", "acme", 75, GIB),
            written("a", "acme", 15, GIB),
            written("q", "nobody", 10, GIB),
            written("q", "nobody", 10, GIB),
        ];
        let report = ingest(&store, &polaris, &batch).await;
        assert_eq!(
            (report.accepted, report.duplicate, report.quarantined),
            (3, 3, 1),
            "{report:?}"
        );
        store
            .close_due_hours(Timestamp::now(), &settings(), 1000)
            .await
            .unwrap();
        let usage = first_two_hours(&store, &open.id.0).await;
        let written_in = |hour: Timestamp| quantity_in(&usage, "data_written_gib", hour);
        assert_eq!(written_in(at(0)).as_deref(), Some("9"), "z (7) and m (2)");
        assert_eq!(written_in(at(60)).as_deref(), Some("9"), "a (9)");
    }
);

both_backends!(
    the_quarantine_keeps_events_until_their_account_exists,
    |db: TestDatabase| async move {
        let store = db.open().await;
        setup(&store).await;
        let report = ingest(
            &store,
            &admin(),
            &[
                written("q1", "newco", 10, GIB),
                written("q2", "newco", 11, GIB),
            ],
        )
        .await;
        assert_eq!(report.quarantined, 2);
        let listed = store.quarantine(&admin(), None, false, 100).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].reason, "unknown_account");
        // Resending a quarantined event does not quarantine it twice.
        let again = ingest(&store, &admin(), &[written("q1", "newco", 10, GIB)]).await;
        assert_eq!((again.quarantined, again.duplicate), (0, 1));

        // Nothing to replay into yet: they stay.
        let replay = store
            .replay_quarantine(&admin(), None, Timestamp::now(), &settings())
            .await
            .unwrap();
        assert_eq!((replay.considered, replay.report.accepted), (2, 0));
        assert_eq!(
            store
                .quarantine(&admin(), None, false, 100)
                .await
                .unwrap()
                .len(),
            2
        );

        let newco = account(&store, "newco", "standard").await;
        let replay = store
            .replay_quarantine(&admin(), None, Timestamp::now(), &settings())
            .await
            .unwrap();
        assert_eq!((replay.considered, replay.report.accepted), (2, 2));
        assert!(
            store
                .quarantine(&admin(), None, false, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .quarantine(&admin(), None, true, 100)
                .await
                .unwrap()
                .len(),
            2
        );
        // Replaying again, or resending, adds nothing.
        let again = ingest(&store, &admin(), &[written("q2", "newco", 11, GIB)]).await;
        assert_eq!(again.duplicate, 1);
        store
            .close_due_hours(Timestamp::now(), &settings(), 1000)
            .await
            .unwrap();
        let usage = store
            .usage(
                &admin(),
                &newco.id.0,
                at(0),
                at(60),
                UsageOf::Meters,
                Granularity::Hour,
            )
            .await
            .unwrap();
        assert_eq!(usage[0].quantity, (2 * GIB).to_string());
    }
);

both_backends!(
    usage_for_a_restricted_account_needs_clearance,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let (_, gov) = setup(&store).await;
        let uncleared = scope("feed", &[Role::Admin], &[], Some("US"));
        let report = ingest(&store, &uncleared, &[written("g1", "agency", 10, GIB)]).await;
        assert_eq!((report.accepted, report.rejected), (0, 1));
        assert_eq!(report.rejections[0].field.as_deref(), Some("subject"));
        assert_eq!(report.batch_id, None, "nothing of it is stored");
        let denied = store
            .audit_entries(
                &admin(),
                &AuditFilter {
                    action: Some("usage.denied".into()),
                    ..AuditFilter::default()
                },
                &PageRequest::default(),
            )
            .await
            .unwrap();
        assert_eq!(denied.items.len(), 1);
        assert_eq!(
            denied.items[0].account_id.as_deref(),
            Some(gov.id.0.as_str())
        );
        // The same event from a cleared sender is accepted.
        let report = ingest(&store, &admin(), &[written("g1", "agency", 10, GIB)]).await;
        assert_eq!(report.accepted, 1);
        // And its usage is not shown to an uncleared reader.
        assert!(
            store
                .usage(
                    &uncleared,
                    &gov.id.0,
                    at(0),
                    at(60),
                    UsageOf::Meters,
                    Granularity::Hour
                )
                .await
                .is_err()
        );
    }
);

both_backends!(
    verification_names_what_was_changed_behind_the_evidence,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let (open, _) = setup(&store).await;
        ingest(
            &store,
            &admin(),
            &[
                written("t1", "acme", 10, GIB),
                written("t2", "acme", 20, GIB),
            ],
        )
        .await;
        ingest(&store, &admin(), &[written("t3", "acme", 70, GIB)]).await;
        store
            .close_due_hours(Timestamp::now(), &settings(), 1000)
            .await
            .unwrap();
        let range = (at(0), Timestamp::now());
        assert!(
            store
                .verify_metering(range.0, range.1)
                .await
                .unwrap()
                .findings
                .is_empty()
        );

        // Remove the second batch's slice: its hour no longer adds up.
        let mut tx = store.db().begin().await.unwrap();
        tx.execute(
            "DELETE FROM usage_slices WHERE hour = $1",
            &[Value::Int(at(60).as_microsecond())],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let report = store.verify_metering(range.0, range.1).await.unwrap();
        assert!(!report.findings.is_empty());
        let finding = report
            .findings
            .iter()
            .find(|f| f.hour == Some(at(60)))
            .expect("the hour is named");
        assert_eq!(finding.account_id.as_deref(), Some(open.id.0.as_str()));

        // Swap the first slice's keys for other bytes: the batch no longer matches.
        let mut tx = store.db().begin().await.unwrap();
        tx.execute(
            "UPDATE usage_slices SET keys = $1 WHERE hour = $2",
            &[
                Value::Bytes(vec![7u8; 32]),
                Value::Int(at(0).as_microsecond()),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let report = store.verify_metering(range.0, range.1).await.unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.problem.contains("not in the batch's bytes")),
            "{:?}",
            report.findings
        );
    }
);

both_backends!(
    the_pages_figures_come_from_closed_hours,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let (open, _) = setup(&store).await;
        ingest(
            &store,
            &admin(),
            &[
                written("p1", "acme", 10, 2 * GIB),
                written("p2", "acme", 70, 3 * GIB),
                written("p3", "ghost", 70, GIB),
            ],
        )
        .await;
        store
            .close_due_hours(at(120) + SignedDuration::from_mins(20), &settings(), 100)
            .await
            .unwrap();
        // A late event lands in the open hour.
        let late = ingest(&store, &admin(), &[written("p4", "acme", 15, GIB)]).await;
        assert_eq!(late.late, 1);
        let open_hours = store.open_hours(&settings()).await.unwrap();
        assert_eq!(open_hours.len(), 1);
        assert_eq!(open_hours[0].events, 1);
        store
            .close_due_hours(
                Timestamp::now() + SignedDuration::from_hours(1),
                &settings(),
                1000,
            )
            .await
            .unwrap();
        let period = store
            .period_usage(&admin(), &open.id.0, at(0))
            .await
            .unwrap();
        let written = period
            .iter()
            .find(|d| d.dimension == "data_written_gib")
            .unwrap();
        // The base hours fall in one month unless the test runs in the first days of
        // one: only then can the late GiB land in the next period.
        if purser_core::commercial::BillingPeriod::containing(at(0))
            == purser_core::commercial::BillingPeriod::containing(Timestamp::now())
        {
            assert_eq!(written.metered, rust_decimal::Decimal::from(6));
            // Beyond the commitment of 0.000000001 GiB, at 0.5 a GiB.
            let beyond: rust_decimal::Decimal = "5.999999999".parse().unwrap();
            assert_eq!(written.overage_quantity, beyond);
            assert_eq!(
                written.overage_amount,
                beyond / rust_decimal::Decimal::from(2)
            );
            assert!(written.projected.is_some());
        }
        let activity = store.ingest_activity(at(-600)).await.unwrap();
        let accepted: i64 = activity.iter().map(|h| h.accepted).sum();
        let quarantined: i64 = activity.iter().map(|h| h.quarantined).sum();
        assert_eq!((accepted, quarantined), (3, 1));
        let late = store.late_adjustments(&admin(), 10).await.unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].quantity, "1");
        let uncleared = scope("sam", &[Role::Finance], &[], Some("US"));
        assert_eq!(
            store.late_adjustments(&uncleared, 10).await.unwrap().len(),
            1,
            "acme is a standard account"
        );
    }
);

both_backends!(
    hours_closed_across_restarts_rate_and_verify_as_one_run,
    |db: TestDatabase| async move {
        // Consumption of 1.25 + 0.75 GiB is 2.00 in memory and 2 once stored: the
        // third hour must be rated the same whichever way its consumption came.
        let store = db.open().await;
        let (open, _) = setup(&store).await;
        ingest(
            &store,
            &admin(),
            &[
                written("r1", "acme", 10, GIB + GIB / 4),
                written("r2", "acme", 70, 3 * GIB / 4),
                written("r3", "acme", 130, GIB),
                written("r4", "acme", 190, GIB / 2),
            ],
        )
        .await;
        // Two hours now, the rest by a process started afresh (no state in memory).
        let first = store
            .close_due_hours(Timestamp::now(), &settings(), 2)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        drop(store);
        let store = db.open().await;
        let rest = store
            .close_due_hours(Timestamp::now(), &settings(), 1000)
            .await
            .unwrap();
        assert!(rest.len() >= 2);
        assert_verifies(&store, Timestamp::now() + SignedDuration::from_hours(3)).await;
        let usage = dimensions_until(&store, &open.id.0, at(240)).await;
        let consumed: Vec<Option<String>> = usage.iter().map(|r| r.consumed.clone()).collect();
        assert_eq!(
            consumed,
            vec![
                Some("1.25".to_owned()),
                Some("2".to_owned()),
                Some("3".to_owned()),
                Some("3.5".to_owned())
            ]
        );
    }
);

both_backends!(
    hours_computed_ahead_of_a_commit_are_recomputed_when_usage_came_between,
    |db: TestDatabase| async move {
        // Closing three days takes three transactions; each one's last hour is followed
        // by the next hour computed while it commits. Late events sent meanwhile are
        // booked into that very hour: it must be recomputed with them, not taken as
        // computed ahead, or they would be in no closed hour at all.
        let store = db.open().await;
        let (open, _gov) = setup(&store).await;
        let polaris = admin();
        let hours = 60;
        let on_time: Vec<String> = (0..hours)
            .flat_map(|h| {
                [
                    written(&format!("w{h}"), "acme", h * 60 + 10, GIB),
                    capacity(
                        &format!("c{h}"),
                        "acme",
                        h * 60 + 20,
                        "c1",
                        (h as u64 + 1) * TIB,
                    ),
                ]
            })
            .collect();
        ingest(&store, &polaris, &on_time).await;

        let closing = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .close_due_hours(Timestamp::now(), &settings(), 1000)
                    .await
                    .unwrap()
            })
        };
        // Late events for the first hour, while the hours close: each waits for the
        // transaction closing hours to end, and goes in before the next one begins.
        let mut late_sent = 0;
        loop {
            let event = written(&format!("late{late_sent}"), "acme", 5, GIB);
            ingest(&store, &polaris, &[event]).await;
            late_sent += 1;
            if closing.is_finished() {
                break;
            }
        }
        let closed = closing.await.unwrap();
        assert!(
            closed.len() >= hours as usize,
            "{} hours closed",
            closed.len()
        );
        // Those booked into the first hour still open are closed with it.
        store
            .close_due_hours(
                Timestamp::now() + SignedDuration::from_hours(2),
                &settings(),
                1000,
            )
            .await
            .unwrap();

        let until = Timestamp::now() + SignedDuration::from_hours(2);
        assert_verifies(&store, until).await;
        // Every GiB written is billed once: on time or as a late adjustment.
        let usage = dimensions_until(&store, &open.id.0, until).await;
        let billed: i64 = usage
            .iter()
            .filter(|r| r.name == "data_written_gib")
            .map(|r| r.quantity.parse::<i64>().unwrap())
            .sum();
        assert_eq!(billed, hours + late_sent, "{late_sent} late events");
    }
);
