//! Subscriptions from the marketplaces on SQLite and PostgreSQL: notifications kept
//! once per delivery, whatever they hold; decisions from the marketplace's re-read
//! word; entitlement segments that change rating and reporting from the right hour
//! on, never inside a closed hour; the lifecycle kept.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::audit::Actor;
use purser_core::commercial::EntitlementStatus;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot, SubscriptionState};
use purser_core::{AccountScope, Marketplace, Role};
use purser_store::Store;
use purser_store::marketplace::LedgerFilter;
use purser_store::metering::MeteringSettings;
use purser_store::subscriptions::{Channel, NewNotification, NotificationStatus};
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends, scope};
use rust_decimal::Decimal;

fn base_hour() -> Timestamp {
    purser_testkit::base_hour(72)
}

fn hours(n: i64) -> Timestamp {
    base_hour() + SignedDuration::from_hours(n)
}

fn at(n: i64, minutes: i64) -> Timestamp {
    hours(n) + SignedDuration::from_mins(minutes)
}

fn admin() -> AccountScope {
    scope("root", &[Role::Admin], &["us-gov"], Some("US"))
}

const GIB: u64 = 1 << 30;
const ENTITLEMENT: &str = "ent-4417";

fn snapshot(state: SubscriptionState, plan: &str, effective_at: Timestamp) -> SubscriptionSnapshot {
    SubscriptionSnapshot {
        state,
        plan: plan.into(),
        quantity: None,
        pending_plan: None,
        binding: Some(fixtures::binding(Marketplace::Gcp, 7)),
        effective_at,
        term_end: None,
    }
}

fn pubsub(event_id: &str, kind: &str) -> NewNotification {
    NewNotification {
        marketplace: Marketplace::Gcp,
        delivery_key: event_id.into(),
        channel: Channel::Pubsub,
        body: format!(
            r#"{{"eventId":"{event_id}","eventType":"{kind}","entitlement":{{"id":"{ENTITLEMENT}"}}}}"#
        ),
        kind: Some(kind.into()),
        external_id: Some(ENTITLEMENT.into()),
        status: NotificationStatus::Received,
        error: None,
    }
}

async fn write(store: &Store, id: &str, hour: i64, gib: u64) {
    let line = fixtures::written_event(id, "globex", at(hour, 10), gib * GIB);
    assert_eq!(fixtures::ingest(store, &[line]).await, 1);
}

async fn close_before(store: &Store, hour: i64) {
    store
        .close_due_hours(at(hour, 16), &MeteringSettings::default(), 1000)
        .await
        .unwrap();
}

both_backends!(
    a_subscription_changes_rating_and_reporting_from_the_right_hour,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let actor = Actor::new("system:subscriptions", None);
        let offer = fixtures::written_offer(&store, Marketplace::Gcp).await;
        fixtures::sell_plan(&store, Marketplace::Gcp, "standard", &offer.id, 0).await;
        fixtures::sell_plan(&store, Marketplace::Gcp, "premium", &offer.id, 1_000_000).await;
        let account =
            fixtures::account(&store, Marketplace::Gcp, "globex", "Globex", "standard", 7).await;

        // A redelivered notification is stored once.
        let first = store
            .store_notification(pubsub("ev-1", "ENTITLEMENT_CREATION_REQUESTED"))
            .await
            .unwrap();
        let again = store
            .store_notification(pubsub("ev-1", "ENTITLEMENT_CREATION_REQUESTED"))
            .await
            .unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(first.id, again.id);
        assert_eq!(
            store
                .pending_notifications(Timestamp::now(), 10)
                .await
                .unwrap()
                .len(),
            1
        );

        // Requested, buyer not registered: nothing to approve yet, and it says why.
        let decision = store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Requested, "standard", at(0, 5)),
                Some(&first.id),
            )
            .await
            .unwrap();
        assert_eq!(decision.call, None);
        assert!(decision.attention.unwrap().contains("not been linked"));
        assert!(
            store
                .pending_notifications(Timestamp::now(), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Registered: approve. Linking to a second account is refused.
        store
            .link_subscription(
                &admin(),
                Marketplace::Gcp,
                ENTITLEMENT,
                &account,
                serde_json::json!({"company": "Globex"}),
            )
            .await
            .unwrap();
        let other = fixtures::account(
            &store,
            Marketplace::Gcp,
            "initech",
            "Initech",
            "standard",
            8,
        )
        .await;
        assert!(
            store
                .link_subscription(
                    &admin(),
                    Marketplace::Gcp,
                    ENTITLEMENT,
                    &other,
                    serde_json::json!({})
                )
                .await
                .is_err()
        );
        let decision = store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Requested, "standard", at(0, 5)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            decision.call,
            Some(SellerCall::Approve {
                plan: "standard".into(),
                quantity: None
            })
        );

        // Active at 1:20: billed from hour 2. Usage in hours 0..=5.
        store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Active, "standard", at(1, 20)),
                None,
            )
            .await
            .unwrap();
        // Premium (which commits to everything this test writes) from 3:30: hour 4 on.
        store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Active, "premium", at(3, 30)),
                None,
            )
            .await
            .unwrap();
        for hour in 0..=7 {
            write(&store, &format!("w-{hour}"), hour, 5).await;
        }
        close_before(&store, 6).await;
        // Cancelled at 4:10 by the marketplace's clock, heard of after hour 5 closed:
        // it applies from hour 6, the first open one, and says so.
        let decision = store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Cancelled, "premium", at(4, 10)),
                None,
            )
            .await
            .unwrap();
        assert!(decision.attention.unwrap().contains("already closed"));
        close_before(&store, 8).await;
        store
            .plan_marketplace_hours(Timestamp::now(), 1000)
            .await
            .unwrap();

        let entitlements = store.entitlements(&admin(), &account).await.unwrap();
        let spans: Vec<(Timestamp, Timestamp, EntitlementStatus)> = entitlements
            .iter()
            .rev()
            .map(|e| (e.start, e.end, e.status))
            .collect();
        assert_eq!(
            spans,
            vec![
                (hours(2), hours(4), EntitlementStatus::Active),
                (hours(4), hours(6), EntitlementStatus::Active),
            ]
        );
        // Reported: the standard hours in full (no commitment), premium hours as zero
        // overage (Google gets zeros so that reports adjoin), nothing before
        // activation or after the cancellation took effect.
        let records = store
            .marketplace_records(&LedgerFilter {
                account_id: Some(account.clone()),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        let reported: Vec<(Timestamp, Decimal)> = records
            .iter()
            .map(|r| (r.record.hour, r.record.quantity))
            .collect();
        assert_eq!(
            reported,
            vec![
                (hours(2), Decimal::from(5)),
                (hours(3), Decimal::from(5)),
                (hours(4), Decimal::ZERO),
                (hours(5), Decimal::ZERO),
            ]
        );

        // The lifecycle, in order; the subscription holds where it stands.
        let record = store
            .subscription_for_processing(Marketplace::Gcp, ENTITLEMENT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.state, SubscriptionState::Cancelled);
        assert!(!record.subscription.segment.as_ref().unwrap().open);
        let events = store.subscription_events(&record.id).await.unwrap();
        let whats: Vec<&str> = events.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            whats,
            ["read", "linked", "read", "changed", "changed", "changed"]
        );
        assert_eq!(events[3].applied_from, Some(hours(2)));
        assert_eq!(events[5].applied_from, Some(hours(6)));

        // Settling the same word again changes nothing.
        store
            .settle_subscription(
                &actor,
                Marketplace::Gcp,
                ENTITLEMENT,
                &snapshot(SubscriptionState::Cancelled, "premium", at(4, 10)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            store.entitlements(&admin(), &account).await.unwrap().len(),
            2
        );
    }
);

both_backends!(
    unreadable_and_unknown_notifications_are_kept_and_shown_never_acted_on,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let malformed = store
            .store_notification(NewNotification {
                marketplace: Marketplace::Aws,
                delivery_key: "sns-1".into(),
                channel: Channel::Sns,
                body: "{not json".into(),
                kind: None,
                external_id: None,
                status: NotificationStatus::Malformed,
                error: Some("line 1 column 2: key must be a string".into()),
            })
            .await
            .unwrap();
        let unknown = store
            .store_notification(pubsub("ev-9", "ENTITLEMENT_SOMETHING_NEW"))
            .await
            .unwrap();
        store
            .notification_set_aside(
                &unknown.id,
                NotificationStatus::Unrecognised,
                "event type ENTITLEMENT_SOMETHING_NEW is not one Purser acts on",
            )
            .await
            .unwrap();
        assert!(
            store
                .pending_notifications(Timestamp::now(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let kept = store.notifications(None, 10).await.unwrap();
        assert_eq!(kept.len(), 2);
        let by_id = |id: &str| kept.iter().find(|n| n.id == id).unwrap();
        assert_eq!(by_id(&malformed.id).status, NotificationStatus::Malformed);
        assert_eq!(by_id(&malformed.id).body, "{not json");
        assert_eq!(by_id(&unknown.id).status, NotificationStatus::Unrecognised);
        assert!(
            by_id(&unknown.id)
                .last_error
                .as_deref()
                .unwrap()
                .contains("SOMETHING_NEW")
        );

        // A failed re-read leaves it to be tried again later, with the reason.
        let pending = store
            .store_notification(pubsub("ev-10", "ENTITLEMENT_ACTIVE"))
            .await
            .unwrap();
        let later = Timestamp::now() + SignedDuration::from_mins(5);
        store
            .notification_failed(&pending.id, "procurement API answered 503", later)
            .await
            .unwrap();
        assert!(
            store
                .pending_notifications(Timestamp::now(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let due = store.pending_notifications(later, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 1);
        assert_eq!(
            due[0].last_error.as_deref(),
            Some("procurement API answered 503")
        );
    }
);
