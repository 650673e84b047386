//! The marketplace pages: per marketplace where the last closed hours stand, the
//! records behind an hour with the marketplace's reasons, and a period's
//! reconciliation. Same store calls and query parsing as `/v1/marketplace`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use purser_core::marketplace::DeliveryState;
use purser_core::{Marketplace, Permission};
use purser_store::marketplace_views::{MarketplaceHour, RecordQuery};

use super::{Chrome, render, when};
use crate::api::marketplace::{BILLED, ReconcileQuery, RecordsQuery, reconcile_range};
use crate::auth::{Caller, PageCaller};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// How many closed hours the overview shows.
const OVERVIEW_HOURS: i64 = 48;

fn label(marketplace: Marketplace) -> &'static str {
    match marketplace {
        Marketplace::Gcp => "Google Cloud",
        Marketplace::Azure => "Azure",
        Marketplace::Aws => "AWS",
        Marketplace::Direct => "Direct",
    }
}

/// An hour as a query value and as an element id (no characters CSS would need
/// escaped).
fn hour_param(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:00:00Z").to_string()
}

fn hour_id(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H").to_string()
}

struct HourRow {
    id: String,
    hour: String,
    href: String,
    records: i64,
    due: i64,
    sent: i64,
    accepted: i64,
    refused: i64,
    conflict: i64,
    expired: i64,
    at_risk: i64,
    /// What to say about it when it needs attention.
    marks: Vec<&'static str>,
}

struct Section {
    key: &'static str,
    label: &'static str,
    rows: Vec<HourRow>,
    any: bool,
}

#[derive(Template)]
#[template(path = "marketplaces.html")]
struct OverviewPage {
    chrome: Chrome,
    through: String,
    sections: Vec<Section>,
}

fn hour_row(marketplace: Marketplace, at: Timestamp, h: Option<&MarketplaceHour>) -> HourRow {
    let n = |f: fn(&MarketplaceHour) -> i64| h.map_or(0, f);
    let mut marks = Vec::new();
    if n(|h| h.refused) > 0 {
        marks.push("refused");
    }
    if n(|h| h.conflict) > 0 {
        marks.push("conflict");
    }
    if n(|h| h.at_risk) > 0 {
        marks.push("at risk");
    }
    HourRow {
        id: format!("{}-{}", marketplace.as_str(), hour_id(at)),
        hour: when(at),
        href: format!(
            "/marketplaces/{}/records?hour={}",
            marketplace.as_str(),
            hour_param(at)
        ),
        records: n(|h| h.records),
        due: n(|h| h.due + h.sending),
        sent: n(|h| h.sent),
        accepted: n(|h| h.accepted),
        refused: n(|h| h.refused),
        conflict: n(|h| h.conflict),
        expired: n(|h| h.expired),
        at_risk: n(|h| h.at_risk),
        marks,
    }
}

/// `/marketplaces`: the last closed hours of each marketplace, newest first.
pub async fn overview(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let scope = caller.scope(&state).await?;
    let now = Timestamp::now();
    let last = match state.store.closed_through().await? {
        Some(hour) => hour,
        None => purser_store::metering::hour_start(now)? - SignedDuration::from_hours(1),
    };
    let to = last + SignedDuration::from_hours(1);
    let from = to - SignedDuration::from_hours(OVERVIEW_HOURS);
    let hours = state
        .store
        .marketplace_hours(&scope, None, from, to, now)
        .await?;
    let sections = BILLED
        .into_iter()
        .map(|marketplace| {
            let mine: Vec<&MarketplaceHour> = hours
                .iter()
                .filter(|h| h.marketplace == marketplace)
                .collect();
            let rows = (0..OVERVIEW_HOURS)
                .map(|back| {
                    let at = last - SignedDuration::from_hours(back);
                    hour_row(marketplace, at, mine.iter().find(|h| h.hour == at).copied())
                })
                .collect();
            Section {
                key: marketplace.as_str(),
                label: label(marketplace),
                any: !mine.is_empty(),
                rows,
            }
        })
        .collect();
    Ok(render(&OverviewPage {
        chrome: Chrome::for_caller(&caller, "/marketplaces"),
        through: when(last),
        sections,
    }))
}

struct RecordRow {
    account_id: String,
    account_name: String,
    restricted_boundary: Option<String>,
    /// Reported through Tackle rather than to the marketplace directly.
    through_tackle: bool,
    dimension: String,
    marketplace_dimension: String,
    hour: String,
    quantity: String,
    state: &'static str,
    attempts: i64,
    uncertain: bool,
    deadline: String,
    at_risk: bool,
    reason: String,
    marketplace_id: String,
}

struct Filter {
    hour: String,
    state: String,
    account_id: String,
}

#[derive(Template)]
#[template(path = "marketplace_records.html")]
struct RecordsPage {
    chrome: Chrome,
    key: &'static str,
    label: &'static str,
    filter: Filter,
    states: Vec<&'static str>,
    rows: Vec<RecordRow>,
    total: i64,
    first: i64,
    last: i64,
    previous_href: Option<String>,
    next_href: Option<String>,
}

fn records_href(key: &str, filter: &Filter, offset: i64) -> String {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("hour", &filter.hour),
        ("state", &filter.state),
        ("account_id", &filter.account_id),
    ] {
        if !value.is_empty() {
            params.append_pair(name, value);
        }
    }
    if offset > 0 {
        params.append_pair("offset", &offset.to_string());
    }
    format!("/marketplaces/{key}/records?{}", params.finish())
}

/// `/marketplaces/{marketplace}/records`: the records of an hour, a state or an
/// account, with the marketplace's reasons.
pub async fn records(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(marketplace): Path<String>,
    ApiQuery(mut query): ApiQuery<RecordsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let marketplace = BILLED
        .into_iter()
        .find(|m| m.as_str() == marketplace)
        .ok_or_else(|| ApiError::not_found("marketplace"))?;
    query.marketplace = Some(marketplace.as_str().to_owned());
    let store_query: RecordQuery = query.to_store()?;
    let scope = caller.scope(&state).await?;
    let page = state
        .store
        .marketplace_record_views(&scope, &store_query, Timestamp::now())
        .await?;
    let filter = Filter {
        hour: store_query.hour.map(hour_param).unwrap_or_default(),
        state: store_query
            .state
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        account_id: store_query.account_id.clone().unwrap_or_default(),
    };
    let key = marketplace.as_str();
    let shown = page.items.len() as i64;
    let previous_href =
        (page.offset > 0).then(|| records_href(key, &filter, (page.offset - page.limit).max(0)));
    let next_href = (page.offset + shown < page.total)
        .then(|| records_href(key, &filter, page.offset + page.limit));
    let rows = page
        .items
        .into_iter()
        .map(|r| {
            let reason = match (&r.code, &r.reason) {
                (Some(code), Some(reason)) => format!("{code}: {reason}"),
                (None, Some(reason)) => reason.clone(),
                (Some(code), None) => code.clone(),
                (None, None) => String::new(),
            };
            RecordRow {
                restricted_boundary: purser_core::BoundaryName::parse(&r.boundary)
                    .map_or(true, |b| scope.is_restricted(&b))
                    .then(|| r.boundary.clone()),
                through_tackle: r.route == purser_core::marketplace::Route::Tackle,
                account_id: r.account_id,
                account_name: r.account_name,
                dimension: r.dimension,
                marketplace_dimension: r.marketplace_dimension,
                hour: when(r.hour),
                quantity: r.quantity.to_string(),
                state: r.state.as_str(),
                attempts: r.attempts,
                uncertain: r.uncertain,
                deadline: when(r.deadline),
                at_risk: r.at_risk,
                reason,
                marketplace_id: r.marketplace_id.unwrap_or_default(),
            }
        })
        .collect();
    Ok(render(&RecordsPage {
        chrome: Chrome::for_caller(&caller, "/marketplaces"),
        key,
        label: label(marketplace),
        filter,
        states: DeliveryState::ALL.iter().map(|s| s.as_str()).collect(),
        rows,
        total: page.total,
        first: if shown == 0 { 0 } else { page.offset + 1 },
        last: page.offset + shown,
        previous_href,
        next_href,
    }))
}

struct SummaryRow {
    key: &'static str,
    label: &'static str,
    records: i64,
    clean: i64,
    pending: i64,
    carried: i64,
    missing: i64,
    refused: i64,
    conflict: i64,
    over_reported: i64,
    due: String,
    accepted: String,
    off: bool,
}

struct OffRow {
    marketplace: &'static str,
    account_id: String,
    dimension: String,
    hour: String,
    due: String,
    accepted: String,
    sent: bool,
    finding: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "marketplace_reconcile.html")]
struct ReconcilePage {
    chrome: Chrome,
    from: String,
    to: String,
    from_value: String,
    to_value: String,
    summaries: Vec<SummaryRow>,
    off: Vec<OffRow>,
    unplanned: usize,
    exchanges_verify: bool,
    chain_break: String,
    clean: bool,
}

/// `/marketplaces/reconcile`: a period's reconciliation, the current calendar month
/// (UTC) by default.
pub async fn reconcile(
    State(state): State<AppState>,
    caller: PageCaller,
    ApiQuery(query): ApiQuery<ReconcileQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let (from, to) = reconcile_range(&query.from, &query.to)?;
    let scope = caller.scope(&state).await?;
    let report = state
        .store
        .marketplace_reconciliation(&scope, from, to)
        .await?;
    let clean = report.is_clean();
    let summaries = BILLED
        .into_iter()
        .map(|marketplace| {
            let s = report
                .summaries
                .iter()
                .find(|s| s.marketplace == marketplace);
            let n =
                |f: fn(&purser_store::marketplace_views::MarketplaceSummary) -> i64| s.map_or(0, f);
            SummaryRow {
                key: marketplace.as_str(),
                label: label(marketplace),
                records: n(|s| s.records),
                clean: n(|s| s.clean),
                pending: n(|s| s.pending),
                carried: n(|s| s.carried),
                missing: n(|s| s.missing),
                refused: n(|s| s.refused),
                conflict: n(|s| s.conflict),
                over_reported: n(|s| s.over_reported),
                due: s.map_or_else(|| "0".into(), |s| s.due.normalize().to_string()),
                accepted: s.map_or_else(|| "0".into(), |s| s.accepted.normalize().to_string()),
                off: n(|s| s.missing + s.refused + s.conflict + s.over_reported) > 0,
            }
        })
        .collect();
    let off = report
        .off
        .into_iter()
        .map(|l| OffRow {
            marketplace: l.marketplace.as_str(),
            account_id: l.account_id,
            dimension: l.dimension,
            hour: when(l.hour),
            due: l.due.to_string(),
            accepted: l.accepted.to_string(),
            sent: l.sent,
            finding: serde_json::to_value(l.finding)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
                .replace('_', " "),
            detail: l.detail.unwrap_or_default(),
        })
        .collect();
    Ok(render(&ReconcilePage {
        chrome: Chrome::for_caller(&caller, "/marketplaces"),
        from: when(from),
        to: when(to),
        from_value: from.to_string(),
        to_value: to.to_string(),
        summaries,
        off,
        unplanned: report.unplanned_hours.len(),
        exchanges_verify: report.exchanges_verify,
        chain_break: report.chain_break.unwrap_or_default(),
        clean,
    }))
}
