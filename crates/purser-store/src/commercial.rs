//! Offers and entitlements in storage. Offers are the catalogue; entitlements tie an
//! offer to an account, so every read and change of one goes through the account's
//! scope: an entitlement of an account the caller may not see does not exist for them.

use purser_core::commercial::{
    Commitment, DimensionKey, Entitlement, EntitlementStatus, Offer, OfferKind, Pricing,
};
use purser_core::{AccountScope, Marketplace};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

use crate::audit::append;
use crate::db::{Handle, Row, Value};
use crate::{Store, StoreError, corrupt, from_micros, json_text, now_micros};

/// The nested part of an offer, stored as JSON.
#[derive(Serialize, Deserialize)]
struct OfferDefinition {
    dimensions: Vec<purser_core::commercial::OfferDimension>,
    pricing: Pricing,
}

pub(crate) const OFFER_COLUMNS: &str = "id, name, kind, marketplace, currency, definition";

pub(crate) fn offer_from_row(row: &Row) -> Result<Offer, StoreError> {
    let definition: OfferDefinition =
        serde_json::from_str(&row.text(5)?).map_err(|e| corrupt("offers.definition", e))?;
    Ok(Offer {
        id: row.text(0)?,
        name: row.text(1)?,
        kind: match row.text(2)?.as_str() {
            "private" => OfferKind::Private,
            "public" => OfferKind::Public,
            other => return Err(corrupt("offers.kind", other)),
        },
        marketplace: Marketplace::parse(&row.text(3)?)
            .map_err(|e| corrupt("offers.marketplace", e))?,
        currency: purser_core::money::Currency::parse(&row.text(4)?)
            .map_err(|e| corrupt("offers.currency", e))?,
        dimensions: definition.dimensions,
        pricing: definition.pricing,
    })
}

pub(crate) const ENTITLEMENT_COLUMNS: &str = "e.id, e.account_id, e.offer_id, e.start_at, e.end_at, e.status, e.commitments, a.boundary, e.marketplace_binding";

/// An entitlement and the boundary of its account, for the scope check.
pub(crate) fn entitlement_from_row(
    row: &Row,
) -> Result<(Entitlement, purser_core::BoundaryName), StoreError> {
    let commitments: BTreeMap<DimensionKey, Commitment> =
        serde_json::from_str(&row.text(6)?).map_err(|e| corrupt("entitlements.commitments", e))?;
    Ok((
        Entitlement {
            id: row.text(0)?,
            account_id: row.text(1)?,
            offer_id: row.text(2)?,
            start: from_micros(row.int(3)?)?,
            end: from_micros(row.int(4)?)?,
            status: EntitlementStatus::parse(&row.text(5)?)
                .map_err(|e| corrupt("entitlements.status", e))?,
            commitments,
            marketplace_binding: row
                .opt_text(8)?
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| corrupt("entitlements.marketplace_binding", e))?,
        },
        purser_core::BoundaryName::parse(&row.text(7)?)
            .map_err(|e| corrupt("accounts.boundary", e))?,
    ))
}

impl Store {
    pub async fn create_offer(
        &self,
        actor: &purser_core::audit::Actor,
        offer: Offer,
    ) -> Result<Offer, StoreError> {
        let mut tx = self.db.begin().await?;
        insert_offer(&mut tx, actor, &offer).await?;
        tx.commit().await?;
        Ok(offer)
    }

    pub async fn offers(&self) -> Result<Vec<Offer>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!("SELECT {OFFER_COLUMNS} FROM offers ORDER BY name, id"),
                &[],
            )
            .await?;
        rows.iter().map(offer_from_row).collect()
    }

    pub async fn offer(&self, id: &str) -> Result<Offer, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                &format!("SELECT {OFFER_COLUMNS} FROM offers WHERE id = $1"),
                &[id.into()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        offer_from_row(&row)
    }

    /// Records an entitlement for an account the scope may see.
    pub async fn create_entitlement(
        &self,
        scope: &AccountScope,
        entitlement: Entitlement,
    ) -> Result<Entitlement, StoreError> {
        let account = self.account(scope, &entitlement.account_id).await?;
        let mut tx = self.db.begin().await?;
        insert_entitlement(&mut tx, &scope.actor, &account, &entitlement).await?;
        tx.commit().await?;
        Ok(entitlement)
    }

    /// The entitlements of an account the scope may see, newest first.
    pub async fn entitlements(
        &self,
        scope: &AccountScope,
        account_id: &str,
    ) -> Result<Vec<Entitlement>, StoreError> {
        self.account(scope, account_id).await?;
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!(
                    "SELECT {ENTITLEMENT_COLUMNS} FROM entitlements e JOIN accounts a ON a.id = e.account_id \
                     WHERE e.account_id = $1 ORDER BY e.start_at DESC, e.id"
                ),
                &[account_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| entitlement_from_row(r).map(|(e, _)| e))
            .collect()
    }

    /// One entitlement, if the scope may see its account (denials audited, as for accounts).
    pub async fn entitlement(
        &self,
        scope: &AccountScope,
        id: &str,
    ) -> Result<Entitlement, StoreError> {
        self.entitlement_and_account(scope, id)
            .await
            .map(|(e, _)| e)
    }

    async fn entitlement_and_account(
        &self,
        scope: &AccountScope,
        id: &str,
    ) -> Result<(Entitlement, purser_core::Account), StoreError> {
        let row = {
            let mut handle = self.db.read().await?;
            handle
                .query_opt(
                    &format!("SELECT {ENTITLEMENT_COLUMNS} FROM entitlements e JOIN accounts a ON a.id = e.account_id WHERE e.id = $1"),
                    &[id.into()],
                )
                .await?
        };
        let (entitlement, _) = entitlement_from_row(&row.ok_or(StoreError::NotFound)?)?;
        // The account's own read decides, and audits, visibility.
        let account = self.account(scope, &entitlement.account_id).await?;
        Ok((entitlement, account))
    }

    pub async fn set_entitlement_status(
        &self,
        scope: &AccountScope,
        id: &str,
        status: EntitlementStatus,
    ) -> Result<Entitlement, StoreError> {
        let (before, account) = self.entitlement_and_account(scope, id).await?;
        let mut tx = self.db.begin().await?;
        let after =
            set_entitlement_status_in(&mut tx, &scope.actor, &account, before, status).await?;
        tx.commit().await?;
        Ok(after)
    }
}

/// Adds an offer to the catalogue inside the caller's transaction, audited there.
pub(crate) async fn insert_offer(
    tx: &mut Handle,
    actor: &purser_core::audit::Actor,
    offer: &Offer,
) -> Result<(), StoreError> {
    let now = now_micros().as_microsecond();
    let definition = json_text(&OfferDefinition {
        dimensions: offer.dimensions.clone(),
        pricing: offer.pricing.clone(),
    })?;
    tx.execute(
        &format!("INSERT INTO offers ({OFFER_COLUMNS}, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"),
        &[
            (&offer.id).into(),
            (&offer.name).into(),
            offer.kind.as_str().into(),
            offer.marketplace.as_str().into(),
            offer.currency.as_str().into(),
            definition.into(),
            Value::Int(now),
        ],
    )
    .await?;
    append(
        tx,
        actor
            .draft("offer.create")
            .target(&offer.id)
            .details(json!({ "after": offer })),
    )
    .await?;
    Ok(())
}

/// Records an entitlement of `account` inside the caller's transaction, audited there.
/// The caller has read the account through the author's scope.
pub(crate) async fn insert_entitlement(
    tx: &mut Handle,
    actor: &purser_core::audit::Actor,
    account: &purser_core::Account,
    entitlement: &Entitlement,
) -> Result<(), StoreError> {
    // Closing re-reads entitlements before rating its next hour.
    crate::metering::bump_catalogue(tx).await?;
    let now = now_micros().as_microsecond();
    tx.execute(
        "INSERT INTO entitlements (id, account_id, offer_id, start_at, end_at, status, commitments, created_at, updated_at, marketplace_binding) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
        &[
            (&entitlement.id).into(),
            (&entitlement.account_id).into(),
            (&entitlement.offer_id).into(),
            Value::Int(entitlement.start.as_microsecond()),
            Value::Int(entitlement.end.as_microsecond()),
            entitlement.status.as_str().into(),
            json_text(&entitlement.commitments)?.into(),
            Value::Int(now),
            match &entitlement.marketplace_binding {
                Some(binding) => json_text(binding)?.into(),
                None => Value::Null,
            },
        ],
    )
    .await?;
    append(
        tx,
        actor
            .draft("entitlement.create")
            .account(&account.id.0, account.fields.boundary.as_str())
            .target(&entitlement.id)
            .details(json!({ "after": entitlement })),
    )
    .await?;
    Ok(())
}

/// Changes an entitlement's status inside the caller's transaction, audited there.
pub(crate) async fn set_entitlement_status_in(
    tx: &mut Handle,
    actor: &purser_core::audit::Actor,
    account: &purser_core::Account,
    before: Entitlement,
    status: EntitlementStatus,
) -> Result<Entitlement, StoreError> {
    crate::metering::bump_catalogue(tx).await?;
    tx.execute(
        "UPDATE entitlements SET status = $1, updated_at = $2 WHERE id = $3",
        &[
            status.as_str().into(),
            Value::Int(now_micros().as_microsecond()),
            (&before.id).into(),
        ],
    )
    .await?;
    append(
        tx,
        actor
            .draft("entitlement.update")
            .account(&account.id.0, account.fields.boundary.as_str())
            .target(&before.id)
            .details(
                json!({ "before": { "status": before.status }, "after": { "status": status } }),
            ),
    )
    .await?;
    Ok(Entitlement { status, ..before })
}
