//! Invoice lines for the ERP: what a calendar month of rated hours comes to per
//! account, in the lines finance books (committed charges, overage per dimension,
//! marketplace fees).
//!
//! Pure: storage gathers the month's rated hours, the entitlements behind them and
//! their accounts; [`invoice_lines`] decides the lines. Overage lines are sums of the
//! rated hours, never re-rated, so the export ties to what closing concluded to the
//! last decimal. Amounts stay exact; rounding to a currency's minor unit is the ERP's
//! step when it totals an invoice.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::account::{Account, Marketplace};
use crate::commercial::{BillingPeriod, DimensionKey, Entitlement, EntitlementStatus, Offer};
use crate::money::{Currency, Money, MoneyError};
use crate::validation::ValidationErrors;

/// The share of gross charges each marketplace keeps, as configured
/// (`[erp] marketplace_fee.gcp = "0.03"`). A marketplace without a rate has no fee line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeRates(BTreeMap<Marketplace, Decimal>);

impl FeeRates {
    /// Validates rates given as decimal strings by marketplace name: each a fraction in
    /// `[0, 1)`, and none for `direct`, which no marketplace takes a share of.
    pub fn parse(rates: &BTreeMap<String, String>) -> Result<FeeRates, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut out = BTreeMap::new();
        for (name, value) in rates {
            let field = format!("marketplace_fee.{name}");
            let marketplace = match Marketplace::parse(name) {
                Ok(Marketplace::Direct) => {
                    errors.add(&field, "a direct sale has no marketplace fee");
                    None
                }
                Ok(m) => Some(m),
                Err(reason) => {
                    errors.add(&field, reason);
                    None
                }
            };
            let rate = crate::commercial::parse_decimal(&mut errors, &field, value, false);
            if let Some(rate) = rate
                && rate >= Decimal::ONE
            {
                errors.add(
                    &field,
                    "is the share the marketplace keeps, a fraction below 1 (0.03 for 3%)",
                );
                continue;
            }
            if let (Some(m), Some(rate)) = (marketplace, rate) {
                out.insert(m, rate);
            }
        }
        errors.into_result(FeeRates(out))
    }

    pub fn rate(&self, marketplace: Marketplace) -> Option<Decimal> {
        self.0.get(&marketplace).copied()
    }
}

/// What an invoice line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// The committed quantity's fee for the month (prorated in a partial month).
    Committed,
    /// Usage beyond the commitment and its tolerance, per dimension.
    Overage,
    /// The marketplace's share of the entitlement's charges: what it withholds before
    /// paying out. A cost, so it is shown positive and never added to the charges.
    MarketplaceFee,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Committed => "committed",
            LineKind::Overage => "overage",
            LineKind::MarketplaceFee => "marketplace_fee",
        }
    }
}

/// One invoice line. Quantities and money are decimal strings in JSON, so no reader
/// turns them into floats; `unit_price × quantity = amount` exactly on every line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvoiceLine {
    /// `2026-11`.
    pub month: String,
    pub account_id: String,
    /// The id Purser and telemetry share (`Purser_External_Id__c` in the CRM).
    pub account_external_id: String,
    pub account_name: String,
    #[serde(default)]
    pub crm_account_id: Option<String>,
    /// Who bills the customer: `gcp`, `azure`, `aws` or `direct` (the offer's marketplace).
    #[schema(value_type = String)]
    pub channel: Marketplace,
    /// The buyer's id at the marketplace, for a marketplace channel.
    #[serde(default)]
    pub marketplace_account_id: Option<String>,
    pub entitlement_id: String,
    pub offer_id: String,
    pub offer_name: String,
    #[schema(value_type = String)]
    pub kind: LineKind,
    /// The committed or overage dimension; none on a fee line.
    #[serde(default)]
    pub dimension: Option<String>,
    /// What one unit of `quantity` is: the dimension's unit, `month` for a committed
    /// fee, the currency for a fee line (whose quantity is the charges it is taken on).
    pub unit: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub unit_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub amount: Decimal,
    #[schema(value_type = String)]
    pub currency: Currency,
    /// The committed quantity for the month, on a committed line.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<String>)]
    pub committed_quantity: Option<Decimal>,
    /// The part of the month the entitlement covered.
    #[schema(value_type = String)]
    pub service_start: Timestamp,
    #[schema(value_type = String)]
    pub service_end: Timestamp,
}

/// The CSV columns, in order; [`InvoiceLine::csv_record`] gives a line's values.
pub const CSV_COLUMNS: [&str; 20] = [
    "month",
    "account_id",
    "account_external_id",
    "account_name",
    "crm_account_id",
    "channel",
    "marketplace_account_id",
    "entitlement_id",
    "offer_id",
    "offer_name",
    "kind",
    "dimension",
    "unit",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "committed_quantity",
    "service_start",
    "service_end",
];

impl InvoiceLine {
    pub fn csv_record(&self) -> Vec<String> {
        vec![
            self.month.clone(),
            self.account_id.clone(),
            self.account_external_id.clone(),
            self.account_name.clone(),
            self.crm_account_id.clone().unwrap_or_default(),
            self.channel.as_str().to_owned(),
            self.marketplace_account_id.clone().unwrap_or_default(),
            self.entitlement_id.clone(),
            self.offer_id.clone(),
            self.offer_name.clone(),
            self.kind.as_str().to_owned(),
            self.dimension.clone().unwrap_or_default(),
            self.unit.clone(),
            self.quantity.to_string(),
            self.unit_price.to_string(),
            self.amount.to_string(),
            self.currency.as_str().to_owned(),
            self.committed_quantity
                .map(|q| q.to_string())
                .unwrap_or_default(),
            self.service_start.to_string(),
            self.service_end.to_string(),
        ]
    }

    /// One JSON line (no trailing newline): what the export's digest is taken over.
    pub fn json_line(&self) -> String {
        // A plain struct of strings serialises without failing.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One rated account × dimension × hour, as closing stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedRow {
    pub account_id: String,
    pub dimension: DimensionKey,
    pub hour: Timestamp,
    pub entitlement_id: String,
    /// The hour's quantity rated against the commitment (within it and beyond).
    pub quantity: Decimal,
    pub overage_quantity: Decimal,
    pub overage_amount: Money,
}

/// Everything a month's lines are decided from.
#[derive(Debug, Clone)]
pub struct InvoiceInput<'a> {
    pub period: BillingPeriod,
    pub accounts: &'a [Account],
    /// The entitlements named by `rated`, and every other entitlement of these
    /// accounts that may carry a committed fee for the month.
    pub entitlements: &'a [Entitlement],
    pub offers: &'a [Offer],
    pub rated: &'a [RatedRow],
    pub fees: &'a FeeRates,
}

/// Why lines could not be decided: stored data that does not hang together. Never a
/// partial export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error(
        "rated hour {hour} of account {account_id} names entitlement {entitlement_id}, which is not among the account's"
    )]
    UnknownEntitlement {
        account_id: String,
        entitlement_id: String,
        hour: Timestamp,
    },
    #[error("account {0} is not known")]
    UnknownAccount(String),
    #[error("offer {0} is not known")]
    UnknownOffer(String),
    #[error(
        "rated hour {hour} of account {account_id}, dimension {dimension}, is not under the month {month}"
    )]
    OutsideMonth {
        account_id: String,
        dimension: String,
        hour: Timestamp,
        month: String,
    },
    #[error(
        "entitlement {entitlement_id} has no commitment on {dimension}, yet hours were rated against one"
    )]
    NoCommitment {
        entitlement_id: String,
        dimension: String,
    },
    #[error(
        "the overage of entitlement {entitlement_id} on {dimension} is {amount}, not its price × quantity ({expected})"
    )]
    PriceMismatch {
        entitlement_id: String,
        dimension: String,
        amount: Money,
        expected: Money,
    },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Whether an entitlement bills a committed fee for the month without rated hours:
/// active now and overlapping the month. An entitlement rated in the month always
/// does (it was in force).
fn charges_commitment_unrated(entitlement: &Entitlement, period: BillingPeriod) -> bool {
    entitlement.status == EntitlementStatus::Active && entitlement.covered_in(period).is_some()
}

/// The month's invoice lines, ordered by account (external id), entitlement (start,
/// id) and then committed lines, overage lines (by dimension) and the fee line.
pub fn invoice_lines(input: &InvoiceInput<'_>) -> Result<Vec<InvoiceLine>, InvoiceError> {
    let period = input.period;
    let month = period.month_label();
    let accounts: BTreeMap<&str, &Account> = input
        .accounts
        .iter()
        .map(|a| (a.id.0.as_str(), a))
        .collect();
    let offers: BTreeMap<&str, &Offer> = input.offers.iter().map(|o| (o.id.as_str(), o)).collect();
    let entitlements: BTreeMap<&str, &Entitlement> = input
        .entitlements
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();

    // Overage per entitlement × dimension, summed from the rated hours as stored.
    let mut overage: BTreeMap<(&str, &DimensionKey), (Decimal, Money)> = BTreeMap::new();
    let mut rated_entitlements = BTreeSet::new();
    for row in input.rated {
        if row.hour < period.start || row.hour >= period.end {
            return Err(InvoiceError::OutsideMonth {
                account_id: row.account_id.clone(),
                dimension: row.dimension.to_string(),
                hour: row.hour,
                month,
            });
        }
        let entitlement = entitlements
            .get(row.entitlement_id.as_str())
            .filter(|e| e.account_id == row.account_id)
            .ok_or_else(|| InvoiceError::UnknownEntitlement {
                account_id: row.account_id.clone(),
                entitlement_id: row.entitlement_id.clone(),
                hour: row.hour,
            })?;
        rated_entitlements.insert(entitlement.id.as_str());
        let entry = overage
            .entry((entitlement.id.as_str(), &row.dimension))
            .or_insert((Decimal::ZERO, Money::zero(row.overage_amount.currency)));
        entry.0 += row.overage_quantity;
        entry.1 = entry.1.checked_add(row.overage_amount)?;
    }

    let mut billed: Vec<(&Account, &Entitlement, &Offer)> = Vec::new();
    for entitlement in input.entitlements {
        if !rated_entitlements.contains(entitlement.id.as_str())
            && !charges_commitment_unrated(entitlement, period)
        {
            continue;
        }
        let account = accounts
            .get(entitlement.account_id.as_str())
            .ok_or_else(|| InvoiceError::UnknownAccount(entitlement.account_id.clone()))?;
        let offer = offers
            .get(entitlement.offer_id.as_str())
            .ok_or_else(|| InvoiceError::UnknownOffer(entitlement.offer_id.clone()))?;
        billed.push((account, entitlement, offer));
    }
    billed.sort_by(|a, b| {
        (&a.0.fields.external_id, a.1.start, &a.1.id).cmp(&(
            &b.0.fields.external_id,
            b.1.start,
            &b.1.id,
        ))
    });

    let mut lines = Vec::new();
    for (account, entitlement, offer) in billed {
        let (service_start, service_end) = entitlement
            .covered_in(period)
            .unwrap_or((period.start, period.start));
        let line = |kind: LineKind,
                    dimension: Option<&DimensionKey>,
                    unit: String,
                    quantity: Decimal,
                    unit_price: Decimal,
                    amount: Decimal| InvoiceLine {
            month: month.clone(),
            account_id: account.id.0.clone(),
            account_external_id: account.fields.external_id.clone(),
            account_name: account.fields.name.clone(),
            crm_account_id: account.fields.crm_account_id.clone(),
            channel: offer.marketplace,
            marketplace_account_id: account.fields.marketplace_account_id.clone(),
            entitlement_id: entitlement.id.clone(),
            offer_id: offer.id.clone(),
            offer_name: offer.name.clone(),
            kind,
            dimension: dimension.map(|d| d.to_string()),
            unit,
            quantity: quantity.normalize(),
            unit_price: unit_price.normalize(),
            amount: amount.normalize(),
            currency: offer.currency,
            committed_quantity: None,
            service_start,
            service_end,
        };
        let unit_of = |dimension: &DimensionKey| {
            offer
                .dimensions
                .iter()
                .find(|d| &d.key == dimension)
                .map_or_else(|| dimension.to_string(), |d| d.unit.clone())
        };
        let mut charges = Money::zero(offer.currency);
        let share = entitlement.share_of(period);
        for (dimension, commitment) in &entitlement.commitments {
            let Some(fee) = commitment.committed_fee else {
                continue;
            };
            if share.is_zero() {
                continue;
            }
            let amount = fee.times(share)?;
            charges = charges.checked_add(amount)?;
            let mut committed = line(
                LineKind::Committed,
                Some(dimension),
                "month".into(),
                share,
                fee.amount,
                amount.amount,
            );
            committed.committed_quantity = entitlement
                .commitment_in(dimension, period)
                .map(|q| q.normalize());
            lines.push(committed);
        }
        for ((entitlement_id, dimension), (quantity, amount)) in &overage {
            if *entitlement_id != entitlement.id || (quantity.is_zero() && amount.amount.is_zero())
            {
                continue;
            }
            let commitment = entitlement.commitments.get(*dimension).ok_or_else(|| {
                InvoiceError::NoCommitment {
                    entitlement_id: entitlement.id.clone(),
                    dimension: dimension.to_string(),
                }
            })?;
            let price = commitment.overage.price_per_unit;
            let expected = price.times(*quantity)?;
            if expected != *amount {
                return Err(InvoiceError::PriceMismatch {
                    entitlement_id: entitlement.id.clone(),
                    dimension: dimension.to_string(),
                    amount: *amount,
                    expected,
                });
            }
            charges = charges.checked_add(*amount)?;
            lines.push(line(
                LineKind::Overage,
                Some(dimension),
                unit_of(dimension),
                *quantity,
                price.amount,
                amount.amount,
            ));
        }
        if let Some(rate) = input.fees.rate(offer.marketplace)
            && !charges.amount.is_zero()
        {
            let fee = charges.times(rate)?;
            lines.push(line(
                LineKind::MarketplaceFee,
                None,
                offer.currency.as_str().to_owned(),
                charges.amount,
                rate,
                fee.amount,
            ));
        }
    }
    Ok(lines)
}

/// An account's month in one currency: what it is charged, what marketplaces keep,
/// and what is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountTotal {
    pub account_id: String,
    pub account_external_id: String,
    pub account_name: String,
    #[schema(value_type = String)]
    pub currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub committed: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub overage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub marketplace_fees: Decimal,
    /// Charges less marketplace fees.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub net: Decimal,
}

/// Totals per account and currency, in the lines' order.
pub fn account_totals(lines: &[InvoiceLine]) -> Vec<AccountTotal> {
    let mut out: Vec<AccountTotal> = Vec::new();
    for line in lines {
        let index = match out
            .iter()
            .position(|t| t.account_id == line.account_id && t.currency == line.currency)
        {
            Some(index) => index,
            None => {
                out.push(AccountTotal {
                    account_id: line.account_id.clone(),
                    account_external_id: line.account_external_id.clone(),
                    account_name: line.account_name.clone(),
                    currency: line.currency,
                    committed: Decimal::ZERO,
                    overage: Decimal::ZERO,
                    marketplace_fees: Decimal::ZERO,
                    net: Decimal::ZERO,
                });
                out.len() - 1
            }
        };
        let Some(total) = out.get_mut(index) else {
            continue;
        };
        match line.kind {
            LineKind::Committed => total.committed += line.amount,
            LineKind::Overage => total.overage += line.amount,
            LineKind::MarketplaceFee => total.marketplace_fees += line.amount,
        }
        total.net = total.committed + total.overage - total.marketplace_fees;
    }
    out
}

/// The digest an export is kept under: SHA-256 over its JSON lines, each followed by a
/// newline (the JSON-lines file itself), so anyone can recompute it with `sha256sum`.
pub fn lines_digest(lines: &[InvoiceLine]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for line in lines {
        hasher.update(line.json_line().as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests;
