//! `/v1/audit`: the audit log, for auditors.

use axum::extract::State;
use purser_core::Permission;
use purser_core::audit::{AuditEntry, Checkpoint};
use purser_store::{AuditFilter, PageRequest};
use serde::{Deserialize, Serialize};

use crate::api::Page;
use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::{ApiQuery, nonempty};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub account_id: Option<String>,
    pub boundary: Option<String>,
    pub target: Option<String>,
    /// Before/after and other particulars.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        AuditEntryView {
            seq: entry.seq,
            at: entry.at.to_string(),
            actor: entry.actor,
            action: entry.action,
            account_id: entry.account_id,
            boundary: entry.boundary,
            target: entry.target,
            details: serde_json::from_str(&entry.details)
                .unwrap_or(serde_json::Value::String(entry.details)),
            request_id: entry.request_id,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact, or a prefix ending in `*` (`user:ana*`).
    pub actor: Option<String>,
    pub account_id: Option<String>,
    /// Exact, or a prefix ending in `*` (`account.*`).
    pub action: Option<String>,
    /// RFC 3339 instant, inclusive.
    pub from: Option<String>,
    /// RFC 3339 instant, exclusive.
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

impl AuditQuery {
    pub fn filter(&self) -> Result<(AuditFilter, PageRequest), ApiError> {
        let mut errors = purser_core::ValidationErrors::new();
        let mut instant = |field: &str, value: &Option<String>| {
            nonempty(value).and_then(|v| {
                v.parse::<jiff::Timestamp>()
                    .map_err(|_| {
                        errors.add(
                            field,
                            format!("`{v}` is not an RFC 3339 instant (2026-11-23T10:00:00Z)"),
                        )
                    })
                    .ok()
            })
        };
        let from = instant("from", &self.from);
        let to = instant("to", &self.to);
        errors.into_result(())?;
        Ok((
            AuditFilter {
                actor: nonempty(&self.actor),
                account_id: nonempty(&self.account_id),
                action: nonempty(&self.action),
                from,
                to,
            },
            PageRequest {
                after: nonempty(&self.cursor),
                limit: self.limit,
            },
        ))
    }
}

/// The audit log, newest first. Entries about accounts you may not see are left out.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntryView>), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Page<AuditEntryView>>, ApiError> {
    caller.require(&state, Permission::ReadAudit).await?;
    let (filter, page) = query.filter()?;
    let scope = caller.scope(&state).await?;
    let entries = state.store.audit_entries(&scope, &filter, &page).await?;
    Ok(axum::Json(entries.into()))
}

/// The head of the chain (`seq` and `hash`): keep it outside Purser, and later prove
/// with `purser audit verify --against SEQ:HASH` that the log still extends it.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = Checkpoint), (status = 403, body = crate::error::ErrorBody)))]
pub async fn audit_checkpoint(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Checkpoint>, ApiError> {
    caller.require(&state, Permission::ReadAudit).await?;
    Ok(axum::Json(state.store.audit_recorded_head().await?))
}
