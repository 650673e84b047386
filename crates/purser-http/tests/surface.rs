//! The HTTP surface as a whole: the route × role × boundary walk, and the table of bad
//! input. Both run in-process against the real router and a real SQLite store.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use purser_core::account::{AccountDraft, Owners};
use purser_core::audit::Actor;
use purser_core::identity::{NewUser, Role, secret_digest};
use purser_core::{Account, AccountScope, BoundaryRule};
use purser_http::{Access, AppState, HttpSettings, RouteInfo};
use purser_store::Store;
use purser_testkit::{Backend, TestDatabase};
use tower::ServiceExt;

struct Response {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(router: &Router, request: Request<Body>) -> Response {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Someone who may call: a token for the API, a session and its CSRF token for pages.
struct Caller {
    label: String,
    token: String,
    session: String,
    csrf: String,
    /// Which restricted boundaries this caller's clearances and residency open.
    cleared_for: Vec<&'static str>,
    roles: Vec<Role>,
}

/// (profile, clearances, residency): the ways a user can stand towards the boundaries.
const PROFILES: [(&str, &[&str], &str); 4] = [
    ("uncleared", &[], "US"),
    ("usgov", &["us-gov"], "US"),
    ("eu", &["eu-sovereign"], "DE"),
    // Holds the clearance but lives outside the EU: must still be refused.
    ("eu-abroad", &["eu-sovereign"], "US"),
];

const RESTRICTED: [&str; 3] = ["us-gov", "sg-gov", "eu-sovereign"];

struct World {
    _db: TestDatabase,
    store: Store,
    router: Router,
    table: Vec<RouteInfo>,
    callers: Vec<Caller>,
    /// The restricted account of each boundary.
    restricted: BTreeMap<&'static str, Account>,
    victim_user: String,
    victim_token: String,
    offer_id: String,
    /// The entitlement of each restricted account, by account id.
    entitlements: BTreeMap<String, String>,
    /// A marketplace subscription linked to each restricted account, by account id.
    subscriptions: BTreeMap<String, String>,
}

fn draft(name: &str, external_id: &str, boundary: &str) -> AccountDraft {
    AccountDraft {
        name: name.into(),
        external_id: external_id.into(),
        marketplace: "direct".into(),
        marketplace_account_id: None,
        crm_account_id: None,
        boundary: Some(boundary.into()),
        region: "eu-central-1".into(),
        owners: Owners::default(),
        status: None,
    }
}

async fn world(settings: HttpSettings) -> World {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let store = db.open().await;
    let rules = BoundaryRule::built_in();
    let known: Vec<_> = rules.iter().map(|r| r.name.clone()).collect();
    let system = AccountScope::system("test", &rules);
    store
        .create_account(
            &system,
            draft("Open Standard Co", "open-standard", "standard")
                .validate(&known)
                .expect("valid"),
        )
        .await
        .expect("account");
    let mut restricted = BTreeMap::new();
    for boundary in RESTRICTED {
        let name = format!("Classified {boundary} Agency");
        let external_id = format!("classified-{boundary}-7731");
        let account = store
            .create_account(
                &system,
                draft(&name, &external_id, boundary)
                    .validate(&known)
                    .expect("valid"),
            )
            .await
            .expect("account");
        restricted.insert(boundary, account);
    }
    let actor = Actor::new("system:test", None);
    let now = Timestamp::now();
    let mut callers = Vec::new();
    for role in Role::ALL {
        for (profile, clearances, residency) in PROFILES {
            let username = format!("{}-{profile}", role.as_str());
            let user = NewUser::validate(
                &username,
                "",
                &[role.as_str().to_owned()],
                &clearances.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                Some(residency),
            )
            .expect("valid user");
            let user = store.create_user(&actor, user, None).await.expect("user");
            let token = format!("psr_{username}-token-secret");
            store
                .create_token(
                    &actor,
                    &user.id,
                    "walk",
                    &secret_digest(&token),
                    now + SignedDuration::from_hours(1),
                )
                .await
                .expect("token");
            let session = format!("{username}-session-secret");
            let csrf = format!("{username}-csrf");
            store
                .create_session(
                    &user.id,
                    &secret_digest(&session),
                    &csrf,
                    now + SignedDuration::from_hours(1),
                )
                .await
                .expect("session");
            let cleared_for = match profile {
                "usgov" => vec!["us-gov"],
                "eu" => vec!["eu-sovereign"],
                _ => vec![],
            };
            callers.push(Caller {
                label: username,
                token,
                session,
                csrf,
                cleared_for,
                roles: vec![role],
            });
        }
    }
    let victim = store
        .create_user(
            &actor,
            NewUser::validate("victim", "", &["viewer".into()], &[], Some("US")).expect("valid"),
            None,
        )
        .await
        .expect("victim");
    let victim_token = store
        .create_token(
            &actor,
            &victim.id,
            "victim",
            &secret_digest("psr_victim"),
            now + SignedDuration::from_hours(1),
        )
        .await
        .expect("token");
    let offer = purser_core::commercial::OfferDraft {
        name: "Private capacity".into(),
        kind: "private".into(),
        marketplace: "direct".into(),
        currency: None,
        dimensions: vec![purser_core::commercial::OfferDimensionDraft {
            key: "capacity".into(),
            unit: "TiB-hour".into(),
            ..Default::default()
        }],
        pricing: None,
    }
    .validate("offer-walk".into())
    .expect("valid offer");
    let offer = store.create_offer(&actor, offer).await.expect("offer");
    let mut entitlements = BTreeMap::new();
    for account in restricted.values() {
        let entitlement = purser_core::commercial::EntitlementDraft {
            offer_id: offer.id.clone(),
            start: "2026-01-01T00:00:00Z".into(),
            end: "2027-01-01T00:00:00Z".into(),
            status: Some("active".into()),
            commitments: Default::default(),
            marketplace_binding: None,
        }
        .validate(format!("ent-{}", account.id), account.id.0.clone(), &offer)
        .expect("valid entitlement");
        let entitlement = store
            .create_entitlement(&system, entitlement)
            .await
            .expect("entitlement");
        entitlements.insert(account.id.0.clone(), entitlement.id);
    }
    let meter = purser_core::meter::MeterDraft {
        name: "storage.written".into(),
        event_type: "storage.io.counted".into(),
        value_path: Some("$.bytes_written".into()),
        aggregation: "sum".into(),
        unit: "bytes".into(),
        dimension: Some("data_written_gib".into()),
        conversion: Some("bytes_to_gib".into()),
        ..Default::default()
    }
    .validate()
    .expect("valid meter");
    store.create_meter(&actor, &meter).await.expect("meter");
    seed_marketplace_records(&store, &restricted).await;
    let subscriptions = seed_subscriptions(&store, &restricted).await;
    seed_erp_and_crm(&store, &restricted).await;
    let (router, table, _) = purser_http::build(AppState::new(store.clone(), settings));
    World {
        _db: db,
        store,
        router,
        table,
        callers,
        restricted,
        victim_user: victim.id,
        victim_token: victim_token.id,
        offer_id: offer.id,
        entitlements,
        subscriptions,
    }
}

/// A Google subscription linked to each restricted account, active under a plan
/// Purser does not sell (so it needs attention), with its notification kept.
async fn seed_subscriptions(
    store: &Store,
    restricted: &BTreeMap<&str, Account>,
) -> BTreeMap<String, String> {
    use purser_core::marketplace::subscription::{SubscriptionSnapshot, SubscriptionState};
    use purser_store::subscriptions::{Channel, NewNotification, NotificationStatus};
    let system = AccountScope::system("test", &BoundaryRule::built_in());
    let mut ids = BTreeMap::new();
    for account in restricted.values() {
        let external_id = format!("ent-{}", account.fields.external_id);
        let notification = store
            .store_notification(NewNotification {
                marketplace: purser_core::Marketplace::Gcp,
                delivery_key: format!("ev-{external_id}"),
                channel: Channel::Pubsub,
                body: format!(
                    r#"{{"eventType":"ENTITLEMENT_ACTIVE","entitlement":{{"id":"{external_id}"}}}}"#
                ),
                kind: Some("ENTITLEMENT_ACTIVE".into()),
                external_id: Some(external_id.clone()),
                status: NotificationStatus::Unrecognised,
                error: Some(format!("kept for {}", account.fields.name)),
            })
            .await
            .expect("a notification");
        assert!(!notification.duplicate);
        let snapshot = SubscriptionSnapshot {
            state: SubscriptionState::Active,
            plan: "unsold-plan".into(),
            quantity: None,
            pending_plan: None,
            binding: None,
            effective_at: Timestamp::now(),
            term_end: None,
        };
        store
            .settle_subscription(
                &system.actor,
                purser_core::Marketplace::Gcp,
                &external_id,
                &snapshot,
                None,
            )
            .await
            .expect("a subscription");
        store
            .link_subscription(
                &system,
                purser_core::Marketplace::Gcp,
                &external_id,
                &account.id.0,
                serde_json::json!({"company": account.fields.name}),
            )
            .await
            .expect("linked");
        let record = store
            .subscription_for_processing(purser_core::Marketplace::Gcp, &external_id)
            .await
            .expect("read")
            .expect("the subscription");
        ids.insert(account.id.0.clone(), record.id);
    }
    ids
}

/// An AWS ledger record of the last closed hour for each restricted account, refused
/// with a message naming the account, so the marketplace views have something of
/// theirs to leak.
async fn seed_marketplace_records(store: &Store, restricted: &BTreeMap<&str, Account>) {
    use purser_store::db::Value;
    let hour = purser_store::metering::hour_start(Timestamp::now() - SignedDuration::from_hours(2))
        .expect("hour")
        .as_microsecond();
    let binding = serde_json::to_string(&purser_core::marketplace::Binding::Aws {
        customer_aws_account_id: "123456789012".into(),
        license_arn: "arn:aws:license-manager::123456789012:license:l-0abc".into(),
    })
    .expect("binding");
    let mut tx = store.db().begin().await.expect("begin");
    for (i, account) in restricted.values().enumerate() {
        let outcome = serde_json::json!({
            "kind": "refused", "code": "CustomerNotEntitledException",
            "message": format!("{} is not subscribed", account.fields.name),
        });
        tx.execute(
            "INSERT INTO marketplace_records (record_key, marketplace, account_id, entitlement_id, dimension, \
             marketplace_dimension, hour, quantity, owed, carried_in, binding, whole_units, state, attempts, uncertain, \
             next_attempt_at, deadline, alert_at, outcome, planned_at, carried_out) \
             VALUES ($1, 'aws', $2, $3, 'capacity', 'Capacity', $4, '1.5', '1.5', '0', $5, 0, 'refused', 1, 0, \
             $4, $6, $6, $7, $4, 0)",
            &[
                format!("00000000-0000-4000-8000-{i:012}").into(),
                account.id.0.as_str().into(),
                format!("ent-{}", account.id).into(),
                Value::Int(hour),
                binding.as_str().into(),
                Value::Int(hour + 24 * 3_600_000_000),
                outcome.to_string().into(),
            ],
        )
        .await
        .expect("a marketplace record");
    }
    tx.commit().await.expect("commit");
}

/// A kept ERP export of this month with a line for each restricted account, and a CRM
/// hygiene finding naming each, so that the ERP and CRM views have something of theirs
/// to leak.
async fn seed_erp_and_crm(store: &Store, restricted: &BTreeMap<&str, Account>) {
    use purser_core::invoice::{InvoiceLine, LineKind};
    use purser_store::db::Value;
    let period = purser_core::commercial::BillingPeriod::containing(Timestamp::now());
    let month = period.month_label();
    let mut tx = store.db().begin().await.expect("begin");
    tx.execute(
        "INSERT INTO erp_exports (month, period_start, created_at, created_by, n_lines, lines_digest) \
         VALUES ($1, $2, $2, 'system:test', $3, 'seeded')",
        &[
            month.as_str().into(),
            Value::Int(period.start.as_microsecond()),
            Value::Int(restricted.len() as i64),
        ],
    )
    .await
    .expect("an export");
    for (line_no, (boundary, account)) in restricted.iter().enumerate() {
        let line = InvoiceLine {
            month: month.clone(),
            account_id: account.id.0.clone(),
            account_external_id: account.fields.external_id.clone(),
            account_name: account.fields.name.clone(),
            crm_account_id: None,
            channel: purser_core::Marketplace::Direct,
            marketplace_account_id: None,
            entitlement_id: format!("ent-{}", account.id),
            offer_id: "offer-walk".into(),
            offer_name: "Private capacity".into(),
            kind: LineKind::Overage,
            dimension: Some("capacity".into()),
            unit: "TiB-hour".into(),
            quantity: rust_decimal::Decimal::ONE,
            unit_price: rust_decimal::Decimal::ONE,
            amount: rust_decimal::Decimal::ONE,
            currency: purser_core::money::Currency::USD,
            committed_quantity: None,
            service_start: period.start,
            service_end: period.end,
        };
        tx.execute(
            "INSERT INTO erp_export_lines (month, line_no, account_id, boundary, line) VALUES ($1, $2, $3, $4, $5)",
            &[
                month.as_str().into(),
                Value::Int(line_no as i64),
                account.id.0.as_str().into(),
                (*boundary).into(),
                line.json_line().into(),
            ],
        )
        .await
        .expect("a line");
        tx.execute(
            "INSERT INTO crm_findings (finding_key, kind, record_type, record_external_id, account_external_id, \
             account_name, boundary, message, first_seen, last_seen) \
             VALUES ($1, 'duplicate_name', 'Account', $2, $2, $3, $4, $5, $6, $6)",
            &[
                format!("duplicate_name:Account:{}", account.fields.external_id).into(),
                account.fields.external_id.as_str().into(),
                account.fields.name.as_str().into(),
                (*boundary).into(),
                format!("`{}` is the same name as another account", account.fields.name).into(),
                Value::Int(Timestamp::now().as_microsecond()),
            ],
        )
        .await
        .expect("a finding");
    }
    tx.commit().await.expect("commit");
}

impl World {
    /// The audit log's entries whose action matches (exact, or a prefix ending in `*`),
    /// newest first, as Purser itself sees them.
    async fn audit(&self, action: &str) -> purser_store::Page<purser_core::audit::AuditEntry> {
        self.store
            .audit_entries(
                &AccountScope::system("test", &BoundaryRule::built_in()),
                &purser_store::AuditFilter {
                    action: Some(action.into()),
                    ..Default::default()
                },
                &purser_store::PageRequest {
                    after: None,
                    limit: Some(500),
                },
            )
            .await
            .expect("the audit log")
    }

    fn path(&self, route: &RouteInfo, account: &Account) -> String {
        route
            .path
            .replace("{account_id}", &account.id.0)
            .replace("{user_id}", &self.victim_user)
            .replace("{token_id}", &self.victim_token)
            .replace("{offer_id}", &self.offer_id)
            .replace("{entitlement_id}", &self.entitlements[&account.id.0])
            .replace("{marketplace}", "aws")
            .replace("{subscription_id}", &self.subscriptions[&account.id.0])
    }

    /// A request a determined caller would send: with their credentials, a valid
    /// CSRF token, and a body that tries to read or move the restricted account.
    fn request(
        &self,
        route: &RouteInfo,
        caller: Option<&Caller>,
        account: &Account,
        boundary: &str,
    ) -> Request<Body> {
        let path = self.path(route, account);
        let mut builder = Request::builder().method(route.method.clone()).uri(&path);
        let mut body = Body::empty();
        if let Some(caller) = caller {
            match route.access {
                Access::Token => {
                    builder =
                        builder.header(header::AUTHORIZATION, format!("Bearer {}", caller.token))
                }
                Access::Session | Access::Public => {
                    builder =
                        builder.header(header::COOKIE, format!("purser_session={}", caller.session))
                }
            }
            if route.method != Method::GET {
                match route.access {
                    Access::Token => {
                        builder = builder.header(header::CONTENT_TYPE, "application/json");
                        // A body each route would accept, so the walk reaches the scope check
                        // rather than stopping at validation.
                        let json = if route.path == "/v1/events" {
                            // Usage for the restricted account, as its telemetry would send
                            // it (plain JSON framing: an array is a batch).
                            serde_json::json!([usage_event(
                                &format!("walk-{}", caller.label),
                                &account.fields.external_id,
                                0
                            )])
                        } else if route.path.starts_with("/v1/entitlements/") {
                            serde_json::json!({ "status": "cancelled" })
                        } else if route.path.ends_with("/entitlements") {
                            serde_json::json!({ "offer_id": self.offer_id, "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z" })
                        } else {
                            serde_json::json!({
                                "name": "Moved", "external_id": format!("moved-{}", caller.label), "marketplace": "direct",
                                "region": "eu-central-1", "boundary": boundary, "status": "churned"
                            })
                        };
                        body = Body::from(json.to_string());
                    }
                    _ => {
                        builder = builder
                            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                        body = Body::from(format!(
                            "_csrf={}&name=Moved&external_id=moved-{}&marketplace=direct&region=eu-central-1&boundary={boundary}&status=churned&expected_updated_at={}",
                            caller.csrf,
                            caller.label,
                            account.updated_at.as_microsecond()
                        ));
                    }
                }
            }
        }
        builder.body(body).expect("a request")
    }
}

/// A usage event `minutes_ago` old for the account with `external_id`.
fn usage_event(id: &str, external_id: &str, minutes_ago: i64) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "polaris://test/clusters/c1",
        "type": "storage.io.counted", "subject": external_id,
        "time": (Timestamp::now() - SignedDuration::from_mins(minutes_ago)).to_string(),
        "data": {"bytes_written": 1073741824u64}
    })
}

fn leaks(body: &str, account: &Account) -> bool {
    body.contains(&account.id.0)
        || body.contains(&account.fields.name)
        || body.contains(&account.fields.external_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_demands_authentication_and_hides_restricted_accounts_from_the_uncleared() {
    let mut world = world(HttpSettings::default()).await;
    // Signing out ends the caller's session; walk it last.
    world.table.sort_by_key(|r| r.path == "/signout");
    assert!(
        world.table.len() >= 30,
        "the table lists every route ({} found)",
        world.table.len()
    );
    assert!(
        world
            .table
            .iter()
            .any(|r| r.path == "/v1/accounts/{account_id}" && r.method == Method::PATCH)
    );
    assert!(
        world
            .table
            .iter()
            .any(|r| r.path == "/accounts/{account_id}" && r.access == Access::Session)
    );

    let before: Vec<Account> = world.restricted.values().cloned().collect();
    let mut n_requests = 0;
    for route in &world.table {
        let any = &before[0];
        // Without credentials.
        let response = send(&world.router, world.request(route, None, any, "us-gov")).await;
        n_requests += 1;
        match route.access {
            Access::Public => {}
            Access::Token => {
                assert_eq!(
                    response.status,
                    StatusCode::UNAUTHORIZED,
                    "{} {} without a token",
                    route.method,
                    route.path
                );
                let body: serde_json::Value =
                    serde_json::from_str(&response.body).expect("the error shape");
                assert_eq!(body["error"]["code"], "unauthenticated");
            }
            Access::Session => {
                assert_eq!(
                    response.status,
                    StatusCode::SEE_OTHER,
                    "{} {} without a session",
                    route.method,
                    route.path
                );
                let location = response
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert!(
                    location.starts_with("/signin"),
                    "{} {} sends to sign-in, not {location}",
                    route.method,
                    route.path
                );
            }
        }
        for account in &before {
            assert!(
                !leaks(&response.body, account),
                "{} {} leaks {} without credentials",
                route.method,
                route.path,
                account.fields.name
            );
        }

        // Every caller, against every restricted account they are not cleared for.
        for caller in &world.callers {
            for (boundary, account) in &world.restricted {
                if caller.cleared_for.contains(boundary) {
                    continue;
                }
                let response = send(
                    &world.router,
                    world.request(route, Some(caller), account, boundary),
                )
                .await;
                n_requests += 1;
                let what = format!(
                    "{} {} as {} for {boundary}",
                    route.method, route.path, caller.label
                );
                assert!(
                    !response.status.is_server_error(),
                    "{what}: {} {}",
                    response.status,
                    response.body
                );
                assert!(
                    !leaks(&response.body, account),
                    "{what} leaks the account: {}",
                    response.body
                );
                if route.path.contains("{account_id}") || route.path.contains("{entitlement_id}") {
                    assert!(
                        matches!(
                            response.status,
                            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN
                        ),
                        "{what}: expected 404 or 403, got {}",
                        response.status
                    );
                }
            }
        }
    }
    assert!(n_requests > 1000, "the walk made {n_requests} requests");

    // No usage was taken for a restricted account from anyone not cleared for it: the
    // only batches stored came from callers cleared for the account they named.
    let mut handle = world.store.db().read().await.expect("read");
    let stored = handle
        .query("SELECT actor FROM ingest_batches", &[])
        .await
        .expect("batches");
    for row in &stored {
        let actor = row.text(0).expect("actor");
        assert!(
            actor.contains("usgov") || actor.contains("-eu"),
            "usage was stored from {actor}"
        );
    }
    drop(handle);

    // Nothing the uncleared tried changed a restricted account or put one in a boundary.
    let rules = BoundaryRule::built_in();
    let system = AccountScope::system("test", &rules);
    for account in &before {
        let now = world
            .store
            .account(&system, &account.id.0)
            .await
            .expect("still there");
        assert_eq!(&now, account, "{} was changed", account.fields.name);
    }
    let all = world
        .store
        .list_accounts(
            &system,
            &purser_store::AccountFilter::default(),
            &purser_store::PageRequest {
                after: None,
                limit: Some(500),
            },
        )
        .await
        .expect("list");
    for account in &all.items {
        if account.fields.name == "Moved" {
            assert_eq!(
                account.fields.boundary.as_str(),
                "standard",
                "an uncleared caller placed an account in {}",
                account.fields.boundary
            );
        }
    }

    for (account_id, entitlement_id) in &world.entitlements {
        let entitlement = world
            .store
            .entitlement(&system, entitlement_id)
            .await
            .expect("entitlement");
        assert_eq!(
            entitlement.status.as_str(),
            "active",
            "the entitlement of {account_id} was changed"
        );
        let n = world
            .store
            .entitlements(&system, account_id)
            .await
            .expect("entitlements")
            .len();
        assert_eq!(n, 1, "an entitlement was added to {account_id}");
    }

    // The whole audit log, read by each caller who may read it, holds nothing of the
    // restricted accounts they are not cleared for, though the walk wrote many entries
    // about them (reads by the cleared, denials of the uncleared).
    let mut n_entries_checked = 0;
    for caller in world.callers.iter().filter(|c| {
        c.roles
            .iter()
            .any(|r| matches!(r, Role::Auditor | Role::Admin))
    }) {
        let mut cursor: Option<String> = None;
        loop {
            let query = cursor
                .as_ref()
                .map_or_else(String::new, |c| format!("&cursor={c}"));
            let request = Request::builder()
                .uri(format!("/v1/audit?limit=500{query}"))
                .header(header::AUTHORIZATION, format!("Bearer {}", caller.token))
                .body(Body::empty())
                .expect("request");
            let response = send(&world.router, request).await;
            if response.status == StatusCode::UNAUTHORIZED {
                break; // signed out at the end of the walk
            }
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            for (boundary, account) in &world.restricted {
                if !caller.cleared_for.contains(boundary) {
                    assert!(
                        !leaks(&response.body, account),
                        "the audit log shows {} to {}",
                        account.fields.name,
                        caller.label
                    );
                }
            }
            let page: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
            n_entries_checked += page["items"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    assert!(
        n_entries_checked > 1000,
        "the log was read whole: {n_entries_checked} entries"
    );

    // The marketplace views do hold the restricted accounts' records: a cleared caller
    // sees the us-gov one, with the marketplace's reason.
    let cleared_admin = world
        .callers
        .iter()
        .find(|c| c.label == "finance-usgov")
        .expect("caller");
    // The walk signed every session out: a fresh one for the page.
    let finance_user = world
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.username == "finance-usgov")
        .expect("user");
    world
        .store
        .create_session(
            &finance_user.id,
            &secret_digest("finance-fresh"),
            "csrf",
            Timestamp::now() + SignedDuration::from_hours(1),
        )
        .await
        .expect("session");
    for path in [
        "/v1/marketplace/records",
        "/v1/marketplace/reconcile",
        "/marketplaces/aws/records",
    ] {
        let mut request = Request::builder().uri(path);
        request = if path.starts_with("/v1") {
            request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", cleared_admin.token),
            )
        } else {
            request.header(header::COOKIE, "purser_session=finance-fresh")
        };
        let response = send(&world.router, request.body(Body::empty()).expect("request")).await;
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
        let target = &world.restricted["us-gov"];
        assert!(
            response.body.contains(&target.id.0),
            "{path} shows the cleared the us-gov record: {}",
            response.body
        );
        assert!(
            !leaks(&response.body, &world.restricted["sg-gov"]),
            "{path}"
        );
    }

    // The ERP and CRM views hold them too: the cleared see the us-gov account's line and
    // finding, never the sg-gov one's.
    for path in [
        "/v1/erp/invoices",
        "/v1/crm/findings",
        "/erp",
        "/crm/hygiene",
    ] {
        let mut request = Request::builder().uri(path);
        request = if path.starts_with("/v1") {
            request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", cleared_admin.token),
            )
        } else {
            request.header(header::COOKIE, "purser_session=finance-fresh")
        };
        let response = send(&world.router, request.body(Body::empty()).expect("request")).await;
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
        assert!(
            leaks(&response.body, &world.restricted["us-gov"]),
            "{path} shows the cleared the us-gov account's data: {}",
            response.body
        );
        assert!(
            !leaks(&response.body, &world.restricted["sg-gov"]),
            "{path}"
        );
    }

    // The control: a cleared caller does see the account, so the walk above could fail.
    let cleared = world
        .callers
        .iter()
        .find(|c| c.label == "support-usgov")
        .expect("caller");
    let target = &world.restricted["us-gov"];
    let api = Request::builder()
        .uri(format!("/v1/accounts/{}", target.id))
        .header(header::AUTHORIZATION, format!("Bearer {}", cleared.token))
        .body(Body::empty())
        .expect("request");
    let response = send(&world.router, api).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(leaks(&response.body, target));
    let page = Request::builder()
        .uri(format!("/accounts/{}", target.id))
        .header(
            header::COOKIE,
            format!("purser_session={}", cleared.session),
        )
        .body(Body::empty())
        .expect("request");
    let response = send(&world.router, page).await;
    // The cleared support user signed out at the end of the walk; sign-in is asked again.
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let fresh = "fresh-session";
    let user = world
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.username == "support-usgov")
        .expect("user");
    world
        .store
        .create_session(
            &user.id,
            &secret_digest(fresh),
            "csrf",
            Timestamp::now() + SignedDuration::from_hours(1),
        )
        .await
        .expect("session");
    let page = Request::builder()
        .uri(format!("/accounts/{}", target.id))
        .header(header::COOKIE, format!("purser_session={fresh}"))
        .body(Body::empty())
        .expect("request");
    let response = send(&world.router, page).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(leaks(&response.body, target));
    assert!(cleared.roles.contains(&Role::Support));
}

/// One bad request and what it must produce.
struct BadCase {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
    /// The field the details must name, if any.
    field: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_error_shape_and_changes_nothing() {
    let settings = HttpSettings {
        max_body_bytes: 4096,
        ..HttpSettings::default()
    };
    let world = world(settings).await;
    let admin = world
        .callers
        .iter()
        .find(|c| c.label == "admin-usgov")
        .expect("admin");
    let bearer = format!("Bearer {}", admin.token);
    let json = |extra: Vec<(&'static str, String)>| {
        let mut headers = vec![
            ("authorization", bearer.clone()),
            ("content-type", "application/json".to_owned()),
        ];
        headers.extend(extra);
        headers
    };
    let valid = r#"{"name":"Acme","external_id":"acme","marketplace":"aws","marketplace_account_id":"123456789012","region":"us-east-1"}"#;
    let cases = vec![
        BadCase { name: "wrong type", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: br#"{"name":5,"external_id":"a","marketplace":"aws","region":"r"}"#.to_vec(),
            status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("name") },
        BadCase { name: "unknown field", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: br#"{"name":"a","external_id":"a","marketplace":"aws","region":"r","colour":"red"}"#.to_vec(),
            status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("colour") },
        BadCase { name: "nested wrong type", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: br#"{"name":"a","external_id":"a","marketplace":"aws","region":"r","owners":{"csm":1}}"#.to_vec(),
            status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("owners.csm") },
        BadCase { name: "invalid values", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: br#"{"name":"Acme","external_id":"Acme Corp","marketplace":"aws","marketplace_account_id":"12","region":"us-east-1"}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("external_id") },
        BadCase { name: "invalid UTF-8", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: b"{\"name\":\"\xff\xfe\"}".to_vec(), status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("body") },
        BadCase { name: "not JSON at all", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: b"name=acme".to_vec(), status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("body") },
        BadCase { name: "oversize body", method: Method::POST, path: "/v1/accounts", headers: json(vec![]),
            body: format!(r#"{{"name":"{}"}}"#, "a".repeat(10_000)).into_bytes(),
            status: StatusCode::PAYLOAD_TOO_LARGE, code: "payload_too_large", field: None },
        BadCase { name: "wrong content type", method: Method::POST, path: "/v1/accounts",
            headers: vec![("authorization", bearer.clone()), ("content-type", "text/plain".into())],
            body: valid.as_bytes().to_vec(), status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: "unsupported_media_type", field: None },
        BadCase { name: "missing token", method: Method::POST, path: "/v1/accounts",
            headers: vec![("content-type", "application/json".into())], body: valid.as_bytes().to_vec(),
            status: StatusCode::UNAUTHORIZED, code: "unauthenticated", field: None },
        BadCase { name: "forged token", method: Method::POST, path: "/v1/accounts",
            headers: vec![("authorization", "Bearer psr_forged0000".into()), ("content-type", "application/json".into())],
            body: valid.as_bytes().to_vec(), status: StatusCode::UNAUTHORIZED, code: "unauthenticated", field: None },
        BadCase { name: "not a bearer token", method: Method::GET, path: "/v1/accounts",
            headers: vec![("authorization", "Basic YWRtaW46YWRtaW4=".into())], body: vec![],
            status: StatusCode::UNAUTHORIZED, code: "unauthenticated", field: None },
        BadCase { name: "a session cookie does not open the API", method: Method::GET, path: "/v1/accounts",
            headers: vec![("cookie", format!("purser_session={}", admin.session))], body: vec![],
            status: StatusCode::UNAUTHORIZED, code: "unauthenticated", field: None },
        BadCase { name: "form without its CSRF token", method: Method::POST, path: "/accounts/new",
            headers: vec![("cookie", format!("purser_session={}", admin.session)), ("content-type", "application/x-www-form-urlencoded".into()), ("accept", "application/json".into())],
            body: b"name=Acme&external_id=acme&marketplace=direct&region=r".to_vec(),
            status: StatusCode::FORBIDDEN, code: "csrf_failed", field: None },
        BadCase { name: "form with another session's CSRF token", method: Method::POST, path: "/accounts/new",
            headers: vec![("cookie", format!("purser_session={}", admin.session)), ("content-type", "application/x-www-form-urlencoded".into()), ("accept", "application/json".into())],
            body: b"_csrf=viewer-uncleared-csrf&name=Acme&external_id=acme&marketplace=direct&region=r".to_vec(),
            status: StatusCode::FORBIDDEN, code: "csrf_failed", field: None },
        BadCase { name: "sign-in without its CSRF cookie", method: Method::POST, path: "/signin",
            headers: vec![("content-type", "application/x-www-form-urlencoded".into()), ("accept", "application/json".into())],
            body: b"_csrf=x&username=admin-usgov&password=whatever".to_vec(),
            status: StatusCode::FORBIDDEN, code: "csrf_failed", field: None },
        BadCase { name: "bad query parameter", method: Method::GET, path: "/v1/accounts?limit=many",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("limit") },
        BadCase { name: "unknown query parameter", method: Method::GET, path: "/v1/accounts?colour=red",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::BAD_REQUEST, code: "bad_request", field: Some("colour") },
        BadCase { name: "bad filter value", method: Method::GET, path: "/v1/accounts?marketplace=ibm",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("marketplace") },
        BadCase { name: "forged cursor", method: Method::GET, path: "/v1/accounts?cursor=zzzz",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("cursor") },
        BadCase { name: "bad instant", method: Method::GET, path: "/v1/audit?from=yesterday",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("from") },
        BadCase { name: "bad ERP month", method: Method::GET, path: "/v1/erp/invoices?month=2026-13",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("month") },
        BadCase { name: "unknown ERP format", method: Method::GET, path: "/v1/erp/invoices?month=2026-11&format=pdf",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("format") },
        BadCase { name: "CRM record without its external id", method: Method::POST, path: "/v1/crm/import", headers: json(vec![]),
            body: br#"{"records":[{"attributes":{"type":"Account"},"Name":"Acme","Marketplace__c":"direct","Region__c":"us-east-1"}]}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("records[0].Purser_External_Id__c") },
        BadCase { name: "CRM record with a bad field", method: Method::POST, path: "/v1/crm/import", headers: json(vec![]),
            body: br#"[{"attributes":{"type":"Account"},"Name":"Acme","Purser_External_Id__c":"acme-crm","Marketplace__c":"ibm","Region__c":"us-east-1"}]"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("records[0].Marketplace__c") },
        BadCase { name: "unknown marketplace", method: Method::GET, path: "/v1/marketplace/records?marketplace=ibm",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("marketplace") },
        BadCase { name: "unknown delivery state", method: Method::GET, path: "/v1/marketplace/records?marketplace=aws&state=lost",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("state") },
        BadCase { name: "bad record hour", method: Method::GET, path: "/v1/marketplace/records?hour=noon",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("hour") },
        BadCase { name: "record limit out of range", method: Method::GET, path: "/v1/marketplace/records?limit=0",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("limit") },
        BadCase { name: "negative record offset", method: Method::GET, path: "/v1/marketplace/records?offset=-1",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("offset") },
        BadCase { name: "bad marketplace hours range", method: Method::GET, path: "/v1/marketplace/hours?from=yesterday",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("from") },
        BadCase { name: "bad marketplace in hours", method: Method::GET, path: "/v1/marketplace/hours?marketplace=direct",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("marketplace") },
        BadCase { name: "bad reconcile end", method: Method::GET, path: "/v1/marketplace/reconcile?to=soon",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("to") },
        BadCase { name: "reconcile backwards", method: Method::GET, path: "/v1/marketplace/reconcile?from=2026-03-01T00:00:00Z&to=2026-02-01T00:00:00Z",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("from") },
        BadCase { name: "unknown API path", method: Method::GET, path: "/v1/nothing-here",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::NOT_FOUND, code: "not_found", field: None },
        BadCase { name: "wrong method", method: Method::PUT, path: "/v1/accounts",
            headers: vec![("authorization", bearer.clone())], body: vec![],
            status: StatusCode::METHOD_NOT_ALLOWED, code: "method_not_allowed", field: None },
        BadCase { name: "stale If-Match", method: Method::PATCH, path: "/v1/accounts/OPEN",
            headers: json(vec![("if-match", "\"1\"".into())]), body: br#"{"status":"active"}"#.to_vec(),
            status: StatusCode::PRECONDITION_FAILED, code: "precondition_failed", field: None },
        BadCase { name: "permission denied", method: Method::POST, path: "/v1/users",
            headers: vec![("authorization", format!("Bearer {}", world.callers.iter().find(|c| c.label == "viewer-uncleared").expect("viewer").token)), ("content-type", "application/json".into())],
            body: br#"{"username":"mallory","roles":["admin"]}"#.to_vec(), status: StatusCode::FORBIDDEN, code: "forbidden", field: None },
        BadCase { name: "short password", method: Method::POST, path: "/v1/users", headers: json(vec![]),
            body: br#"{"username":"newbie","password":"short","roles":["viewer"]}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("password") },
        BadCase { name: "token lifetime out of range", method: Method::POST, path: "/v1/tokens", headers: json(vec![]),
            body: br#"{"name":"forever","expires_in_days":100000}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("expires_in_days") },
    ];
    let rules = BoundaryRule::built_in();
    let system = AccountScope::system("test", &rules);
    let open = world
        .store
        .list_accounts(
            &system,
            &purser_store::AccountFilter {
                q: Some("open-standard".into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .await
        .expect("list")
        .items
        .remove(0);
    let accounts_before = world.store.count_accounts().await.expect("count");
    let users_before = world.store.users().await.expect("users").len();
    let tokens_before = world.store.tokens(None).await.expect("tokens").len();
    for case in cases {
        let path = case.path.replace("OPEN", &open.id.0);
        let mut builder = Request::builder().method(case.method.clone()).uri(&path);
        for (name, value) in &case.headers {
            builder = builder.header(*name, value);
        }
        let response = send(
            &world.router,
            builder.body(Body::from(case.body)).expect("request"),
        )
        .await;
        assert_eq!(
            response.status, case.status,
            "{}: {}",
            case.name, response.body
        );
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|_| panic!("{}: not the error shape: {}", case.name, response.body));
        let error = &body["error"];
        assert_eq!(error["code"], case.code, "{}: {}", case.name, response.body);
        assert_eq!(error["status"], case.status.as_u16(), "{}", case.name);
        assert!(
            error["message"].as_str().is_some_and(|m| m.len() > 10),
            "{}: a message a person can read",
            case.name
        );
        let request_id = error["request_id"].as_str().expect("a request id");
        assert_eq!(
            response
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(request_id),
            "{}",
            case.name
        );
        if let Some(field) = case.field {
            let fields: Vec<&str> = error["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["field"].as_str())
                .collect();
            assert!(
                fields.contains(&field),
                "{}: details name {field}: {fields:?}",
                case.name
            );
        }
    }
    assert_eq!(
        world.store.count_accounts().await.expect("count"),
        accounts_before,
        "no account was created"
    );
    assert_eq!(
        world.store.users().await.expect("users").len(),
        users_before,
        "no user was created"
    );
    assert_eq!(
        world.store.tokens(None).await.expect("tokens").len(),
        tokens_before,
        "no token was created"
    );
    let unchanged = world
        .store
        .account(&system, &open.id.0)
        .await
        .expect("account");
    assert_eq!(unchanged, open, "the account is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_session_cookie_is_forgotten_and_sends_to_sign_in() {
    let world = world(HttpSettings::default()).await;
    let request = Request::builder()
        .uri("/accounts")
        .header(header::COOKIE, "purser_session=forged-value")
        .body(Body::empty())
        .expect("request");
    let response = send(&world.router, request).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let location = response
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(location, "/signin?next=%2Faccounts&reason=session");
    let cookie = response
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        cookie.starts_with("purser_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_api_route() {
    let world = world(HttpSettings::default()).await;
    let response = send(
        &world.router,
        Request::builder()
            .uri("/openapi.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    let spec: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths");
    for route in world.table.iter().filter(|r| r.access == Access::Token) {
        let operation = &paths[&route.path][route.method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is described",
            route.method,
            route.path
        );
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{} {} has responses",
            route.method,
            route.path
        );
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    let docs = send(
        &world.router,
        Request::builder()
            .uri("/docs/api")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.contains("/v1/accounts/{account_id}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template() {
    let world = world(HttpSettings::default()).await;
    let caller = &world.callers[0];
    let account = &world.restricted["us-gov"];
    for _ in 0..3 {
        let request = Request::builder()
            .uri(format!("/v1/accounts/{}", account.id))
            .header(header::AUTHORIZATION, format!("Bearer {}", caller.token))
            .body(Body::empty())
            .expect("request");
        send(&world.router, request).await;
    }
    let metrics = send(
        &world.router,
        Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(metrics.status, StatusCode::OK);
    let line = metrics
        .body
        .lines()
        .find(|l| {
            l.starts_with("purser_http_requests_total{")
                && l.contains("route=\"/v1/accounts/{account_id}\"")
                && l.contains("status=\"404\"")
        })
        .unwrap_or_else(|| panic!("a counter for the route template: {}", metrics.body));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(
        !metrics.body.contains(&account.id.0),
        "ids never become labels"
    );
    assert!(
        metrics.body.contains("purser_db_connections"),
        "pool metrics"
    );
    assert!(
        metrics
            .body
            .contains("purser_http_request_duration_seconds_bucket"),
        "latency histogram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_a_clearance_closes_the_boundary_at_the_next_request() {
    let world = world(HttpSettings::default()).await;
    let admin = world
        .callers
        .iter()
        .find(|c| c.label == "admin-uncleared")
        .expect("admin");
    let cleared = world
        .callers
        .iter()
        .find(|c| c.label == "support-usgov")
        .expect("support");
    let target = &world.restricted["us-gov"];
    let read = |token: String| {
        Request::builder()
            .uri(format!("/v1/accounts/{}", target.id))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(
        send(&world.router, read(cleared.token.clone()))
            .await
            .status,
        StatusCode::OK
    );

    let user = world
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.username == "support-usgov")
        .expect("user");
    let patch = |user_id: &str, body: serde_json::Value| {
        Request::builder()
            .method(Method::PATCH)
            .uri(format!("/v1/users/{user_id}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", admin.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let response = send(
        &world.router,
        patch(&user.id, serde_json::json!({ "clearances": [] })),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let view: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(view["clearances"], serde_json::json!([]));
    assert_eq!(
        view["roles"],
        serde_json::json!(["support"]),
        "other fields are kept"
    );
    assert_eq!(
        send(&world.router, read(cleared.token.clone()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Invalid changes name their field and change nothing.
    let response = send(
        &world.router,
        patch(
            &user.id,
            serde_json::json!({ "roles": ["wizard"], "residency": "Atlantis" }),
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response.body.contains("roles[0]") && response.body.contains("residency"),
        "{}",
        response.body
    );
    // An administrator cannot lock themselves out.
    let me = world
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.username == "admin-uncleared")
        .expect("admin");
    let response = send(
        &world.router,
        patch(&me.id, serde_json::json!({ "roles": ["viewer"] })),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.body
    );

    let log = world.audit("user.update").await;
    assert_eq!(log.items.len(), 1, "one change was made");
    let details: serde_json::Value = serde_json::from_str(&log.items[0].details).expect("JSON");
    assert_eq!(
        details["before"]["clearances"],
        serde_json::json!(["us-gov"])
    );
    assert_eq!(details["after"]["clearances"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_throttled_per_username() {
    let world = world(HttpSettings::default()).await;
    let user = world
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.username == "viewer-uncleared")
        .expect("user");
    let hash = purser_http::auth::hash_password("the right password".into())
        .await
        .expect("hash");
    let change =
        NewUser::validate(&user.username, "", &["viewer".into()], &[], Some("US")).expect("valid");
    world
        .store
        .update_user(
            &Actor::new("system:test", None),
            &user.id,
            &change,
            Some(hash),
        )
        .await
        .expect("password");
    let attempt = |password: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/signin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, "purser_signin_csrf=token")
            .body(Body::from(format!(
                "_csrf=token&username=viewer-uncleared&password={password}"
            )))
            .expect("request")
    };
    for _ in 0..purser_http::auth::SignInThrottle::MAX_FAILURES {
        let response = send(&world.router, attempt("wrong-guess")).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "a failed sign-in shows the form again"
        );
        assert!(response.body.contains("do not match"));
    }
    // Now even the right password waits, and says for how long.
    let response = send(&world.router, attempt("the%20right%20password")).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response.body.contains("Too many failed sign-ins"),
        "{}",
        response.body
    );
    let no_session = response
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .all(|v| !v.to_str().unwrap_or("").starts_with("purser_session="));
    assert!(no_session, "no session is made");
    // Another username is not affected.
    let other = Request::builder()
        .method(Method::POST)
        .uri("/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, "purser_signin_csrf=token")
        .body(Body::from(
            "_csrf=token&username=finance-uncleared&password=whatever",
        ))
        .expect("request");
    assert_eq!(send(&world.router, other).await.status, StatusCode::OK);
    let log = world.audit("session.sign_in_*").await;
    let actions: Vec<&str> = log.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "session.sign_in_failed")
            .count(),
        6
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "session.sign_in_throttled")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_s_request_id_is_kept_only_when_plausible() {
    let world = world(HttpSettings::default()).await;
    let with_id = |id: &str| {
        Request::builder()
            .uri("/healthz")
            .header("x-request-id", id)
            .body(Body::empty())
            .expect("request")
    };
    let response = send(&world.router, with_id("trace-1234_abc.def:9")).await;
    assert_eq!(response.headers["x-request-id"], "trace-1234_abc.def:9");
    for unusable in ["a b".to_owned(), "x".repeat(500), "line\tbreak".to_owned()] {
        let response = send(&world.router, with_id(&unusable)).await;
        let id = response.headers["x-request-id"]
            .to_str()
            .expect("text")
            .to_owned();
        assert_ne!(id, unusable);
        assert_eq!(id.len(), 36, "a fresh UUID: {id}");
    }
    let response = send(
        &world.router,
        Request::builder()
            .uri("/healthz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        response.headers["x-request-id"].len(),
        36,
        "one is made when none is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_events_are_taken_in_every_framing_and_hostile_input_changes_nothing() {
    let world = world(HttpSettings {
        max_body_bytes: 64 * 1024,
        ..HttpSettings::default()
    })
    .await;
    let token = |label: &str| {
        format!(
            "Bearer {}",
            world
                .callers
                .iter()
                .find(|c| c.label == label)
                .expect("caller")
                .token
        )
    };
    let telemetry = token("telemetry-uncleared");
    let post = |auth: String, content_type: &str, body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/events")
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request")
    };
    let batches = |store: Store| async move {
        let mut handle = store.db().read().await.expect("read");
        handle
            .query_one("SELECT count(*) FROM ingest_batches", &[])
            .await
            .expect("count")
            .int(0)
            .expect("int")
    };

    // Every framing is read, and a resend changes nothing.
    let one = usage_event("e1", "open-standard", 5).to_string();
    let response = send(
        &world.router,
        post(
            telemetry.clone(),
            "application/cloudevents+json",
            one.clone().into_bytes(),
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let report: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(
        (report["events"].as_u64(), report["accepted"].as_u64()),
        (Some(1), Some(1))
    );
    let array = serde_json::json!([
        usage_event("e2", "open-standard", 6),
        usage_event("e3", "nobody-yet", 6)
    ])
    .to_string();
    let response = send(
        &world.router,
        post(
            telemetry.clone(),
            "application/cloudevents-batch+json",
            array.into_bytes(),
        ),
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(
        (report["accepted"].as_u64(), report["quarantined"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let ndjson = format!("{one}\n{}\n", usage_event("e4", "open-standard", 7));
    let response = send(
        &world.router,
        post(
            telemetry.clone(),
            "application/x-ndjson",
            ndjson.into_bytes(),
        ),
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicate"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let stored = batches(world.store.clone()).await;
    assert_eq!(stored, 3);

    // Hostile and malformed input: a clear 4xx naming the event and field, and
    // nothing stored.
    let event_with = |field: &str, value: serde_json::Value| {
        let mut event = usage_event("h1", "open-standard", 5);
        if value.is_null() {
            event.as_object_mut().expect("object").remove(field);
        } else {
            event[field] = value;
        }
        serde_json::json!([event]).to_string().into_bytes()
    };
    let data_with = |value: &str| {
        let event = usage_event("h2", "open-standard", 5).to_string();
        event.replace("1073741824", value).into_bytes()
    };
    let mut deep = String::new();
    for _ in 0..5000 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..5000 {
        deep.push('}');
    }
    let deep_event = usage_event("h3", "open-standard", 5)
        .to_string()
        .replace("{\"bytes_written\":1073741824}", &deep);
    let gov = world.restricted["us-gov"].fields.external_id.clone();
    // (case, authorization, content type, body, status, field named in the details)
    type HostileCase<'a> = (
        &'a str,
        String,
        &'a str,
        Vec<u8>,
        StatusCode,
        Option<&'a str>,
    );
    let cases: Vec<HostileCase> = vec![
        (
            "wrong type",
            telemetry.clone(),
            "application/json",
            event_with("subject", serde_json::json!(42)),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].subject"),
        ),
        (
            "negative quantity",
            telemetry.clone(),
            "application/json",
            data_with("-5"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].data"),
        ),
        (
            "non-numeric quantity",
            telemetry.clone(),
            "application/json",
            data_with("\"lots\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].data"),
        ),
        (
            "huge quantity",
            telemetry.clone(),
            "application/json",
            data_with("1e400"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].data"),
        ),
        (
            "deep nesting",
            telemetry.clone(),
            "application/json",
            deep_event.into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].data"),
        ),
        (
            "missing id",
            telemetry.clone(),
            "application/json",
            event_with("id", serde_json::Value::Null),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].id"),
        ),
        (
            "empty id",
            telemetry.clone(),
            "application/json",
            event_with("id", serde_json::json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].id"),
        ),
        (
            "far past",
            telemetry.clone(),
            "application/json",
            event_with("time", serde_json::json!("2001-01-01T00:00:00Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].time"),
        ),
        (
            "far future",
            telemetry.clone(),
            "application/json",
            event_with("time", serde_json::json!("2099-01-01T00:00:00Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0].time"),
        ),
        (
            "invalid UTF-8 in a batch",
            telemetry.clone(),
            "application/json",
            b"[{\"id\":\"\xff\"}]".to_vec(),
            StatusCode::BAD_REQUEST,
            Some("body"),
        ),
        (
            "invalid UTF-8 on an NDJSON line",
            telemetry.clone(),
            "application/x-ndjson",
            b"{\"id\":\"\xff\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events[0]"),
        ),
        (
            "body over the limit",
            telemetry.clone(),
            "application/x-ndjson",
            vec![b' '; 70 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "unknown framing",
            telemetry.clone(),
            "text/csv",
            b"a,b".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "not allowed to send usage",
            token("viewer-usgov"),
            "application/json",
            event_with("id", serde_json::json!("v1")),
            StatusCode::FORBIDDEN,
            None,
        ),
        (
            "another boundary, not cleared",
            telemetry.clone(),
            "application/json",
            event_with("subject", serde_json::json!(gov)),
            StatusCode::FORBIDDEN,
            Some("events[0].subject"),
        ),
    ];
    let denied_before = world.audit("usage.denied").await.items.len();
    for (name, auth, content_type, body, status, field) in cases {
        let response = send(&world.router, post(auth, content_type, body)).await;
        assert_eq!(response.status, status, "{name}: {}", response.body);
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|_| panic!("{name}: not the error shape: {}", response.body));
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{name}"
        );
        if let Some(field) = field {
            let fields: Vec<&str> = body["error"]["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["field"].as_str())
                .collect();
            assert!(
                fields.contains(&field),
                "{name}: {fields:?} in {}",
                response.body
            );
        }
        assert!(
            !response
                .body
                .contains(&world.restricted["us-gov"].fields.name),
            "{name}"
        );
        assert_eq!(
            batches(world.store.clone()).await,
            stored,
            "{name} stored something"
        );
    }
    let denied = world.audit("usage.denied").await.items;
    assert_eq!(
        denied.len(),
        denied_before + 1,
        "the refusal for a boundary is audited"
    );
    assert_eq!(denied[0].boundary.as_deref(), Some("us-gov"));

    // A cleared sender's event for the same account is taken.
    let response = send(
        &world.router,
        post(
            token("telemetry-usgov"),
            "application/json",
            event_with("subject", serde_json::json!(gov)),
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);

    // The quarantine lists the unknown account's event; replay after it exists.
    let admin = token("admin-usgov");
    let get = |path: &str, auth: &str| {
        Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .expect("request")
    };
    let response = send(&world.router, get("/v1/metering/quarantine", &admin)).await;
    let listed: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["reason"], "unknown_account");

    // Hours close; usage reads back as JSON and CSV; the evidence names the events.
    world
        .store
        .close_due_hours(
            Timestamp::now() + SignedDuration::from_hours(2),
            &purser_store::metering::MeteringSettings::default(),
            10,
        )
        .await
        .expect("closed");
    let open = world
        .store
        .list_accounts(
            &AccountScope::system("test", &BoundaryRule::built_in()),
            &purser_store::AccountFilter {
                q: Some("open-standard".into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .await
        .expect("list")
        .items
        .remove(0);
    let response = send(
        &world.router,
        get(
            &format!("/v1/accounts/{}/usage?of=meters", open.id.0),
            &admin,
        ),
    )
    .await;
    let usage: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    let total: u64 = usage
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r["quantity"]
                .as_str()
                .and_then(|q| q.parse::<u64>().ok())
                .expect("a whole number")
        })
        .sum();
    assert_eq!(total, 3 * 1073741824, "{usage}");
    let response = send(
        &world.router,
        get(
            &format!("/v1/accounts/{}/usage?format=csv", open.id.0),
            &admin,
        ),
    )
    .await;
    assert_eq!(
        response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    assert!(
        response.body.starts_with("start,name,group,quantity"),
        "{}",
        response.body
    );
    assert!(
        response.body.contains("data_written_gib"),
        "{}",
        response.body
    );
    // One meter only; a name no meter has is a 422 naming the parameter.
    let response = send(
        &world.router,
        get(
            &format!(
                "/v1/accounts/{}/usage?of=meters&name=storage.written",
                open.id.0
            ),
            &admin,
        ),
    )
    .await;
    let named: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    let names: Vec<&str> = named
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "storage.written"),
        "{named}"
    );
    let response = send(
        &world.router,
        get(
            &format!("/v1/accounts/{}/usage?of=meters&name=nope", open.id.0),
            &admin,
        ),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.body
    );
    assert!(
        response.body.contains("\"name\"") && response.body.contains("nope"),
        "{}",
        response.body
    );
    let hour = usage[0]["start"].as_str().expect("start");
    let response = send(
        &world.router,
        get(
            &format!("/v1/accounts/{}/evidence?hour={hour}", open.id.0),
            &admin,
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let trace: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert!(trace["events"].as_array().is_some_and(|e| !e.is_empty()));
    // An uncleared reader cannot see the restricted account's usage.
    let response = send(
        &world.router,
        get(
            &format!("/v1/accounts/{}/usage", world.restricted["us-gov"].id.0),
            &token("csm-uncleared"),
        ),
    )
    .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}
