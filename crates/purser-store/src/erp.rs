//! ERP exports in storage: the reads a month's invoice lines are computed from (rated
//! hours, entitlements, accounts: all within a scope, filtered by boundary in SQL),
//! and the kept exports, stored once per month and never changed.
//!
//! The rules that turn rated hours into lines are `purser_core::invoice`'s; this
//! module gathers and keeps.

use jiff::Timestamp;
use purser_core::commercial::{BillingPeriod, DimensionKey, Entitlement, Offer};
use purser_core::invoice::{FeeRates, InvoiceInput, InvoiceLine, RatedRow, invoice_lines};
use purser_core::money::{Currency, Money};
use purser_core::{Account, AccountScope};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use crate::accounts::{COLUMNS as ACCOUNT_COLUMNS, account_from_row, boundary_filter};
use crate::audit::append;
use crate::commercial::{ENTITLEMENT_COLUMNS, entitlement_from_row};
use crate::db::{Handle, Value};
use crate::{Store, StoreError, from_micros};

/// A kept export: which month, when, by whom, and the digest of its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExportInfo {
    pub month: String,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    pub created_by: String,
    /// Lines in the whole export (every boundary): the digest covers them all.
    pub n_lines: i64,
    /// SHA-256 of the export's JSON lines, each newline-terminated.
    pub lines_digest: String,
}

/// A month's lines as a caller may see them: kept (immutable) or computed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthLines {
    /// The kept export, when the month has one; `None`: computed on demand.
    pub kept: Option<ExportInfo>,
    pub lines: Vec<InvoiceLine>,
}

fn decimal(text: &str, what: &str) -> Result<Decimal, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what}: `{text}`: {e}")))
}

/// Who is asking, and about which accounts: the scope, and optionally one account by
/// external id. The condition is on `a` (accounts).
fn account_condition(
    scope: &AccountScope,
    external_id: Option<&str>,
    params: &mut Vec<Value>,
) -> Option<String> {
    let mut condition = boundary_filter(scope, "a.boundary", params)?;
    if let Some(external_id) = external_id {
        params.push(external_id.into());
        condition = format!("{condition} AND a.external_id = ${}", params.len());
    }
    Some(condition)
}

/// What a month's lines (or the CRM's export) are computed from, within a scope.
#[derive(Debug, Clone, Default)]
pub struct MonthInputs {
    pub accounts: Vec<Account>,
    pub entitlements: Vec<Entitlement>,
    pub offers: Vec<Offer>,
    pub rated: Vec<RatedRow>,
}

impl Store {
    /// The accounts in scope (optionally one, by external id), their entitlements, the
    /// offers, and their hours rated in `period`, read in one snapshot-free pass: closed
    /// hours never change, so reading them apart is safe.
    pub async fn month_inputs(
        &self,
        scope: &AccountScope,
        period: BillingPeriod,
        external_id: Option<&str>,
    ) -> Result<MonthInputs, StoreError> {
        let mut handle = self.db.read().await?;
        let mut params = Vec::new();
        let Some(condition) = account_condition(scope, external_id, &mut params) else {
            return Ok(MonthInputs::default());
        };
        let accounts = handle
            .query(
                &format!(
                    "SELECT {} FROM accounts a WHERE {condition} ORDER BY a.external_id",
                    qualified(ACCOUNT_COLUMNS, "a")
                ),
                &params,
            )
            .await?
            .iter()
            .map(account_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let entitlements = handle
            .query(
                &format!(
                    "SELECT {ENTITLEMENT_COLUMNS} FROM entitlements e JOIN accounts a ON a.id = e.account_id \
                     WHERE {condition} ORDER BY e.account_id, e.start_at, e.id"
                ),
                &params,
            )
            .await?
            .iter()
            .map(|r| entitlement_from_row(r).map(|(e, _)| e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rated_params = params.clone();
        rated_params.push(Value::Int(period.start.as_microsecond()));
        let n = rated_params.len();
        let rated = handle
            .query(
                &format!(
                    "SELECT d.account_id, d.dimension, d.hour, d.entitlement_id, d.quantity, \
                     d.overage_quantity, d.overage_amount, d.currency \
                     FROM dimension_hours d JOIN accounts a ON a.id = d.account_id \
                     WHERE {condition} AND d.period_start = ${n} AND d.entitlement_id IS NOT NULL \
                     ORDER BY d.account_id, d.dimension, d.hour"
                ),
                &rated_params,
            )
            .await?
            .iter()
            .map(|row| {
                let currency = Currency::parse(&row.opt_text(7)?.unwrap_or_default())
                    .map_err(|e| StoreError::Corrupt(format!("dimension_hours.currency: {e}")))?;
                Ok(RatedRow {
                    account_id: row.text(0)?,
                    dimension: DimensionKey::parse(&row.text(1)?).map_err(|e| {
                        StoreError::Corrupt(format!("dimension_hours.dimension: {e}"))
                    })?,
                    hour: from_micros(row.int(2)?)?,
                    entitlement_id: row.text(3)?,
                    quantity: decimal(&row.text(4)?, "dimension_hours.quantity")?,
                    overage_quantity: decimal(
                        &row.opt_text(5)?.unwrap_or_default(),
                        "dimension_hours.overage_quantity",
                    )?,
                    overage_amount: Money::new(
                        decimal(
                            &row.opt_text(6)?.unwrap_or_default(),
                            "dimension_hours.overage_amount",
                        )?,
                        currency,
                    ),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        drop(handle);
        let offers = self.offers().await?;
        if scope.visible_boundaries().is_some() {
            self.audit_restricted_reads(
                scope,
                "erp.read",
                "restricted_accounts_shown",
                accounts
                    .iter()
                    .map(|a| (a.id.0.as_str(), &a.fields.boundary)),
            )
            .await?;
        }
        Ok(MonthInputs {
            accounts,
            entitlements,
            offers,
            rated,
        })
    }

    /// A month's invoice lines computed now from its rated hours, within the scope.
    pub async fn compute_invoice_lines(
        &self,
        scope: &AccountScope,
        period: BillingPeriod,
        external_id: Option<&str>,
        fees: &FeeRates,
    ) -> Result<Vec<InvoiceLine>, StoreError> {
        let inputs = self.month_inputs(scope, period, external_id).await?;
        invoice_lines(&InvoiceInput {
            period,
            accounts: &inputs.accounts,
            entitlements: &inputs.entitlements,
            offers: &inputs.offers,
            rated: &inputs.rated,
            fees,
        })
        .map_err(|e| StoreError::Corrupt(format!("the month's rated hours do not add up: {e}")))
    }

    /// The month's lines as the scope may see them: the kept export's when there is
    /// one (it never changes), otherwise computed now.
    pub async fn month_lines(
        &self,
        scope: &AccountScope,
        period: BillingPeriod,
        external_id: Option<&str>,
        fees: &FeeRates,
    ) -> Result<MonthLines, StoreError> {
        let month = period.month_label();
        let Some(kept) = self.erp_export_info(&month).await? else {
            return Ok(MonthLines {
                kept: None,
                lines: self
                    .compute_invoice_lines(scope, period, external_id, fees)
                    .await?,
            });
        };
        let mut params: Vec<Value> = vec![month.as_str().into()];
        let Some(mut condition) = boundary_filter(scope, "l.boundary", &mut params) else {
            return Ok(MonthLines {
                kept: Some(kept),
                lines: Vec::new(),
            });
        };
        let join = if let Some(external_id) = external_id {
            params.push(external_id.into());
            condition = format!("{condition} AND a.external_id = ${}", params.len());
            "JOIN accounts a ON a.id = l.account_id"
        } else {
            ""
        };
        let rows = {
            let mut handle = self.db.read().await?;
            handle
                .query(
                    &format!(
                        "SELECT l.line, l.account_id, l.boundary FROM erp_export_lines l {join} \
                         WHERE l.month = $1 AND {condition} ORDER BY l.line_no"
                    ),
                    &params,
                )
                .await?
        };
        let mut lines = Vec::with_capacity(rows.len());
        let mut shown = Vec::new();
        for row in &rows {
            lines.push(
                serde_json::from_str::<InvoiceLine>(&row.text(0)?)
                    .map_err(|e| StoreError::Corrupt(format!("erp_export_lines.line: {e}")))?,
            );
            let boundary = purser_core::BoundaryName::parse(&row.text(2)?)
                .map_err(|e| StoreError::Corrupt(format!("erp_export_lines.boundary: {e}")))?;
            shown.push((row.text(1)?, boundary));
        }
        // Purser's own work (the job, the operator's CLI on the database) is not a
        // person's read: it may run read-only beside a server.
        if scope.visible_boundaries().is_some() {
            self.audit_restricted_reads(
                scope,
                "erp.read",
                "restricted_accounts_shown",
                shown.iter().map(|(id, b)| (id.as_str(), b)),
            )
            .await?;
        }
        Ok(MonthLines {
            kept: Some(kept),
            lines,
        })
    }

    pub async fn erp_export_info(&self, month: &str) -> Result<Option<ExportInfo>, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                "SELECT month, created_at, created_by, n_lines, lines_digest FROM erp_exports WHERE month = $1",
                &[month.into()],
            )
            .await?;
        row.map(|row| {
            Ok(ExportInfo {
                month: row.text(0)?,
                created_at: from_micros(row.int(1)?)?,
                created_by: row.text(2)?,
                n_lines: row.int(3)?,
                lines_digest: row.text(4)?,
            })
        })
        .transpose()
    }

    /// The kept exports, newest month first. Months, counts and digests only: no
    /// account's data.
    pub async fn erp_exports(&self) -> Result<Vec<ExportInfo>, StoreError> {
        let mut handle = self.db.read().await?;
        handle
            .query(
                "SELECT month, created_at, created_by, n_lines, lines_digest FROM erp_exports ORDER BY month DESC",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(ExportInfo {
                    month: row.text(0)?,
                    created_at: from_micros(row.int(1)?)?,
                    created_by: row.text(2)?,
                    n_lines: row.int(3)?,
                    lines_digest: row.text(4)?,
                })
            })
            .collect()
    }

    /// Computes the month's export over every account and keeps it, once: a month
    /// already kept is returned as it was. Only for months whose last hour is closed
    /// (the caller checks; see [`Store::closed_through`]).
    pub async fn keep_erp_export(
        &self,
        actor: &purser_core::audit::Actor,
        rules: &[purser_core::BoundaryRule],
        period: BillingPeriod,
        fees: &FeeRates,
    ) -> Result<ExportInfo, StoreError> {
        let month = period.month_label();
        if let Some(kept) = self.erp_export_info(&month).await? {
            return Ok(kept);
        }
        let system = AccountScope::system("erp.export", rules);
        let inputs = self.month_inputs(&system, period, None).await?;
        let lines = invoice_lines(&InvoiceInput {
            period,
            accounts: &inputs.accounts,
            entitlements: &inputs.entitlements,
            offers: &inputs.offers,
            rated: &inputs.rated,
            fees,
        })
        .map_err(|e| StoreError::Corrupt(format!("the month's rated hours do not add up: {e}")))?;
        let boundaries: std::collections::BTreeMap<&str, &str> = inputs
            .accounts
            .iter()
            .map(|a| (a.id.0.as_str(), a.fields.boundary.as_str()))
            .collect();
        let info = ExportInfo {
            month: month.clone(),
            created_at: crate::now_micros(),
            created_by: actor.name.clone(),
            n_lines: lines.len() as i64,
            lines_digest: purser_core::invoice::lines_digest(&lines),
        };
        let mut tx = self.db.begin().await?;
        let inserted = tx
            .execute(
                "INSERT INTO erp_exports (month, period_start, created_at, created_by, n_lines, lines_digest) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (month) DO NOTHING",
                &[
                    month.as_str().into(),
                    Value::Int(period.start.as_microsecond()),
                    Value::Int(info.created_at.as_microsecond()),
                    info.created_by.as_str().into(),
                    Value::Int(info.n_lines),
                    info.lines_digest.as_str().into(),
                ],
            )
            .await?;
        if inserted == 0 {
            // Another process kept it first; theirs stands.
            drop(tx);
            return self
                .erp_export_info(&month)
                .await?
                .ok_or(StoreError::NotFound);
        }
        insert_lines(&mut tx, &month, &lines, &boundaries).await?;
        append(
            &mut tx,
            actor.draft("erp.export").target(&month).details(json!({
                "n_lines": info.n_lines, "lines_digest": info.lines_digest
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }
}

async fn insert_lines(
    tx: &mut Handle,
    month: &str,
    lines: &[InvoiceLine],
    boundaries: &std::collections::BTreeMap<&str, &str>,
) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(lines.len());
    for (line_no, line) in lines.iter().enumerate() {
        let boundary = boundaries
            .get(line.account_id.as_str())
            .ok_or_else(|| StoreError::Corrupt(format!("account {} vanished", line.account_id)))?;
        rows.push(vec![
            month.into(),
            Value::Int(line_no as i64),
            line.account_id.as_str().into(),
            (*boundary).into(),
            line.json_line().into(),
        ]);
    }
    // Many rows at once: COPY on PostgreSQL, multi-row statements on SQLite.
    crate::metering::insert_rows(
        tx,
        "erp_export_lines",
        &["month", "line_no", "account_id", "boundary", "line"],
        rows,
    )
    .await
}

/// `id, name, …` as `a.id, a.name, …`.
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
