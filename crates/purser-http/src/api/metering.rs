//! `/v1/events`, meters, the quarantine, closed hours, usage and evidence.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use purser_core::events::{EventRejection, Framing};
use purser_core::meter::MeterDraft;
use purser_core::{FieldError, Permission};
use purser_store::metering::{
    ClosedHour, Granularity, IngestReport, QuarantinedEvent, ReplayReport, UsageOf, UsageRow,
    prepare_batch,
};
use serde::{Deserialize, Serialize};

use crate::auth::{ApiCaller, Caller};
use crate::error::{ApiError, or_not_found};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// What each event of a batch came to: `accepted + duplicate + quarantined + rejected
/// = events`. Rejected events are listed with their index, attribute and reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    #[serde(flatten)]
    pub report: IngestReport,
}

/// The details of a refused batch: one per problem, `events[INDEX].FIELD`.
fn rejection_details(rejections: &[EventRejection]) -> Vec<FieldError> {
    rejections
        .iter()
        .map(|r| FieldError {
            field: match &r.field {
                Some(field) => format!("events[{}].{field}", r.index),
                None => format!("events[{}]", r.index),
            },
            reason: r.reason.clone(),
        })
        .collect()
}

/// Send usage events: CloudEvents 1.0 in structured JSON mode, one event
/// (`application/cloudevents+json`), a batch (`application/cloudevents-batch+json`),
/// or NDJSON (`application/x-ndjson`). `subject` is the account's external id,
/// `type` selects the meters, `data` holds the values.
///
/// The answer comes once every kept event is durable. Good events of a batch are kept
/// even when others are refused (200 with the refusals listed); a batch in which no
/// event could be kept is refused as a whole (422, or 403 when every refusal is a
/// boundary the caller is not cleared for). Events for an unknown account or meter
/// are quarantined, not dropped. Resending changes nothing (deduplication on
/// `source` + `id`).
#[utoipa::path(post, path = "/v1/events", tag = "metering",
    request_body(content = String, description = "CloudEvents: one, a JSON array, or NDJSON",
        content_type = "application/cloudevents-batch+json"),
    responses((status = 200, body = IngestReport), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn ingest_events(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::IngestUsage).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let framing = Framing::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "`{content_type}` is not a framing Purser reads: send application/cloudevents+json, \
                 application/cloudevents-batch+json, application/x-ndjson or application/json (UTF-8)"
            ),
        )
    })?;
    let scope = caller.ingest_scope(&state).await?;
    let meters = state.store.meters().await?;
    let settings = state.settings.metering;
    let now = Timestamp::now();
    // Parsing a large body is CPU work: off the runtime's threads.
    let prepared =
        tokio::task::spawn_blocking(move || prepare_batch(&body, framing, &meters, now, &settings))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|error| {
                ApiError::bad_request(format!(
                    "the body cannot be read as {}: {error}",
                    framing.as_str()
                ))
                .with_details(vec![FieldError {
                    field: "body".into(),
                    reason: error.to_string(),
                }])
            })?;
    let report = state.store.ingest(&scope, "api", prepared).await?;
    state.metrics.record_ingest(&report);
    let kept = report.accepted + report.duplicate + report.quarantined;
    if kept == 0 && report.rejected > 0 {
        let all_boundary = report.denied == report.rejected;
        let details = rejection_details(&report.rejections);
        return Err(if all_boundary {
            ApiError::forbidden("the caller is not cleared for the accounts these events name")
                .with_details(details)
        } else {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!(
                    "none of the {} events could be kept; each problem is listed",
                    report.events
                ),
            )
            .with_details(details)
        });
    }
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}

/// The meters.
#[utoipa::path(get, path = "/v1/meters", tag = "metering", responses((status = 200, body = Vec<MeterDraft>)))]
pub async fn list_meters(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<MeterDraft>>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    Ok(axum::Json(
        state
            .store
            .meters()
            .await?
            .iter()
            .map(MeterDraft::from)
            .collect(),
    ))
}

/// Define a meter. Meters never change once defined (closed hours were computed with
/// them); a different rule is a new meter.
#[utoipa::path(post, path = "/v1/meters", tag = "metering", request_body = MeterDraft,
    responses((status = 201, body = MeterDraft), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_meter(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(draft): ApiJson<MeterDraft>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageMetering).await?;
    let meter = draft.validate()?;
    state.store.create_meter(&caller.actor(), &meter).await?;
    Ok((StatusCode::CREATED, axum::Json(MeterDraft::from(&meter))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// RFC 3339; default 48 hours before `to`.
    pub from: Option<String>,
    /// RFC 3339; default now.
    pub to: Option<String>,
}

/// `from` and `to` as instants, checked.
pub fn range(
    from: &Option<String>,
    to: &Option<String>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let parse = |field: &str, value: &str| {
        value.trim().parse::<Timestamp>().map_err(|e| {
            ApiError::field(field, format!("`{value}` is not an RFC 3339 instant: {e}"))
        })
    };
    let to = match to.as_deref().filter(|v| !v.trim().is_empty()) {
        Some(value) => parse("to", value)?,
        None => Timestamp::now(),
    };
    let from = match from.as_deref().filter(|v| !v.trim().is_empty()) {
        Some(value) => parse("from", value)?,
        None => to - SignedDuration::from_hours(48),
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if to.duration_since(from) > SignedDuration::from_hours(24 * 400) {
        return Err(ApiError::field("from", "a range is at most 400 days"));
    }
    Ok((from, to))
}

/// Closed hours, oldest first.
#[utoipa::path(get, path = "/v1/metering/hours", tag = "metering", params(RangeQuery),
    responses((status = 200, body = Vec<ClosedHour>), (status = 422, body = crate::error::ErrorBody)))]
pub async fn list_closed_hours(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<axum::Json<Vec<ClosedHour>>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let (from, to) = range(&query.from, &query.to)?;
    Ok(axum::Json(state.store.closed_hours(from, to).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// Only events naming this external id.
    pub subject: Option<String>,
    /// Include events already replayed.
    pub include_replayed: Option<bool>,
}

/// Events held back because their account or meter is unknown, newest first (at most
/// 500).
#[utoipa::path(get, path = "/v1/metering/quarantine", tag = "metering", params(QuarantineQuery),
    responses((status = 200, body = Vec<QuarantinedEvent>)))]
pub async fn list_quarantine(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<QuarantineQuery>,
) -> Result<axum::Json<Vec<QuarantinedEvent>>, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .quarantine(
                &scope,
                crate::extract::nonempty(&query.subject).as_deref(),
                query.include_replayed.unwrap_or(false),
                500,
            )
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only events naming this external id.
    #[serde(default)]
    pub subject: Option<String>,
}

/// Ingest the quarantined events again, now that their account or meter may exist.
/// Those still without one stay.
#[utoipa::path(post, path = "/v1/metering/quarantine/replay", tag = "metering", request_body = ReplayRequest,
    responses((status = 200, body = ReplayReport)))]
pub async fn replay_quarantine(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> Result<axum::Json<ReplayReport>, ApiError> {
    caller.require(&state, Permission::ManageMetering).await?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .replay_quarantine(
                &scope,
                crate::extract::nonempty(&request.subject).as_deref(),
                Timestamp::now(),
                &state.settings.metering,
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `hour` (default) or `day` (UTC days).
    pub granularity: Option<Granularity>,
    /// `dimensions` (default: billed quantities with overage) or `meters`.
    pub of: Option<UsageOf>,
    /// Only this dimension (with `of=dimensions`) or meter (with `of=meters`).
    pub name: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// An account's usage from closed hours: per dimension (with commit consumed and
/// overage) or per meter, hourly or daily, as JSON or CSV.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/usage", tag = "metering", params(
        ("account_id" = String, Path, description = "The account's id"), UsageQuery),
    responses((status = 200, body = Vec<UsageRow>), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn account_usage(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let (from, to) = range(&query.from, &query.to)?;
    let csv = match query.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::field(
                "format",
                format!("`{other}` is not a format (json or csv)"),
            ));
        }
    };
    let rows = state
        .store
        .usage_named(
            &scope,
            &account_id,
            from,
            to,
            query.of.unwrap_or(UsageOf::Dimensions),
            query.granularity.unwrap_or(Granularity::Hour),
            query
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty()),
        )
        .await
        .map_err(or_not_found("account"))?;
    if csv {
        let text = usage_csv(&rows).map_err(|_| ApiError::internal())?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(axum::Json(rows).into_response())
}

/// Usage rows as CSV (RFC 4180), the columns of [`UsageRow`].
pub fn usage_csv(rows: &[UsageRow]) -> Result<String, csv::Error> {
    super::csv_table(
        &[
            "start",
            "name",
            "group",
            "quantity",
            "overage_quantity",
            "overage_amount",
            "currency",
            "consumed",
            "committed",
        ],
        rows.iter().map(|row| {
            vec![
                row.start.to_string(),
                row.name.clone(),
                row.group.clone().unwrap_or_default(),
                row.quantity.clone(),
                row.overage_quantity.clone().unwrap_or_default(),
                row.overage_amount.clone().unwrap_or_default(),
                row.currency.clone().unwrap_or_default(),
                row.consumed.clone().unwrap_or_default(),
                row.committed.clone().unwrap_or_default(),
            ]
        }),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// Any instant in the hour (RFC 3339); required.
    pub hour: Option<String>,
}

/// The evidence of an account's closed hour: its chained record, the result, and the
/// events behind it.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/evidence", tag = "metering", params(
        ("account_id" = String, Path, description = "The account's id"), EvidenceQuery),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn account_evidence(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
    ApiQuery(query): ApiQuery<EvidenceQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let scope = caller.scope(&state).await?;
    // The account first: one the caller may not see is not found, whatever was asked.
    state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(or_not_found("account"))?;
    let hour = query.hour.unwrap_or_default();
    let hour = hour.trim().parse::<Timestamp>().map_err(|e| {
        ApiError::field("hour", format!("`{hour}` is not an RFC 3339 instant: {e}"))
    })?;
    let trace = state
        .store
        .hour_trace(&scope, &account_id, hour)
        .await
        .map_err(or_not_found("closed hour of this account"))?;
    Ok(axum::Json(trace).into_response())
}
