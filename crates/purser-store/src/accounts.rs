//! Accounts in storage. Every read goes through an [`AccountScope`]: the scope's
//! boundaries become part of the SQL, so an account outside them is never loaded
//! into a response, and a denied attempt is audited here for every caller.

use purser_core::account::{Account, AccountId, AccountStatus, Marketplace, NewAccount, Owners};
use purser_core::{AccountScope, BoundaryName, ValidationErrors};
use serde_json::json;

use crate::audit::{append, escape_like, invalid_cursor, where_clause};
use crate::db::{Handle, Row, Value};
use crate::{Store, StoreError, from_micros, placeholders};
use purser_core::audit::Actor;

/// A page of a list, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 500;

    pub fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// Which accounts a list wants, within the caller's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Matches name, external id, marketplace buyer id or CRM id, ignoring case.
    pub q: Option<String>,
    pub marketplace: Option<Marketplace>,
    pub boundary: Option<BoundaryName>,
    pub status: Option<AccountStatus>,
}

pub(crate) const COLUMNS: &str = "id, name, external_id, marketplace, marketplace_account_id, crm_account_id, \
    boundary, region, owner_account_executive, owner_csm, owner_tam, status, created_at, updated_at";

pub(crate) fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    let corrupt =
        |field: &str, reason: String| StoreError::Corrupt(format!("accounts.{field}: {reason}"));
    Ok(Account {
        id: AccountId(row.text(0)?),
        fields: NewAccount {
            name: row.text(1)?,
            external_id: row.text(2)?,
            marketplace: Marketplace::parse(&row.text(3)?)
                .map_err(|r| corrupt("marketplace", r))?,
            marketplace_account_id: row.opt_text(4)?,
            crm_account_id: row.opt_text(5)?,
            boundary: BoundaryName::parse(&row.text(6)?).map_err(|r| corrupt("boundary", r))?,
            region: row.text(7)?,
            owners: Owners {
                account_executive: row.opt_text(8)?,
                csm: row.opt_text(9)?,
                tam: row.opt_text(10)?,
            },
            status: AccountStatus::parse(&row.text(11)?).map_err(|r| corrupt("status", r))?,
        },
        created_at: from_micros(row.int(12)?)?,
        updated_at: from_micros(row.int(13)?)?,
    })
}

fn field_values(fields: &NewAccount) -> Vec<Value> {
    vec![
        (&fields.name).into(),
        (&fields.external_id).into(),
        fields.marketplace.as_str().into(),
        fields.marketplace_account_id.clone().into(),
        fields.crm_account_id.clone().into(),
        fields.boundary.as_str().into(),
        (&fields.region).into(),
        fields.owners.account_executive.clone().into(),
        fields.owners.csm.clone().into(),
        fields.owners.tam.clone().into(),
        fields.status.as_str().into(),
    ]
}

/// A unique external id is the one conflict a person can cause; say which field.
fn conflict(error: StoreError, fields: &NewAccount) -> StoreError {
    match error {
        StoreError::UniqueViolation(detail) if detail.contains("external_id") => {
            StoreError::Conflict {
                field: Some("external_id".into()),
                message: format!(
                    "an account with external id `{}` already exists",
                    fields.external_id
                ),
            }
        }
        other => other,
    }
}

fn not_cleared(boundary: &BoundaryName) -> StoreError {
    StoreError::Invalid(ValidationErrors::single(
        "boundary",
        format!(
            "you are not cleared for the `{boundary}` boundary, so you cannot place an account in it"
        ),
    ))
}

impl Store {
    pub async fn create_account(
        &self,
        scope: &AccountScope,
        fields: NewAccount,
    ) -> Result<Account, StoreError> {
        if !scope.permits(&fields.boundary) {
            return Err(not_cleared(&fields.boundary));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin().await?;
        let account = insert_account(&mut tx, &scope.actor, id, fields).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// One account, if the scope may see it. An account that exists outside the scope
    /// is reported as not found, exactly like one that does not exist, and the attempt
    /// is audited.
    pub async fn account(&self, scope: &AccountScope, id: &str) -> Result<Account, StoreError> {
        let row = {
            let mut handle = self.db.read().await?;
            handle
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"),
                    &[id.into()],
                )
                .await?
        };
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let account = account_from_row(&row)?;
        self.check_visible(scope, &account, "account.read").await?;
        Ok(account)
    }

    /// Audits a read of a restricted account, or a denied one (then `NotFound`).
    async fn check_visible(
        &self,
        scope: &AccountScope,
        account: &Account,
        action: &str,
    ) -> Result<(), StoreError> {
        let boundary = &account.fields.boundary;
        if !scope.permits(boundary) {
            self.record(
                scope
                    .actor
                    .draft(format!("{action}_denied"))
                    .account(&account.id.0, boundary.as_str()),
            )
            .await?;
            return Err(StoreError::NotFound);
        }
        if scope.is_restricted(boundary) {
            self.record(
                scope
                    .actor
                    .draft(action)
                    .account(&account.id.0, boundary.as_str()),
            )
            .await?;
        }
        Ok(())
    }

    /// Accounts ordered by name, within the scope.
    pub async fn list_accounts(
        &self,
        scope: &AccountScope,
        filter: &AccountFilter,
        page: &crate::PageRequest,
    ) -> Result<Page<Account>, StoreError> {
        let mut conditions = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        match boundary_filter(scope, "boundary", &mut params) {
            None => {
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                });
            }
            Some(condition) => conditions.push(condition),
        }
        if let Some(boundary) = &filter.boundary {
            if !scope.permits(boundary) {
                // Asking for a boundary one is not cleared for is an attempt worth a line.
                self.record(
                    scope
                        .actor
                        .draft("account.list_denied")
                        .details(json!({ "boundary": boundary })),
                )
                .await?;
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                });
            }
            params.push(boundary.as_str().into());
            conditions.push(format!("boundary = ${}", params.len()));
        }
        if let Some(marketplace) = filter.marketplace {
            params.push(marketplace.as_str().into());
            conditions.push(format!("marketplace = ${}", params.len()));
        }
        if let Some(status) = filter.status {
            params.push(status.as_str().into());
            conditions.push(format!("status = ${}", params.len()));
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            params.push(format!("%{}%", escape_like(&q.to_lowercase())).into());
            let n = params.len();
            conditions.push(format!(
                "(lower(name) LIKE ${n} ESCAPE '\\' OR lower(external_id) LIKE ${n} ESCAPE '\\' \
                 OR lower(COALESCE(marketplace_account_id, '')) LIKE ${n} ESCAPE '\\' \
                 OR lower(COALESCE(crm_account_id, '')) LIKE ${n} ESCAPE '\\')"
            ));
        }
        if let Some(cursor) = &page.after {
            let (name, id) = decode_cursor(cursor).ok_or_else(invalid_cursor)?;
            params.push(name.into());
            params.push(id.into());
            let (n_name, n_id) = (params.len() - 1, params.len());
            conditions.push(format!(
                "(name > ${n_name} OR (name = ${n_name} AND id > ${n_id}))"
            ));
        }
        let limit = page.limit();
        params.push(Value::Int(limit as i64 + 1));
        let sql = format!(
            "SELECT {COLUMNS} FROM accounts {} ORDER BY name, id LIMIT ${}",
            where_clause(&conditions),
            params.len()
        );
        let rows = {
            let mut handle = self.db.read().await?;
            handle.query(&sql, &params).await?
        };
        let mut items = rows
            .iter()
            .map(account_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| encode_cursor(&a.fields.name, &a.id.0))
        } else {
            None
        };
        self.audit_restricted_reads(
            scope,
            "account.list",
            "restricted_accounts_shown",
            items.iter().map(|a| (a.id.0.as_str(), &a.fields.boundary)),
        )
        .await?;
        Ok(Page { items, next_cursor })
    }

    /// Replaces an account's fields. `expected_updated_at` is when the caller read it:
    /// if someone changed it since, the change is refused rather than silently
    /// overwriting theirs.
    pub async fn update_account(
        &self,
        scope: &AccountScope,
        id: &str,
        expected_updated_at: jiff::Timestamp,
        fields: NewAccount,
    ) -> Result<Account, StoreError> {
        let before = self.account(scope, id).await?;
        if !scope.permits(&fields.boundary) {
            return Err(not_cleared(&fields.boundary));
        }
        let mut tx = self.db.begin().await?;
        let after =
            update_account_in(&mut tx, &scope.actor, &before, expected_updated_at, fields).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// One audit entry per restricted boundary among the accounts shown, marked with it:
    /// the ids are that boundary's data, so the entry is visible only to those cleared
    /// for it.
    pub(crate) async fn audit_restricted_reads<'a>(
        &self,
        scope: &AccountScope,
        action: &str,
        shown_key: &str,
        shown: impl IntoIterator<Item = (&'a str, &'a BoundaryName)>,
    ) -> Result<(), StoreError> {
        let mut restricted: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
            Default::default();
        for (id, boundary) in shown {
            if scope.is_restricted(boundary) {
                restricted.entry(boundary.as_str()).or_default().insert(id);
            }
        }
        for (boundary, ids) in restricted {
            self.record(
                scope
                    .actor
                    .draft(action)
                    .boundary(boundary)
                    .details(json!({ shown_key: ids })),
            )
            .await?;
        }
        Ok(())
    }

    /// How many accounts exist, across all boundaries (for the demo seeder and metrics;
    /// a count reveals no account's data).
    pub async fn count_accounts(&self) -> Result<i64, StoreError> {
        let mut handle = self.db.read().await?;
        handle
            .query_one("SELECT COUNT(*) FROM accounts", &[])
            .await?
            .int(0)
    }
}

/// Creates an account inside the caller's transaction, audited there. The caller has
/// checked that the author may place it in its boundary.
pub(crate) async fn insert_account(
    tx: &mut Handle,
    actor: &Actor,
    id: String,
    fields: NewAccount,
) -> Result<Account, StoreError> {
    let now = crate::now_micros();
    let mut params = vec![Value::from(&id)];
    params.extend(field_values(&fields));
    params.push(Value::Int(now.as_microsecond()));
    tx.execute(
        &format!(
            "INSERT INTO accounts ({COLUMNS}) VALUES ({}, $13, $13)",
            placeholders(1, 12)
        ),
        &params,
    )
    .await
    .map_err(|e| conflict(e, &fields))?;
    let account = Account {
        id: AccountId(id),
        fields,
        created_at: now,
        updated_at: now,
    };
    append(
        tx,
        actor
            .draft("account.create")
            .account(&account.id.0, account.fields.boundary.as_str())
            .details(json!({ "after": account.fields })),
    )
    .await?;
    Ok(account)
}

/// Replaces an account's fields inside the caller's transaction, audited there, if
/// nobody changed it since `expected_updated_at`.
pub(crate) async fn update_account_in(
    tx: &mut Handle,
    actor: &Actor,
    before: &Account,
    expected_updated_at: jiff::Timestamp,
    fields: NewAccount,
) -> Result<Account, StoreError> {
    let id = before.id.0.as_str();
    let now = crate::now_micros().max(before.updated_at + jiff::SignedDuration::from_micros(1));
    let mut params = field_values(&fields);
    params.push(Value::Int(now.as_microsecond()));
    params.push(id.into());
    params.push(Value::Int(expected_updated_at.as_microsecond()));
    let n = tx
        .execute(
            "UPDATE accounts SET name = $1, external_id = $2, marketplace = $3, \
             marketplace_account_id = $4, crm_account_id = $5, boundary = $6, region = $7, \
             owner_account_executive = $8, owner_csm = $9, owner_tam = $10, status = $11, \
             updated_at = $12 WHERE id = $13 AND updated_at = $14",
            &params,
        )
        .await
        .map_err(|e| conflict(e, &fields))?;
    if n == 0 {
        return Err(StoreError::Conflict {
            field: None,
            message:
                "the account was changed by someone else since you read it: reload and try again"
                    .into(),
        });
    }
    let after = Account {
        id: before.id.clone(),
        fields,
        created_at: before.created_at,
        updated_at: now,
    };
    append(
        tx,
        actor
            .draft("account.update")
            .account(id, after.fields.boundary.as_str())
            .details(json!({ "before": before.fields, "after": after.fields })),
    )
    .await?;
    Ok(after)
}

/// The SQL condition that keeps rows whose `column` (an account's boundary) the scope
/// may see, its values appended to `params`: `None` when the scope sees nothing, so
/// the caller answers with nothing without asking the database.
pub(crate) fn boundary_filter(
    scope: &AccountScope,
    column: &str,
    params: &mut Vec<Value>,
) -> Option<String> {
    match scope.visible_boundaries() {
        None => Some("1 = 1".to_owned()),
        Some(boundaries) if boundaries.is_empty() => None,
        Some(boundaries) => {
            let list = placeholders(params.len() + 1, boundaries.len());
            params.extend(boundaries.iter().map(|b| Value::from(b.as_str())));
            Some(format!("{column} IN ({list})"))
        }
    }
}

fn encode_cursor(name: &str, id: &str) -> String {
    hex::encode(format!("{name}\u{1f}{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(String, String)> {
    let bytes = hex::decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, id) = text.split_once('\u{1f}')?;
    Some((name.to_owned(), id.to_owned()))
}
