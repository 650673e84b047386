//! Accounts: the customer organisations Purser bills and supports.
//!
//! Input arrives as an [`AccountDraft`] of plain strings (from JSON, a form or the
//! CLI) and becomes [`NewAccount`] only through [`AccountDraft::validate`], which
//! names every wrong field. A change is a [`AccountPatch`] laid over the stored
//! account's draft and validated whole, so a change can never produce an account that
//! creation would have refused.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::boundary::BoundaryName;
use crate::validation::{self, ValidationErrors};

/// Purser's identifier for an account (a UUIDv7, so new accounts sort last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the account bought the product.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Marketplace {
    Gcp,
    Azure,
    Aws,
    Direct,
}

impl Marketplace {
    pub const ALL: [Marketplace; 4] = [
        Marketplace::Gcp,
        Marketplace::Azure,
        Marketplace::Aws,
        Marketplace::Direct,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Marketplace::Gcp => "gcp",
            Marketplace::Azure => "azure",
            Marketplace::Aws => "aws",
            Marketplace::Direct => "direct",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == value.trim().to_lowercase())
            .ok_or_else(|| {
                format!("`{value}` is not a marketplace (one of gcp, azure, aws, direct)")
            })
    }

    /// What the marketplace calls the buyer's identifier, for messages and pages.
    pub fn buyer_id_label(self) -> &'static str {
        match self {
            Marketplace::Gcp => "Procurement account id",
            Marketplace::Azure => "SaaS subscription id",
            Marketplace::Aws => "Customer AWS account id",
            Marketplace::Direct => "(none)",
        }
    }

    /// Checks the buyer identifier the marketplace gives the seller.
    fn check_buyer_id(self, value: &str) -> Result<(), String> {
        match self {
            // Google's procurement account ids are opaque strings; they never hold spaces.
            Marketplace::Gcp if value.contains(char::is_whitespace) => {
                Err("a Google Cloud procurement account id has no spaces".into())
            }
            // Azure SaaS subscription ids are GUIDs (SaaS fulfillment API v2).
            Marketplace::Azure if !is_guid(value) => Err(
                "an Azure SaaS subscription id is a GUID (8-4-4-4-12 hexadecimal digits)".into(),
            ),
            // AWS account ids are 12 digits.
            Marketplace::Aws
                if !(value.len() == 12 && value.chars().all(|c| c.is_ascii_digit())) =>
            {
                Err("an AWS account id is 12 digits".into())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Marketplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Where the account stands in its lifecycle.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Onboarding,
    Active,
    Suspended,
    Churned,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 4] = [
        AccountStatus::Onboarding,
        AccountStatus::Active,
        AccountStatus::Suspended,
        AccountStatus::Churned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Onboarding => "onboarding",
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Churned => "churned",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value.trim().to_lowercase())
            .ok_or_else(|| {
                format!("`{value}` is not a status (one of onboarding, active, suspended, churned)")
            })
    }
}

/// The people who own the account, by role, as e-mail addresses. They need not be
/// Purser users: account executives often are not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Owners {
    pub account_executive: Option<String>,
    pub csm: Option<String>,
    pub tam: Option<String>,
}

/// A validated account, before storage gives it an id and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAccount {
    pub name: String,
    pub external_id: String,
    pub marketplace: Marketplace,
    pub marketplace_account_id: Option<String>,
    pub crm_account_id: Option<String>,
    pub boundary: BoundaryName,
    pub region: String,
    pub owners: Owners,
    pub status: AccountStatus,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    #[serde(flatten)]
    pub fields: NewAccount,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Account input as it arrives, before validation. Every field is a string so that a
/// wrong value is reported by name rather than failing deserialisation as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDraft {
    /// The organisation's name as people know it.
    pub name: String,
    /// The identifier the platform's telemetry (Polaris) uses for this customer; usage
    /// events name the account by it. Lowercase letters, digits, `-`, `_`, `.`.
    pub external_id: String,
    /// `gcp`, `azure`, `aws` or `direct`.
    pub marketplace: String,
    /// The buyer's identifier at the marketplace; required unless `direct`.
    #[serde(default)]
    pub marketplace_account_id: Option<String>,
    /// The Salesforce account id (15 or 18 characters).
    #[serde(default)]
    pub crm_account_id: Option<String>,
    /// The data boundary; `standard` when omitted.
    #[serde(default)]
    pub boundary: Option<String>,
    /// The cloud region the product runs in for this customer (`us-east-1`, `europe-west4`).
    pub region: String,
    #[serde(default)]
    pub owners: Owners,
    /// `onboarding` when omitted.
    #[serde(default)]
    pub status: Option<String>,
}

/// A change to an account: each field present replaces the stored one; an empty string
/// clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub marketplace: Option<String>,
    pub marketplace_account_id: Option<String>,
    pub crm_account_id: Option<String>,
    pub boundary: Option<String>,
    pub region: Option<String>,
    pub owners: Option<OwnersPatch>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnersPatch {
    pub account_executive: Option<String>,
    pub csm: Option<String>,
    pub tam: Option<String>,
}

impl AccountDraft {
    /// Validates the draft. `known_boundaries` are the boundaries defined in this
    /// Purser; an account may only be placed in one of them.
    pub fn validate(
        &self,
        known_boundaries: &[BoundaryName],
    ) -> Result<NewAccount, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = validation::text(&mut errors, "name", &self.name, true, 200);
        let external_id = check_slug(&mut errors, "external_id", &self.external_id);
        let marketplace = Marketplace::parse(&self.marketplace)
            .map_err(|reason| errors.add("marketplace", reason))
            .ok();
        let marketplace_account_id = validation::text(
            &mut errors,
            "marketplace_account_id",
            self.marketplace_account_id.as_deref().unwrap_or(""),
            false,
            128,
        );
        match (marketplace, &marketplace_account_id) {
            (Some(Marketplace::Direct), Some(_)) => errors.add(
                "marketplace_account_id",
                "must be empty for a direct account: it has no marketplace buyer",
            ),
            (Some(m), None) if m != Marketplace::Direct => errors.add(
                "marketplace_account_id",
                format!("is required for a {m} account ({})", m.buyer_id_label()),
            ),
            (Some(m), Some(id)) => {
                if let Err(reason) = m.check_buyer_id(id) {
                    errors.add("marketplace_account_id", reason);
                }
            }
            _ => {}
        }
        let crm_account_id = validation::text(
            &mut errors,
            "crm_account_id",
            self.crm_account_id.as_deref().unwrap_or(""),
            false,
            18,
        );
        if let Some(crm) = &crm_account_id {
            // Salesforce ids are 15 (case-sensitive) or 18 (case-safe) alphanumerics.
            if !(matches!(crm.len(), 15 | 18) && crm.chars().all(|c| c.is_ascii_alphanumeric())) {
                errors.add(
                    "crm_account_id",
                    "a Salesforce account id is 15 or 18 letters and digits",
                );
            }
        }
        let boundary = match self.boundary.as_deref().map(str::trim) {
            None | Some("") => Some(BoundaryName::standard()),
            Some(value) => match BoundaryName::parse(value) {
                Ok(name) if known_boundaries.contains(&name) => Some(name),
                Ok(_) => {
                    errors.add(
                        "boundary",
                        format!(
                            "`{value}` is not a defined boundary (one of {})",
                            known_boundaries
                                .iter()
                                .map(BoundaryName::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
                Err(reason) => {
                    errors.add("boundary", reason);
                    None
                }
            },
        };
        let region = check_slug(&mut errors, "region", &self.region);
        let owners = Owners {
            account_executive: self
                .owners
                .account_executive
                .as_deref()
                .and_then(|v| validation::email(&mut errors, "owners.account_executive", v)),
            csm: self
                .owners
                .csm
                .as_deref()
                .and_then(|v| validation::email(&mut errors, "owners.csm", v)),
            tam: self
                .owners
                .tam
                .as_deref()
                .and_then(|v| validation::email(&mut errors, "owners.tam", v)),
        };
        let status = match self.status.as_deref().map(str::trim) {
            None | Some("") => Some(AccountStatus::Onboarding),
            Some(value) => AccountStatus::parse(value)
                .map_err(|reason| errors.add("status", reason))
                .ok(),
        };
        match (name, external_id, marketplace, boundary, region, status) {
            (
                Some(name),
                Some(external_id),
                Some(marketplace),
                Some(boundary),
                Some(region),
                Some(status),
            ) if errors.is_empty() => Ok(NewAccount {
                name,
                external_id,
                marketplace,
                marketplace_account_id,
                crm_account_id,
                boundary,
                region,
                owners,
                status,
            }),
            _ => Err(errors),
        }
    }

    /// Lays a patch over this draft.
    pub fn apply(mut self, patch: AccountPatch) -> AccountDraft {
        fn set(target: &mut String, value: Option<String>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        fn set_opt(target: &mut Option<String>, value: Option<String>) {
            if let Some(value) = value {
                *target = Some(value);
            }
        }
        set(&mut self.name, patch.name);
        set(&mut self.external_id, patch.external_id);
        set(&mut self.marketplace, patch.marketplace);
        set_opt(
            &mut self.marketplace_account_id,
            patch.marketplace_account_id,
        );
        set_opt(&mut self.crm_account_id, patch.crm_account_id);
        set_opt(&mut self.boundary, patch.boundary);
        set(&mut self.region, patch.region);
        set_opt(&mut self.status, patch.status);
        if let Some(owners) = patch.owners {
            set_opt(&mut self.owners.account_executive, owners.account_executive);
            set_opt(&mut self.owners.csm, owners.csm);
            set_opt(&mut self.owners.tam, owners.tam);
        }
        self
    }
}

impl From<&NewAccount> for AccountDraft {
    fn from(account: &NewAccount) -> Self {
        AccountDraft {
            name: account.name.clone(),
            external_id: account.external_id.clone(),
            marketplace: account.marketplace.as_str().to_owned(),
            marketplace_account_id: account.marketplace_account_id.clone(),
            crm_account_id: account.crm_account_id.clone(),
            boundary: Some(account.boundary.as_str().to_owned()),
            region: account.region.clone(),
            owners: account.owners.clone(),
            status: Some(account.status.as_str().to_owned()),
        }
    }
}

/// Identifiers shared with other systems: lowercase, no spaces, so that telemetry,
/// URLs and spreadsheets agree on them.
fn check_slug(errors: &mut ValidationErrors, field: &str, value: &str) -> Option<String> {
    let value = validation::text(errors, field, value, true, 64)?;
    if value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        Some(value)
    } else {
        errors.add(
            field,
            "may hold only lowercase letters, digits, `-`, `_` and `.`",
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundaries() -> Vec<BoundaryName> {
        crate::boundary::BoundaryRule::built_in()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    fn aws_draft() -> AccountDraft {
        AccountDraft {
            name: "Acme Corp".into(),
            external_id: "acme-prod".into(),
            marketplace: "aws".into(),
            marketplace_account_id: Some("123456789012".into()),
            crm_account_id: Some("001Dn00000AbCdEfGH".into()),
            boundary: None,
            region: "us-east-1".into(),
            owners: Owners {
                csm: Some("Csm@Vendor.example".into()),
                ..Owners::default()
            },
            status: None,
        }
    }

    fn fields(result: Result<NewAccount, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("invalid")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_complete_draft_validates_with_defaults() {
        let account = aws_draft().validate(&boundaries()).expect("valid");
        assert_eq!(account.boundary, BoundaryName::standard());
        assert_eq!(account.status, AccountStatus::Onboarding);
        assert_eq!(account.owners.csm.as_deref(), Some("csm@vendor.example"));
    }

    #[test]
    fn every_wrong_field_is_named() {
        let draft = AccountDraft {
            name: " ".into(),
            external_id: "Acme Prod".into(),
            marketplace: "ibm".into(),
            marketplace_account_id: None,
            crm_account_id: Some("123".into()),
            boundary: Some("moon".into()),
            region: "".into(),
            owners: Owners {
                tam: Some("nobody".into()),
                ..Owners::default()
            },
            status: Some("dormant".into()),
        };
        assert_eq!(
            fields(draft.validate(&boundaries())),
            [
                "name",
                "external_id",
                "marketplace",
                "crm_account_id",
                "boundary",
                "region",
                "owners.tam",
                "status"
            ]
        );
    }

    #[test]
    fn marketplace_buyer_ids_follow_each_marketplace() {
        let mut draft = aws_draft();
        draft.marketplace_account_id = Some("12345".into());
        assert_eq!(
            fields(draft.validate(&boundaries())),
            ["marketplace_account_id"]
        );

        draft.marketplace = "azure".into();
        draft.marketplace_account_id = Some("not-a-guid".into());
        assert_eq!(
            fields(draft.validate(&boundaries())),
            ["marketplace_account_id"]
        );
        draft.marketplace_account_id = Some("3fa85f64-5717-4562-b3fc-2c963f66afa6".into());
        assert!(draft.validate(&boundaries()).is_ok());

        draft.marketplace = "direct".into();
        assert_eq!(
            fields(draft.validate(&boundaries())),
            ["marketplace_account_id"]
        );
        draft.marketplace_account_id = None;
        assert!(draft.validate(&boundaries()).is_ok());

        draft.marketplace = "gcp".into();
        assert_eq!(
            fields(draft.validate(&boundaries())),
            ["marketplace_account_id"]
        );
    }

    #[test]
    fn a_patch_is_validated_as_a_whole() {
        let stored = aws_draft().validate(&boundaries()).expect("valid");
        let patched = AccountDraft::from(&stored).apply(AccountPatch {
            boundary: Some("us-gov".into()),
            status: Some("active".into()),
            ..AccountPatch::default()
        });
        let account = patched.validate(&boundaries()).expect("valid");
        assert_eq!(account.boundary.as_str(), "us-gov");
        assert_eq!(account.status, AccountStatus::Active);
        assert_eq!(account.name, "Acme Corp");

        // Switching to direct without clearing the AWS id is refused, not half-applied.
        let patched = AccountDraft::from(&stored).apply(AccountPatch {
            marketplace: Some("direct".into()),
            ..AccountPatch::default()
        });
        assert_eq!(
            fields(patched.validate(&boundaries())),
            ["marketplace_account_id"]
        );
        // An empty string clears an optional field.
        let patched = AccountDraft::from(&stored).apply(AccountPatch {
            marketplace: Some("direct".into()),
            marketplace_account_id: Some(String::new()),
            ..AccountPatch::default()
        });
        assert_eq!(
            patched
                .validate(&boundaries())
                .expect("valid")
                .marketplace_account_id,
            None
        );
    }
}
