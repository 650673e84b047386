//! `/v1/erp`: a month's invoice lines for the ERP, as JSON, JSON lines or CSV, and the
//! kept monthly exports. Read with `ExportInvoices`, within the caller's scope: a
//! sovereign account's lines reach only those cleared for its boundary.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use purser_core::Permission;
use purser_core::commercial::BillingPeriod;
use purser_core::invoice::{AccountTotal, CSV_COLUMNS, InvoiceLine, account_totals};
use purser_store::erp::{ExportInfo, MonthLines};
use serde::{Deserialize, Serialize};

use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::{ApiQuery, nonempty};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    /// The calendar month (UTC), `2026-11`; by default the newest kept export's, or
    /// this month when none is kept yet.
    pub month: Option<String>,
    /// Only this account, by its external id.
    pub account: Option<String>,
    /// `json` (default: lines with totals), `jsonl` (one line per row) or `csv`.
    pub format: Option<String>,
}

/// A month's lines with totals per account, and whether they are the kept export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceMonth {
    pub month: String,
    /// The kept export these lines are (immutable); absent: computed now from the
    /// rated hours closed so far.
    pub kept: Option<ExportInfo>,
    pub lines: Vec<InvoiceLine>,
    pub totals: Vec<AccountTotal>,
}

/// The export's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    JsonLines,
    Csv,
}

impl Format {
    pub fn parse(value: Option<&str>) -> Result<Format, String> {
        match value.map(str::trim) {
            None | Some("") | Some("json") => Ok(Format::Json),
            Some("jsonl") => Ok(Format::JsonLines),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(format!("`{other}` is not a format (json, jsonl or csv)")),
        }
    }
}

/// The month a person names, or a field error.
pub fn month(value: &str) -> Result<BillingPeriod, ApiError> {
    BillingPeriod::parse_month(value).map_err(|reason| ApiError::field("month", reason))
}

/// The month asked for; without one, the newest kept export's (what finance last
/// booked), or this month when none is kept yet.
pub async fn month_or_latest(
    state: &AppState,
    value: &Option<String>,
) -> Result<BillingPeriod, ApiError> {
    if let Some(value) = nonempty(value) {
        return month(&value);
    }
    match state.store.erp_exports().await?.first() {
        Some(kept) => month(&kept.month),
        None => Ok(BillingPeriod::containing(jiff::Timestamp::now())),
    }
}

/// Lines as CSV, the columns of [`InvoiceLine`].
pub fn lines_csv(lines: &[InvoiceLine]) -> Result<String, csv::Error> {
    super::csv_table(&CSV_COLUMNS, lines.iter().map(InvoiceLine::csv_record))
}

/// Lines as JSON lines, each newline-terminated: byte for byte what the kept export's
/// digest is taken over (for the whole export).
pub fn lines_jsonl(lines: &[InvoiceLine]) -> String {
    lines.iter().map(|l| l.json_line() + "\n").collect()
}

/// The response for a month's lines in a format.
pub fn render(
    month: &BillingPeriod,
    lines: MonthLines,
    format: Format,
) -> Result<Response, ApiError> {
    Ok(match format {
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            lines_csv(&lines.lines).map_err(|_| ApiError::internal())?,
        )
            .into_response(),
        Format::JsonLines => (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            lines_jsonl(&lines.lines),
        )
            .into_response(),
        Format::Json => axum::Json(InvoiceMonth {
            month: month.month_label(),
            totals: account_totals(&lines.lines),
            kept: lines.kept,
            lines: lines.lines,
        })
        .into_response(),
    })
}

/// A month's invoice lines per account: committed charges, overage per dimension
/// (quantity, unit price, amount), the billing channel, marketplace fees where
/// configured. The kept export once the month is closed (immutable, with its digest);
/// before that, computed from the rated hours closed so far. Totals tie to the rated
/// hours.
#[utoipa::path(get, path = "/v1/erp/invoices", tag = "erp", params(InvoiceQuery),
    responses((status = 200, body = InvoiceMonth), (status = 422, body = crate::error::ErrorBody)))]
pub async fn invoices(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<InvoiceQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ExportInvoices).await?;
    let period = month_or_latest(&state, &query.month).await?;
    let format = Format::parse(query.format.as_deref())
        .map_err(|reason| ApiError::field("format", reason))?;
    let scope = caller.scope(&state).await?;
    let lines = state
        .store
        .month_lines(
            &scope,
            period,
            nonempty(&query.account).as_deref(),
            &state.settings.erp_fees,
        )
        .await?;
    render(&period, lines, format)
}

/// The kept monthly exports, newest first: month, when, line count and digest (no
/// account's data).
#[utoipa::path(get, path = "/v1/erp/exports", tag = "erp",
    responses((status = 200, body = Vec<ExportInfo>)))]
pub async fn exports(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<ExportInfo>>, ApiError> {
    caller.require(&state, Permission::ExportInvoices).await?;
    Ok(axum::Json(state.store.erp_exports().await?))
}
