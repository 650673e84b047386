//! The scoped views of the marketplace ledger on SQLite and PostgreSQL: hours by
//! state, a marketplace's records with the marketplace's reasons, a period's
//! reconciliation; none shows a us-gov account's records to a scope not cleared for it.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::marketplace::{DeliveryState, RecordOutcome, Route};
use purser_core::{AccountScope, Marketplace, Role};
use purser_store::Store;
use purser_store::marketplace::{Finding, LedgerFilter};
use purser_store::marketplace_views::RecordQuery;
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends, scope};

fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn hours(n: i64) -> Timestamp {
    base_hour() + SignedDuration::from_hours(n)
}

fn admin() -> AccountScope {
    scope("root", &[Role::Admin], &["us-gov"], Some("US"))
}

fn finance() -> AccountScope {
    scope("fin", &[Role::Finance], &[], Some("US"))
}

const GIB: u64 = 1 << 30;

async fn catalogue(store: &Store) -> purser_core::commercial::Offer {
    let written = fixtures::gib_meter(
        "storage.written",
        "com.polaris.io",
        "bytes_written",
        "data_written_gib",
    );
    let offer =
        fixtures::private_offer(Marketplace::Aws, &[("data_written_gib", "DataWrittenGiB")]);
    fixtures::define(store, &[written], offer).await
}

/// An AWS account in `boundary` bound to the marketplace, committing to a sliver so
/// that writes are overage.
async fn account(
    store: &Store,
    offer: &purser_core::commercial::Offer,
    name: &str,
    external_id: &str,
    boundary: &str,
    index: usize,
) -> String {
    let customer = fixtures::Customer {
        external_id: external_id.into(),
        name: name.into(),
        boundary,
        index,
        around: base_hour(),
        committed: "0.000000001",
        committed_dimensions: &["data_written_gib"],
    };
    fixtures::customer(store, offer, &customer).await
}

async fn write(store: &Store, subject: &str, id: &str, hour: i64, gib: u64) {
    let line = fixtures::written_event(
        id,
        subject,
        hours(hour) + SignedDuration::from_mins(10),
        gib * GIB,
    );
    assert_eq!(fixtures::ingest(store, &[line]).await, 1);
}

both_backends!(
    the_views_count_explain_and_reconcile_only_what_the_scope_may_see,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let offer = catalogue(&store).await;
        let acme = account(&store, &offer, "Acme", "acme", "standard", 0).await;
        let fed = account(
            &store,
            &offer,
            "Federal Archive",
            "federal-archive",
            "us-gov",
            1,
        )
        .await;
        for (subject, n) in [("acme", 3), ("federal-archive", 4)] {
            write(&store, subject, &format!("{subject}-0"), 0, n).await;
            write(&store, subject, &format!("{subject}-1"), 1, n + 1).await;
        }
        fixtures::close_and_plan(&store, hours(2)).await;

        // Half past hour 1: hour 0 is sent. Acme's is taken, the agency's refused.
        let sim = hours(1) + SignedDuration::from_mins(30);
        let claimed = store
            .claim_marketplace_records(
                Marketplace::Aws,
                Route::Direct,
                "a",
                SignedDuration::from_secs(60),
                sim,
                2,
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        let key = |account: &str| {
            claimed
                .iter()
                .find(|r| r.record.account_id == account)
                .unwrap()
                .record
                .key
        };
        store
            .record_marketplace_submission(
                sim,
                &[
                    (
                        key(&acme),
                        RecordOutcome::Accepted {
                            marketplace_id: Some("mr-acme".into()),
                        },
                    ),
                    (
                        key(&fed),
                        RecordOutcome::Refused {
                            code: "CustomerNotEntitledException".into(),
                            message: "the agency is not subscribed".into(),
                        },
                    ),
                ],
                vec![fixtures::exchange(vec![key(&acme), key(&fed)])],
                None,
            )
            .await
            .unwrap();

        let now = Timestamp::now();
        let hour_of = |rows: &[purser_store::marketplace_views::MarketplaceHour], n: i64| {
            rows.iter().find(|h| h.hour == hours(n)).cloned().unwrap()
        };
        // Cleared: both accounts in each hour.
        let all = store
            .marketplace_hours(&admin(), Some(Marketplace::Aws), hours(0), hours(2), now)
            .await
            .unwrap();
        let h0 = hour_of(&all, 0);
        assert_eq!(
            (h0.records, h0.accepted, h0.refused, h0.sent),
            (2, 1, 1, 2),
            "{h0:?}"
        );
        assert_eq!(h0.quantity_accepted.to_string(), "2.999999");
        assert!(h0.needs_attention());
        let h1 = hour_of(&all, 1);
        assert_eq!((h1.records, h1.due, h1.sent), (2, 2, 0), "{h1:?}");
        // Hour 1's alarm (12 hours before its 24-hour window closes) has gone off.
        assert_eq!(h1.at_risk, 2);

        // Uncleared: the agency's records are not counted at all.
        let seen = store
            .marketplace_hours(&finance(), None, hours(0), hours(2), now)
            .await
            .unwrap();
        let h0 = hour_of(&seen, 0);
        assert_eq!((h0.records, h0.accepted, h0.refused), (1, 1, 0), "{h0:?}");
        assert_eq!(hour_of(&seen, 1).records, 1);
        let nobody = scope("v", &[Role::Telemetry], &[], Some("US"));
        assert!(
            store
                .marketplace_hours(&nobody, None, hours(0), hours(2), now)
                .await
                .unwrap()
                .is_empty()
        );

        // The refused record with the marketplace's reason, to the cleared only.
        let refused = RecordQuery {
            marketplace: Some(Marketplace::Aws),
            account_id: None,
            hour: Some(hours(0)),
            state: Some(DeliveryState::Refused),
            limit: 50,
            offset: 0,
        };
        let page = store
            .marketplace_record_views(&admin(), &refused, now)
            .await
            .unwrap();
        assert_eq!(page.total, 1);
        let record = &page.items[0];
        assert_eq!(record.account_id, fed);
        assert_eq!(record.account_name, "Federal Archive");
        assert_eq!(record.boundary, "us-gov");
        assert_eq!(
            record.reason.as_deref(),
            Some("the agency is not subscribed")
        );
        assert_eq!(record.code.as_deref(), Some("CustomerNotEntitledException"));
        assert_eq!(record.outcome.as_deref(), Some("refused"));
        assert_eq!(record.attempts, 1);
        let hidden = store
            .marketplace_record_views(&finance(), &refused, now)
            .await
            .unwrap();
        assert_eq!((hidden.total, hidden.items.len()), (0, 0));
        // Asking for the agency by id finds nothing either.
        let by_id = RecordQuery {
            account_id: Some(fed.clone()),
            hour: None,
            state: None,
            ..refused.clone()
        };
        let hidden = store
            .marketplace_record_views(&finance(), &by_id, now)
            .await
            .unwrap();
        assert_eq!(hidden.total, 0);
        let shown = store
            .marketplace_record_views(&admin(), &by_id, now)
            .await
            .unwrap();
        assert!(shown.total >= 2 && shown.items.iter().all(|r| r.account_id == fed));
        // Paging: one at a time, in order, with the total.
        let all_acme = RecordQuery {
            account_id: Some(acme.clone()),
            limit: 1,
            offset: 1,
            ..by_id.clone()
        };
        let second = store
            .marketplace_record_views(&finance(), &all_acme, now)
            .await
            .unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].hour, hours(1));
        assert!(second.items[0].at_risk);
        let accepted = store
            .marketplace_records(&LedgerFilter {
                account_id: Some(acme.clone()),
                state: Some(DeliveryState::Accepted),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(accepted.len(), 1);
        // The cleared read of the agency's records is in the audit log, marked us-gov.
        let log = store
            .audit_entries(
                &admin(),
                &purser_store::AuditFilter {
                    action: Some("account.list".into()),
                    ..Default::default()
                },
                &purser_store::PageRequest {
                    after: None,
                    limit: Some(50),
                },
            )
            .await
            .unwrap();
        assert!(
            log.items
                .iter()
                .any(|e| e.boundary.as_deref() == Some("us-gov")
                    && e.details.to_string().contains(&fed)),
            "{:?}",
            log.items
        );

        // Reconciliation: the same findings as the whole ledger's, restricted.
        let whole = store
            .reconcile_marketplaces(hours(0), hours(2))
            .await
            .unwrap();
        assert_eq!(whole.count(Finding::Refused), 1);
        let cleared = store
            .marketplace_reconciliation(&admin(), hours(0), hours(2))
            .await
            .unwrap();
        assert_eq!(cleared.summaries.len(), 1);
        let aws = &cleared.summaries[0];
        assert_eq!(
            (aws.records, aws.clean, aws.refused, aws.pending),
            (4, 1, 1, 2),
            "{aws:?}"
        );
        assert_eq!(cleared.off.len(), 1);
        assert_eq!(cleared.off[0].account_id, fed);
        assert_eq!(cleared.off[0].finding, Finding::Refused);
        assert!(cleared.exchanges_verify && !cleared.is_clean());
        let uncleared = store
            .marketplace_reconciliation(&finance(), hours(0), hours(2))
            .await
            .unwrap();
        let aws = &uncleared.summaries[0];
        assert_eq!((aws.records, aws.clean, aws.refused), (2, 1, 0), "{aws:?}");
        assert_eq!(aws.accepted.to_string(), "2.999999");
        assert!(uncleared.off.is_empty());
        assert!(uncleared.is_clean());
        let text = serde_json::to_string(&uncleared).unwrap();
        assert!(!text.contains(&fed) && !text.contains("Federal"), "{text}");
    }
);
