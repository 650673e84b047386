//! The fake Azure SaaS Fulfillment API v2 (api-version 2018-08-31), served beside the fake
//! metering API under the same `/api` and taking the same Entra ID tokens, and the
//! webhook Microsoft calls on every change.
//!
//! Rules, each with its source (contract = the OpenAPI document
//! `contracts/azure/saasapi.v2.json` through [`crate::contract`]; prose = learn.microsoft.com
//! partner-center/marketplace/partner-center-portal/pc-saas-fulfillment-subscription-api,
//! pc-saas-fulfillment-operations-api and pc-saas-fulfillment-webhook, read 2026-12-01):
//! - Paths and methods (contract): resolve, list, get, activate, list operations, get and
//!   PATCH an operation; `api-version` from the contract's enum → else 400; optional
//!   `x-ms-requestid` / `x-ms-correlationid` must be GUIDs (contract `format: uuid`).
//! - `Authorization: Bearer` of a token the fake Entra endpoint issued (the same resource
//!   as metering) → 401 without one, 403 for an unknown or expired one (contract 403).
//! - Resolve needs `x-ms-marketplace-token` (contract, required header): a token the fake
//!   issued for a purchase, valid 24 hours by default ("usually valid for 24 hours",
//!   prose) → else 400.
//! - Activate takes a SubscriberPlan (contract) whose planId is the subscription's;
//!   PendingFulfillmentStart → Subscribed; again on a Subscribed subscription is accepted
//!   (the fake's reading: a retry after a lost answer must not fail); Suspended or
//!   Unsubscribed → 400.
//! - Bodies hold only the schema's properties (contract SubscriberPlan, UpdateOperation).
//! - Operations: ChangePlan and ChangeQuantity start InProgress and wait for the
//!   publisher's PATCH `{status: Success|Failure}` (contract UpdateOperation; prose:
//!   operations API); PATCH of an operation not InProgress → 409 (contract: "a newer
//!   update is already fulfilled"). Suspend, Reinstate, Unsubscribe and Renew are
//!   notify-only (prose, webhook page's table) and Succeeded at once.
//! - List: 100 subscriptions a page (prose) with an absolute `@nextLink`.
//! - Webhook: each operation is POSTed to the configured URL as `{id, activityId,
//!   subscriptionId, publisherId, offerId, planId, quantity, timeStamp, action, status,
//!   operationRequestSource, subscription, purchaseToken}` (prose, webhook page); any
//!   answer but 2xx is retried, Microsoft retrying "500 times over 8 hours"
//!   (shared/reference/metering-and-marketplaces.md §1b, SECONDARY): tests shorten the
//!   interval. Each call carries `Authorization: Bearer <JWT>` as Microsoft's do (prose,
//!   webhook page: the publisher should validate it): RS256 from the fake Entra issuer
//!   ([`crate::oidc`]), `aud` the publisher's Entra application id, `iss`
//!   `https://sts.windows.net/{tenant}/`, `tid` the tenant, `iat`/`nbf` now and `exp` an
//!   hour on, on the real clock (the verifier's), not the fake one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::FakeError;
use crate::azure::AzureFake;
use crate::clock::FakeClock;
use crate::contract::FulfillmentContract;
use crate::oidc::OidcIssuer;
use crate::server::{bearer, random_token};

/// The fake's settings.
#[derive(Debug, Clone)]
pub struct FulfillmentConfig {
    pub publisher_id: String,
    /// Subscriptions per page of the listing.
    pub page_size: usize,
    pub landing_token_lifetime: SignedDuration,
    /// Where the webhook posts; none: no webhook calls.
    pub webhook_url: Option<String>,
    /// How often a webhook call is tried in all, and the wait between tries.
    pub webhook_attempts: u32,
    pub webhook_retry_interval: Duration,
    /// Whether webhook calls carry Entra's JWT (Microsoft's always do).
    pub webhook_signed: bool,
    /// The tenant and the Entra application id (`aud`) the JWT is issued for; the
    /// fake Azure's tenant and client id when not set.
    pub webhook_tenant_id: Option<String>,
    pub webhook_audience: Option<String>,
}

impl Default for FulfillmentConfig {
    fn default() -> Self {
        Self {
            publisher_id: "purser-fake-publisher".into(),
            page_size: 100,
            landing_token_lifetime: SignedDuration::from_hours(24),
            webhook_url: None,
            webhook_attempts: 500,
            // 8 hours over 500 tries.
            webhook_retry_interval: Duration::from_millis(57_600),
            webhook_signed: true,
            webhook_tenant_id: None,
            webhook_audience: None,
        }
    }
}

/// A SaaS subscription as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeSaasSubscription {
    pub id: Uuid,
    pub name: String,
    pub offer_id: String,
    pub plan_id: String,
    pub quantity: Option<u64>,
    /// The contract's `saasSubscriptionStatus` value.
    pub status: String,
    pub purchaser_email: String,
    pub tenant_id: Uuid,
    pub term_start: Timestamp,
    pub term_end: Timestamp,
    pub auto_renew: bool,
    pub created: Timestamp,
}

/// An operation as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeOperation {
    pub id: Uuid,
    pub activity_id: Uuid,
    pub subscription_id: Uuid,
    pub action: String,
    pub status: String,
    pub plan_id: String,
    pub quantity: Option<u64>,
    pub time_stamp: Timestamp,
}

/// One webhook notification and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    pub operation_id: Uuid,
    pub action: String,
    pub body: Value,
    pub attempts: u32,
    pub delivered: bool,
    pub last_status: Option<u16>,
}

#[derive(Debug, Default)]
struct Ledger {
    subscriptions: BTreeMap<Uuid, FakeSaasSubscription>,
    /// Subscriptions in creation order, for paging.
    order: Vec<Uuid>,
    tokens: HashMap<String, (Uuid, Timestamp)>,
    operations: BTreeMap<Uuid, FakeOperation>,
    deliveries: Vec<WebhookDelivery>,
    webhook_url: Option<String>,
    /// (tenant, audience) of the webhook's JWT; none: unsigned calls.
    webhook_identity: Option<(String, String)>,
}

/// A handle to the fake SaaS Fulfillment API.
#[derive(Debug, Clone)]
pub struct FulfillmentFake {
    ledger: Arc<Mutex<Ledger>>,
    config: Arc<FulfillmentConfig>,
    clock: FakeClock,
    http: reqwest::Client,
    issuer: OidcIssuer,
}

const PENDING: &str = "PendingFulfillmentStart";
const SUBSCRIBED: &str = "Subscribed";
const SUSPENDED: &str = "Suspended";
const UNSUBSCRIBED: &str = "Unsubscribed";

impl FulfillmentFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends later webhook calls to `url`.
    pub fn set_webhook_url(&self, url: &str) {
        self.ledger().webhook_url = Some(url.to_owned());
    }

    /// Signs later webhook calls for `tenant_id` and `audience` (tests of refusals);
    /// none: calls without a JWT.
    pub fn set_webhook_identity(&self, identity: Option<(&str, &str)>) {
        self.ledger().webhook_identity = identity.map(|(t, a)| (t.to_owned(), a.to_owned()));
    }

    /// The JWT a webhook call carries now, if calls are signed.
    fn webhook_token(&self) -> Result<Option<String>, FakeError> {
        let Some((tenant, audience)) = self.ledger().webhook_identity.clone() else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now().as_second();
        let claims = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "tid": tenant,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        });
        self.issuer.sign(&claims).map(Some)
    }

    /// A customer buys `plan_id` of `offer_id`: a PendingFulfillmentStart subscription and
    /// the landing page's token for it.
    pub fn purchase(&self, offer_id: &str, plan_id: &str, quantity: Option<u64>) -> (Uuid, String) {
        let now = self.clock.now();
        let id = Uuid::new_v4();
        let term_end = now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(1.month())
            .map(|z| z.timestamp())
            .unwrap_or(now);
        let subscription = FakeSaasSubscription {
            id,
            name: format!("purchase-{}", &id.simple().to_string()[..8]),
            offer_id: offer_id.to_owned(),
            plan_id: plan_id.to_owned(),
            quantity,
            status: PENDING.into(),
            purchaser_email: "buyer@customer.example".into(),
            tenant_id: Uuid::new_v4(),
            term_start: now,
            term_end,
            auto_renew: true,
            created: now,
        };
        let mut ledger = self.ledger();
        ledger.subscriptions.insert(id, subscription);
        ledger.order.push(id);
        drop(ledger);
        (id, self.landing_token(id))
    }

    /// A new landing-page token for a subscription (Azure issues one each time the
    /// customer opens the publisher's page from the portal).
    pub fn landing_token(&self, subscription_id: Uuid) -> String {
        let token = random_token("azmp-");
        let expires = self.clock.now() + self.config.landing_token_lifetime;
        self.ledger()
            .tokens
            .insert(token.clone(), (subscription_id, expires));
        token
    }

    pub fn subscription(&self, id: Uuid) -> Option<FakeSaasSubscription> {
        self.ledger().subscriptions.get(&id).cloned()
    }

    pub fn operation(&self, id: Uuid) -> Option<FakeOperation> {
        self.ledger().operations.get(&id).cloned()
    }

    /// Every webhook call started, in order.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.ledger().deliveries.clone()
    }

    /// Waits (up to `timeout`) until `n` webhook calls have ended (delivered or out of
    /// tries), and returns them all.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<WebhookDelivery> {
        let started = std::time::Instant::now();
        loop {
            let deliveries = self.deliveries();
            let ended = deliveries
                .iter()
                .filter(|d| d.delivered || d.attempts >= self.config.webhook_attempts)
                .count();
            if ended >= n || started.elapsed() > timeout {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The customer changes plan in the portal: an InProgress ChangePlan operation.
    pub fn change_plan(&self, id: Uuid, plan_id: &str) -> Result<Uuid, FakeError> {
        self.operate(id, "ChangePlan", &[SUBSCRIBED], |s| {
            (Some(plan_id.to_owned()), s.quantity, None)
        })
    }

    /// The customer changes the number of seats: an InProgress ChangeQuantity operation.
    pub fn change_quantity(&self, id: Uuid, quantity: u64) -> Result<Uuid, FakeError> {
        self.operate(id, "ChangeQuantity", &[SUBSCRIBED], |_| {
            (None, Some(quantity), None)
        })
    }

    /// Payment failed: Suspended (notify-only).
    pub fn suspend(&self, id: Uuid) -> Result<Uuid, FakeError> {
        self.operate(id, "Suspend", &[SUBSCRIBED], |_| {
            (None, None, Some(SUSPENDED))
        })
    }

    /// Payment fixed: Subscribed again (notify-only).
    pub fn reinstate(&self, id: Uuid) -> Result<Uuid, FakeError> {
        self.operate(id, "Reinstate", &[SUSPENDED], |_| {
            (None, None, Some(SUBSCRIBED))
        })
    }

    /// The customer cancels: Unsubscribed (notify-only).
    pub fn unsubscribe(&self, id: Uuid) -> Result<Uuid, FakeError> {
        self.operate(id, "Unsubscribe", &[SUBSCRIBED, SUSPENDED, PENDING], |_| {
            (None, None, Some(UNSUBSCRIBED))
        })
    }

    /// The term renews: a new term of the same length (notify-only).
    pub fn renew(&self, id: Uuid) -> Result<Uuid, FakeError> {
        let op = self.operate(id, "Renew", &[SUBSCRIBED], |_| (None, None, None))?;
        if let Some(s) = self.ledger().subscriptions.get_mut(&id) {
            let length = s.term_end.duration_since(s.term_start);
            s.term_start = s.term_end;
            s.term_end = s.term_end.checked_add(length).unwrap_or(s.term_end);
        }
        Ok(op)
    }

    /// Creates an operation and sends its webhook. `change` gives the target plan and
    /// quantity (ChangePlan/ChangeQuantity, InProgress until the publisher answers) or
    /// the status it sets at once (notify-only actions).
    fn operate(
        &self,
        id: Uuid,
        action: &str,
        from: &[&str],
        change: impl FnOnce(
            &FakeSaasSubscription,
        ) -> (Option<String>, Option<u64>, Option<&'static str>),
    ) -> Result<Uuid, FakeError> {
        let now = self.clock.now();
        let (operation, body, url) = {
            let mut ledger = self.ledger();
            let subscription = ledger
                .subscriptions
                .get_mut(&id)
                .ok_or_else(|| FakeError::State(format!("no SaaS subscription {id}")))?;
            if !from.contains(&subscription.status.as_str()) {
                return Err(FakeError::State(format!(
                    "{action}: subscription {id} is {}, not {}",
                    subscription.status,
                    from.join(" or ")
                )));
            }
            let (plan, quantity, new_status) = change(subscription);
            let status = match new_status {
                Some(s) => {
                    subscription.status = s.to_owned();
                    "Succeeded"
                }
                None if plan.is_some() || quantity != subscription.quantity => "InProgress",
                None => "Succeeded",
            };
            let operation = FakeOperation {
                id: Uuid::new_v4(),
                activity_id: Uuid::new_v4(),
                subscription_id: id,
                action: action.to_owned(),
                status: status.to_owned(),
                plan_id: plan.unwrap_or_else(|| subscription.plan_id.clone()),
                quantity: quantity.or(subscription.quantity),
                time_stamp: now,
            };
            let body = webhook_body(&operation, subscription, &self.config.publisher_id);
            ledger.operations.insert(operation.id, operation.clone());
            let url = ledger
                .webhook_url
                .clone()
                .or(self.config.webhook_url.clone());
            (operation, body, url)
        };
        if let Some(url) = url {
            self.ledger().deliveries.push(WebhookDelivery {
                operation_id: operation.id,
                action: operation.action.clone(),
                body: body.clone(),
                attempts: 0,
                delivered: false,
                last_status: None,
            });
            let fake = self.clone();
            tokio::spawn(async move { fake.deliver(url, operation.id, body).await });
        }
        Ok(operation.id)
    }

    async fn deliver(self, url: String, operation_id: Uuid, body: Value) {
        for attempt in 1..=self.config.webhook_attempts {
            let mut request = self.http.post(&url);
            match self.webhook_token() {
                Ok(Some(token)) => request = request.bearer_auth(token),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "the webhook's JWT could not be signed"),
            }
            let status = request
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            {
                let mut ledger = self.ledger();
                if let Some(d) = ledger
                    .deliveries
                    .iter_mut()
                    .find(|d| d.operation_id == operation_id)
                {
                    d.attempts = attempt;
                    d.last_status = status;
                    d.delivered = delivered;
                }
            }
            if delivered {
                return;
            }
            tokio::time::sleep(self.config.webhook_retry_interval).await;
        }
    }
}

fn subscription_json(s: &FakeSaasSubscription, publisher_id: &str) -> Value {
    let mut v = json!({
        "id": s.id,
        "publisherId": publisher_id,
        "offerId": s.offer_id,
        "name": s.name,
        "saasSubscriptionStatus": s.status,
        "beneficiary": {"emailId": s.purchaser_email, "objectId": Uuid::nil(), "tenantId": s.tenant_id},
        "purchaser": {"emailId": s.purchaser_email, "objectId": Uuid::nil(), "tenantId": s.tenant_id},
        "planId": s.plan_id,
        "term": {"termUnit": "P1M", "startDate": s.term_start.to_string(), "endDate": s.term_end.to_string()},
        "autoRenew": s.auto_renew,
        "isTest": true,
        "isFreeTrial": false,
        "allowedCustomerOperations": ["Read", "Update", "Delete"],
        "sandboxType": "None",
        "created": s.created.to_string(),
        "sessionMode": "None",
    });
    if let Some(q) = s.quantity {
        v["quantity"] = json!(q);
    }
    v
}

fn operation_json(o: &FakeOperation, s: &FakeSaasSubscription, publisher_id: &str) -> Value {
    let mut v = json!({
        "id": o.id,
        "activityId": o.activity_id,
        "subscriptionId": o.subscription_id,
        "offerId": s.offer_id,
        "publisherId": publisher_id,
        "planId": o.plan_id,
        "action": o.action,
        "timeStamp": o.time_stamp.to_string(),
        "status": o.status,
    });
    if let Some(q) = o.quantity {
        v["quantity"] = json!(q);
    }
    v
}

fn webhook_body(o: &FakeOperation, s: &FakeSaasSubscription, publisher_id: &str) -> Value {
    let mut v = operation_json(o, s, publisher_id);
    v["operationRequestSource"] = json!("Azure");
    v["subscription"] = subscription_json(s, publisher_id);
    v["purchaseToken"] = Value::Null;
    v
}

#[derive(Clone)]
struct AppState {
    fake: FulfillmentFake,
    azure: AzureFake,
    contract: &'static FulfillmentContract,
}

/// The SaaS routes, to nest under the contract's base path beside metering.
pub(crate) fn build(
    config: FulfillmentConfig,
    contract: &'static FulfillmentContract,
    clock: FakeClock,
    azure: AzureFake,
    issuer: OidcIssuer,
    // The fake Entra's tenant and client id: whom webhooks are signed for by default.
    (tenant_id, client_id): (String, String),
) -> (FulfillmentFake, Router) {
    let identity = config.webhook_signed.then(|| {
        (
            config.webhook_tenant_id.clone().unwrap_or(tenant_id),
            config.webhook_audience.clone().unwrap_or(client_id),
        )
    });
    let fake = FulfillmentFake {
        ledger: Arc::new(Mutex::new(Ledger {
            webhook_identity: identity,
            ..Ledger::default()
        })),
        config: Arc::new(config),
        clock,
        http: reqwest::Client::new(),
        issuer,
    };
    let state = AppState {
        fake: fake.clone(),
        azure,
        contract,
    };
    let api = Router::new()
        .route("/saas/subscriptions/resolve", post(resolve))
        .route("/saas/subscriptions/", get(list))
        .route("/saas/subscriptions", get(list))
        .route("/saas/subscriptions/{id}", get(read))
        .route("/saas/subscriptions/{id}/activate", post(activate))
        .route("/saas/subscriptions/{id}/operations", get(list_operations))
        .route(
            "/saas/subscriptions/{id}/operations/{operation}",
            get(read_operation).patch(update_operation),
        )
        .with_state(state);
    (fake, Router::new().nest(&contract.base_path, api))
}

fn saas_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    saas_error(StatusCode::BAD_REQUEST, "BadArgument", message)
}

fn not_found(message: &str) -> Response {
    saas_error(StatusCode::NOT_FOUND, "EntityNotFound", message)
}

fn gate(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    let Some(token) = bearer(headers) else {
        return Err(saas_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "The authentication token was not provided.",
        ));
    };
    if !state.azure.issued_token(token, state.fake.clock.now()) {
        return Err(saas_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The authentication token is invalid or expired.",
        ));
    }
    match query.get("api-version") {
        Some(v) if state.contract.api_versions.contains(v) => {}
        Some(v) => return Err(bad_request(&format!("api-version {v} is not supported."))),
        None => return Err(bad_request("The api-version query parameter is required.")),
    }
    for header in ["x-ms-requestid", "x-ms-correlationid"] {
        if let Some(value) = headers.get(header) {
            let ok = value
                .to_str()
                .ok()
                .is_some_and(|v| Uuid::parse_str(v).is_ok());
            if !ok {
                return Err(bad_request(&format!("{header} must be a GUID.")));
            }
        }
    }
    Ok(())
}

fn body_object(body: &Bytes, allowed: &[String]) -> Result<Map<String, Value>, Response> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("The request body must be a JSON object."));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(k)) {
        return Err(bad_request(&format!("Unknown property {unknown}.")));
    }
    Ok(map)
}

fn subscription_id(text: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(text).map_err(|_| bad_request("subscriptionId must be a GUID."))
}

async fn resolve(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let Some(token) = headers
        .get("x-ms-marketplace-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    else {
        return bad_request("The x-ms-marketplace-token header is required.");
    };
    let now = state.fake.clock.now();
    let ledger = state.fake.ledger();
    let Some((id, expires)) = ledger.tokens.get(token).copied() else {
        return bad_request("The marketplace token is invalid.");
    };
    if expires <= now {
        return bad_request("The marketplace token has expired.");
    }
    let Some(s) = ledger.subscriptions.get(&id) else {
        return not_found("The subscription of this token no longer exists.");
    };
    let mut body = json!({
        "id": s.id,
        "subscriptionName": s.name,
        "offerId": s.offer_id,
        "planId": s.plan_id,
        "subscription": subscription_json(s, &state.fake.config.publisher_id),
    });
    if let Some(q) = s.quantity {
        body["quantity"] = json!(q);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let start: usize = match query.get("continuationToken") {
        None => 0,
        Some(t) => match t.parse() {
            Ok(n) => n,
            Err(_) => return bad_request("continuationToken is invalid."),
        },
    };
    let ledger = state.fake.ledger();
    let page_size = state.fake.config.page_size.max(1);
    let publisher = &state.fake.config.publisher_id;
    let page: Vec<Value> = ledger
        .order
        .iter()
        .skip(start)
        .take(page_size)
        .filter_map(|id| ledger.subscriptions.get(id))
        .map(|s| subscription_json(s, publisher))
        .collect();
    let mut body = json!({ "subscriptions": page });
    if start + page_size < ledger.order.len() {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        body["@nextLink"] = json!(format!(
            "http://{host}{}/saas/subscriptions/?continuationToken={}&api-version={}",
            state.contract.base_path,
            start + page_size,
            query.get("api-version").cloned().unwrap_or_default()
        ));
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let id = match subscription_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.fake.ledger().subscriptions.get(&id) {
        Some(s) => (
            StatusCode::OK,
            axum::Json(subscription_json(s, &state.fake.config.publisher_id)),
        )
            .into_response(),
        None => not_found(&format!("Subscription {id} not found.")),
    }
}

async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let id = match subscription_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let request = match body_object(&body, &state.contract.subscriber_plan) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(plan) = request.get("planId").and_then(Value::as_str) else {
        return bad_request("planId is required.");
    };
    let quantity = match request.get("quantity") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(q) => Some(q),
            None => return bad_request("quantity must be a whole number."),
        },
    };
    let mut ledger = state.fake.ledger();
    let Some(s) = ledger.subscriptions.get_mut(&id) else {
        return not_found(&format!("Subscription {id} not found."));
    };
    if plan != s.plan_id {
        return bad_request(&format!("planId {plan} is not the subscription's plan."));
    }
    if quantity.is_some() && quantity != s.quantity {
        return bad_request("quantity is not the subscription's quantity.");
    }
    match s.status.as_str() {
        PENDING | SUBSCRIBED => s.status = SUBSCRIBED.into(),
        other => return bad_request(&format!("The subscription is {other}.")),
    }
    StatusCode::OK.into_response()
}

async fn list_operations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let id = match subscription_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ledger = state.fake.ledger();
    let Some(s) = ledger.subscriptions.get(&id) else {
        return not_found(&format!("Subscription {id} not found."));
    };
    let publisher = &state.fake.config.publisher_id;
    let operations: Vec<Value> = ledger
        .operations
        .values()
        .filter(|o| o.subscription_id == id && o.status == "InProgress")
        .map(|o| operation_json(o, s, publisher))
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({ "operations": operations })),
    )
        .into_response()
}

fn find_operation<'a>(
    ledger: &'a Ledger,
    id: &str,
    operation: &str,
) -> Result<(&'a FakeOperation, &'a FakeSaasSubscription), Response> {
    let id = subscription_id(id)?;
    let operation =
        Uuid::parse_str(operation).map_err(|_| bad_request("operationId must be a GUID."))?;
    let s = ledger
        .subscriptions
        .get(&id)
        .ok_or_else(|| not_found(&format!("Subscription {id} not found.")))?;
    let o = ledger
        .operations
        .get(&operation)
        .filter(|o| o.subscription_id == id)
        .ok_or_else(|| not_found(&format!("Operation {operation} not found.")))?;
    Ok((o, s))
}

async fn read_operation(
    State(state): State<AppState>,
    Path((id, operation)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let ledger = state.fake.ledger();
    match find_operation(&ledger, &id, &operation) {
        Ok((o, s)) => (
            StatusCode::OK,
            axum::Json(operation_json(o, s, &state.fake.config.publisher_id)),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn update_operation(
    State(state): State<AppState>,
    Path((id, operation)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&state, &headers, &query) {
        return r;
    }
    let request = match body_object(&body, &state.contract.update_operation) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let status = match request.get("status").and_then(Value::as_str) {
        Some(s) if state.contract.update_statuses.iter().any(|u| u == s) => s.to_owned(),
        _ => return bad_request("status must be Success or Failure."),
    };
    let mut ledger = state.fake.ledger();
    let (operation_id, subscription_id) = match find_operation(&ledger, &id, &operation) {
        Ok((o, s)) => (o.id, s.id),
        Err(r) => return r,
    };
    let Some(op) = ledger.operations.get(&operation_id).cloned() else {
        return not_found("Operation not found.");
    };
    if op.status != "InProgress" {
        return saas_error(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Operation {operation_id} is {}, not InProgress.", op.status),
        );
    }
    let succeeded = status == "Success";
    if succeeded && let Some(s) = ledger.subscriptions.get_mut(&subscription_id) {
        s.plan_id = op.plan_id.clone();
        s.quantity = op.quantity;
    }
    if let Some(o) = ledger.operations.get_mut(&operation_id) {
        o.status = if succeeded { "Succeeded" } else { "Failed" }.into();
    }
    StatusCode::OK.into_response()
}
