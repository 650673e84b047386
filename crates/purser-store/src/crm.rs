//! The CRM in storage: applying an import plan in one transaction (every change
//! audited in it, as everywhere), keeping the hygiene findings it held back, and the
//! scoped reads of findings and of the fields the CRM takes back.
//!
//! What an import changes is decided by `purser_core::crm::plan_import`; this module
//! reads what exists (every boundary, inside the import's transaction, so that two
//! imports cannot both create one account) and applies the plan.

use jiff::Timestamp;
use purser_core::AccountScope;
use purser_core::commercial::BillingPeriod;
use purser_core::crm::{
    AccountChange, CrmRecords, EntitlementChange, Existing, Finding, FindingKind, plan_import,
};
use serde::Serialize;
use serde_json::json;

use crate::accounts::{
    COLUMNS as ACCOUNT_COLUMNS, account_from_row, boundary_filter, insert_account,
    update_account_in,
};
use crate::audit::append;
use crate::commercial::{
    ENTITLEMENT_COLUMNS, OFFER_COLUMNS, entitlement_from_row, insert_entitlement, insert_offer,
    offer_from_row, set_entitlement_status_in,
};
use crate::db::{Handle, Row, Value};
use crate::{Store, StoreError, from_micros, opt_from_micros};

/// A finding as the hygiene page and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredFinding {
    pub key: String,
    /// `duplicate_marketplace_id`, `duplicate_name`, `missing_marketplace_id`,
    /// `overlapping_entitlements`, `boundary_region_mismatch`, `account_held_back`.
    pub kind: String,
    /// What it is, in a few words.
    pub title: String,
    /// `Account`, `Opportunity`, `ServiceContract` or `Entitlement`.
    pub record_type: String,
    pub record_external_id: String,
    pub account_external_id: String,
    pub account_name: String,
    pub boundary: String,
    pub message: String,
    #[schema(value_type = String)]
    pub first_seen: Timestamp,
    #[schema(value_type = String)]
    pub last_seen: Timestamp,
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<Timestamp>,
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub accounts_created: usize,
    pub accounts_updated: usize,
    pub offers_created: usize,
    pub entitlements_created: usize,
    pub entitlements_updated: usize,
    /// Records already in Purser exactly as given.
    pub unchanged: usize,
    /// Records held back, with why (those the importer may see).
    pub held_back: Vec<HeldBack>,
    /// Records held back whose findings concern a boundary the importer is not cleared
    /// for: counted, not shown.
    pub held_back_elsewhere: usize,
    /// Earlier findings these records no longer have.
    pub findings_resolved: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeldBack {
    /// `records[INDEX]` in the file.
    pub record: String,
    pub record_type: String,
    pub record_external_id: String,
    pub kind: String,
    pub message: String,
}

const FINDING_COLUMNS: &str = "finding_key, kind, record_type, record_external_id, account_external_id, \
    account_name, boundary, message, first_seen, last_seen, resolved_at";

fn finding_from_row(row: &Row) -> Result<StoredFinding, StoreError> {
    let kind = row.text(1)?;
    Ok(StoredFinding {
        key: row.text(0)?,
        title: FindingKind::parse(&kind).map_or_else(|| kind.clone(), |k| k.title().to_owned()),
        kind,
        record_type: row.text(2)?,
        record_external_id: row.text(3)?,
        account_external_id: row.text(4)?,
        account_name: row.text(5)?,
        boundary: row.text(6)?,
        message: row.text(7)?,
        first_seen: from_micros(row.int(8)?)?,
        last_seen: from_micros(row.int(9)?)?,
        resolved_at: opt_from_micros(row.opt_int(10)?)?,
    })
}

async fn read_all(
    tx: &mut Handle,
) -> Result<
    (
        Vec<purser_core::Account>,
        Vec<purser_core::commercial::Offer>,
        Vec<purser_core::commercial::Entitlement>,
    ),
    StoreError,
> {
    let accounts = tx
        .query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts"), &[])
        .await?
        .iter()
        .map(account_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let offers = tx
        .query(&format!("SELECT {OFFER_COLUMNS} FROM offers"), &[])
        .await?
        .iter()
        .map(offer_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let entitlements = tx
        .query(
            &format!(
                "SELECT {ENTITLEMENT_COLUMNS} FROM entitlements e JOIN accounts a ON a.id = e.account_id"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| entitlement_from_row(r).map(|(e, _)| e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((accounts, offers, entitlements))
}

impl Store {
    /// Imports CRM records for the scope's author: every change in one transaction,
    /// each audited; a record that does not validate fails the whole import (nothing
    /// changes); records that would corrupt billing are held back and kept as findings.
    /// A dry run decides the same and changes nothing.
    pub async fn import_crm(
        &self,
        scope: &AccountScope,
        records: &CrmRecords,
        dry_run: bool,
    ) -> Result<ImportReport, StoreError> {
        let rules = self.boundary_rules().await?;
        let mut tx = self.db.begin().await?;
        let (accounts, offers, entitlements) = read_all(&mut tx).await?;
        let plan = plan_import(
            records,
            Existing {
                accounts: &accounts,
                offers: &offers,
                entitlements: &entitlements,
                rules: &rules,
            },
            scope,
            || uuid::Uuid::now_v7().to_string(),
        )?;
        let mut report = ImportReport {
            dry_run,
            unchanged: plan.unchanged,
            offers_created: plan.offers.len(),
            ..ImportReport::default()
        };
        for change in &plan.accounts {
            match change {
                AccountChange::Create { .. } => report.accounts_created += 1,
                AccountChange::Update { .. } => report.accounts_updated += 1,
            }
        }
        for change in &plan.entitlements {
            match change {
                EntitlementChange::Create(_) => report.entitlements_created += 1,
                EntitlementChange::Status { .. } => report.entitlements_updated += 1,
            }
        }
        for finding in &plan.findings {
            if scope.permits(&finding.boundary) {
                report.held_back.push(HeldBack {
                    record: format!("records[{}]", finding.record_index),
                    record_type: finding.record_type.as_str().to_owned(),
                    record_external_id: finding.record_external_id.clone(),
                    kind: finding.kind.as_str().to_owned(),
                    message: finding.message.clone(),
                });
            } else {
                report.held_back_elsewhere += 1;
            }
        }
        if dry_run {
            // Dropped without commit: rolled back.
            return Ok(report);
        }

        let actor = &scope.actor;
        let mut all_accounts = accounts;
        for change in plan.accounts {
            let account = match change {
                AccountChange::Create { id, fields } => {
                    insert_account(&mut tx, actor, id, fields).await?
                }
                AccountChange::Update { before, fields } => {
                    update_account_in(&mut tx, actor, &before, before.updated_at, fields).await?
                }
            };
            all_accounts.retain(|a| a.id != account.id);
            all_accounts.push(account);
        }
        for offer in &plan.offers {
            insert_offer(&mut tx, actor, offer).await?;
        }
        for change in plan.entitlements {
            let account_id = match &change {
                EntitlementChange::Create(e) => &e.account_id,
                EntitlementChange::Status { before, .. } => &before.account_id,
            };
            let account = all_accounts
                .iter()
                .find(|a| &a.id.0 == account_id)
                .cloned()
                .ok_or(StoreError::NotFound)?;
            match change {
                EntitlementChange::Create(entitlement) => {
                    insert_entitlement(&mut tx, actor, &account, &entitlement).await?
                }
                EntitlementChange::Status { before, status } => {
                    set_entitlement_status_in(&mut tx, actor, &account, before, status)
                        .await
                        .map(drop)?
                }
            }
        }
        let now = crate::now_micros();
        for finding in &plan.findings {
            keep_finding(&mut tx, actor, finding, now).await?;
        }
        for (record_type, external_id) in &plan.records_seen {
            report.findings_resolved +=
                resolve_findings(&mut tx, actor, record_type.as_str(), external_id, now).await?;
        }
        append(
            &mut tx,
            actor.draft("crm.import").details(json!({
                "accounts_created": report.accounts_created,
                "accounts_updated": report.accounts_updated,
                "offers_created": report.offers_created,
                "entitlements_created": report.entitlements_created,
                "entitlements_updated": report.entitlements_updated,
                "unchanged": report.unchanged,
                "held_back": plan.findings.len(),
                "findings_resolved": report.findings_resolved,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Findings within the scope, open ones only unless asked, by kind then account.
    pub async fn crm_findings(
        &self,
        scope: &AccountScope,
        include_resolved: bool,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        let mut params = Vec::new();
        let Some(mut condition) = boundary_filter(scope, "boundary", &mut params) else {
            return Ok(Vec::new());
        };
        if !include_resolved {
            condition.push_str(" AND resolved_at IS NULL");
        }
        let rows = {
            let mut handle = self.db.read().await?;
            handle
                .query(
                    &format!(
                        "SELECT {FINDING_COLUMNS} FROM crm_findings WHERE {condition} \
                         ORDER BY kind, account_external_id, record_external_id"
                    ),
                    &params,
                )
                .await?
        };
        let findings = rows
            .iter()
            .map(finding_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // A finding names its account: shown from a restricted boundary is a read of it.
        let boundaries = findings
            .iter()
            .map(|f| purser_core::BoundaryName::parse(&f.boundary))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(format!("crm_findings.boundary: {e}")))?;
        self.audit_restricted_reads(
            scope,
            "crm.findings_read",
            "restricted_findings_shown",
            findings
                .iter()
                .zip(&boundaries)
                .map(|(f, b)| (f.key.as_str(), b)),
        )
        .await?;
        Ok(findings)
    }

    /// The CRM's export for `period`: Salesforce-shaped records of the accounts in
    /// scope, their entitlements and committed dimensions, for upsert by external id.
    pub async fn crm_export(
        &self,
        scope: &AccountScope,
        period: BillingPeriod,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let inputs = self.month_inputs(scope, period, None).await?;
        purser_core::crm::export_records(
            period,
            &inputs.accounts,
            &inputs.entitlements,
            &inputs.offers,
            &inputs.rated,
        )
        .iter()
        .map(|record| {
            serde_json::to_value(record)
                .map_err(|e| StoreError::Backend(format!("cannot encode a CRM record: {e}")))
        })
        .collect()
    }
}

/// Opens (or re-opens, or refreshes) a finding, audited under its boundary.
async fn keep_finding(
    tx: &mut Handle,
    actor: &purser_core::audit::Actor,
    finding: &Finding,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO crm_findings ({FINDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, NULL) \
             ON CONFLICT (finding_key) DO UPDATE SET account_external_id = $5, account_name = $6, \
             boundary = $7, message = $8, last_seen = $9, resolved_at = NULL"
        ),
        &[
            finding.key().into(),
            finding.kind.as_str().into(),
            finding.record_type.as_str().into(),
            finding.record_external_id.as_str().into(),
            finding.account_external_id.as_str().into(),
            finding.account_name.as_str().into(),
            finding.boundary.as_str().into(),
            finding.message.as_str().into(),
            Value::Int(now.as_microsecond()),
        ],
    )
    .await?;
    append(
        tx,
        actor
            .draft("crm.finding_open")
            .boundary(finding.boundary.as_str())
            .target(finding.key())
            .details(json!({ "message": finding.message })),
    )
    .await?;
    Ok(())
}

/// Resolves a record's open findings that this import did not find again.
async fn resolve_findings(
    tx: &mut Handle,
    actor: &purser_core::audit::Actor,
    record_type: &str,
    external_id: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let rows = tx
        .query(
            "SELECT finding_key, boundary FROM crm_findings WHERE record_type = $1 AND record_external_id = $2 \
             AND resolved_at IS NULL AND last_seen < $3",
            &[record_type.into(), external_id.into(), Value::Int(now.as_microsecond())],
        )
        .await?;
    for row in &rows {
        let key = row.text(0)?;
        tx.execute(
            "UPDATE crm_findings SET resolved_at = $1 WHERE finding_key = $2",
            &[Value::Int(now.as_microsecond()), key.as_str().into()],
        )
        .await?;
        append(
            tx,
            actor
                .draft("crm.finding_resolved")
                .boundary(&row.text(1)?)
                .target(&key),
        )
        .await?;
    }
    Ok(rows.len())
}
