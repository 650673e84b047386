//! Google Cloud Marketplace subscriptions end to end, on SQLite and PostgreSQL: the
//! fake Partner Procurement publishes to a real Pub/Sub emulator; Purser pulls,
//! stores before acknowledging, re-reads each entitlement, approves it once the buyer
//! is linked, approves a plan change to a plan it sells, and follows the cancellation;
//! a redelivered event changes nothing; unknown and unreadable ones are kept aside.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use purser_app::subscriptions::gcp::{GcpDesk, GcpPushConfig, GcpSubscriptionsConfig};
use purser_app::subscriptions::{SubscriptionDesk, SubscriptionProcessor};
use purser_core::audit::Actor;
use purser_core::commercial::EntitlementStatus;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::SubscriptionState;
use purser_core::{Marketplace, Role};
use purser_fakes::procurement::EntitlementOrder;
use purser_fakes::{FakeConfig, FakeMarketplaces, PubSubEmulator};
use purser_marketplace::gcp::GcpCredentials;
use purser_marketplace::procurement::ProcurementConfig;
use purser_marketplace::pubsub::{PubSubClient, PubSubConfig};
use purser_marketplace::{Secret, SecretSource};
use purser_store::Store;
use purser_store::subscriptions::NotificationStatus;
use purser_testkit::marketplace as fixtures;
use purser_testkit::{TestDatabase, both_backends, scope};
use rust_decimal::Decimal;

const PROJECT: &str = "purser-test";
const SERVICE: &str = "purser-storage.endpoints.purser-test.cloud.goog";

struct World {
    _emulator: PubSubEmulator,
    fakes: FakeMarketplaces,
    processor: SubscriptionProcessor,
}

async fn world() -> World {
    let emulator = PubSubEmulator::start().await.expect("the Pub/Sub emulator");
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let pubsub_config = PubSubConfig::emulator(&emulator.url());
    let pubsub = PubSubClient::new(&pubsub_config).expect("pubsub");
    let topic = format!("projects/{PROJECT}/topics/procurement-events");
    let subscription = format!("projects/{PROJECT}/subscriptions/purser-procurement");
    pubsub.create_topic(&topic).await.expect("topic");
    pubsub
        .create_subscription(&subscription, &topic, 10)
        .await
        .expect("subscription");
    fakes.procurement().connect_pubsub(&emulator.url(), &topic);
    let mut procurement = ProcurementConfig::new(
        fakes.procurement().provider_id(),
        GcpCredentials::Token {
            token: SecretSource::Inline(Secret::new(&purser_fakes::GcpConfig::default().token)),
        },
    );
    procurement.base_url = fakes.procurement_url();
    let desk = GcpDesk::new(&GcpSubscriptionsConfig {
        procurement,
        pubsub: pubsub_config,
        subscription,
        service_name: Some(SERVICE.into()),
        pull_max_messages: 100,
        push: None,
    })
    .expect("desk");
    let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(desk)];
    World {
        _emulator: emulator,
        fakes,
        processor: SubscriptionProcessor::new(desks),
    }
}

/// Runs processing until `done` holds (the emulator delivers within moments, not at
/// once), at most ~10 s.
async fn process_until(
    world: &World,
    store: &Store,
    done: impl Fn(Store) -> futures::future::BoxFuture<'static, bool>,
) {
    process_until_with(&world.processor, store, done).await;
}

async fn process_until_with(
    processor: &SubscriptionProcessor,
    store: &Store,
    done: impl Fn(Store) -> futures::future::BoxFuture<'static, bool>,
) {
    for _ in 0..100 {
        processor.run(store, Timestamp::now()).await.expect("a run");
        if done(store.clone()).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("processing never reached the expected state");
}

fn state_is(
    external_id: &str,
    state: SubscriptionState,
) -> impl Fn(Store) -> futures::future::BoxFuture<'static, bool> {
    state_is_in(Marketplace::Gcp, external_id, state)
}

fn state_is_in(
    marketplace: Marketplace,
    external_id: &str,
    state: SubscriptionState,
) -> impl Fn(Store) -> futures::future::BoxFuture<'static, bool> {
    let external_id = external_id.to_string();
    move |store: Store| {
        let external_id = external_id.clone();
        Box::pin(async move {
            store
                .subscription_for_processing(marketplace, &external_id)
                .await
                .unwrap()
                .is_some_and(|s| s.subscription.state == state)
        })
    }
}

/// Whether `account` has exactly `n` entitlement segments (as an administrator sees).
fn segments_are(
    account: &str,
    n: usize,
) -> impl Fn(Store) -> futures::future::BoxFuture<'static, bool> {
    let account = account.to_string();
    move |store: Store| {
        let account = account.clone();
        Box::pin(async move {
            store
                .entitlements(&scope("root", &[Role::Admin], &[], Some("US")), &account)
                .await
                .unwrap()
                .len()
                == n
        })
    }
}

both_backends!(
    google_subscriptions_flow_from_pubsub_to_entitlements,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let world = world().await;
        let offer = fixtures::written_offer(&store, Marketplace::Gcp).await;
        fixtures::sell_plan(&store, Marketplace::Gcp, "standard", &offer.id, 100).await;
        fixtures::sell_plan(&store, Marketplace::Gcp, "premium", &offer.id, 1000).await;
        let account =
            fixtures::account(&store, Marketplace::Gcp, "globex", "Globex", "standard", 3).await;
        let admin = scope("root", &[Role::Admin], &[], Some("US"));

        // The buyer orders through the marketplace: Purser learns of it, but waits for
        // the buyer to be linked before approving.
        let procurement = world.fakes.procurement();
        let id = procurement
            .order(EntitlementOrder {
                account_id: "gcp-acct-1".into(),
                product: SERVICE.into(),
                plan: "standard".into(),
                usage_reporting_id: Some("project_number:4417".into()),
                offer: Some("projects/p/services/s/privateOffers/o-1".into()),
                offer_end_time: None,
            })
            .await
            .unwrap();
        process_until(&world, &store, state_is(&id, SubscriptionState::Requested)).await;
        assert_eq!(
            procurement.entitlement(&id).unwrap().state,
            "ENTITLEMENT_ACTIVATION_REQUESTED",
            "not approved before the buyer is linked"
        );
        let record = store
            .subscription_for_processing(Marketplace::Gcp, &id)
            .await
            .unwrap()
            .unwrap();
        assert!(record.attention.unwrap().contains("not been linked"));

        // Linked at registration: approved (the account's signup first), active,
        // and an entitlement segment bound to the usage reporting id.
        store
            .link_subscription(
                &admin,
                Marketplace::Gcp,
                &id,
                &account,
                serde_json::json!({"company": "Globex"}),
            )
            .await
            .unwrap();
        // The link is durable like a delivery: the next run approves.
        process_until(&world, &store, state_is(&id, SubscriptionState::Active)).await;
        assert_eq!(
            procurement.entitlement(&id).unwrap().state,
            "ENTITLEMENT_ACTIVE"
        );
        let signup = &procurement.account("gcp-acct-1").unwrap().approvals["signup"];
        assert_eq!(signup.0, "APPROVED");
        let segments = store.entitlements(&admin, &account).await.unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].status, EntitlementStatus::Active);
        assert_eq!(
            segments[0].marketplace_binding,
            Some(Binding::Gcp {
                service_name: SERVICE.into(),
                usage_reporting_id: "project_number:4417".into()
            })
        );

        // The buyer asks for premium, which Purser sells: approved, and a new segment
        // with premium's commitment.
        procurement
            .request_plan_change(&id, "premium")
            .await
            .unwrap();
        process_until(&world, &store, segments_are(&account, 2)).await;
        let fake = procurement.entitlement(&id).unwrap();
        assert_eq!(
            (fake.state.as_str(), fake.plan.as_str()),
            ("ENTITLEMENT_ACTIVE", "premium")
        );
        let segments = store.entitlements(&admin, &account).await.unwrap();
        let committed: Vec<Decimal> = segments
            .iter()
            .map(|e| e.commitments.values().next().unwrap().committed_per_period)
            .collect();
        assert!(committed.contains(&Decimal::from(1000)));
        assert!(committed.contains(&Decimal::from(100)));

        // Cancelled: billed until the term ends, then over.
        procurement.cancel(&id).await.unwrap();
        process_until(
            &world,
            &store,
            state_is(&id, SubscriptionState::PendingCancellation),
        )
        .await;
        procurement.end_term(&id, "user-cancelled").await.unwrap();
        process_until(&world, &store, state_is(&id, SubscriptionState::Cancelled)).await;
        let record = store
            .subscription_for_processing(Marketplace::Gcp, &id)
            .await
            .unwrap()
            .unwrap();
        assert!(!record.subscription.segment.as_ref().unwrap().open);

        // A redelivered event (the same eventId) is stored once and changes nothing;
        // an unknown event type and unreadable bytes are kept aside with the reason.
        let events_before = store.subscription_events(&record.id).await.unwrap().len();
        let published = procurement.published();
        let last = published.last().unwrap().clone();
        procurement
            .publish_raw(serde_json::to_string(&last).unwrap().as_bytes())
            .await
            .unwrap();
        procurement
            .publish_raw(br#"{"eventId":"ev-new-kind","eventType":"ENTITLEMENT_TELEPORTED","entitlement":{"id":"ent-x"}}"#)
            .await
            .unwrap();
        procurement.publish_raw(b"\xff not json").await.unwrap();
        process_until(&world, &store, |store: Store| {
            Box::pin(async move {
                let kept = store.notifications(None, 100).await.unwrap();
                kept.iter()
                    .any(|n| n.status == NotificationStatus::Malformed)
                    && kept
                        .iter()
                        .any(|n| n.kind.as_deref() == Some("ENTITLEMENT_TELEPORTED"))
            })
        })
        .await;
        let kept = store.notifications(None, 100).await.unwrap();
        let unknown = kept
            .iter()
            .find(|n| n.kind.as_deref() == Some("ENTITLEMENT_TELEPORTED"))
            .unwrap();
        assert_eq!(unknown.status, NotificationStatus::Unrecognised);
        let event_ids: Vec<&str> = kept.iter().map(|n| n.delivery_key.as_str()).collect();
        let mut unique = event_ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            event_ids.len(),
            "each delivery key is stored once"
        );
        assert_eq!(
            store.subscription_events(&record.id).await.unwrap().len(),
            events_before,
            "the redelivery changed nothing"
        );
        assert_eq!(store.entitlements(&admin, &account).await.unwrap().len(), 2);
    }
);

/// Purser's HTTP surface with the desks as its intake, on a free port; the server
/// task ends with the test's runtime.
async fn serve_intake(store: &Store, processor: &SubscriptionProcessor) -> String {
    let state = purser_http::state::AppState::new(store.clone(), Default::default()).with_intake(
        Arc::new(purser_app::subscriptions::DeskIntake {
            processor: processor.clone(),
        }),
    );
    let (router, _, _) = purser_http::build(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

both_backends!(
    azure_subscriptions_flow_from_landing_and_webhooks_to_entitlements,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let actor = Actor::new("system:test", None);
        let fakes = FakeMarketplaces::start(FakeConfig::default())
            .await
            .expect("fakes");
        let defaults = purser_fakes::AzureConfig::default();
        let mut azure = purser_marketplace::AzureConfig::new(
            &defaults.tenant_id,
            &defaults.client_id,
            SecretSource::Inline(Secret::new(defaults.client_secret.clone())),
        );
        azure.base_url = fakes.fulfillment_url();
        azure.login_base = fakes.azure_login_url();
        // Verification on: the fake signs each webhook call as Entra would for the
        // fake tenant and application.
        let desk = azure_desk(&fakes, azure);
        let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(desk)];
        let processor = SubscriptionProcessor::new(desks);
        let base = serve_intake(&store, &processor).await;
        let fulfillment = fakes.fulfillment();
        fulfillment.set_webhook_url(&format!("{base}/hooks/azure/fulfillment"));

        let offer = fixtures::written_offer(&store, Marketplace::Azure).await;
        let mut seats = fixtures::plan_terms(&offer.id, 100);
        seats.per_quantity = true;
        store
            .set_marketplace_plan(&actor, Marketplace::Azure, "seats", &seats)
            .await
            .unwrap();
        fixtures::sell_plan(&store, Marketplace::Azure, "seats-plus", &offer.id, 5000).await;
        let account = fixtures::account(
            &store,
            Marketplace::Azure,
            "contoso",
            "Contoso",
            "standard",
            2,
        )
        .await;
        let admin = scope("root", &[Role::Admin], &[], Some("US"));

        // The buyer lands with Azure's token: Purser learns of the subscription.
        let (id, token) = fulfillment.purchase("purser-storage", "seats", Some(3));
        let http = reqwest::Client::new();
        let landing = http
            .get(format!("{base}/register/azure"))
            .query(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(landing.status(), 200);
        assert!(landing.text().await.unwrap().contains(&id.to_string()));
        let external = id.to_string();
        process_until_with(
            &processor,
            &store,
            state_is_in(Marketplace::Azure, &external, SubscriptionState::Requested),
        )
        .await;
        assert_eq!(
            fulfillment.subscription(id).unwrap().status,
            "PendingFulfillmentStart",
            "not activated before the buyer is linked"
        );
        let bad = http
            .get(format!("{base}/register/azure"))
            .query(&[("token", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            bad.status(),
            400,
            "a token Azure does not resolve is refused plainly"
        );

        // Linked: activated, three seats commit three times the plan.
        store
            .link_subscription(
                &admin,
                Marketplace::Azure,
                &external,
                &account,
                serde_json::json!({}),
            )
            .await
            .unwrap();
        process_until_with(
            &processor,
            &store,
            state_is_in(Marketplace::Azure, &external, SubscriptionState::Active),
        )
        .await;
        assert_eq!(fulfillment.subscription(id).unwrap().status, "Subscribed");
        let segments = store.entitlements(&admin, &account).await.unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(
            segments[0]
                .commitments
                .values()
                .next()
                .unwrap()
                .committed_per_period,
            Decimal::from(300)
        );
        assert_eq!(
            segments[0].marketplace_binding,
            Some(Binding::Azure {
                resource_id: external.clone(),
                plan_id: "seats".into()
            })
        );

        // The buyer changes plan in the portal: the webhook arrives, Purser checks the
        // operation, approves it, and bills the new plan.
        fulfillment.change_plan(id, "seats-plus").unwrap();
        process_until_with(&processor, &store, segments_are(&account, 2)).await;
        assert_eq!(fulfillment.subscription(id).unwrap().plan_id, "seats-plus");

        // Unsubscribed: over.
        fulfillment.unsubscribe(id).unwrap();
        process_until_with(
            &processor,
            &store,
            state_is_in(Marketplace::Azure, &external, SubscriptionState::Cancelled),
        )
        .await;
        let record = store
            .subscription_for_processing(Marketplace::Azure, &external)
            .await
            .unwrap()
            .unwrap();
        assert!(!record.subscription.segment.as_ref().unwrap().open);
        let kept = store.notifications(None, 100).await.unwrap();
        assert!(
            kept.iter()
                .any(|n| n.channel == "webhook" && n.kind.as_deref() == Some("Unsubscribe"))
        );
        assert!(kept.iter().any(|n| n.channel == "landing"));
        // Every webhook above was taken with its JWT verified against the fake Entra
        // issuer's published keys.
        assert!(fakes.entra_oidc().jwks_fetches() >= 1);
        assert!(
            fulfillment
                .deliveries()
                .iter()
                .all(|d| d.attempts == 1 && d.delivered)
        );
    }
);

both_backends!(
    aws_subscriptions_flow_from_registration_and_signed_notifications_to_entitlements,
    |db: TestDatabase| async move {
        use purser_fakes::{AwsSaasCustomer, FakeAwsEntitlement, FakeEntitlementValue};
        let store = db.open().await;
        let fakes = FakeMarketplaces::start(FakeConfig::default())
            .await
            .expect("fakes");
        let defaults = purser_fakes::aws::AwsConfig::default();
        let mut api = purser_marketplace::aws_saas::AwsSaasConfig::new(
            &defaults.region,
            &defaults.access_key_id,
            SecretSource::Inline(Secret::new(defaults.secret_access_key.clone())),
        );
        api.metering_base_url = Some(fakes.aws_url());
        api.entitlement_base_url = Some(fakes.aws_entitlement_url());
        const PRODUCT: &str = "prod-purser1";
        let topic = format!(
            "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-{PRODUCT}"
        );
        let desk = purser_app::subscriptions::aws::AwsDesk::new(
            &purser_app::subscriptions::aws::AwsSubscriptionsConfig {
                api,
                product_code: PRODUCT.into(),
                sns: purser_marketplace::sns::SnsTrust {
                    topic_arns: vec![topic.clone()],
                    extra_cert_url_prefixes: vec![fakes.aws_sns_cert_prefix()],
                },
            },
        )
        .expect("desk");
        let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(desk)];
        let processor = SubscriptionProcessor::new(desks);
        let base = serve_intake(&store, &processor).await;
        let saas = fakes.aws_saas();
        saas.set_sns_endpoint(&format!("{base}/hooks/aws/sns"));
        // SNS first asks the endpoint to confirm its subscription to the topic: Purser
        // verifies the message and visits its SubscribeURL, once it is proven SNS's.
        let confirmation = saas.signed_subscription_confirmation(&topic).unwrap();
        let confirmed = saas.deliver(&confirmation).await.unwrap();
        assert_eq!(confirmed.status, Some(200));
        assert_eq!(saas.confirmed_topics(), vec![topic.clone()]);
        assert_eq!(saas.confirmation_visits(), 1);
        // One whose signature does not hold (its SubscribeURL swapped) is not visited.
        let mut swapped = saas.signed_subscription_confirmation(&topic).unwrap();
        swapped["SubscribeURL"] = serde_json::json!(
            confirmation["SubscribeURL"]
                .as_str()
                .unwrap()
                .replace("Token=", "Token=x")
        );
        let refused = saas.deliver(&swapped).await.unwrap();
        assert_eq!(refused.status, Some(400));
        assert_eq!(
            saas.confirmation_visits(),
            1,
            "a forged SubscribeURL was visited"
        );

        let offer = fixtures::written_offer(&store, Marketplace::Aws).await;
        fixtures::sell_plan(&store, Marketplace::Aws, "capacity", &offer.id, 100).await;
        let account = fixtures::account(
            &store,
            Marketplace::Aws,
            "initech",
            "Initech",
            "standard",
            4,
        )
        .await;
        let admin = scope("root", &[Role::Admin], &[], Some("US"));
        let license = "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0";

        // The buyer subscribes and is sent to the registration page with a token.
        let token = saas.issue_registration_token(AwsSaasCustomer {
            product_code: PRODUCT.into(),
            customer_aws_account_id: "294406891311".into(),
            license_arn: Some(license.into()),
            customer_identifier: None,
        });
        saas.add_entitlement(FakeAwsEntitlement {
            product_code: PRODUCT.into(),
            dimension: "capacity".into(),
            customer_identifier: None,
            customer_aws_account_id: Some("294406891311".into()),
            license_arn: Some(license.into()),
            value: FakeEntitlementValue::Integer(1),
            expiration_date: None,
        });
        let http = reqwest::Client::new();
        let landing = http
            .post(format!("{base}/register/aws"))
            .form(&[("x-amzn-marketplace-token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(landing.status(), 200);
        assert!(landing.text().await.unwrap().contains(license));
        process_until_with(
            &processor,
            &store,
            state_is_in(Marketplace::Aws, license, SubscriptionState::Active),
        )
        .await;
        assert!(
            store
                .entitlements(&admin, &account)
                .await
                .unwrap()
                .is_empty(),
            "nothing billed before the link"
        );

        // Linked: billed under the license, from the next hour.
        store
            .link_subscription(
                &admin,
                Marketplace::Aws,
                license,
                &account,
                serde_json::json!({}),
            )
            .await
            .unwrap();
        process_until_with(&processor, &store, |store: Store| {
            let account = account.clone();
            Box::pin(async move {
                !store
                    .entitlements(&scope("root", &[Role::Admin], &[], Some("US")), &account)
                    .await
                    .unwrap()
                    .is_empty()
            })
        })
        .await;
        let segments = store.entitlements(&admin, &account).await.unwrap();
        assert_eq!(
            segments[0].marketplace_binding,
            Some(Binding::Aws {
                customer_aws_account_id: "294406891311".into(),
                license_arn: license.into()
            })
        );

        // A forged notification is refused, kept and shown; a genuine one is taken.
        let mut forged = saas
            .signed_notification(&topic, &format!(r#"{{"action":"unsubscribe-success","license-arn":"{license}","product-code":"{PRODUCT}"}}"#), None, "2")
            .unwrap();
        forged["Message"] = serde_json::json!(format!(
            r#"{{"action":"unsubscribe-success","license-arn":"{license}","product-code":"other"}}"#
        ));
        let refused = http
            .post(format!("{base}/hooks/aws/sns"))
            .body(forged.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let kept = store
            .notifications(Some(NotificationStatus::Malformed), 10)
            .await
            .unwrap();
        assert!(
            kept.iter()
                .any(|n| n.last_error.as_deref().unwrap_or("").contains("signature")),
            "{kept:?}"
        );
        let still = store
            .subscription_for_processing(Marketplace::Aws, license)
            .await
            .unwrap()
            .unwrap();
        assert!(
            still.subscription.segment.unwrap().open,
            "the forged unsubscription changed nothing"
        );

        // unsubscribe-pending: still billed (the final usage window); then AWS ends the
        // entitlement and says unsubscribe-success: over.
        let delivery = saas
            .notify(PRODUCT, serde_json::json!({"action": "unsubscribe-pending", "license-arn": license, "product-code": PRODUCT}))
            .await
            .unwrap();
        assert_eq!(delivery.status, Some(200));
        processor.run(&store, Timestamp::now()).await.unwrap();
        let record = store
            .subscription_for_processing(Marketplace::Aws, license)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.state, SubscriptionState::Active);
        saas.remove_entitlements(license);
        let delivery = saas
            .notify(PRODUCT, serde_json::json!({"action": "unsubscribe-success", "license-arn": license, "product-code": PRODUCT}))
            .await
            .unwrap();
        assert_eq!(delivery.status, Some(200));
        process_until_with(
            &processor,
            &store,
            state_is_in(Marketplace::Aws, license, SubscriptionState::Cancelled),
        )
        .await;
        let record = store
            .subscription_for_processing(Marketplace::Aws, license)
            .await
            .unwrap()
            .unwrap();
        assert!(!record.subscription.segment.as_ref().unwrap().open);
        // Redelivered by SNS (same MessageId): stored once.
        let again = saas
            .deliver(&serde_json::from_str(&saas.sns_deliveries().last().unwrap().body).unwrap())
            .await
            .unwrap();
        assert_eq!(again.status, Some(200));
        let sns: Vec<_> = store
            .notifications(None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.channel == "sns" && n.status != NotificationStatus::Malformed)
            .collect();
        // The two notifications, and the confirmation kept as the control message it is.
        assert_eq!(sns.len(), 3, "{sns:?}");
        assert_eq!(
            sns.iter()
                .filter(|n| n.kind.as_deref() == Some("SubscriptionConfirmation"))
                .count(),
            1
        );
    }
);

/// The Azure desk against the fakes, its webhook JWTs verified against the fake
/// Entra issuer's keys.
fn azure_desk(
    fakes: &FakeMarketplaces,
    api: purser_marketplace::AzureConfig,
) -> purser_app::subscriptions::azure::AzureDesk {
    use purser_app::subscriptions::azure::{
        AzureDesk, AzureSubscriptionsConfig, AzureWebhookConfig,
    };
    AzureDesk::new(&AzureSubscriptionsConfig {
        api,
        webhook: AzureWebhookConfig {
            jwks_url: fakes.entra_jwks_url(),
            ..AzureWebhookConfig::default()
        },
    })
    .expect("desk")
}

/// `[subscriptions.gcp]` against the fake Procurement API.
fn gcp_config(
    fakes: &FakeMarketplaces,
    pubsub: PubSubConfig,
    subscription: &str,
    push: Option<GcpPushConfig>,
) -> GcpSubscriptionsConfig {
    let mut procurement = ProcurementConfig::new(
        fakes.procurement().provider_id(),
        GcpCredentials::Token {
            token: SecretSource::Inline(Secret::new(&purser_fakes::GcpConfig::default().token)),
        },
    );
    procurement.base_url = fakes.procurement_url();
    GcpSubscriptionsConfig {
        procurement,
        pubsub,
        subscription: subscription.into(),
        service_name: Some(SERVICE.into()),
        pull_max_messages: 100,
        push,
    }
}

/// POSTs `body` to Purser's `path` with `token` as the bearer, and gives the status.
async fn post_hook(base: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

both_backends!(
    google_notifications_pushed_by_pubsub_are_stored_once_and_acted_on,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let emulator = PubSubEmulator::start().await.expect("the Pub/Sub emulator");
        let fakes = FakeMarketplaces::start(FakeConfig::default())
            .await
            .expect("fakes");
        let pubsub_config = PubSubConfig::emulator(&emulator.url());
        let pubsub = PubSubClient::new(&pubsub_config).expect("pubsub");
        let topic = format!("projects/{PROJECT}/topics/procurement-pushed");
        let pull = format!("projects/{PROJECT}/subscriptions/purser-pull");
        let push = format!("projects/{PROJECT}/subscriptions/purser-push");
        pubsub.create_topic(&topic).await.expect("topic");
        // The emulator cannot sign its pushes: verification explicitly off.
        let desk = GcpDesk::new(&gcp_config(
            &fakes,
            pubsub_config,
            &pull,
            Some(GcpPushConfig::unverified()),
        ))
        .expect("desk");
        let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(desk)];
        let processor = SubscriptionProcessor::new(desks);
        let base = serve_intake(&store, &processor).await;
        // Both a push subscription to Purser's hook and the job's pull subscription
        // get every message: each is stored once all the same.
        pubsub
            .create_push_subscription(&push, &topic, 10, &format!("{base}/hooks/gcp/pubsub"), None)
            .await
            .expect("push subscription");
        pubsub
            .create_subscription(&pull, &topic, 10)
            .await
            .expect("pull subscription");
        fakes.procurement().connect_pubsub(&emulator.url(), &topic);

        let offer = fixtures::written_offer(&store, Marketplace::Gcp).await;
        fixtures::sell_plan(&store, Marketplace::Gcp, "standard", &offer.id, 100).await;
        let account =
            fixtures::account(&store, Marketplace::Gcp, "hooli", "Hooli", "standard", 5).await;
        let admin = scope("root", &[Role::Admin], &[], Some("US"));
        let procurement = fakes.procurement();
        let id = procurement
            .order(EntitlementOrder {
                account_id: "gcp-acct-push".into(),
                product: SERVICE.into(),
                plan: "standard".into(),
                usage_reporting_id: Some("project_number:5510".into()),
                offer: None,
                offer_end_time: None,
            })
            .await
            .unwrap();

        // Pushed: stored by the hook before the job has run at all.
        let about = |kept: &[purser_store::subscriptions::Notification]| {
            kept.iter()
                .filter(|n| n.external_id.as_deref() == Some(id.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut pushed = Vec::new();
        for _ in 0..150 {
            pushed = about(&store.notifications(None, 100).await.unwrap());
            if !pushed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pushed.len(), 1, "the push reached the store");
        let event = procurement
            .published()
            .into_iter()
            .find(|e| e["entitlement"]["id"] == serde_json::json!(id))
            .unwrap();
        assert_eq!(pushed[0].channel, "pubsub");
        assert_eq!(pushed[0].status, NotificationStatus::Received);
        assert_eq!(
            Some(pushed[0].delivery_key.as_str()),
            event["eventId"].as_str(),
            "keyed by eventId, as a pulled message is"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&pushed[0].body).unwrap(),
            event,
            "the message's data is stored, not the envelope"
        );

        // The job pulls the same message and acts on the one stored notification.
        process_until_with(
            &processor,
            &store,
            state_is(&id, SubscriptionState::Requested),
        )
        .await;
        let report = processor.run(&store, Timestamp::now()).await.unwrap();
        assert_eq!(
            report.pulled, 0,
            "the pull subscription was drained: {report:?}"
        );
        assert_eq!(
            about(&store.notifications(None, 100).await.unwrap()).len(),
            1,
            "delivered by push and by pull, stored once"
        );
        store
            .link_subscription(
                &admin,
                Marketplace::Gcp,
                &id,
                &account,
                serde_json::json!({}),
            )
            .await
            .unwrap();
        process_until_with(&processor, &store, state_is(&id, SubscriptionState::Active)).await;
        assert_eq!(
            procurement.entitlement(&id).unwrap().state,
            "ENTITLEMENT_ACTIVE"
        );
    }
);

both_backends!(
    pushed_deliveries_without_googles_token_are_refused_and_not_stored,
    |db: TestDatabase| async move {
        use base64::Engine;
        use purser_fakes::oidc::Signing;
        use serde_json::json;
        const AUDIENCE: &str = "https://purser.example/hooks/gcp/pubsub";
        const EMAIL: &str = "procurement-push@vendor.iam.gserviceaccount.com";
        let store = db.open().await;
        let fakes = FakeMarketplaces::start(FakeConfig::default())
            .await
            .expect("fakes");
        let mut push = GcpPushConfig::verified(AUDIENCE, EMAIL);
        push.jwks_url = fakes.google_jwks_url();
        let desk = GcpDesk::new(&gcp_config(
            &fakes,
            // Never reached: nothing is pulled here.
            PubSubConfig::emulator("http://127.0.0.1:9"),
            "projects/p/subscriptions/pull",
            Some(push),
        ))
        .expect("desk");
        let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(desk)];
        let processor = SubscriptionProcessor::new(desks);
        let base = serve_intake(&store, &processor).await;

        let notification = r#"{"eventId":"ev-push-1","eventType":"ENTITLEMENT_CREATION_REQUESTED","entitlement":{"id":"ent-push-1"}}"#;
        let envelope = json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(notification),
                "messageId": "2070443601311540",
                "publishTime": "2026-12-01T15:00:00.000Z",
            },
            "subscription": "projects/p/subscriptions/push",
        })
        .to_string();
        let now = Timestamp::now().as_second();
        let claims = json!({
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": EMAIL,
            "email_verified": true,
            "sub": "10888",
            "iat": now,
            "exp": now + 3600,
        });
        let with = |key: &str, value: serde_json::Value| {
            let mut c = claims.clone();
            c[key] = value;
            c
        };
        let issuer = fakes.google_oidc();
        let refused: Vec<(&str, Option<String>)> = vec![
            ("no token", None),
            (
                "wrong audience",
                Some(
                    issuer
                        .sign(&with("aud", json!("https://other.example")))
                        .unwrap(),
                ),
            ),
            (
                "wrong email",
                Some(issuer.sign(&with("email", json!("x@y.example"))).unwrap()),
            ),
            (
                "email not verified",
                Some(issuer.sign(&with("email_verified", json!(false))).unwrap()),
            ),
            (
                "expired",
                Some(issuer.sign(&with("exp", json!(now - 600))).unwrap()),
            ),
            (
                "wrong issuer",
                Some(
                    issuer
                        .sign(&with("iss", json!("https://accounts.evil.example")))
                        .unwrap(),
                ),
            ),
            (
                "unknown key",
                Some(issuer.sign_as(&claims, Signing::UnknownKeyId).unwrap()),
            ),
            (
                "unpublished key",
                Some(issuer.sign_as(&claims, Signing::UnpublishedKey).unwrap()),
            ),
            (
                "alg none",
                Some(issuer.sign_as(&claims, Signing::None).unwrap()),
            ),
            (
                "HS256",
                Some(
                    issuer
                        .sign_as(&claims, Signing::Hs256WithPublicKey)
                        .unwrap(),
                ),
            ),
            (
                "tampered signature",
                Some(issuer.sign_as(&claims, Signing::Tampered).unwrap()),
            ),
        ];
        for (what, token) in &refused {
            assert_eq!(
                post_hook(&base, "/hooks/gcp/pubsub", token.as_deref(), &envelope).await,
                401,
                "{what}"
            );
            assert!(
                store.notifications(None, 100).await.unwrap().is_empty(),
                "{what}: nothing stored"
            );
        }

        // Google's own token: stored (once, however often it is pushed), then 2xx.
        let token = issuer.sign(&claims).unwrap();
        for _ in 0..2 {
            let status = post_hook(&base, "/hooks/gcp/pubsub", Some(&token), &envelope).await;
            assert!((200..300).contains(&status), "{status}");
        }
        let kept = store.notifications(None, 100).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].delivery_key, "ev-push-1");
        assert_eq!(kept[0].body, notification);
        assert_eq!(kept[0].external_id.as_deref(), Some("ent-push-1"));

        // An envelope that cannot be read, from Google: kept as malformed, 400.
        assert_eq!(
            post_hook(
                &base,
                "/hooks/gcp/pubsub",
                Some(&token),
                r#"{"message":{"data":"***","messageId":"7"},"subscription":"projects/p/subscriptions/push"}"#
            )
            .await,
            400
        );
        let kept = store.notifications(None, 100).await.unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().any(|n| {
            n.status == NotificationStatus::Malformed
                && n.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("base64"))
        }));
    }
);

both_backends!(
    azure_webhooks_without_entras_token_are_refused_and_not_stored,
    |db: TestDatabase| async move {
        use purser_fakes::oidc::Signing;
        use serde_json::json;
        let store = db.open().await;
        let fakes = FakeMarketplaces::start(FakeConfig::default())
            .await
            .expect("fakes");
        let defaults = purser_fakes::AzureConfig::default();
        let mut azure = purser_marketplace::AzureConfig::new(
            &defaults.tenant_id,
            &defaults.client_id,
            SecretSource::Inline(Secret::new(defaults.client_secret.clone())),
        );
        azure.base_url = fakes.fulfillment_url();
        azure.login_base = fakes.azure_login_url();
        let desks: Vec<Arc<dyn SubscriptionDesk>> = vec![Arc::new(azure_desk(&fakes, azure))];
        let processor = SubscriptionProcessor::new(desks);
        let base = serve_intake(&store, &processor).await;

        let body = r#"{"id":"74dfb4db-c193-4891-827d-eb05fbdc64b0","activityId":"5e7a1b1e-3b7d-4f4b-9d0a-6a3c2a1b0c9d","subscriptionId":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","publisherId":"contoso","offerId":"storage","planId":"gold","timeStamp":"2026-12-01T10:05:29.9799053Z","action":"Unsubscribe","status":"Succeeded","operationRequestSource":"Azure","subscription":{"id":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01"},"purchaseToken":null}"#;
        let now = Timestamp::now().as_second();
        let claims = |tenant: &str, aud: &str, exp: i64| {
            json!({
                "iss": format!("https://sts.windows.net/{tenant}/"),
                "aud": aud,
                "tid": tenant,
                "iat": now,
                "nbf": now,
                "exp": exp,
            })
        };
        let issuer = fakes.entra_oidc();
        let tenant = defaults.tenant_id.as_str();
        let app = defaults.client_id.as_str();
        let refused: Vec<(&str, Option<String>)> = vec![
            ("no token", None),
            (
                "wrong audience",
                Some(
                    issuer
                        .sign(&claims(tenant, "another-app", now + 3600))
                        .unwrap(),
                ),
            ),
            (
                "wrong tenant",
                Some(
                    issuer
                        .sign(&claims(
                            "9a9a9a9a-0000-0000-0000-000000000000",
                            app,
                            now + 3600,
                        ))
                        .unwrap(),
                ),
            ),
            (
                "expired",
                Some(issuer.sign(&claims(tenant, app, now - 600)).unwrap()),
            ),
            (
                "tampered",
                Some(
                    issuer
                        .sign_as(&claims(tenant, app, now + 3600), Signing::Tampered)
                        .unwrap(),
                ),
            ),
            (
                "Google's issuer's key",
                Some(
                    fakes
                        .google_oidc()
                        .sign(&claims(tenant, app, now + 3600))
                        .unwrap(),
                ),
            ),
        ];
        for (what, token) in &refused {
            assert_eq!(
                post_hook(&base, "/hooks/azure/fulfillment", token.as_deref(), body).await,
                401,
                "{what}"
            );
            assert!(
                store.notifications(None, 100).await.unwrap().is_empty(),
                "{what}: nothing stored"
            );
        }
        let token = issuer.sign(&claims(tenant, app, now + 3600)).unwrap();
        assert_eq!(
            post_hook(&base, "/hooks/azure/fulfillment", Some(&token), body).await,
            200
        );
        let kept = store.notifications(None, 100).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kind.as_deref(), Some("Unsubscribe"));
    }
);
