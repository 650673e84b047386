//! The subscription pages: every subscription the marketplaces sent, where it stands
//! and what needs a person; one subscription's lifecycle and the notifications behind
//! it; notifications set aside (unknown or unreadable), kept and shown, never dropped.
//!
//! A subscription linked to an account is that account's data and scoped by its
//! boundary. One not yet linked has no boundary yet: only those who handle
//! registrations (`ManageCommercial`) see it.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use purser_core::Permission;
use purser_store::subscriptions::{Notification, SubscriptionView};

use super::{Chrome, render, see_other, when};
use crate::auth::{Caller, CsrfForm, PageCaller};
use crate::error::ApiError;
use crate::state::AppState;

const LISTED: usize = 200;

struct SubscriptionRow {
    id: String,
    marketplace: &'static str,
    external_id: String,
    account: Option<(String, String)>,
    restricted_boundary: Option<String>,
    state: &'static str,
    plan: String,
    attention: String,
    updated: String,
}

fn row(view: &SubscriptionView) -> SubscriptionRow {
    let record = &view.record;
    SubscriptionRow {
        id: record.id.clone(),
        marketplace: record.subscription.marketplace.as_str(),
        external_id: record.subscription.external_id.clone(),
        account: record
            .subscription
            .account_id
            .clone()
            .map(|id| (id, view.account_name.clone().unwrap_or_default())),
        restricted_boundary: view.boundary.clone().filter(|b| b != "standard"),
        state: record.subscription.state.as_str(),
        plan: record.plan.clone().unwrap_or_default(),
        attention: record.attention.clone().unwrap_or_default(),
        updated: when(record.updated_at),
    }
}

struct NotificationRow {
    marketplace: &'static str,
    channel: String,
    kind: String,
    external_id: String,
    status: &'static str,
    received: String,
    attempts: i64,
    reason: String,
}

fn notification_row(n: &Notification) -> NotificationRow {
    NotificationRow {
        marketplace: n.marketplace.as_str(),
        channel: n.channel.clone(),
        kind: n.kind.clone().unwrap_or_default(),
        external_id: n.external_id.clone().unwrap_or_default(),
        status: n.status.as_str(),
        received: when(n.received_at),
        attempts: n.attempts,
        reason: n.last_error.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "subscriptions.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<SubscriptionRow>,
    set_aside: Vec<NotificationRow>,
}

/// `/subscriptions`.
pub async fn list(State(state): State<AppState>, caller: PageCaller) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let unlinked = caller.principal().can(Permission::ManageCommercial);
    let subscriptions = state
        .store
        .subscriptions_in_scope(&scope, unlinked, LISTED)
        .await?;
    let set_aside = state
        .store
        .notifications_in_scope(&scope, unlinked, None, true, LISTED)
        .await?;
    Ok(render(&ListPage {
        chrome: Chrome::for_caller(&caller, "/subscriptions"),
        rows: subscriptions.iter().map(row).collect(),
        set_aside: set_aside.iter().map(notification_row).collect(),
    }))
}

struct EventRow {
    at: String,
    what: String,
    states: String,
    applied_from: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "subscription.html")]
struct DetailPage {
    chrome: Chrome,
    subscription: SubscriptionRow,
    quantity: String,
    pending_plan: String,
    billed_party: String,
    events: Vec<EventRow>,
    notifications: Vec<NotificationRow>,
    /// Whether the caller may link it to an account (registration).
    can_link: bool,
}

/// `/subscriptions/{subscription_id}`: where it stands, its lifecycle, its notifications.
pub async fn detail(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(subscription_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let unlinked = caller.principal().can(Permission::ManageCommercial);
    let view = state
        .store
        .subscription_in_scope(&scope, unlinked, &subscription_id)
        .await?;
    let events = state.store.subscription_events(&view.record.id).await?;
    let notifications = state
        .store
        .notifications_in_scope(&scope, unlinked, Some(&view.record), false, LISTED)
        .await?;
    let record = &view.record;
    Ok(render(&DetailPage {
        chrome: Chrome::for_caller(&caller, "/subscriptions"),
        quantity: record.quantity.map(|q| q.to_string()).unwrap_or_default(),
        pending_plan: record.pending_plan.clone().unwrap_or_default(),
        billed_party: record
            .binding
            .as_ref()
            .map(|b| b.billed_party())
            .unwrap_or_default(),
        subscription: row(&view),
        events: events
            .iter()
            .map(|e| EventRow {
                at: when(e.at),
                what: e.what.clone(),
                states: match (&e.from_state, &e.to_state) {
                    (Some(from), Some(to)) if from != to => format!("{from} → {to}"),
                    (_, Some(to)) => to.clone(),
                    _ => String::new(),
                },
                applied_from: e.applied_from.map(when).unwrap_or_default(),
                detail: summarise(&e.detail),
            })
            .collect(),
        notifications: notifications.iter().map(notification_row).collect(),
        can_link: unlinked && record.subscription.account_id.is_none(),
    }))
}

/// The registration form: which Purser account the buyer is, and what sales knows.
#[derive(Debug, serde::Deserialize)]
pub struct LinkForm {
    /// The account's id or external id.
    pub account: String,
    #[serde(default)]
    pub crm_account_id: String,
    #[serde(default)]
    pub private_offer: String,
    #[serde(default)]
    pub company: String,
    #[serde(default)]
    pub contact_email: String,
}

/// `POST /subscriptions/{subscription_id}/link`: links the subscription to an account
/// the caller may see; the next `marketplace.subscriptions` run re-reads it and makes
/// the approval the marketplace waits for.
pub async fn link(
    State(state): State<AppState>,
    Path(subscription_id): Path<String>,
    CsrfForm { caller, form }: CsrfForm<LinkForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let scope = caller.scope(&state).await?;
    let view = state
        .store
        .subscription_in_scope(&scope, true, &subscription_id)
        .await
        .map_err(crate::error::or_not_found("subscription"))?;
    let wanted = form.account.trim();
    if wanted.is_empty() {
        return Err(ApiError::field(
            "account",
            "name the account: its id or external id",
        ));
    }
    let account = match state.store.account(&scope, wanted).await {
        Ok(account) => account,
        Err(purser_store::StoreError::NotFound) => {
            let page = state
                .store
                .list_accounts(
                    &scope,
                    &purser_store::AccountFilter {
                        q: Some(wanted.to_string()),
                        ..Default::default()
                    },
                    &purser_store::PageRequest {
                        after: None,
                        limit: Some(50),
                    },
                )
                .await?;
            page.items
                .into_iter()
                .find(|a| a.fields.external_id == wanted)
                .ok_or_else(|| {
                    ApiError::field(
                        "account",
                        format!("no account you may see has the id or external id `{wanted}`"),
                    )
                })?
        }
        Err(other) => return Err(other.into()),
    };
    if account.fields.marketplace != view.record.subscription.marketplace {
        return Err(ApiError::field(
            "account",
            format!(
                "{} is sold through {}, this subscription comes from {}",
                account.fields.name,
                account.fields.marketplace.as_str(),
                view.record.subscription.marketplace.as_str()
            ),
        ));
    }
    let crm = form.crm_account_id.trim();
    if let Some(known) = &account.fields.crm_account_id
        && !crm.is_empty()
        && known.as_str() != crm
    {
        return Err(ApiError::field(
            "crm_account_id",
            format!(
                "{} has CRM account {known} in Purser; fix the CRM or the account first",
                account.fields.name
            ),
        ));
    }
    let buyer = serde_json::json!({
        "crm_account_id": (!crm.is_empty()).then_some(crm),
        "private_offer": Some(form.private_offer.trim()).filter(|s| !s.is_empty()),
        "company": Some(form.company.trim()).filter(|s| !s.is_empty()),
        "contact_email": Some(form.contact_email.trim()).filter(|s| !s.is_empty()),
    });
    state
        .store
        .link_subscription(
            &scope,
            view.record.subscription.marketplace,
            &view.record.subscription.external_id,
            &account.id.0,
            buyer,
        )
        .await?;
    Ok(see_other(&format!("/subscriptions/{subscription_id}")))
}

/// One line about a lifecycle entry's detail: the decision's change, call and
/// attention, the call made, or who was linked.
fn summarise(detail: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(decision) = detail.get("decision") {
        if let Some(change) = decision.get("change").filter(|c| !c.is_null()) {
            parts.push(format!(
                "{} {}",
                change
                    .get("change")
                    .and_then(|c| c.as_str())
                    .unwrap_or("change"),
                change.get("plan").and_then(|p| p.as_str()).unwrap_or("")
            ));
        }
        if let Some(call) = decision.get("call").and_then(|c| c.get("call")) {
            parts.push(format!("seller call due: {}", call.as_str().unwrap_or("")));
        }
        if let Some(attention) = decision.get("attention").and_then(|a| a.as_str()) {
            parts.push(attention.to_string());
        }
    }
    if let Some(call) = detail.get("call").and_then(|c| c.get("call")) {
        parts.push(format!("called {}", call.as_str().unwrap_or("")));
    }
    if let Some(error) = detail.get("error").and_then(|e| e.as_str()) {
        parts.push(format!("the marketplace said: {error}"));
    }
    if let Some(account) = detail.get("account_id").and_then(|a| a.as_str()) {
        parts.push(format!("linked to account {account}"));
    }
    parts.join("; ")
}
