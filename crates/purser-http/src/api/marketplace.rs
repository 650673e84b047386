//! `/v1/marketplace`: where delivery to the marketplaces stands per hour, the records
//! behind an hour with the marketplace's reasons, and a period's reconciliation. Read
//! with `ReadMetering`, within the caller's scope.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use purser_core::marketplace::DeliveryState;
use purser_core::{Marketplace, Permission};
use purser_store::marketplace_views::{
    MarketplaceHour, MarketplaceRecordPage, RecordQuery, ScopedReconciliation,
};
use serde::Deserialize;

use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::{ApiQuery, nonempty};
use crate::state::AppState;

/// The marketplaces Purser bills through (`direct` has no ledger).
pub const BILLED: [Marketplace; 3] = [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws];

/// At most this many records a page.
pub const MAX_LIMIT: i64 = 1000;

/// A marketplace Purser bills through, named by `field`.
pub fn marketplace(field: &str, value: &str) -> Result<Marketplace, ApiError> {
    match Marketplace::parse(value) {
        Ok(m) if BILLED.contains(&m) => Ok(m),
        _ => Err(ApiError::field(
            field,
            format!("`{value}` is not a marketplace Purser bills through (gcp, azure or aws)"),
        )),
    }
}

fn instant(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    value
        .trim()
        .parse::<Timestamp>()
        .map_err(|e| ApiError::field(field, format!("`{value}` is not an RFC 3339 instant: {e}")))
}

/// The start of the hour holding `value`.
pub fn hour(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    let at = instant(field, value)?;
    purser_store::metering::hour_start(at)
        .map_err(|_| ApiError::field(field, format!("`{value}` is out of range")))
}

pub fn state(field: &str, value: &str) -> Result<DeliveryState, ApiError> {
    DeliveryState::parse(value.trim()).map_err(|_| {
        ApiError::field(
            field,
            format!(
                "`{value}` is not a delivery state (due, sending, accepted, refused, conflict or expired)"
            ),
        )
    })
}

fn count(field: &str, value: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::field(
            field,
            format!("`{value}` is not a whole number from {min} to {max}"),
        )),
    }
}

/// `[from, to)` from optional RFC 3339 texts: `to` defaults to now, `from` to
/// `default_span` before `to`. At most 400 days.
pub fn range(
    from: &Option<String>,
    to: &Option<String>,
    default_from: impl FnOnce(Timestamp) -> Timestamp,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let to = match nonempty(to) {
        Some(value) => instant("to", &value)?,
        None => Timestamp::now(),
    };
    let from = match nonempty(from) {
        Some(value) => instant("from", &value)?,
        None => default_from(to),
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if to.duration_since(from) > SignedDuration::from_hours(24 * 400) {
        return Err(ApiError::field("from", "a range is at most 400 days"));
    }
    Ok((from, to))
}

/// The calendar month in UTC holding `at`: the marketplaces bill by it.
pub fn month_of(at: Timestamp) -> (Timestamp, Timestamp) {
    let date = at.to_zoned(TimeZone::UTC).date();
    let first = Date::new(date.year(), date.month(), 1).unwrap_or(date);
    let next = first
        .checked_add(jiff::Span::new().months(1))
        .unwrap_or(first);
    let start = |d: Date| {
        d.to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(at)
    };
    (start(first), start(next))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HoursQuery {
    /// `gcp`, `azure` or `aws`; default all three.
    pub marketplace: Option<String>,
    /// RFC 3339; default 48 hours before `to`.
    pub from: Option<String>,
    /// RFC 3339; default now.
    pub to: Option<String>,
}

/// Per marketplace and hour, how the records of the accounts the caller may see
/// stand: counts by state, how many were sent, quantities due and accepted, and how
/// many are undelivered past their alarm time. Oldest hour first.
#[utoipa::path(get, path = "/v1/marketplace/hours", tag = "marketplace", params(HoursQuery),
    responses((status = 200, body = Vec<MarketplaceHour>), (status = 422, body = crate::error::ErrorBody)))]
pub async fn hours(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<HoursQuery>,
) -> Result<axum::Json<Vec<MarketplaceHour>>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let marketplace = nonempty(&query.marketplace)
        .map(|m| marketplace("marketplace", &m))
        .transpose()?;
    let (from, to) = range(&query.from, &query.to, |to| {
        to - SignedDuration::from_hours(48)
    })?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .marketplace_hours(&scope, marketplace, from, to, Timestamp::now())
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// `gcp`, `azure` or `aws`; default all three.
    pub marketplace: Option<String>,
    /// Only this account's records.
    pub account_id: Option<String>,
    /// Any instant in the hour (RFC 3339).
    pub hour: Option<String>,
    /// due, sending, accepted, refused, conflict or expired.
    pub state: Option<String>,
    /// 1 to 1000; default 100.
    pub limit: Option<String>,
    /// How many to skip; default 0.
    pub offset: Option<String>,
}

impl RecordsQuery {
    /// The store's query, every bad value named by its field.
    pub fn to_store(&self) -> Result<RecordQuery, ApiError> {
        let marketplace = nonempty(&self.marketplace)
            .map(|m| marketplace("marketplace", &m))
            .transpose()?;
        Ok(RecordQuery {
            marketplace,
            account_id: nonempty(&self.account_id).map(|a| a.trim().to_owned()),
            hour: nonempty(&self.hour).map(|h| hour("hour", &h)).transpose()?,
            state: nonempty(&self.state)
                .map(|s| state("state", &s))
                .transpose()?,
            limit: nonempty(&self.limit)
                .map(|l| count("limit", &l, 1, MAX_LIMIT))
                .transpose()?
                .unwrap_or(100),
            offset: nonempty(&self.offset)
                .map(|o| count("offset", &o, 0, i64::from(i32::MAX)))
                .transpose()?
                .unwrap_or(0),
        })
    }
}

/// Ledger records of the accounts the caller may see (of one marketplace or all), with each one's
/// attempts, deadline and the marketplace's last answer (code and reason), oldest
/// hour first, paged by `limit` and `offset`.
#[utoipa::path(get, path = "/v1/marketplace/records", tag = "marketplace", params(RecordsQuery),
    responses((status = 200, body = MarketplaceRecordPage), (status = 422, body = crate::error::ErrorBody)))]
pub async fn records(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<RecordsQuery>,
) -> Result<axum::Json<MarketplaceRecordPage>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let query = query.to_store()?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .marketplace_record_views(&scope, &query, Timestamp::now())
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReconcileQuery {
    /// RFC 3339; default the start of the current calendar month (UTC).
    pub from: Option<String>,
    /// RFC 3339; default the start of the next month.
    pub to: Option<String>,
}

/// `[from, to)` of a reconciliation: by default the calendar month in UTC (the
/// marketplaces bill by it) holding `from`, or holding `to`, or the current one.
pub fn reconcile_range(
    from: &Option<String>,
    to: &Option<String>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let from = nonempty(from).map(|v| instant("from", &v)).transpose()?;
    let to = nonempty(to).map(|v| instant("to", &v)).transpose()?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, month_of(from).1),
        (None, Some(to)) => (month_of(to - SignedDuration::from_micros(1)).0, to),
        (None, None) => month_of(Timestamp::now()),
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if to.duration_since(from) > SignedDuration::from_hours(24 * 400) {
        return Err(ApiError::field("from", "a range is at most 400 days"));
    }
    Ok((from, to))
}

/// Reconciles a period over the records of the accounts the caller may see: per
/// marketplace the count of each finding and what was due against what was accepted,
/// every line that is off, closed hours not yet planned, and whether the exchange
/// chain (Purser-wide) verifies.
#[utoipa::path(get, path = "/v1/marketplace/reconcile", tag = "marketplace", params(ReconcileQuery),
    responses((status = 200, body = ScopedReconciliation), (status = 422, body = crate::error::ErrorBody)))]
pub async fn reconcile(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<ReconcileQuery>,
) -> Result<axum::Json<ScopedReconciliation>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let (from, to) = reconcile_range(&query.from, &query.to)?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .marketplace_reconciliation(&scope, from, to)
            .await?,
    ))
}
