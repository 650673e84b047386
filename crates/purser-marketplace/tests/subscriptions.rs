//! The subscription clients end to end against purser-fakes: Partner Procurement with its
//! notifications through the real Pub/Sub emulator, Azure SaaS Fulfillment with its
//! webhook, AWS ResolveCustomer and GetEntitlements, and SNS signature verification.
// Test helpers outside #[test] functions may fail loudly too (clippy.toml only covers
// the test functions themselves).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use purser_fakes::{
    AwsSaasCustomer, EntitlementOrder, FakeAwsEntitlement, FakeConfig, FakeEntitlementValue,
    FakeMarketplaces, FulfillmentConfig, PubSubEmulator,
};
use purser_marketplace::aws_saas::{
    AwsSaasClient, AwsSaasConfig, EntitlementFilter, EntitlementValue,
};
use purser_marketplace::fulfillment::{
    FulfillmentClient, OperationAction, OperationOutcome, OperationStatus, SaasSubscriptionStatus,
    parse_webhook,
};
use purser_marketplace::gcp::GcpCredentials;
use purser_marketplace::procurement::{
    ApprovalState, EntitlementState, NotificationSubject, ProcurementClient, ProcurementConfig,
    ProcurementEventType, parse_notification,
};
use purser_marketplace::pubsub::{PubSubClient, PubSubConfig, ReceivedMessage};
use purser_marketplace::sns::{
    MarketplaceAction, SnsError, SnsTrust, SnsVerifier, parse_envelope, parse_marketplace_message,
};
use purser_marketplace::{AzureConfig, ClientError, Secret, SecretSource};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const PROJECT: &str = "purser-test";

fn procurement_client(fakes: &FakeMarketplaces, token: &str) -> ProcurementClient {
    let mut config = ProcurementConfig::new(
        fakes.procurement().provider_id(),
        GcpCredentials::Token {
            token: SecretSource::Inline(Secret::new(token)),
        },
    );
    config.base_url = fakes.procurement_url();
    ProcurementClient::new(&config).expect("client")
}

async fn pull_one(pubsub: &PubSubClient, subscription: &str) -> ReceivedMessage {
    for _ in 0..100 {
        let mut messages = pubsub.pull(subscription, 1, true).await.expect("pull");
        if let Some(m) = messages.pop() {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no message on {subscription}");
}

fn refused_code(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// One emulator for the whole Procurement story (it takes seconds to start).
#[tokio::test]
async fn procurement_notifications_arrive_through_pubsub_and_approvals_follow_the_state_machine() {
    let emulator = PubSubEmulator::start().await.expect("emulator");
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let pubsub = PubSubClient::new(&PubSubConfig::emulator(&emulator.url())).expect("pubsub");
    let topic = format!("projects/{PROJECT}/topics/procurement-events");
    let subscription = format!("projects/{PROJECT}/subscriptions/purser-procurement");
    pubsub.create_topic(&topic).await.expect("topic");
    pubsub
        .create_topic(&topic)
        .await
        .expect("an existing topic is fine");
    pubsub
        .create_subscription(&subscription, &topic, 10)
        .await
        .expect("subscription");
    fakes.procurement().connect_pubsub(&emulator.url(), &topic);
    let client = procurement_client(&fakes, &purser_fakes::GcpConfig::default().token);

    // A customer buys: the account and the entitlement are announced.
    let id = fakes
        .procurement()
        .order(EntitlementOrder {
            account_id: "acct-1".into(),
            product: "purser-storage".into(),
            plan: "standard".into(),
            usage_reporting_id: Some("project_number:123".into()),
            offer: Some("projects/p/services/s/privateOffers/o-1".into()),
            offer_end_time: None,
        })
        .await
        .expect("order");
    let first = pull_one(&pubsub, &subscription).await;
    let account_event = parse_notification(&first.data).expect("account event");
    assert_eq!(
        account_event.event_type,
        ProcurementEventType::AccountActive
    );
    assert!(
        matches!(account_event.subject, NotificationSubject::Account(ref a) if a.id == "acct-1")
    );
    pubsub
        .acknowledge(&subscription, &[first.ack_id])
        .await
        .expect("ack");

    let created = pull_one(&pubsub, &subscription).await;
    let event = parse_notification(&created.data).expect("entitlement event");
    assert_eq!(
        event.event_type,
        ProcurementEventType::EntitlementCreationRequested
    );
    assert_eq!(
        event.provider_id.as_deref(),
        Some(fakes.procurement().provider_id())
    );
    let NotificationSubject::Entitlement(ref subject) = event.subject else {
        panic!("entitlement expected");
    };
    assert_eq!(subject.id, id);
    pubsub
        .acknowledge(&subscription, &[created.ack_id])
        .await
        .expect("ack");

    // The entitlement is read again before acting, as Google advises.
    let entitlement = client.get_entitlement(&subject.id).await.expect("get");
    assert_eq!(entitlement.state, EntitlementState::ActivationRequested);
    assert_eq!(entitlement.plan.as_deref(), Some("standard"));
    assert_eq!(
        entitlement.usage_reporting_id.as_deref(),
        Some("project_number:123")
    );
    assert_eq!(entitlement.account_id(), Some("acct-1"));
    assert!(entitlement.update_time.is_some());

    // The account's sign-up approval.
    let account = client.get_account("acct-1").await.expect("account");
    assert_eq!(
        account.approval("signup").map(|a| &a.state),
        Some(&ApprovalState::Pending)
    );
    client
        .approve_account("acct-1", "signup", None)
        .await
        .expect("approve account");
    let account = client
        .get_account(&entitlement.account.clone().unwrap())
        .await
        .expect("by name");
    assert_eq!(
        account.approval("signup").map(|a| &a.state),
        Some(&ApprovalState::Approved)
    );
    assert_eq!(
        refused_code(client.approve_account("acct-1", "provisioning", None).await),
        (400, "INVALID_ARGUMENT".into())
    );

    client.approve_entitlement(&id).await.expect("approve");
    assert_eq!(
        client.get_entitlement(&id).await.unwrap().state,
        EntitlementState::Active
    );
    // Approving what is no longer pending is refused, as Google does.
    assert_eq!(
        refused_code(client.approve_entitlement(&id).await),
        (400, "FAILED_PRECONDITION".into())
    );
    assert_eq!(
        refused_code(client.reject_entitlement(&id, "late").await),
        (400, "FAILED_PRECONDITION".into())
    );

    // ENTITLEMENT_ACTIVE: not acknowledged, then handed back: delivered again, same id.
    let active = pull_one(&pubsub, &subscription).await;
    assert_eq!(
        parse_notification(&active.data).unwrap().event_type,
        ProcurementEventType::EntitlementActive
    );
    pubsub
        .modify_ack_deadline(&subscription, std::slice::from_ref(&active.ack_id), 0)
        .await
        .expect("nack");
    let again = pull_one(&pubsub, &subscription).await;
    assert_eq!(again.message_id, active.message_id);
    assert_eq!(again.data, active.data);
    pubsub
        .acknowledge(&subscription, &[again.ack_id])
        .await
        .expect("ack");
    assert!(
        pubsub
            .pull(&subscription, 10, true)
            .await
            .unwrap()
            .is_empty()
    );

    // A plan change waits for the provider; only the pending plan may be approved.
    fakes
        .procurement()
        .request_plan_change(&id, "premium")
        .await
        .expect("change");
    let change = pull_one(&pubsub, &subscription).await;
    assert_eq!(
        parse_notification(&change.data).unwrap().event_type,
        ProcurementEventType::EntitlementPlanChangeRequested
    );
    pubsub
        .acknowledge(&subscription, &[change.ack_id])
        .await
        .unwrap();
    let pending = client.get_entitlement(&id).await.unwrap();
    assert_eq!(pending.state, EntitlementState::PendingPlanChangeApproval);
    assert_eq!(pending.new_pending_plan.as_deref(), Some("premium"));
    assert_eq!(
        refused_code(client.approve_plan_change(&id, "enterprise").await),
        (400, "FAILED_PRECONDITION".into())
    );
    client
        .approve_plan_change(&id, "premium")
        .await
        .expect("approve change");
    let changed = client.get_entitlement(&id).await.unwrap();
    assert_eq!(
        (changed.state, changed.plan.as_deref()),
        (EntitlementState::Active, Some("premium"))
    );
    assert_eq!(changed.new_pending_plan, None);
    let changed_event = pull_one(&pubsub, &subscription).await;
    assert_eq!(
        parse_notification(&changed_event.data).unwrap().event_type,
        ProcurementEventType::EntitlementPlanChanged
    );
    pubsub
        .acknowledge(&subscription, &[changed_event.ack_id])
        .await
        .unwrap();

    // Cancellation at the end of the term.
    fakes.procurement().cancel(&id).await.unwrap();
    fakes
        .procurement()
        .end_term(&id, "user-cancelled")
        .await
        .unwrap();
    let cancelled = client.get_entitlement(&id).await.unwrap();
    assert_eq!(cancelled.state, EntitlementState::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("user-cancelled")
    );
    let types: Vec<ProcurementEventType> = [
        pull_one(&pubsub, &subscription).await,
        pull_one(&pubsub, &subscription).await,
    ]
    .into_iter()
    .map(|m| parse_notification(&m.data).unwrap().event_type)
    .collect();
    assert!(
        types.contains(&ProcurementEventType::EntitlementPendingCancellation),
        "{types:?}"
    );
    assert!(
        types.contains(&ProcurementEventType::EntitlementCancelled),
        "{types:?}"
    );

    // Unknown event types are kept; malformed ones keep their bytes.
    fakes
        .procurement()
        .publish_raw(
            br#"{"eventId":"e-9","eventType":"ENTITLEMENT_TELEPORTED","entitlement":{"id":"x"}}"#,
        )
        .await
        .unwrap();
    fakes.procurement().publish_raw(b"{not json").await.unwrap();
    let mut seen_unknown = false;
    let mut seen_malformed = false;
    for _ in 0..4 {
        let m = pull_one(&pubsub, &subscription).await;
        match parse_notification(&m.data) {
            Ok(n)
                if n.event_type == ProcurementEventType::Other("ENTITLEMENT_TELEPORTED".into()) =>
            {
                seen_unknown = true
            }
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw, b"{not json");
                seen_malformed = true;
            }
        }
        pubsub
            .acknowledge(&subscription, &[m.ack_id])
            .await
            .unwrap();
        if seen_unknown && seen_malformed {
            break;
        }
    }
    assert!(seen_unknown && seen_malformed);

    // Rejection removes a requested entitlement.
    let second = fakes
        .procurement()
        .order(EntitlementOrder {
            account_id: "acct-1".into(),
            product: "purser-storage".into(),
            plan: "standard".into(),
            ..EntitlementOrder::default()
        })
        .await
        .unwrap();
    client
        .reject_entitlement(&second, "not eligible")
        .await
        .expect("reject");
    assert_eq!(
        refused_code(client.get_entitlement(&second).await),
        (404, "NOT_FOUND".into())
    );
    assert!(fakes.procurement().publish_failures().is_empty());
    drop(emulator);
}

#[tokio::test]
async fn procurement_fake_enforces_auth_names_and_request_shapes() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let id = fakes
        .procurement()
        .order(EntitlementOrder {
            account_id: "acct-2".into(),
            product: "p".into(),
            plan: "standard".into(),
            ..EntitlementOrder::default()
        })
        .await
        .unwrap();
    let wrong = procurement_client(&fakes, "ya29.not-issued");
    assert_eq!(
        refused_code(wrong.get_entitlement(&id).await),
        (401, "UNAUTHENTICATED".into())
    );
    let client = procurement_client(&fakes, &purser_fakes::GcpConfig::default().token);
    assert!(matches!(
        client
            .get_entitlement("providers/someone-else/entitlements/x")
            .await,
        Err(ClientError::InvalidArgument { .. })
    ));
    assert!(matches!(
        client.get_entitlement("a/b").await,
        Err(ClientError::InvalidArgument { .. })
    ));
    // Over raw HTTP: unknown request members and other providers are refused.
    let http = reqwest::Client::new();
    let token = purser_fakes::GcpConfig::default().token;
    let provider = fakes.procurement().provider_id().to_owned();
    let url = format!(
        "{}/v1/providers/{provider}/entitlements/{id}:approve",
        fakes.procurement_url()
    );
    let answer = http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"approvalName": "signup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("Unknown name"));
    let other = format!(
        "{}/v1/providers/other/entitlements/{id}",
        fakes.procurement_url()
    );
    let answer = http.get(&other).bearer_auth(&token).send().await.unwrap();
    assert_eq!(answer.status(), 403);
    // What a GET answers holds only the contract's Entitlement properties.
    let get = format!(
        "{}/v1/providers/{provider}/entitlements/{id}",
        fakes.procurement_url()
    );
    let body: Value = http
        .get(&get)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contract = &purser_fakes::contract::contracts().unwrap().procurement;
    for key in body.as_object().unwrap().keys() {
        assert!(contract.entitlement_properties.contains(key), "{key}");
    }
    // A token from the fake metadata server works too (the same service account).
    let metadata: Value = http
        .get(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            fakes.gcp_metadata_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued = metadata["access_token"].as_str().unwrap();
    let by_metadata = procurement_client(&fakes, issued);
    assert_eq!(by_metadata.get_entitlement(&id).await.unwrap().id, id);
}

fn azure_config(fakes: &FakeMarketplaces) -> AzureConfig {
    let defaults = purser_fakes::AzureConfig::default();
    let mut config = AzureConfig::new(
        &defaults.tenant_id,
        &defaults.client_id,
        SecretSource::Inline(Secret::new(defaults.client_secret.clone())),
    );
    config.base_url = fakes.fulfillment_url();
    config.login_base = fakes.azure_login_url();
    config
}

/// A webhook endpoint that answers 500 to the first `failures` calls.
async fn webhook_receiver(failures: usize) -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let (url, received, _) = webhook_receiver_with_auth(failures).await;
    (url, received)
}

type Authorizations = Arc<Mutex<Vec<Option<String>>>>;

/// As [`webhook_receiver`], keeping each accepted call's `Authorization` header too.
async fn webhook_receiver_with_auth(
    failures: usize,
) -> (String, Arc<Mutex<Vec<Bytes>>>, Authorizations) {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let authorizations: Authorizations = Arc::default();
    let calls = Arc::new(Mutex::new(0usize));
    let store = received.clone();
    let auths = authorizations.clone();
    let app = Router::new().route(
        "/webhook",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let store = store.clone();
            let auths = auths.clone();
            let calls = calls.clone();
            async move {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if *n <= failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                store.lock().unwrap().push(body);
                auths.lock().unwrap().push(
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                );
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/webhook"), received, authorizations)
}

#[tokio::test]
async fn azure_fulfillment_resolves_activates_lists_and_answers_operations() {
    let (webhook, received, authorizations) = webhook_receiver_with_auth(2).await;
    let fakes = FakeMarketplaces::start(FakeConfig {
        fulfillment: FulfillmentConfig {
            page_size: 2,
            webhook_url: Some(webhook),
            webhook_attempts: 5,
            webhook_retry_interval: Duration::from_millis(20),
            ..FulfillmentConfig::default()
        },
        ..FakeConfig::default()
    })
    .await
    .expect("fakes");
    let client = FulfillmentClient::new(&azure_config(&fakes)).expect("client");
    let saas = fakes.fulfillment();
    let (id, token) = saas.purchase("purser-storage", "gold", Some(10));

    let resolved = client.resolve(&token).await.expect("resolve");
    assert_eq!(resolved.id, id);
    assert_eq!(resolved.plan_id.as_deref(), Some("gold"));
    assert_eq!(resolved.quantity, Some(10));
    let sub = resolved.subscription.expect("subscription");
    assert_eq!(
        sub.saas_subscription_status,
        Some(SaasSubscriptionStatus::PendingFulfillmentStart)
    );
    assert_eq!(
        refused_code(client.resolve("bogus").await),
        (400, "BadArgument".into())
    );

    assert_eq!(
        refused_code(client.activate(id, "silver", None).await),
        (400, "BadArgument".into())
    );
    client
        .activate(id, "gold", Some(10))
        .await
        .expect("activate");
    client
        .activate(id, "gold", None)
        .await
        .expect("activating again is accepted");
    let sub = client.get_subscription(id).await.expect("get");
    assert_eq!(
        sub.saas_subscription_status,
        Some(SaasSubscriptionStatus::Subscribed)
    );
    assert_eq!(
        refused_code(client.get_subscription(uuid::Uuid::new_v4()).await),
        (404, "EntityNotFound".into())
    );

    // Five subscriptions at two a page: @nextLink is followed to the end.
    for _ in 0..4 {
        saas.purchase("purser-storage", "gold", None);
    }
    let all = client.list_subscriptions().await.expect("list");
    assert_eq!(all.len(), 5);
    assert!(all.iter().any(|s| s.id == id));

    // A quantity change: the webhook arrives after two refused tries, is checked against
    // the operations API, and is answered.
    let operation = saas.change_quantity(id, 20).expect("change");
    let deliveries = saas.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(deliveries[0].attempts, 3, "{deliveries:?}");
    assert!(deliveries[0].delivered);
    let body = received.lock().unwrap()[0].clone();
    let webhook = parse_webhook(&body).expect("webhook");
    assert_eq!(webhook.operation_id, operation);
    assert_eq!(webhook.action, OperationAction::ChangeQuantity);
    assert_eq!(webhook.quantity, Some(20));
    // The call carries Entra's JWT for the fake tenant and application: it verifies
    // against the fake issuer's published keys.
    let defaults = purser_fakes::AzureConfig::default();
    let verifier = purser_marketplace::jwt::JwksVerifier::new(
        purser_marketplace::jwt::JwtPolicy {
            jwks_url: fakes.entra_jwks_url(),
            issuers: purser_marketplace::jwt::entra_issuers(&defaults.tenant_id),
            audience: defaults.client_id.clone(),
            required: vec![],
        },
        5_000,
    )
    .unwrap();
    let authorization = authorizations.lock().unwrap()[0].clone();
    let claims = verifier
        .verify_header(authorization.as_deref())
        .await
        .expect("the webhook's JWT");
    assert_eq!(claims["tid"], json!(defaults.tenant_id));
    let checked = client
        .get_operation(id, webhook.operation_id)
        .await
        .expect("operation");
    assert_eq!(checked.status, Some(OperationStatus::InProgress));
    assert_eq!(checked.action, Some(OperationAction::ChangeQuantity));
    let outstanding = client.list_operations(id).await.expect("operations");
    assert_eq!(
        outstanding.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![operation]
    );
    client
        .update_operation(id, operation, OperationOutcome::Success, None, Some(20))
        .await
        .expect("patch");
    assert_eq!(
        client.get_subscription(id).await.unwrap().quantity,
        Some(20)
    );
    assert_eq!(
        refused_code(
            client
                .update_operation(id, operation, OperationOutcome::Success, None, None)
                .await
        ),
        (409, "Conflict".into())
    );
    assert!(client.list_operations(id).await.unwrap().is_empty());

    // A refused plan change leaves the plan.
    let plan_op = saas.change_plan(id, "platinum").unwrap();
    client
        .update_operation(id, plan_op, OperationOutcome::Failure, None, None)
        .await
        .unwrap();
    assert_eq!(
        client
            .get_subscription(id)
            .await
            .unwrap()
            .plan_id
            .as_deref(),
        Some("gold")
    );
    assert_eq!(
        client.get_operation(id, plan_op).await.unwrap().status,
        Some(OperationStatus::Failed)
    );

    // Notify-only actions.
    saas.suspend(id).unwrap();
    assert_eq!(
        client
            .get_subscription(id)
            .await
            .unwrap()
            .saas_subscription_status,
        Some(SaasSubscriptionStatus::Suspended)
    );
    saas.reinstate(id).unwrap();
    saas.renew(id).unwrap();
    saas.unsubscribe(id).unwrap();
    assert_eq!(
        client
            .get_subscription(id)
            .await
            .unwrap()
            .saas_subscription_status,
        Some(SaasSubscriptionStatus::Unsubscribed)
    );
    assert_eq!(
        refused_code(client.activate(id, "gold", None).await),
        (400, "BadArgument".into())
    );
    let deliveries = saas.wait_for_deliveries(6, Duration::from_secs(5)).await;
    let actions: Vec<&str> = deliveries.iter().map(|d| d.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "ChangeQuantity",
            "ChangePlan",
            "Suspend",
            "Reinstate",
            "Renew",
            "Unsubscribe"
        ]
    );
    assert!(deliveries.iter().all(|d| d.delivered));
    let bodies = received.lock().unwrap().clone();
    let last = parse_webhook(bodies.last().unwrap()).unwrap();
    assert_eq!(last.action, OperationAction::Unsubscribe);
    assert_eq!(last.status, Some(OperationStatus::Succeeded));
}

#[tokio::test]
async fn azure_fulfillment_fake_enforces_the_contract() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let (id, _token) = fakes.fulfillment().purchase("o", "gold", None);
    let http = reqwest::Client::new();
    let url = format!("{}/saas/subscriptions/{id}", fakes.fulfillment_url());
    // No token: 401; a token the fake did not issue: 403.
    let answer = http
        .get(&url)
        .query(&[("api-version", "2018-08-31")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let answer = http
        .get(&url)
        .query(&[("api-version", "2018-08-31")])
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    // A real token, but no api-version or an unknown one: 400.
    let defaults = purser_fakes::AzureConfig::default();
    let token: Value = http
        .post(format!(
            "{}/{}/oauth2/token",
            fakes.azure_login_url(),
            defaults.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", defaults.client_id.as_str()),
            ("client_secret", defaults.client_secret.as_str()),
            ("resource", purser_marketplace::azure::METERING_RESOURCE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let answer = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    let answer = http
        .get(&url)
        .query(&[("api-version", "2099-01-01")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let answer = http
        .get(&url)
        .query(&[("api-version", "2018-08-31")])
        .bearer_auth(&token)
        .header("x-ms-requestid", "not-a-guid")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    // Activation with a member the contract's SubscriberPlan does not have: 400.
    let answer = http
        .post(format!("{url}/activate"))
        .query(&[("api-version", "2018-08-31")])
        .bearer_auth(&token)
        .json(&json!({"planId": "gold", "seats": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    // What the fake answers holds only the contract's Subscription properties.
    let body: Value = http
        .get(&url)
        .query(&[("api-version", "2018-08-31")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contract = &purser_fakes::contract::contracts().unwrap().fulfillment;
    for key in body.as_object().unwrap().keys() {
        assert!(contract.subscription.contains(key), "{key}");
    }
    assert!(
        contract
            .subscription_statuses
            .contains(&body["saasSubscriptionStatus"].as_str().unwrap().to_owned())
    );
}

fn aws_saas_client(fakes: &FakeMarketplaces, secret: &str) -> AwsSaasClient {
    let defaults = purser_fakes::aws::AwsConfig::default();
    let mut config = AwsSaasConfig::new(
        &defaults.region,
        &defaults.access_key_id,
        SecretSource::Inline(Secret::new(secret)),
    );
    config.metering_base_url = Some(fakes.aws_url());
    config.entitlement_base_url = Some(fakes.aws_entitlement_url());
    AwsSaasClient::new(&config).expect("client")
}

#[tokio::test]
async fn aws_registration_tokens_resolve_once_and_entitlements_page() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let secret = purser_fakes::aws::AwsConfig::default().secret_access_key;
    let client = aws_saas_client(&fakes, &secret);
    let license = "arn:aws:license-manager::123456789012:license:l-0abc";
    let token = fakes.aws_saas().issue_registration_token(AwsSaasCustomer {
        product_code: "prod-1".into(),
        customer_aws_account_id: "123456789012".into(),
        license_arn: Some(license.into()),
        customer_identifier: None,
    });
    let resolved = client.resolve_customer(&token).await.expect("resolve");
    assert_eq!(
        resolved.customer_aws_account_id.as_deref(),
        Some("123456789012")
    );
    assert_eq!(resolved.license_arn.as_deref(), Some(license));
    assert_eq!(resolved.product_code.as_deref(), Some("prod-1"));
    assert_eq!(resolved.customer_identifier, None);
    assert_eq!(
        refused_code(client.resolve_customer(&token).await),
        (400, "ExpiredTokenException".into())
    );
    assert_eq!(
        refused_code(client.resolve_customer("never-issued").await),
        (400, "InvalidTokenException".into())
    );
    // A wrong secret signs wrongly: refused before anything is looked at.
    let forger = aws_saas_client(&fakes, "not-the-secret");
    let token = fakes.aws_saas().issue_registration_token(AwsSaasCustomer {
        product_code: "prod-1".into(),
        customer_aws_account_id: "123456789012".into(),
        license_arn: Some(license.into()),
        customer_identifier: None,
    });
    assert_eq!(
        refused_code(forger.resolve_customer(&token).await),
        (403, "InvalidSignatureException".into())
    );
    assert!(
        client.resolve_customer(&token).await.is_ok(),
        "the forger did not use it up"
    );

    // 30 entitlements of one license (two pages of 25), one of another account.
    for i in 0..30 {
        fakes.aws_saas().add_entitlement(FakeAwsEntitlement {
            product_code: "prod-1".into(),
            dimension: format!("tier_{i}"),
            customer_identifier: None,
            customer_aws_account_id: Some("123456789012".into()),
            license_arn: Some(license.into()),
            value: if i == 0 {
                FakeEntitlementValue::Double("12.345678901234567890".into())
            } else {
                FakeEntitlementValue::Integer(i)
            },
            expiration_date: Some("2027-01-01T00:00:00Z".parse().unwrap()),
        });
    }
    fakes.aws_saas().add_entitlement(FakeAwsEntitlement {
        product_code: "prod-1".into(),
        dimension: "tier_0".into(),
        customer_identifier: None,
        customer_aws_account_id: Some("999999999999".into()),
        license_arn: Some("arn:aws:license-manager::999999999999:license:l-other".into()),
        value: FakeEntitlementValue::Boolean(true),
        expiration_date: None,
    });
    let mine = client
        .get_entitlements("prod-1", &EntitlementFilter::license(license))
        .await
        .expect("entitlements");
    assert_eq!(mine.len(), 30);
    assert_eq!(
        mine[0].value,
        EntitlementValue::Double(Decimal::from_str("12.345678901234567890").unwrap())
    );
    assert_eq!(
        mine[0].expiration_date,
        Some("2027-01-01T00:00:00Z".parse().unwrap())
    );
    let (_, entitlement_calls) = fakes.aws_saas().calls();
    assert_eq!(entitlement_calls, 2, "two pages");
    let mut by_account = EntitlementFilter::account("999999999999");
    by_account.dimension = vec!["tier_0".into()];
    let other = client
        .get_entitlements("prod-1", &by_account)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].value, EntitlementValue::Boolean(true));
    assert!(
        client
            .get_entitlements("prod-2", &EntitlementFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let mut both = EntitlementFilter::account("1");
    both.customer_identifier = vec!["c".into()];
    assert!(matches!(
        client.get_entitlements("prod-1", &both).await,
        Err(ClientError::InvalidArgument { .. })
    ));
}

/// An endpoint subscribed to the SNS topics: keeps every body.
async fn sns_endpoint() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    webhook_receiver(0).await
}

#[tokio::test]
async fn sns_notifications_verify_and_forgeries_never_do() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let (url, received) = sns_endpoint().await;
    let saas = fakes.aws_saas();
    saas.set_sns_endpoint(&url);
    let topic = "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-prod1";
    let trust = SnsTrust {
        topic_arns: vec![topic.into()],
        extra_cert_url_prefixes: vec![fakes.aws_sns_cert_prefix()],
    };
    let verifier = SnsVerifier::new(trust.clone()).expect("verifier");

    let delivery = saas
        .notify(
            "prod1",
            json!({"action": "subscribe-success", "customer-identifier": "X01", "product-code": "prod1", "offer-identifier": "offer-1", "isFreeTrialTermPresent": "false"}),
        )
        .await
        .expect("notify");
    assert_eq!(delivery.status, Some(200));
    let body = received.lock().unwrap()[0].clone();
    let envelope = parse_envelope(&body).expect("envelope");
    verifier
        .verify(&envelope)
        .await
        .expect("a genuine notification verifies");
    let message = parse_marketplace_message(&envelope.message).expect("message");
    assert_eq!(message.action, MarketplaceAction::SubscribeSuccess);
    assert_eq!(message.offer_identifier.as_deref(), Some("offer-1"));
    assert_eq!(message.is_free_trial_term_present, Some(false));

    // SignatureVersion 1 (SHA1withRSA), with a Subject, and a SubscriptionConfirmation.
    let v1 = saas
        .signed_notification(topic, r#"{"action":"unsubscribe-pending","customer-identifier":"X01","product-code":"prod1"}"#, Some("hello"), "1")
        .unwrap();
    let v1 = parse_envelope(v1.to_string().as_bytes()).unwrap();
    verifier.verify(&v1).await.expect("version 1 verifies");
    let confirmation = parse_envelope(
        saas.signed_subscription_confirmation(topic)
            .unwrap()
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    verifier
        .verify(&confirmation)
        .await
        .expect("confirmation verifies");
    assert_eq!(
        saas.sns_certificate_fetches(),
        1,
        "the certificate is cached"
    );

    // Tampering with any signed field breaks the signature.
    let tamper = |f: &dyn Fn(&mut purser_marketplace::sns::SnsEnvelope)| {
        let mut e = envelope.clone();
        f(&mut e);
        e
    };
    let forgeries = [
        tamper(&|e| {
            e.message = e
                .message
                .replace("subscribe-success", "unsubscribe-success")
        }),
        tamper(&|e| e.message_id = "another".into()),
        tamper(&|e| e.timestamp = "2020-01-01T00:00:00.000Z".into()),
        tamper(&|e| e.subject = Some("added".into())),
        tamper(&|e| e.signature_version = "1".into()),
        tamper(&|e| {
            e.message_type = purser_marketplace::sns::SnsMessageType::UnsubscribeConfirmation
        }),
        tamper(&|e| e.signature = v1.signature.clone()),
    ];
    for forged in &forgeries {
        let result = verifier.verify(forged).await;
        assert!(
            matches!(
                result,
                Err(SnsError::BadSignature) | Err(SnsError::MissingField(_))
            ),
            "{result:?}"
        );
    }
    let garbage = tamper(&|e| e.signature = "!!!".into());
    assert_eq!(
        verifier.verify(&garbage).await,
        Err(SnsError::SignatureEncoding)
    );
    let unsupported = tamper(&|e| e.signature_version = "3".into());
    assert!(matches!(
        verifier.verify(&unsupported).await,
        Err(SnsError::UnsupportedSignatureVersion(_))
    ));

    // A certificate URL outside SNS's hosts is never fetched, whatever it serves.
    let strict = SnsVerifier::new(SnsTrust {
        topic_arns: vec![topic.into()],
        extra_cert_url_prefixes: Vec::new(),
    })
    .unwrap();
    assert!(matches!(
        strict.verify(&envelope).await,
        Err(SnsError::UntrustedCertificateUrl(_))
    ));
    for url in [
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
    ] {
        let moved = tamper(&|e| e.signing_cert_url = url.into());
        assert!(matches!(
            verifier.verify(&moved).await,
            Err(SnsError::UntrustedCertificateUrl(_))
        ));
    }
    // Another topic is refused even when signed.
    let elsewhere = saas
        .signed_notification("arn:aws:sns:us-east-1:1:other", "{}", None, "2")
        .unwrap();
    let elsewhere = parse_envelope(elsewhere.to_string().as_bytes()).unwrap();
    assert!(matches!(
        verifier.verify(&elsewhere).await,
        Err(SnsError::UnexpectedTopic(_))
    ));
    // Malformed deliveries keep their bytes.
    let err = parse_envelope(b"{\"Type\":\"Notification\"}").expect_err("malformed");
    assert!(err.reason.contains("MessageId"), "{}", err.reason);
    let _ = BTreeMap::<String, String>::new();
}
