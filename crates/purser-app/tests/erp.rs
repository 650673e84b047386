//! The `erp.export` job on a simulated clock, on both backends: a month is kept once
//! its last hour is closed, once, and never before.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use purser_app::erp::keep_due_exports;
use purser_core::Marketplace;
use purser_core::events::Framing;
use purser_core::invoice::FeeRates;
use purser_store::Store;
use purser_store::metering::{MeteringSettings, prepare_batch};
use purser_testkit::marketplace::{self as fixtures, Customer};
use purser_testkit::{TestDatabase, both_backends};

fn ts(value: &str) -> Timestamp {
    value.parse().unwrap()
}

/// Ingests `bytes` written at `at`, as telemetry sends it then.
async fn write_at(store: &Store, id: &str, at: Timestamp, bytes: u64) {
    let system = purser_core::AccountScope::system("test", &purser_core::BoundaryRule::built_in());
    let line = fixtures::written_event(id, "gcp-customer", at, bytes);
    let batch = prepare_batch(
        line.as_bytes(),
        Framing::Ndjson,
        &store.meters().await.unwrap(),
        at + SignedDuration::from_mins(1),
        &MeteringSettings::default(),
    )
    .unwrap();
    assert_eq!(
        store.ingest(&system, "api", batch).await.unwrap().accepted,
        1
    );
}

async fn close(store: &Store, now: &str) {
    store
        .close_due_hours(ts(now), &MeteringSettings::default(), 2_000)
        .await
        .unwrap();
}

both_backends!(
    a_month_is_kept_once_its_last_hour_is_closed_and_only_once,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let offer = fixtures::define(
            &store,
            &[fixtures::gib_meter(
                "storage.written",
                "com.polaris.io",
                "bytes_written",
                "data_written_gib",
            )],
            fixtures::private_offer(Marketplace::Gcp, &[("data_written_gib", "written")]),
        )
        .await;
        fixtures::customer(
            &store,
            &offer,
            &Customer {
                external_id: "gcp-customer".into(),
                name: "Customer on Google".into(),
                boundary: "standard",
                index: 0,
                around: ts("2026-10-15T00:00:00Z"),
                committed: "1",
                committed_dimensions: &["data_written_gib"],
            },
        )
        .await;
        let fees = FeeRates::parse(&BTreeMap::from([("gcp".into(), "0.03".into())])).unwrap();
        assert!(
            keep_due_exports(&store, &fees).await.unwrap().is_empty(),
            "nothing closed yet"
        );

        write_at(&store, "w1", ts("2026-10-31T21:10:00Z"), 3 << 30).await;
        // Closed through 22:00: October's last hour is still open.
        close(&store, "2026-10-31T23:20:00Z").await;
        assert!(keep_due_exports(&store, &fees).await.unwrap().is_empty());

        close(&store, "2026-11-01T00:20:00Z").await;
        let kept = keep_due_exports(&store, &fees).await.unwrap();
        assert_eq!(
            kept.iter().map(|k| k.month.as_str()).collect::<Vec<_>>(),
            ["2026-10"]
        );
        // Overage beyond 1 GiB, and Google's 3% of it.
        assert_eq!(kept[0].n_lines, 2, "{kept:?}");
        assert!(
            keep_due_exports(&store, &fees).await.unwrap().is_empty(),
            "kept once"
        );

        // November fills; it is kept when its last hour closes, not before.
        write_at(&store, "w2", ts("2026-11-20T08:00:00Z"), 5 << 30).await;
        close(&store, "2026-11-30T23:20:00Z").await;
        assert!(keep_due_exports(&store, &fees).await.unwrap().is_empty());
        close(&store, "2026-12-01T00:20:00Z").await;
        let kept = keep_due_exports(&store, &fees).await.unwrap();
        assert_eq!(
            kept.iter().map(|k| k.month.as_str()).collect::<Vec<_>>(),
            ["2026-11"]
        );
        let exports = store.erp_exports().await.unwrap();
        assert_eq!(
            exports.iter().map(|k| k.month.as_str()).collect::<Vec<_>>(),
            ["2026-11", "2026-10"]
        );
    }
);
