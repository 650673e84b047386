//! The pages of the sales and billing back office: the CRM hygiene report (records an
//! import held back, for Sales Operations to fix in the CRM) and a month's ERP export
//! with totals per account. Same store calls and query parsing as `/v1/crm` and
//! `/v1/erp`, so a page never shows more than the API would.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use purser_core::Permission;
use purser_core::invoice::account_totals;
use purser_store::crm::StoredFinding;
use serde::Deserialize;

use super::{Chrome, render, when};
use crate::api::crm::FindingsQuery;
use crate::api::erp::{Format, month_or_latest};
use crate::auth::{Caller, PageCaller};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "crm_hygiene.html")]
struct HygienePage {
    chrome: Chrome,
    findings: Vec<FindingRow>,
    include_resolved: bool,
}

struct FindingRow {
    finding: StoredFinding,
    /// An element id without characters CSS would need escaped.
    id: String,
    first_seen: String,
    resolved: Option<String>,
}

/// `/crm/hygiene`: the open findings the caller may see (their boundary is in SQL).
pub async fn hygiene(
    State(state): State<AppState>,
    caller: PageCaller,
    ApiQuery(query): ApiQuery<FindingsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let include_resolved = query.include_resolved.unwrap_or(false);
    let findings = state
        .store
        .crm_findings(&scope, include_resolved)
        .await?
        .into_iter()
        .map(|finding| FindingRow {
            id: format!(
                "finding-{}",
                finding
                    .key
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>()
            ),
            first_seen: when(finding.first_seen),
            resolved: finding.resolved_at.map(when),
            finding,
        })
        .collect();
    Ok(render(&HygienePage {
        chrome: Chrome::for_caller(&caller, "/crm/hygiene"),
        findings,
        include_resolved,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpQuery {
    /// `2026-11`; the newest kept export's by default (this month before any).
    pub month: Option<String>,
    /// `csv` or `jsonl` to download the lines.
    pub format: Option<String>,
}

struct TotalRow {
    account_id: String,
    external_id: String,
    name: String,
    currency: String,
    committed: String,
    overage: String,
    fees: String,
    net: String,
}

#[derive(Template)]
#[template(path = "erp.html")]
struct ErpPage {
    chrome: Chrome,
    month: String,
    kept: Option<purser_store::erp::ExportInfo>,
    kept_at: String,
    n_lines: usize,
    totals: Vec<TotalRow>,
}

/// `/erp`: a month's export, totals per account, with the lines to download.
pub async fn export(
    State(state): State<AppState>,
    caller: PageCaller,
    ApiQuery(query): ApiQuery<ErpQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ExportInvoices).await?;
    let period = month_or_latest(&state, &query.month).await?;
    let format = Format::parse(query.format.as_deref())
        .map_err(|reason| ApiError::field("format", reason))?;
    let scope = caller.scope(&state).await?;
    let lines = state
        .store
        .month_lines(&scope, period, None, &state.settings.erp_fees)
        .await?;
    if format != Format::Json {
        return crate::api::erp::render(&period, lines, format);
    }
    let totals = account_totals(&lines.lines)
        .into_iter()
        .map(|t| TotalRow {
            account_id: t.account_id,
            external_id: t.account_external_id,
            name: t.account_name,
            currency: t.currency.as_str().to_owned(),
            committed: t.committed.to_string(),
            overage: t.overage.to_string(),
            fees: t.marketplace_fees.to_string(),
            net: t.net.to_string(),
        })
        .collect();
    Ok(render(&ErpPage {
        chrome: Chrome::for_caller(&caller, "/erp"),
        month: period.month_label(),
        kept_at: lines
            .kept
            .as_ref()
            .map(|k| when(k.created_at))
            .unwrap_or_default(),
        kept: lines.kept,
        n_lines: lines.lines.len(),
        totals,
    }))
}
