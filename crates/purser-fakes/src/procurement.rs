//! The fake Google Cloud Commerce Partner Procurement API, and the notifications Google
//! would publish to the provider's Pub/Sub topic on each change, sent to a Pub/Sub
//! emulator's topic through its REST API.
//!
//! Rules, each with its source (contract = the discovery document
//! `contracts/gcp/cloudcommerceprocurement.v1.json` through [`crate::contract`]; prose =
//! cloud.google.com/marketplace/docs/partners/integrated-saas/manage-entitlements and
//! .../offers/manage-entitlements, read 2026-12-01):
//! - `GET v1/{name}`, `POST v1/{name}:approve` etc. (contract method paths) with names
//!   matching the contract's patterns; another provider's names → 403 PERMISSION_DENIED;
//!   unknown ids → 404 NOT_FOUND, in Google's error JSON.
//! - `Authorization: Bearer`: the configured token or one the fake metadata server issued
//!   → else 401 UNAUTHENTICATED.
//! - Request bodies may hold only the request schema's properties (Google answers
//!   "Invalid JSON payload received. Unknown name" with 400 INVALID_ARGUMENT).
//! - Entitlement states and transitions (contract `Entitlement.state` descriptions and
//!   the methods' descriptions): approve / reject only in ENTITLEMENT_ACTIVATION_REQUESTED,
//!   approvePlanChange / rejectPlanChange only in ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL
//!   with `pendingPlanName` (required) naming the pending plan; anything else is 400
//!   FAILED_PRECONDITION (the status Google's APIs use for a call not allowed in the
//!   resource's state; the exact text is the fake's). A rejected entitlement "is removed"
//!   (contract): the fake deletes it and publishes ENTITLEMENT_DELETED.
//! - Accounts are active at once (contract: ACCOUNT_ACTIVATION_REQUESTED is deprecated) and
//!   carry a PENDING `signup` approval; `approvalName` may be left out only when one
//!   approval exists (contract `ApproveAccountRequest.approvalName`).
//! - Every change publishes `{eventId, eventType, providerId, entitlement: {id,
//!   updateTime}}` or `{…, account: {id, updateTime}}` (prose), base64 in `data`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::FakeError;
use crate::clock::FakeClock;
use crate::contract::ProcurementContract;
use crate::gcp::{GcpFake, google_error};
use crate::server::bearer;

/// The fake's settings.
#[derive(Debug, Clone)]
pub struct ProcurementConfig {
    pub provider_id: String,
    /// A bearer token always accepted (besides the metadata server's).
    pub token: String,
}

impl Default for ProcurementConfig {
    fn default() -> Self {
        Self {
            provider_id: "purser-fake-provider".into(),
            token: "ya29.purser-fake-token".into(),
        }
    }
}

/// An entitlement as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeEntitlement {
    pub id: String,
    pub account_id: String,
    pub product: String,
    pub plan: String,
    pub new_pending_plan: Option<String>,
    /// The contract's `Entitlement.state` value.
    pub state: String,
    pub usage_reporting_id: Option<String>,
    pub offer: Option<String>,
    pub offer_end_time: Option<Timestamp>,
    pub cancellation_reason: Option<String>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

/// An account as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeAccount {
    pub id: String,
    pub state: String,
    /// name → (state, reason).
    pub approvals: BTreeMap<String, (String, Option<String>)>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

/// What a test asks for when a customer buys.
#[derive(Debug, Clone, Default)]
pub struct EntitlementOrder {
    pub account_id: String,
    pub product: String,
    pub plan: String,
    pub usage_reporting_id: Option<String>,
    pub offer: Option<String>,
    pub offer_end_time: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct Ledger {
    accounts: BTreeMap<String, FakeAccount>,
    entitlements: BTreeMap<String, FakeEntitlement>,
    /// (Pub/Sub base URL, `projects/{p}/topics/{t}`).
    topic: Option<(String, String)>,
    published: Vec<Value>,
    publish_failures: Vec<String>,
    next_id: u64,
}

/// A handle to the fake Partner Procurement.
#[derive(Debug, Clone)]
pub struct ProcurementFake {
    ledger: Arc<Mutex<Ledger>>,
    config: Arc<ProcurementConfig>,
    clock: FakeClock,
    http: reqwest::Client,
}

const STATE_ACTIVATION_REQUESTED: &str = "ENTITLEMENT_ACTIVATION_REQUESTED";
const STATE_ACTIVE: &str = "ENTITLEMENT_ACTIVE";
const STATE_PENDING_CANCELLATION: &str = "ENTITLEMENT_PENDING_CANCELLATION";
const STATE_CANCELLED: &str = "ENTITLEMENT_CANCELLED";
const STATE_PENDING_PLAN_CHANGE_APPROVAL: &str = "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL";

enum Subject {
    Entitlement(String),
    Account(String),
}

impl ProcurementFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn provider_id(&self) -> &str {
        &self.config.provider_id
    }

    /// Publishes every later notification to `topic` (`projects/{p}/topics/{t}`) of the
    /// Pub/Sub REST API at `pubsub_url` (the emulator's URL).
    pub fn connect_pubsub(&self, pubsub_url: &str, topic: &str) {
        self.ledger().topic = Some((
            pubsub_url.trim_end_matches('/').to_owned(),
            topic.to_owned(),
        ));
    }

    /// Every notification published, in order (the decoded JSON).
    pub fn published(&self) -> Vec<Value> {
        self.ledger().published.clone()
    }

    /// Publications that failed (the emulator down, say).
    pub fn publish_failures(&self) -> Vec<String> {
        self.ledger().publish_failures.clone()
    }

    pub fn entitlement(&self, id: &str) -> Option<FakeEntitlement> {
        self.ledger().entitlements.get(id).cloned()
    }

    pub fn account(&self, id: &str) -> Option<FakeAccount> {
        self.ledger().accounts.get(id).cloned()
    }

    /// A customer signs up: the account is active with a PENDING `signup` approval, and
    /// ACCOUNT_ACTIVE is published.
    pub async fn create_account(&self, account_id: &str) -> Result<(), FakeError> {
        let now = self.clock.now();
        {
            let mut ledger = self.ledger();
            if ledger.accounts.contains_key(account_id) {
                return Err(FakeError::State(format!("account {account_id} exists")));
            }
            ledger.accounts.insert(
                account_id.to_owned(),
                FakeAccount {
                    id: account_id.to_owned(),
                    state: "ACCOUNT_ACTIVE".into(),
                    approvals: BTreeMap::from([(
                        "signup".to_owned(),
                        ("PENDING".to_owned(), None),
                    )]),
                    create_time: now,
                    update_time: now,
                },
            );
        }
        self.publish("ACCOUNT_ACTIVE", Subject::Account(account_id.to_owned()))
            .await
    }

    /// A customer chooses a plan: a new entitlement in ENTITLEMENT_ACTIVATION_REQUESTED
    /// (the account is created first if needed), ENTITLEMENT_CREATION_REQUESTED published.
    pub async fn order(&self, order: EntitlementOrder) -> Result<String, FakeError> {
        if self.account(&order.account_id).is_none() {
            self.create_account(&order.account_id).await?;
        }
        let now = self.clock.now();
        let id = {
            let mut ledger = self.ledger();
            ledger.next_id += 1;
            let id = format!("ent-{:04}", ledger.next_id);
            ledger.entitlements.insert(
                id.clone(),
                FakeEntitlement {
                    id: id.clone(),
                    account_id: order.account_id,
                    product: order.product,
                    plan: order.plan,
                    new_pending_plan: None,
                    state: STATE_ACTIVATION_REQUESTED.into(),
                    usage_reporting_id: order.usage_reporting_id,
                    offer: order.offer,
                    offer_end_time: order.offer_end_time,
                    cancellation_reason: None,
                    create_time: now,
                    update_time: now,
                },
            );
            id
        };
        self.publish(
            "ENTITLEMENT_CREATION_REQUESTED",
            Subject::Entitlement(id.clone()),
        )
        .await?;
        Ok(id)
    }

    /// Moves an entitlement from one of `from` to `to` (changing it with `change`), then
    /// publishes `event`.
    async fn transition(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        event: &str,
        change: impl FnOnce(&mut FakeEntitlement),
    ) -> Result<(), FakeError> {
        let now = self.clock.now();
        {
            let mut ledger = self.ledger();
            let entitlement = ledger
                .entitlements
                .get_mut(id)
                .ok_or_else(|| FakeError::State(format!("no entitlement {id}")))?;
            if !from.contains(&entitlement.state.as_str()) {
                return Err(FakeError::State(format!(
                    "entitlement {id} is {}, not {}",
                    entitlement.state,
                    from.join(" or ")
                )));
            }
            entitlement.state = to.to_owned();
            entitlement.update_time = now;
            change(entitlement);
        }
        self.publish(event, Subject::Entitlement(id.to_owned()))
            .await
    }

    /// The customer asks for another plan: ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL,
    /// ENTITLEMENT_PLAN_CHANGE_REQUESTED published.
    pub async fn request_plan_change(&self, id: &str, plan: &str) -> Result<(), FakeError> {
        let plan = plan.to_owned();
        self.transition(
            id,
            &[STATE_ACTIVE],
            STATE_PENDING_PLAN_CHANGE_APPROVAL,
            "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
            |e| e.new_pending_plan = Some(plan),
        )
        .await
    }

    /// The customer cancels: usable until the term ends (ENTITLEMENT_PENDING_CANCELLATION).
    pub async fn cancel(&self, id: &str) -> Result<(), FakeError> {
        self.transition(
            id,
            &[STATE_ACTIVE, STATE_PENDING_PLAN_CHANGE_APPROVAL],
            STATE_PENDING_CANCELLATION,
            "ENTITLEMENT_PENDING_CANCELLATION",
            |e| e.new_pending_plan = None,
        )
        .await
    }

    /// The customer takes the cancellation back.
    pub async fn revert_cancellation(&self, id: &str) -> Result<(), FakeError> {
        self.transition(
            id,
            &[STATE_PENDING_CANCELLATION],
            STATE_ACTIVE,
            "ENTITLEMENT_CANCELLATION_REVERTED",
            |_| {},
        )
        .await
    }

    /// The term ends: ENTITLEMENT_CANCELLED with `reason` (e.g. "user-cancelled").
    pub async fn end_term(&self, id: &str, reason: &str) -> Result<(), FakeError> {
        let reason = reason.to_owned();
        self.transition(
            id,
            &[STATE_PENDING_CANCELLATION, STATE_ACTIVE],
            STATE_CANCELLED,
            "ENTITLEMENT_CANCELLED",
            |e| e.cancellation_reason = Some(reason),
        )
        .await
    }

    /// A cancelled entitlement is deleted: ENTITLEMENT_DELETED.
    pub async fn delete_entitlement(&self, id: &str) -> Result<(), FakeError> {
        {
            let mut ledger = self.ledger();
            match ledger.entitlements.get(id) {
                Some(e) if e.state == STATE_CANCELLED => {
                    ledger.entitlements.remove(id);
                }
                Some(e) => {
                    return Err(FakeError::State(format!(
                        "entitlement {id} is {}, not cancelled",
                        e.state
                    )));
                }
                None => return Err(FakeError::State(format!("no entitlement {id}"))),
            }
        }
        self.publish("ENTITLEMENT_DELETED", Subject::Entitlement(id.to_owned()))
            .await
    }

    /// Publishes a notification of any type (an unknown one too, to test that it is kept).
    pub async fn publish_raw(&self, data: &[u8]) -> Result<(), FakeError> {
        self.send(data).await
    }

    async fn publish(&self, event_type: &str, subject: Subject) -> Result<(), FakeError> {
        let now = self.clock.now().to_string();
        let mut message = json!({
            "eventId": uuid::Uuid::new_v4().to_string(),
            "eventType": event_type,
            "providerId": self.config.provider_id,
        });
        match subject {
            Subject::Entitlement(id) => {
                message["entitlement"] = json!({ "id": id, "updateTime": now });
            }
            Subject::Account(id) => {
                message["account"] = json!({ "id": id, "updateTime": now });
            }
        }
        self.ledger().published.push(message.clone());
        self.send(message.to_string().as_bytes()).await
    }

    async fn send(&self, data: &[u8]) -> Result<(), FakeError> {
        let Some((base, topic)) = self.ledger().topic.clone() else {
            return Ok(());
        };
        let body = json!({ "messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        }]});
        let result = self
            .http
            .post(format!("{base}/v1/{topic}:publish"))
            .json(&body)
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("{topic}: HTTP {}", response.status()),
            Err(e) => format!("{topic}: {e}"),
        };
        self.ledger().publish_failures.push(failure.clone());
        Err(FakeError::Publish(failure))
    }
}

#[derive(Clone)]
struct AppState {
    fake: ProcurementFake,
    gcp: GcpFake,
    contract: &'static ProcurementContract,
}

pub(crate) fn build(
    config: ProcurementConfig,
    contract: &'static ProcurementContract,
    clock: FakeClock,
    gcp: GcpFake,
) -> (ProcurementFake, Router) {
    let fake = ProcurementFake {
        ledger: Arc::new(Mutex::new(Ledger::default())),
        config: Arc::new(config),
        clock,
        http: reqwest::Client::new(),
    };
    let state = AppState {
        fake: fake.clone(),
        gcp,
        contract,
    };
    let router = Router::new()
        .route(
            "/v1/providers/{provider}/{collection}/{rest}",
            get(read).post(act),
        )
        .with_state(state);
    (fake, router)
}

fn failed_precondition(message: String) -> Response {
    google_error(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", &message)
}

fn invalid_argument(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// Authentication and the resource name: `(collection, id, method)`.
fn gate(
    state: &AppState,
    headers: &HeaderMap,
    provider: &str,
    collection: &str,
    rest: &str,
) -> Result<(String, Option<String>), Response> {
    let now = state.fake.clock.now();
    let authorized = bearer(headers)
        .is_some_and(|t| t == state.fake.config.token || state.gcp.issued_token(t, now));
    if !authorized {
        return Err(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    let (id, method) = match rest.split_once(':') {
        Some((id, method)) => (id, Some(method.to_owned())),
        None => (rest, None),
    };
    let name = format!("providers/{provider}/{collection}/{id}");
    let pattern = match collection {
        "entitlements" => &state.contract.entitlement_name,
        "accounts" => &state.contract.account_name,
        _ => {
            return Err(google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested URL was not found on this server.",
            ));
        }
    };
    if !pattern.is_match(&name) {
        return Err(invalid_argument(&format!(
            "Invalid resource field value in the request: {name}"
        )));
    }
    if provider != state.fake.config.provider_id {
        return Err(google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("The caller does not have permission on providers/{provider}"),
        ));
    }
    Ok((id.to_owned(), method))
}

async fn read(
    State(state): State<AppState>,
    Path((provider, collection, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (id, method) = match gate(&state, &headers, &provider, &collection, &rest) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if method.is_some() {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    }
    let provider_id = &state.fake.config.provider_id;
    let ledger = state.fake.ledger();
    let body = if collection == "entitlements" {
        ledger.entitlements.get(&id).map(|e| {
            let mut body = json!({
                "name": format!("providers/{provider_id}/entitlements/{}", e.id),
                "account": format!("providers/{provider_id}/accounts/{}", e.account_id),
                "provider": provider_id,
                "product": e.product,
                "plan": e.plan,
                "state": e.state,
                "createTime": e.create_time.to_string(),
                "updateTime": e.update_time.to_string(),
            });
            let optional = [
                ("newPendingPlan", e.new_pending_plan.clone()),
                ("usageReportingId", e.usage_reporting_id.clone()),
                ("offer", e.offer.clone()),
                ("offerEndTime", e.offer_end_time.map(|t| t.to_string())),
                ("cancellationReason", e.cancellation_reason.clone()),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            body
        })
    } else {
        ledger.accounts.get(&id).map(|a| {
            let approvals: Vec<Value> = a
                .approvals
                .iter()
                .map(|(name, (state, reason))| {
                    let mut v = json!({"name": name, "state": state});
                    if let Some(r) = reason {
                        v["reason"] = json!(r);
                    }
                    v
                })
                .collect();
            json!({
                "name": format!("providers/{provider_id}/accounts/{}", a.id),
                "provider": provider_id,
                "state": a.state,
                "approvals": approvals,
                "createTime": a.create_time.to_string(),
                "updateTime": a.update_time.to_string(),
            })
        })
    };
    match body {
        Some(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        None => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("{collection} {id} not found"),
        ),
    }
}

async fn act(
    State(state): State<AppState>,
    Path((provider, collection, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (id, method) = match gate(&state, &headers, &provider, &collection, &rest) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(method) = method else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    let key = format!("{collection}.{method}");
    let Some(schema) = state.contract.method_requests.get(&key) else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    let request: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            _ => return invalid_argument("Invalid JSON payload received."),
        }
    };
    let allowed = state
        .contract
        .request_properties
        .get(schema)
        .cloned()
        .unwrap_or_default();
    if let Some(unknown) = request.keys().find(|k| !allowed.contains(k)) {
        return invalid_argument(&format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ));
    }
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
    let fake = &state.fake;
    let result = match key.as_str() {
        "entitlements.approve" => {
            entitlement_step(
                fake,
                &id,
                STATE_ACTIVATION_REQUESTED,
                STATE_ACTIVE,
                "ENTITLEMENT_ACTIVE",
                |_| Ok(()),
            )
            .await
        }
        "entitlements.reject" => reject_entitlement(fake, &id).await,
        "entitlements.approvePlanChange" | "entitlements.rejectPlanChange" => {
            let Some(pending) = text("pendingPlanName") else {
                return invalid_argument("pendingPlanName is required.");
            };
            let approve = method == "approvePlanChange";
            entitlement_step(
                fake,
                &id,
                STATE_PENDING_PLAN_CHANGE_APPROVAL,
                STATE_ACTIVE,
                if approve {
                    "ENTITLEMENT_PLAN_CHANGED"
                } else {
                    "ENTITLEMENT_PLAN_CHANGE_CANCELLED"
                },
                move |e| {
                    if e.new_pending_plan.as_deref() != Some(pending.as_str()) {
                        return Err(failed_precondition(format!(
                            "pendingPlanName {pending} is not the pending plan of entitlement {}",
                            e.id
                        )));
                    }
                    if approve {
                        e.plan = pending;
                    }
                    e.new_pending_plan = None;
                    Ok(())
                },
            )
            .await
        }
        "accounts.approve" | "accounts.reject" => {
            let approve = method == "approve";
            account_approval(fake, &id, text("approvalName"), text("reason"), approve)
        }
        _ => Err(google_error(
            StatusCode::NOT_IMPLEMENTED,
            "UNIMPLEMENTED",
            &format!("{key} is not implemented by the fake"),
        )),
    };
    match result {
        Ok(()) => (StatusCode::OK, axum::Json(json!({}))).into_response(),
        Err(response) => response,
    }
}

async fn entitlement_step(
    fake: &ProcurementFake,
    id: &str,
    from: &str,
    to: &str,
    event: &str,
    change: impl FnOnce(&mut FakeEntitlement) -> Result<(), Response>,
) -> Result<(), Response> {
    let now = fake.clock.now();
    {
        let mut ledger = fake.ledger();
        let Some(entitlement) = ledger.entitlements.get_mut(id) else {
            return Err(google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("entitlement {id} not found"),
            ));
        };
        if entitlement.state != from {
            return Err(failed_precondition(format!(
                "Entitlement {id} is in state {}, not {from}.",
                entitlement.state
            )));
        }
        change(entitlement)?;
        entitlement.state = to.to_owned();
        entitlement.update_time = now;
    }
    // Google publishes on its own; a failed publication does not undo the change.
    let _ = fake
        .publish(event, Subject::Entitlement(id.to_owned()))
        .await;
    Ok(())
}

async fn reject_entitlement(fake: &ProcurementFake, id: &str) -> Result<(), Response> {
    {
        let mut ledger = fake.ledger();
        match ledger.entitlements.get(id) {
            None => {
                return Err(google_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("entitlement {id} not found"),
                ));
            }
            Some(e) if e.state != STATE_ACTIVATION_REQUESTED => {
                return Err(failed_precondition(format!(
                    "Entitlement {id} is in state {}, not {STATE_ACTIVATION_REQUESTED}.",
                    e.state
                )));
            }
            Some(_) => {
                ledger.entitlements.remove(id);
            }
        }
    }
    let _ = fake
        .publish("ENTITLEMENT_DELETED", Subject::Entitlement(id.to_owned()))
        .await;
    Ok(())
}

fn account_approval(
    fake: &ProcurementFake,
    id: &str,
    approval_name: Option<String>,
    reason: Option<String>,
    approve: bool,
) -> Result<(), Response> {
    let now = fake.clock.now();
    let mut ledger = fake.ledger();
    let Some(account) = ledger.accounts.get_mut(id) else {
        return Err(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("account {id} not found"),
        ));
    };
    let name = match approval_name {
        Some(name) => name,
        None if account.approvals.len() == 1 => {
            account.approvals.keys().next().cloned().unwrap_or_default()
        }
        None => {
            return Err(invalid_argument(
                "approvalName is required when the account has several approvals.",
            ));
        }
    };
    let Some(approval) = account.approvals.get_mut(&name) else {
        return Err(invalid_argument(&format!(
            "Account {id} has no approval named {name}."
        )));
    };
    *approval = (
        if approve { "APPROVED" } else { "REJECTED" }.to_owned(),
        reason,
    );
    account.update_time = now;
    Ok(())
}
