//! The demo's history, played hour by hour against the in-process fake marketplaces
//! across a month's end, on both backends: every hour of every bound account reported
//! and accepted once, what the fakes hold is what the ledger says they accepted, the
//! period reconciles (Azure's own listing agreeing), and the subscriptions are there.
//! `purser demo` plays 30 days of the same; three are enough to cross a month's end.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp, ToSpan};
use purser_app::demo::{DemoMarketplaces, SeedOptions};
use purser_core::Marketplace;
use purser_core::marketplace::DeliveryState;
use purser_marketplace::AzureClient;
use purser_store::marketplace::LedgerFilter;
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends};

/// 05:30 UTC on the first of the latest month whose first is at least that far behind
/// us: three days back from it cross the month's end.
fn just_after_a_month_end() -> Timestamp {
    let now = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let first = now
        .first_of_month()
        .unwrap()
        .start_of_day()
        .unwrap()
        .checked_add(5.hours().minutes(30))
        .unwrap();
    let first = if first.timestamp() > now.timestamp() {
        first.checked_sub(1.month()).unwrap()
    } else {
        first
    };
    first.timestamp()
}

both_backends!(
    the_demo_reports_its_history_once_and_it_reconciles,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let marketplaces = DemoMarketplaces::start().await.unwrap();
        let now = just_after_a_month_end();
        let days = std::sync::atomic::AtomicI64::new(0);
        let on_day = |done: i64, _of: i64| days.store(done, std::sync::atomic::Ordering::SeqCst);
        let options = SeedOptions {
            days: 3,
            now,
            marketplaces: Some(&marketplaces),
            on_day: Some(&on_day),
        };
        assert!(purser_app::demo::seed(&store, &options).await.unwrap());
        assert_eq!(days.load(std::sync::atomic::Ordering::SeqCst), 3);

        // Every record planned was accepted: nothing due, refused or conflicting.
        let all = store
            .marketplace_records(&LedgerFilter::default())
            .await
            .unwrap();
        let not_accepted: Vec<_> = all
            .iter()
            .filter(|r| r.state != DeliveryState::Accepted)
            .map(|r| (r.marketplace, r.state, r.record.hour, r.outcome.clone()))
            .collect();
        assert!(not_accepted.is_empty(), "{not_accepted:?}");
        // Each marketplace was reported to, every hour of the history (Google and AWS
        // take a record each hour, zero or not).
        for marketplace in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
            let hours: std::collections::BTreeSet<Timestamp> = all
                .iter()
                .filter(|r| r.marketplace == marketplace)
                .map(|r| r.record.hour)
                .collect();
            assert!(!hours.is_empty(), "{marketplace}: nothing reported");
            if marketplace != Marketplace::Azure {
                assert_eq!(hours.len(), 3 * 24 - 1, "{marketplace}: {hours:?}");
            }
        }
        // The history crossed the month's end, whose last hour was reported too.
        let last_of_month = now
            .checked_sub(SignedDuration::from_mins(5 * 60 + 30 + 60))
            .unwrap();
        assert!(
            all.iter().any(|r| r.record.hour == last_of_month),
            "no record for {last_of_month}"
        );

        // One account's usage went through Tackle, and only through Tackle.
        let tackle_routed: Vec<_> = all
            .iter()
            .filter(|r| r.route == purser_core::marketplace::Route::Tackle)
            .collect();
        assert!(!tackle_routed.is_empty(), "nothing went through Tackle");
        assert!(
            tackle_routed
                .iter()
                .all(|r| r.marketplace == Marketplace::Aws
                    && r.record.account_id == tackle_routed[0].record.account_id
                    && r.record.quantity > rust_decimal::Decimal::ZERO)
        );
        assert!(
            all.iter()
                .filter(|r| r.record.account_id == tackle_routed[0].record.account_id)
                .all(|r| r.route == purser_core::marketplace::Route::Tackle)
        );

        // What the fakes hold is exactly what the ledger says they accepted.
        let ledger = fixtures::billed_by_ledger(&store).await;
        assert_eq!(ledger.len(), all.len());
        assert_eq!(fixtures::billed_by_fakes(marketplaces.fakes()), ledger);

        // The period reconciles, and Azure's own listing agrees with the ledger.
        let from = now - SignedDuration::from_hours(24 * 3);
        let report = store.reconcile_marketplaces(from, now).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.lines);
        assert_eq!(report.records(), all.len() as i64);
        assert!(report.unplanned_hours.is_empty());
        let azure = AzureClient::new(marketplaces.config().azure.as_ref().unwrap()).unwrap();
        let witness = purser_app::marketplace::azure_witness(&store, &azure, from, now)
            .await
            .unwrap();
        assert!(witness.is_empty(), "{witness:?}");

        // The subscriptions came with whom their marketplace bills: the ones Purser
        // sells a plan for are bound, so they go on being reported.
        let scope =
            purser_core::AccountScope::system("test", &store.boundary_rules().await.unwrap());
        let subscriptions = store
            .subscriptions_in_scope(&scope, true, 50)
            .await
            .unwrap();
        assert_eq!(subscriptions.len(), 6, "{subscriptions:?}");
        let bound = store.bound_entitlements().await.unwrap();
        assert!(
            bound
                .iter()
                .any(|(e, _)| e.offer_id == "demo-offer-aws"
                    && matches!(&e.marketplace_binding, Some(purser_core::marketplace::Binding::Aws { license_arn, .. }) if license_arn.ends_with("l-0d1e2f3a4b5c6d7e8"))),
            "the AWS subscription's segment is not bound"
        );
        marketplaces.shutdown().await;
    }
);
