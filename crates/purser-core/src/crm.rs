//! Keeping Purser and the CRM (Salesforce) in step: reading Salesforce-shaped records
//! into account, offer and entitlement drafts, deciding what an import changes, and
//! holding back the records that would corrupt billing (data hygiene).
//!
//! Pure: storage reads what exists and applies the plan; this decides. Records are
//! shaped like Salesforce's REST API JSON (`{"attributes": {"type": "Account"}, …}`,
//! child relationships as `{"records": […]}`, lookups by external id as
//! `"Account": {"Purser_External_Id__c": "…"}`). Numbers are read from their JSON text,
//! never through floating point. Validation is the drafts' own
//! ([`AccountDraft::validate`], [`OfferDraft::validate`], [`EntitlementDraft::validate`]);
//! its field names are translated back into the record's.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::account::{Account, AccountDraft, NewAccount, Owners};
use crate::boundary::{BoundaryName, BoundaryRule, Country, EU_MEMBER_STATES};
use crate::commercial::{
    CommitmentDraft, Entitlement, EntitlementDraft, EntitlementStatus, Offer, OfferDimensionDraft,
    OfferDraft, PricingDraft,
};
use crate::marketplace::Binding;
use crate::validation::ValidationErrors;

/// The CRM's field holding Purser's external id, on Accounts.
pub const ACCOUNT_EXTERNAL_ID: &str = "Purser_External_Id__c";
/// The external id field of Opportunities (offers).
pub const OFFER_EXTERNAL_ID: &str = "Purser_Offer_Id__c";
/// The external id field of ServiceContracts and Entitlements.
pub const ENTITLEMENT_EXTERNAL_ID: &str = "Purser_Entitlement_Id__c";

/// The Salesforce object a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RecordType {
    Account,
    Opportunity,
    ServiceContract,
    Entitlement,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Account => "Account",
            RecordType::Opportunity => "Opportunity",
            RecordType::ServiceContract => "ServiceContract",
            RecordType::Entitlement => "Entitlement",
        }
    }

    fn parse(value: &str) -> Option<RecordType> {
        [
            RecordType::Account,
            RecordType::Opportunity,
            RecordType::ServiceContract,
            RecordType::Entitlement,
        ]
        .into_iter()
        .find(|t| t.as_str() == value)
    }
}

/// An Account record, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmAccount {
    pub index: usize,
    pub draft: AccountDraft,
}

/// An Opportunity record: the offer it was won with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmOffer {
    pub index: usize,
    pub offer_id: String,
    pub draft: OfferDraft,
    /// Line item index by dimension key, to name a failing field.
    dimension_items: Vec<String>,
}

/// A ServiceContract or Entitlement record: an account's entitlement under an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmEntitlement {
    pub index: usize,
    pub record_type: RecordType,
    pub entitlement_id: String,
    pub account_external_id: String,
    pub draft: EntitlementDraft,
    /// Dimension key of each contract line item, in order.
    commitment_items: Vec<String>,
    /// Whether any marketplace id field was given at all.
    has_marketplace_ids: bool,
    binding_fields: BTreeMap<&'static str, String>,
}

/// What a file held, by kind, each with its position in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmRecords {
    pub accounts: Vec<CrmAccount>,
    pub offers: Vec<CrmOffer>,
    pub entitlements: Vec<CrmEntitlement>,
}

/// A field's JSON value, kept as text.
type Fields = BTreeMap<String, Box<RawValue>>;

/// Reads a file of records: a query result or collection (`{"records": […]}`) or a
/// bare array. Every problem is named `records[INDEX].Field`.
pub fn parse_records(text: &str) -> Result<CrmRecords, ValidationErrors> {
    #[derive(serde::Deserialize)]
    struct Collection {
        records: Vec<Box<RawValue>>,
    }
    let items: Vec<Box<RawValue>> = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text),
        _ => serde_json::from_str::<Collection>(text).map(|c| c.records),
    }
    .map_err(|e| {
        ValidationErrors::single(
            "records",
            format!("not a list of Salesforce records ({{\"records\": [...]}} or [...]): {e}"),
        )
    })?;
    let mut errors = ValidationErrors::new();
    let mut out = CrmRecords::default();
    for (index, item) in items.iter().enumerate() {
        let at = format!("records[{index}]");
        let Ok(fields) = serde_json::from_str::<Fields>(item.get()) else {
            errors.add(&at, "is not a JSON object");
            continue;
        };
        let mut reader = Reader {
            fields: &fields,
            at: &at,
            errors: &mut errors,
        };
        let record_type = reader
            .object("attributes")
            .and_then(|attributes| {
                serde_json::from_str::<String>(attributes.get("type")?.get()).ok()
            })
            .and_then(|t| RecordType::parse(&t));
        match record_type {
            None => reader.errors.add(
                format!("{at}.attributes.type"),
                "must be Account, Opportunity, ServiceContract or Entitlement",
            ),
            Some(RecordType::Account) => out.accounts.push(read_account(index, &mut reader)),
            Some(RecordType::Opportunity) => out.offers.push(read_offer(index, &mut reader)),
            Some(t) => out
                .entitlements
                .push(read_entitlement(index, t, &mut reader)),
        }
    }
    errors.into_result(out)
}

struct Reader<'a> {
    fields: &'a Fields,
    at: &'a str,
    errors: &'a mut ValidationErrors,
}

impl Reader<'_> {
    /// A text field (a number's exact text too); absent and `null` are `None`.
    fn text(&mut self, name: &str) -> Option<String> {
        let raw = self.fields.get(name)?.get();
        match raw.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(raw).ok(),
            Some(b'n') => None,
            Some(b'-' | b'0'..=b'9') => Some(raw.to_owned()),
            Some(b't' | b'f') => Some(raw.to_owned()),
            _ => {
                self.errors
                    .add(format!("{}.{name}", self.at), "must be text or a number");
                None
            }
        }
    }

    fn required(&mut self, name: &str) -> String {
        match self.text(name).filter(|v| !v.trim().is_empty()) {
            Some(value) => value.trim().to_owned(),
            None => {
                self.errors
                    .add(format!("{}.{name}", self.at), "is required");
                String::new()
            }
        }
    }

    fn object(&mut self, name: &str) -> Option<Fields> {
        let raw = self.fields.get(name)?.get();
        if raw == "null" {
            return None;
        }
        let parsed = serde_json::from_str::<Fields>(raw).ok();
        if parsed.is_none() {
            self.errors
                .add(format!("{}.{name}", self.at), "must be an object");
        }
        parsed
    }

    /// A child relationship's records (`{"records": […]}`).
    fn children(&mut self, name: &str) -> Vec<Fields> {
        #[derive(serde::Deserialize)]
        struct Children {
            records: Vec<Fields>,
        }
        let Some(raw) = self.fields.get(name) else {
            return Vec::new();
        };
        if raw.get() == "null" {
            return Vec::new();
        }
        match serde_json::from_str::<Children>(raw.get()) {
            Ok(children) => children.records,
            Err(_) => {
                self.errors.add(
                    format!("{}.{name}", self.at),
                    "must be a child relationship ({\"records\": [...]}) of objects",
                );
                Vec::new()
            }
        }
    }

    /// The external id of a lookup by external id (`"Account": {"Purser_External_Id__c": …}`).
    fn lookup(&mut self, relationship: &str, field: &str) -> String {
        let value = self
            .object(relationship)
            .and_then(|o| serde_json::from_str::<String>(o.get(field)?.get()).ok())
            .filter(|v| !v.trim().is_empty());
        match value {
            Some(v) => v.trim().to_owned(),
            None => {
                self.errors.add(
                    format!("{}.{relationship}.{field}", self.at),
                    "is required: the record it belongs to, by external id",
                );
                String::new()
            }
        }
    }
}

/// Purser's account field → the Account record's field.
const ACCOUNT_FIELDS: [(&str, &str); 11] = [
    ("name", "Name"),
    ("external_id", ACCOUNT_EXTERNAL_ID),
    ("marketplace", "Marketplace__c"),
    ("marketplace_account_id", "Marketplace_Account_Id__c"),
    ("crm_account_id", "Id"),
    ("boundary", "Data_Boundary__c"),
    ("region", "Region__c"),
    ("owners.account_executive", "Account_Executive_Email__c"),
    ("owners.csm", "CSM_Email__c"),
    ("owners.tam", "TAM_Email__c"),
    ("status", "Purser_Status__c"),
];

fn account_field(purser: &str) -> &str {
    ACCOUNT_FIELDS
        .iter()
        .find(|(p, _)| *p == purser)
        .map_or(purser, |(_, s)| s)
}

fn read_account(index: usize, r: &mut Reader<'_>) -> CrmAccount {
    let draft = AccountDraft {
        name: r.text("Name").unwrap_or_default(),
        external_id: r.required(ACCOUNT_EXTERNAL_ID),
        marketplace: r.text("Marketplace__c").unwrap_or_default(),
        marketplace_account_id: r.text("Marketplace_Account_Id__c"),
        crm_account_id: r.text("Id"),
        boundary: r.text("Data_Boundary__c"),
        region: r.text("Region__c").unwrap_or_default(),
        owners: Owners {
            account_executive: r.text("Account_Executive_Email__c"),
            csm: r.text("CSM_Email__c"),
            tam: r.text("TAM_Email__c"),
        },
        status: r.text("Purser_Status__c"),
    };
    CrmAccount { index, draft }
}

fn read_offer(index: usize, r: &mut Reader<'_>) -> CrmOffer {
    let offer_id = r.required(OFFER_EXTERNAL_ID);
    let mut dimensions = Vec::new();
    let mut multipliers = BTreeMap::new();
    let mut dimension_items = Vec::new();
    for (item_index, item) in r.children("OpportunityLineItems").iter().enumerate() {
        let at = format!("{}.OpportunityLineItems.records[{item_index}]", r.at);
        let mut item_reader = Reader {
            fields: item,
            at: &at,
            errors: r.errors,
        };
        let key = item_reader.required("Purser_Dimension__c");
        if let Some(multiplier) = item_reader.text("Multiplier__c") {
            multipliers.insert(key.clone(), multiplier);
        }
        dimensions.push(OfferDimensionDraft {
            key: key.clone(),
            marketplace_name: item_reader.text("Marketplace_Dimension__c"),
            unit: item_reader.text("Unit__c").unwrap_or_default(),
            reporting: item_reader.text("Reporting__c"),
            settle: item_reader.text("Settle__c"),
        });
        dimension_items.push(key);
    }
    let pricing = r.text("Pricing_Kind__c").map(|kind| PricingDraft {
        kind,
        unit: r.text("Pricing_Unit__c"),
        multipliers,
    });
    CrmOffer {
        index,
        offer_id,
        draft: OfferDraft {
            name: r.text("Name").unwrap_or_default(),
            kind: r.text("Offer_Kind__c").unwrap_or_default(),
            marketplace: r.text("Marketplace__c").unwrap_or_default(),
            currency: r.text("CurrencyIsoCode"),
            dimensions,
            pricing,
        },
        dimension_items,
    }
}

/// The marketplace id fields an entitlement record may carry, by binding field.
const BINDING_FIELDS: [(&str, &str); 8] = [
    ("service_name", "GCP_Service_Name__c"),
    ("usage_reporting_id", "GCP_Usage_Reporting_Id__c"),
    ("resource_id", "Azure_Subscription_Id__c"),
    ("plan_id", "Azure_Plan_Id__c"),
    ("customer_aws_account_id", "AWS_Account_Id__c"),
    ("license_arn", "AWS_License_Arn__c"),
    ("customer_identifier", "AWS_Customer_Identifier__c"),
    ("product_code", "AWS_Product_Code__c"),
];

/// Salesforce's entitlement statuses in Purser's words (Purser's own are taken too).
fn entitlement_status(value: &str) -> String {
    match value.trim() {
        "Active" => "active".into(),
        "Inactive" => "pending".into(),
        "Expired" => "expired".into(),
        other => other.to_lowercase(),
    }
}

/// A Salesforce date (`2026-11-16`) as the instant its day starts in UTC; an end date
/// is inclusive in the CRM, so the entitlement ends when the day after it starts.
fn day_start(value: &str, inclusive_end: bool) -> Option<String> {
    let date: Date = value.trim().parse().ok()?;
    let date = if inclusive_end {
        date.tomorrow().ok()?
    } else {
        date
    };
    Some(date.to_zoned(TimeZone::UTC).ok()?.timestamp().to_string())
}

fn read_entitlement(index: usize, record_type: RecordType, r: &mut Reader<'_>) -> CrmEntitlement {
    let entitlement_id = r.required(ENTITLEMENT_EXTERNAL_ID);
    let account_external_id = r.lookup("Account", ACCOUNT_EXTERNAL_ID);
    let offer_id = r.lookup("Offer__r", OFFER_EXTERNAL_ID);
    let mut dates = |name: &str, inclusive_end: bool| -> String {
        let value = r.required(name);
        if value.is_empty() {
            return value;
        }
        day_start(&value, inclusive_end).unwrap_or_else(|| {
            r.errors.add(
                format!("{}.{name}", r.at),
                format!("`{value}` is not a date (YYYY-MM-DD)"),
            );
            String::new()
        })
    };
    let start = dates("StartDate", false);
    let end = dates("EndDate", true);
    let mut commitments = BTreeMap::new();
    let mut commitment_items = Vec::new();
    for (item_index, item) in r.children("ContractLineItems").iter().enumerate() {
        let at = format!("{}.ContractLineItems.records[{item_index}]", r.at);
        let mut item_reader = Reader {
            fields: item,
            at: &at,
            errors: r.errors,
        };
        let key = item_reader.required("Purser_Dimension__c");
        commitments.insert(
            key.clone(),
            CommitmentDraft {
                committed_per_period: item_reader
                    .text("Committed_Quantity__c")
                    .unwrap_or_default(),
                overage_threshold: item_reader.text("Overage_Threshold__c"),
                overage_price: item_reader.text("Overage_Price__c").unwrap_or_default(),
                overage_reporting: item_reader.text("Overage_Reporting__c"),
                committed_fee: item_reader.text("Committed_Fee__c"),
            },
        );
        commitment_items.push(key);
    }
    let mut binding_fields = BTreeMap::new();
    for (binding_field, record_field) in BINDING_FIELDS {
        if let Some(value) = r.text(record_field).filter(|v| !v.trim().is_empty()) {
            binding_fields.insert(binding_field, value.trim().to_owned());
        }
    }
    CrmEntitlement {
        index,
        record_type,
        entitlement_id,
        account_external_id,
        draft: EntitlementDraft {
            offer_id,
            start,
            end,
            status: r.text("Status").map(|s| entitlement_status(&s)),
            commitments,
            marketplace_binding: None,
        },
        commitment_items,
        has_marketplace_ids: !binding_fields.is_empty(),
        binding_fields,
    }
}

impl CrmEntitlement {
    /// The binding for `offer`'s marketplace from the record's marketplace id fields;
    /// `None` when it gives none. Which AWS form is meant follows from the fields
    /// given (a license ARN: Concurrent Agreements; a product code: legacy).
    fn binding(&self, offer: &Offer) -> Option<Binding> {
        let get = |field: &str| self.binding_fields.get(field).cloned().unwrap_or_default();
        let any = |fields: &[&str]| fields.iter().any(|f| self.binding_fields.contains_key(f));
        match offer.marketplace {
            crate::Marketplace::Gcp if any(&["service_name", "usage_reporting_id"]) => {
                Some(Binding::Gcp {
                    service_name: get("service_name"),
                    usage_reporting_id: get("usage_reporting_id"),
                })
            }
            crate::Marketplace::Azure if any(&["resource_id", "plan_id"]) => Some(Binding::Azure {
                resource_id: get("resource_id"),
                plan_id: get("plan_id"),
            }),
            crate::Marketplace::Aws if any(&["customer_identifier", "product_code"]) => {
                Some(Binding::AwsLegacy {
                    customer_identifier: get("customer_identifier"),
                    product_code: get("product_code"),
                })
            }
            crate::Marketplace::Aws if any(&["customer_aws_account_id", "license_arn"]) => {
                Some(Binding::Aws {
                    customer_aws_account_id: get("customer_aws_account_id"),
                    license_arn: get("license_arn"),
                })
            }
            _ => None,
        }
    }

    /// A Purser field name of the entitlement draft → the record's field.
    fn field(&self, purser: &str) -> String {
        let at = format!("records[{}]", self.index);
        if let Some(rest) = purser.strip_prefix("commitments.") {
            let (key, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let Some(item) = self.commitment_items.iter().position(|k| k == key) else {
                return format!("{at}.ContractLineItems");
            };
            let field = match tail {
                "committed_per_period" => "Committed_Quantity__c",
                "overage_threshold" => "Overage_Threshold__c",
                "overage_price" => "Overage_Price__c",
                "overage_reporting" => "Overage_Reporting__c",
                "committed_fee" => "Committed_Fee__c",
                _ => "Purser_Dimension__c",
            };
            return format!("{at}.ContractLineItems.records[{item}].{field}");
        }
        if let Some(binding_field) = purser.strip_prefix("marketplace_binding.") {
            let record_field = BINDING_FIELDS
                .iter()
                .find(|(b, _)| *b == binding_field)
                .map_or("marketplace ids", |(_, r)| r);
            return format!("{at}.{record_field}");
        }
        let field = match purser {
            "start" => "StartDate",
            "end" => "EndDate",
            "status" => "Status",
            "offer_id" => "Offer__r",
            other => other,
        };
        format!("{at}.{field}")
    }
}

impl CrmOffer {
    fn field(&self, purser: &str) -> String {
        let at = format!("records[{}]", self.index);
        if let Some(rest) = purser.strip_prefix("dimensions[")
            && let Some((item, tail)) = rest.split_once("].")
        {
            let field = match tail {
                "key" => "Purser_Dimension__c",
                "unit" => "Unit__c",
                "marketplace_name" => "Marketplace_Dimension__c",
                "reporting" => "Reporting__c",
                "settle" => "Settle__c",
                other => other,
            };
            return format!("{at}.OpportunityLineItems.records[{item}].{field}");
        }
        if let Some(key) = purser.strip_prefix("pricing.multipliers.") {
            if let Some(item) = self.dimension_items.iter().position(|k| k == key) {
                return format!("{at}.OpportunityLineItems.records[{item}].Multiplier__c");
            }
            return format!("{at}.OpportunityLineItems");
        }
        let field = match purser {
            "name" => "Name",
            "kind" => "Offer_Kind__c",
            "marketplace" => "Marketplace__c",
            "currency" => "CurrencyIsoCode",
            "dimensions" => "OpportunityLineItems",
            "pricing.kind" => "Pricing_Kind__c",
            "pricing.unit" => "Pricing_Unit__c",
            "pricing.multipliers" => "OpportunityLineItems",
            other => other,
        };
        format!("{at}.{field}")
    }
}

/// What the import would corrupt billing with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Another account has the same marketplace buyer id: usage would be billed to one
    /// of them at random.
    DuplicateMarketplaceId,
    /// Another account's name is the same once case, punctuation and legal suffixes
    /// are ignored: most likely one customer entered twice.
    DuplicateName,
    /// An entitlement under a marketplace offer names no marketplace ids: its usage
    /// would be rated and never billed.
    MissingMarketplaceId,
    /// Another entitlement of the account under the same offer covers part of the same
    /// time: which one rates an hour would be a guess.
    OverlappingEntitlements,
    /// The account's region belongs to a sovereign cloud or jurisdiction its boundary
    /// does not: its data would be shown to people not cleared for it.
    BoundaryRegionMismatch,
    /// The record's account was held back, so it cannot be imported either.
    AccountHeldBack,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DuplicateMarketplaceId => "duplicate_marketplace_id",
            FindingKind::DuplicateName => "duplicate_name",
            FindingKind::MissingMarketplaceId => "missing_marketplace_id",
            FindingKind::OverlappingEntitlements => "overlapping_entitlements",
            FindingKind::BoundaryRegionMismatch => "boundary_region_mismatch",
            FindingKind::AccountHeldBack => "account_held_back",
        }
    }

    pub fn parse(value: &str) -> Option<FindingKind> {
        [
            FindingKind::DuplicateMarketplaceId,
            FindingKind::DuplicateName,
            FindingKind::MissingMarketplaceId,
            FindingKind::OverlappingEntitlements,
            FindingKind::BoundaryRegionMismatch,
            FindingKind::AccountHeldBack,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }

    /// What Sales Operations reads on the hygiene page.
    pub fn title(self) -> &'static str {
        match self {
            FindingKind::DuplicateMarketplaceId => "Duplicate marketplace id",
            FindingKind::DuplicateName => "Near-identical account name",
            FindingKind::MissingMarketplaceId => "Entitlement without marketplace id",
            FindingKind::OverlappingEntitlements => "Overlapping entitlements",
            FindingKind::BoundaryRegionMismatch => "Boundary disagrees with region",
            FindingKind::AccountHeldBack => "Account held back",
        }
    }
}

/// A record held back, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub record_type: RecordType,
    /// The record's external id (`Purser_External_Id__c`, …).
    pub record_external_id: String,
    /// Its position in the file imported.
    pub record_index: usize,
    pub account_external_id: String,
    pub account_name: String,
    /// Who may see the finding: the most restricted boundary it concerns.
    pub boundary: BoundaryName,
    pub message: String,
}

impl Finding {
    /// One open finding per kind and record: a new import replaces it.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind.as_str(),
            self.record_type.as_str(),
            self.record_external_id
        )
    }
}

/// An account the import creates or changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    Create {
        id: String,
        fields: NewAccount,
    },
    Update {
        before: Box<Account>,
        fields: NewAccount,
    },
}

/// An entitlement the import records or whose status it changes (terms never change
/// once recorded: closed hours were rated with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntitlementChange {
    Create(Entitlement),
    Status {
        before: Entitlement,
        status: EntitlementStatus,
    },
}

/// What an import does: changes, what is already so, and what is held back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub accounts: Vec<AccountChange>,
    pub offers: Vec<Offer>,
    pub entitlements: Vec<EntitlementChange>,
    /// Records already stored exactly as given.
    pub unchanged: usize,
    pub findings: Vec<Finding>,
    /// Every record this import read, as (type, external id): their earlier findings
    /// that are not found again are resolved.
    pub records_seen: Vec<(RecordType, String)>,
}

/// What exists, as storage read it (every boundary: duplicates hide anywhere).
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a> {
    pub accounts: &'a [Account],
    pub offers: &'a [Offer],
    pub entitlements: &'a [Entitlement],
    pub rules: &'a [BoundaryRule],
}

/// A name as people would recognise it twice: lowercase, punctuation as spaces, and
/// legal suffixes (`Inc.`, `GmbH`, `Ltd`) and a leading "the" dropped. "ACME, Inc."
/// and "Acme Inc" are one name; "Acme Labs" is another.
pub fn normalised_name(name: &str) -> String {
    const SUFFIXES: [&str; 26] = [
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "company",
        "llc",
        "llp",
        "lp",
        "ltd",
        "limited",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "bv",
        "nv",
        "pty",
        "pte",
        "oy",
        "ab",
        "srl",
        "spa",
        "kk",
    ];
    let lowered: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut words: Vec<&str> = lowered.split_whitespace().collect();
    while words.len() > 1 && words.last().is_some_and(|w| SUFFIXES.contains(w)) {
        words.pop();
    }
    if words.len() > 1 && words.first() == Some(&"the") {
        words.remove(0);
    }
    words.join(" ")
}

/// Where a region's data lives, as far as boundaries care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jurisdiction {
    /// A government cloud that only its boundary may hold (AWS GovCloud, Azure
    /// Government): the boundary's name.
    SovereignCloud(&'static str),
    Country(&'static str),
    EuropeanUnion,
}

/// The jurisdiction of well-known region names of the three clouds; `None` for a
/// region not listed (no finding is made on a guess).
fn region_jurisdiction(region: &str) -> Option<Jurisdiction> {
    let r = region.trim().to_lowercase();
    // AWS GovCloud (us-gov-west-1), Azure Government (usgovvirginia, usdodeast).
    if r.starts_with("us-gov-") || r.starts_with("usgov") || r.starts_with("usdod") {
        return Some(Jurisdiction::SovereignCloud("us-gov"));
    }
    const SINGAPORE: [&str; 3] = ["ap-southeast-1", "asia-southeast1", "southeastasia"];
    if SINGAPORE.contains(&r.as_str()) {
        return Some(Jurisdiction::Country("SG"));
    }
    // Outside the EU though in Europe: London, Zurich.
    const EUROPE_NOT_EU: [&str; 5] = [
        "eu-west-2",
        "europe-west2",
        "europe-west6",
        "uksouth",
        "switzerlandnorth",
    ];
    if EUROPE_NOT_EU.contains(&r.as_str()) {
        return None;
    }
    const AZURE_EU: [&str; 9] = [
        "westeurope",
        "northeurope",
        "germanywestcentral",
        "francecentral",
        "swedencentral",
        "italynorth",
        "polandcentral",
        "spaincentral",
        "austriaeast",
    ];
    if r.starts_with("eu-") || r.starts_with("europe-") || AZURE_EU.contains(&r.as_str()) {
        return Some(Jurisdiction::EuropeanUnion);
    }
    const AZURE_US: [&str; 9] = [
        "eastus",
        "eastus2",
        "westus",
        "westus2",
        "westus3",
        "centralus",
        "northcentralus",
        "southcentralus",
        "westcentralus",
    ];
    if r.starts_with("us-") || AZURE_US.contains(&r.as_str()) {
        return Some(Jurisdiction::Country("US"));
    }
    None
}

/// Why an account's boundary and region disagree, if they do. A government region
/// belongs to its boundary only; a restricted boundary's account must run where its
/// boundary's residents are (a region of a known other jurisdiction disagrees).
pub fn boundary_region_mismatch(
    boundary: &BoundaryName,
    region: &str,
    rules: &[BoundaryRule],
) -> Option<String> {
    let jurisdiction = region_jurisdiction(region)?;
    if let Jurisdiction::SovereignCloud(required) = jurisdiction {
        return (boundary.as_str() != required).then(|| {
            format!("region `{region}` is a {required} cloud region, but the account is in the `{boundary}` boundary")
        });
    }
    let rule = rules.iter().find(|r| &r.name == boundary)?;
    if rule.allowed_residencies.is_empty() {
        return None;
    }
    let inside = match jurisdiction {
        Jurisdiction::Country(code) => {
            Country::parse(code).is_ok_and(|country| rule.allowed_residencies.contains(&country))
        }
        Jurisdiction::EuropeanUnion => rule
            .allowed_residencies
            .iter()
            .all(|c| EU_MEMBER_STATES.contains(&c.as_str())),
        Jurisdiction::SovereignCloud(_) => true,
    };
    (!inside).then(|| {
        format!(
            "region `{region}` is outside the `{boundary}` boundary's jurisdiction ({})",
            rule.allowed_residencies
                .iter()
                .map(Country::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The boundary a region requires, when it is a government cloud's.
fn region_boundary(region: &str) -> Option<BoundaryName> {
    match region_jurisdiction(region)? {
        Jurisdiction::SovereignCloud(name) => BoundaryName::parse(name).ok(),
        _ => None,
    }
}

/// The most restricted of the boundaries a finding concerns: its data is theirs.
fn finding_boundary(
    candidates: impl IntoIterator<Item = BoundaryName>,
    rules: &[BoundaryRule],
) -> BoundaryName {
    let restricted = |b: &BoundaryName| rules.iter().any(|r| &r.name == b && r.is_restricted());
    let mut fallback = BoundaryName::standard();
    for boundary in candidates {
        if restricted(&boundary) {
            return boundary;
        }
        fallback = boundary;
    }
    fallback
}

/// An account a record may duplicate, and where it is (in Purser, or `records[i]`).
struct Candidate<'a> {
    fields: &'a NewAccount,
    place: String,
}

/// `` `Name` (external-id, where)``, for each.
fn describe(others: &[&Candidate<'_>]) -> String {
    others
        .iter()
        .map(|c| {
            format!(
                "`{}` ({}, {})",
                c.fields.name, c.fields.external_id, c.place
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides what importing `records` does. Invalid records are errors (the whole
/// import then changes nothing); records that would corrupt billing are held back as
/// findings; the rest become changes. `new_id` gives a new account's id.
pub fn plan_import(
    records: &CrmRecords,
    existing: Existing<'_>,
    importer: &crate::AccountScope,
    mut new_id: impl FnMut() -> String,
) -> Result<ImportPlan, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let mut plan = ImportPlan::default();
    let known: Vec<BoundaryName> = existing.rules.iter().map(|r| r.name.clone()).collect();
    let rules = existing.rules;

    // ---- accounts ----
    let mut validated: Vec<(&CrmAccount, NewAccount)> = Vec::new();
    let mut seen_external = BTreeMap::new();
    for record in &records.accounts {
        let at = format!("records[{}]", record.index);
        match record.draft.validate(&known) {
            Ok(fields) => {
                if let Some(first) = seen_external.insert(fields.external_id.clone(), record.index)
                {
                    errors.add(
                        format!("{at}.{ACCOUNT_EXTERNAL_ID}"),
                        format!("`{}` is also records[{first}]", fields.external_id),
                    );
                    continue;
                }
                validated.push((record, fields));
            }
            Err(e) => {
                for error in e.errors {
                    errors.add(
                        format!("{at}.{}", account_field(&error.field)),
                        error.reason,
                    );
                }
            }
        }
    }
    // Where each account of the batch ends up: (external id → (id, boundary, name)).
    let mut resolved: BTreeMap<String, (String, BoundaryName, String)> = existing
        .accounts
        .iter()
        .map(|a| {
            (
                a.fields.external_id.clone(),
                (
                    a.id.0.clone(),
                    a.fields.boundary.clone(),
                    a.fields.name.clone(),
                ),
            )
        })
        .collect();
    // Every account a record could duplicate: stored, and the file's own.
    let mut candidates: Vec<Candidate<'_>> = existing
        .accounts
        .iter()
        .map(|a| Candidate {
            fields: &a.fields,
            place: "an account in Purser".to_owned(),
        })
        .collect();
    candidates.extend(validated.iter().map(|(r, f)| Candidate {
        fields: f,
        place: format!("records[{}]", r.index),
    }));
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut by_buyer: BTreeMap<(crate::Marketplace, &str), Vec<usize>> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        by_name
            .entry(normalised_name(&c.fields.name))
            .or_default()
            .push(i);
        if let Some(buyer) = c.fields.marketplace_account_id.as_deref() {
            by_buyer
                .entry((c.fields.marketplace, buyer))
                .or_default()
                .push(i);
        }
    }
    let mut held_accounts = BTreeSet::new();
    for (record, fields) in &validated {
        let at = format!("records[{}]", record.index);
        plan.records_seen
            .push((RecordType::Account, fields.external_id.clone()));
        let stored = existing
            .accounts
            .iter()
            .find(|a| a.fields.external_id == fields.external_id);
        let mut findings = Vec::new();
        let mut finding = |kind: FindingKind, others: Vec<BoundaryName>, message: String| {
            let mut candidates = others;
            candidates.extend(region_boundary(&fields.region));
            candidates.push(fields.boundary.clone());
            findings.push(Finding {
                kind,
                record_type: RecordType::Account,
                record_external_id: fields.external_id.clone(),
                record_index: record.index,
                account_external_id: fields.external_id.clone(),
                account_name: fields.name.clone(),
                boundary: finding_boundary(candidates, rules),
                message,
            });
        };
        // Duplicates among the stored accounts (other than this one) and the batch,
        // found through the indexes: one finding per kind, naming every other.
        let others = |keyed: Option<&Vec<usize>>| -> Vec<&Candidate<'_>> {
            keyed
                .into_iter()
                .flatten()
                .filter_map(|&i| candidates.get(i))
                .filter(|c| c.fields.external_id != fields.external_id)
                .collect()
        };
        let same_buyer = others(
            fields
                .marketplace_account_id
                .as_deref()
                .and_then(|id| by_buyer.get(&(fields.marketplace, id))),
        );
        if !same_buyer.is_empty() {
            finding(
                FindingKind::DuplicateMarketplaceId,
                same_buyer
                    .iter()
                    .map(|c| c.fields.boundary.clone())
                    .collect(),
                format!(
                    "{} buyer id `{}` is also that of {}",
                    fields.marketplace,
                    fields.marketplace_account_id.as_deref().unwrap_or(""),
                    describe(&same_buyer)
                ),
            );
        }
        let same_name = others(by_name.get(&normalised_name(&fields.name)));
        if !same_name.is_empty() {
            finding(
                FindingKind::DuplicateName,
                same_name
                    .iter()
                    .map(|c| c.fields.boundary.clone())
                    .collect(),
                format!(
                    "`{}` is the same name as {}",
                    fields.name,
                    describe(&same_name)
                ),
            );
        }
        if let Some(reason) = boundary_region_mismatch(&fields.boundary, &fields.region, rules) {
            finding(FindingKind::BoundaryRegionMismatch, vec![], reason);
        }
        if !findings.is_empty() {
            held_accounts.insert(fields.external_id.clone());
            plan.findings.extend(findings);
            continue;
        }
        if !importer.permits(&fields.boundary) {
            errors.add(
                format!("{at}.Data_Boundary__c"),
                format!(
                    "you are not cleared for the `{}` boundary, so you cannot place an account in it",
                    fields.boundary
                ),
            );
            continue;
        }
        match stored {
            Some(before) if !importer.permits(&before.fields.boundary) => errors.add(
                format!("{at}.{ACCOUNT_EXTERNAL_ID}"),
                format!(
                    "an account with external id `{}` already exists",
                    fields.external_id
                ),
            ),
            Some(before) if before.fields == *fields => plan.unchanged += 1,
            Some(before) => {
                resolved.insert(
                    fields.external_id.clone(),
                    (
                        before.id.0.clone(),
                        fields.boundary.clone(),
                        fields.name.clone(),
                    ),
                );
                plan.accounts.push(AccountChange::Update {
                    before: Box::new(before.clone()),
                    fields: fields.clone(),
                });
            }
            None => {
                let id = new_id();
                resolved.insert(
                    fields.external_id.clone(),
                    (id.clone(), fields.boundary.clone(), fields.name.clone()),
                );
                plan.accounts.push(AccountChange::Create {
                    id,
                    fields: fields.clone(),
                });
            }
        }
    }

    // ---- offers ----
    let mut offers: BTreeMap<String, Offer> = existing
        .offers
        .iter()
        .map(|o| (o.id.clone(), o.clone()))
        .collect();
    for record in &records.offers {
        plan.records_seen
            .push((RecordType::Opportunity, record.offer_id.clone()));
        let offer = match record.draft.validate(record.offer_id.clone()) {
            Ok(offer) => offer,
            Err(e) => {
                for error in e.errors {
                    errors.add(record.field(&error.field), error.reason);
                }
                continue;
            }
        };
        match existing.offers.iter().find(|o| o.id == offer.id) {
            Some(stored) if *stored == offer => plan.unchanged += 1,
            Some(_) => errors.add(
                format!("records[{}].{OFFER_EXTERNAL_ID}", record.index),
                format!(
                    "offer `{}` exists with other terms, and offers never change (hours were rated under them): give the new terms a new offer id",
                    offer.id
                ),
            ),
            None if plan.offers.iter().any(|o| o.id == offer.id) => errors.add(
                format!("records[{}].{OFFER_EXTERNAL_ID}", record.index),
                format!("`{}` appears twice in the file", offer.id),
            ),
            None => {
                offers.insert(offer.id.clone(), offer.clone());
                plan.offers.push(offer);
            }
        }
    }

    // ---- entitlements ----
    // Entitlements by account and offer: what a new one may overlap.
    let mut accepted: BTreeMap<(String, String), Vec<Entitlement>> = BTreeMap::new();
    for e in existing.entitlements {
        accepted
            .entry((e.account_id.clone(), e.offer_id.clone()))
            .or_default()
            .push(e.clone());
    }
    let mut seen_entitlements = BTreeSet::new();
    for record in &records.entitlements {
        let at = format!("records[{}]", record.index);
        plan.records_seen
            .push((record.record_type, record.entitlement_id.clone()));
        if !seen_entitlements.insert(record.entitlement_id.clone()) {
            errors.add(
                format!("{at}.{ENTITLEMENT_EXTERNAL_ID}"),
                format!("`{}` appears twice in the file", record.entitlement_id),
            );
            continue;
        }
        let held =
            |kind: FindingKind, boundary: BoundaryName, name: &str, message: String| Finding {
                kind,
                record_type: record.record_type,
                record_external_id: record.entitlement_id.clone(),
                record_index: record.index,
                account_external_id: record.account_external_id.clone(),
                account_name: name.to_owned(),
                boundary,
                message,
            };
        // An entitlement of a held-back account is validated all the same (a bad record
        // is an error whatever else is wrong), then held back with it.
        let account_held = held_accounts.contains(&record.account_external_id);
        let Some((account_id, boundary, account_name)) = resolved
            .get(&record.account_external_id)
            .filter(|(_, boundary, _)| importer.permits(boundary))
            .cloned()
            .or_else(|| {
                account_held.then(|| (String::new(), BoundaryName::standard(), String::new()))
            })
        else {
            if !record.account_external_id.is_empty() {
                errors.add(
                    format!("{at}.Account.{ACCOUNT_EXTERNAL_ID}"),
                    format!(
                        "no account has external id `{}` (in Purser or in this file)",
                        record.account_external_id
                    ),
                );
            }
            continue;
        };
        let Some(offer) = offers.get(&record.draft.offer_id) else {
            if !record.draft.offer_id.is_empty() {
                errors.add(
                    format!("{at}.Offer__r.{OFFER_EXTERNAL_ID}"),
                    format!(
                        "no offer has id `{}` (in Purser or in this file)",
                        record.draft.offer_id
                    ),
                );
            }
            continue;
        };
        let mut draft = record.draft.clone();
        draft.marketplace_binding = record.binding(offer);
        if record.has_marketplace_ids && draft.marketplace_binding.is_none() {
            errors.add(
                format!("{at}.marketplace ids"),
                format!(
                    "the marketplace ids given are not {}'s (the offer is sold through {})",
                    offer.marketplace, offer.marketplace
                ),
            );
            continue;
        }
        let entitlement =
            match draft.validate(record.entitlement_id.clone(), account_id.clone(), offer) {
                Ok(e) => e,
                Err(e) => {
                    for error in e.errors {
                        errors.add(record.field(&error.field), error.reason);
                    }
                    continue;
                }
            };
        if account_held {
            let declared = validated
                .iter()
                .find(|(_, f)| f.external_id == record.account_external_id)
                .map(|(_, f)| (f.boundary.clone(), f.name.clone()))
                .unwrap_or((BoundaryName::standard(), String::new()));
            let boundary = plan
                .findings
                .iter()
                .find(|f| f.record_external_id == record.account_external_id)
                .map_or(declared.0, |f| f.boundary.clone());
            plan.findings.push(held(
                FindingKind::AccountHeldBack,
                boundary,
                &declared.1,
                format!(
                    "its account `{}` was held back; import it once its finding is fixed",
                    record.account_external_id
                ),
            ));
            continue;
        }
        let mut findings = Vec::new();
        if offer.marketplace != crate::Marketplace::Direct
            && entitlement.marketplace_binding.is_none()
        {
            findings.push(held(
                FindingKind::MissingMarketplaceId,
                boundary.clone(),
                &account_name,
                format!(
                    "the offer `{}` is sold through {}, but the record gives no {} ids: its usage would be rated and never billed",
                    offer.id, offer.marketplace, offer.marketplace
                ),
            ));
        }
        let live = |e: &Entitlement| {
            !matches!(
                e.status,
                EntitlementStatus::Cancelled | EntitlementStatus::Expired
            )
        };
        if live(&entitlement) {
            let same = accepted
                .get(&(entitlement.account_id.clone(), entitlement.offer_id.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for other in same.iter().filter(|o| {
                o.id != entitlement.id
                    && o.account_id == entitlement.account_id
                    && o.offer_id == entitlement.offer_id
                    && live(o)
                    && o.start < entitlement.end
                    && entitlement.start < o.end
            }) {
                findings.push(held(
                    FindingKind::OverlappingEntitlements,
                    boundary.clone(),
                    &account_name,
                    format!(
                        "{} to {} overlaps entitlement `{}` ({} to {}) of the same account and offer",
                        entitlement.start, entitlement.end, other.id, other.start, other.end
                    ),
                ));
            }
        }
        if !findings.is_empty() {
            plan.findings.extend(findings);
            continue;
        }
        match existing.entitlements.iter().find(|e| e.id == entitlement.id) {
            Some(stored) if stored.account_id != entitlement.account_id => errors.add(
                format!("{at}.{ENTITLEMENT_EXTERNAL_ID}"),
                format!("entitlement `{}` belongs to another account", entitlement.id),
            ),
            Some(stored) if *stored == entitlement => plan.unchanged += 1,
            Some(stored)
                if Entitlement {
                    status: entitlement.status,
                    ..stored.clone()
                } == entitlement =>
            {
                plan.entitlements.push(EntitlementChange::Status {
                    before: stored.clone(),
                    status: entitlement.status,
                });
            }
            Some(_) => errors.add(
                format!("{at}.{ENTITLEMENT_EXTERNAL_ID}"),
                format!(
                    "entitlement `{}` exists with other terms, and terms never change once recorded (hours were rated under them): change only its Status, or record a new entitlement",
                    entitlement.id
                ),
            ),
            None => {
                accepted
                    .entry((entitlement.account_id.clone(), entitlement.offer_id.clone()))
                    .or_default()
                    .push(entitlement.clone());
                plan.entitlements.push(EntitlementChange::Create(entitlement));
            }
        }
    }
    errors.into_result(plan)
}

/// An instant as a Salesforce date (`2026-11-16`); an end is exclusive in Purser and
/// inclusive in the CRM, so an end at midnight is the day before.
fn salesforce_date(at: Timestamp, is_end: bool) -> String {
    let zoned = at.to_zoned(TimeZone::UTC);
    let date = zoned.date();
    let at_midnight = zoned.time() == jiff::civil::Time::midnight();
    if is_end && at_midnight {
        date.yesterday().unwrap_or(date).to_string()
    } else {
        date.to_string()
    }
}

/// A period's usage of one entitlement's dimension, from its rated hours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LineUsage {
    consumed: rust_decimal::Decimal,
    overage: rust_decimal::Decimal,
    overage_amount: rust_decimal::Decimal,
}

fn raw(value: impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(&value)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// A decimal as a JSON number written exactly (the CRM's Number fields).
fn number(value: rust_decimal::Decimal) -> Box<RawValue> {
    RawValue::from_string(value.normalize().to_string()).unwrap_or_else(|_| raw(()))
}

type Record = BTreeMap<&'static str, Box<RawValue>>;

fn record(kind: &str) -> Record {
    BTreeMap::from([("attributes", raw(BTreeMap::from([("type", kind)])))])
}

/// Usage and entitlement fields for the CRM to upsert by external id: per account, per
/// entitlement (ServiceContract) and per committed dimension (ContractLineItem,
/// `Purser_Line_Id__c` = entitlement id and dimension), for `period`.
pub fn export_records(
    period: crate::commercial::BillingPeriod,
    accounts: &[Account],
    entitlements: &[Entitlement],
    offers: &[Offer],
    rated: &[crate::invoice::RatedRow],
) -> Vec<Record> {
    let mut usage: BTreeMap<(&str, &str), LineUsage> = BTreeMap::new();
    for row in rated {
        let entry = usage
            .entry((row.entitlement_id.as_str(), row.dimension.as_str()))
            .or_default();
        entry.consumed += row.quantity;
        entry.overage += row.overage_quantity;
        entry.overage_amount += row.overage_amount.amount;
    }
    let label = period.month_label();
    let mut out = Vec::new();
    for account in accounts {
        let mut a = record("Account");
        a.insert(ACCOUNT_EXTERNAL_ID, raw(&account.fields.external_id));
        a.insert("Purser_Account_Id__c", raw(&account.id.0));
        a.insert("Purser_Status__c", raw(account.fields.status.as_str()));
        out.push(a);
        for entitlement in entitlements.iter().filter(|e| e.account_id == account.id.0) {
            let currency = offers
                .iter()
                .find(|o| o.id == entitlement.offer_id)
                .map(|o| o.currency.as_str().to_owned());
            let mut amount = rust_decimal::Decimal::ZERO;
            for dimension in entitlement.commitments.keys() {
                let line = usage
                    .get(&(entitlement.id.as_str(), dimension.as_str()))
                    .cloned()
                    .unwrap_or_default();
                amount += line.overage_amount;
            }
            let mut s = record("ServiceContract");
            s.insert(ENTITLEMENT_EXTERNAL_ID, raw(&entitlement.id));
            s.insert(
                "Account",
                raw(BTreeMap::from([(
                    ACCOUNT_EXTERNAL_ID,
                    &account.fields.external_id,
                )])),
            );
            s.insert("StartDate", raw(salesforce_date(entitlement.start, false)));
            s.insert("EndDate", raw(salesforce_date(entitlement.end, true)));
            s.insert("Purser_Status__c", raw(entitlement.status.as_str()));
            s.insert("Purser_Period__c", raw(&label));
            s.insert("Purser_Overage_Amount_This_Period__c", number(amount));
            if let Some(currency) = currency {
                s.insert("CurrencyIsoCode", raw(currency));
            }
            out.push(s);
            for dimension in entitlement.commitments.keys() {
                let line = usage
                    .get(&(entitlement.id.as_str(), dimension.as_str()))
                    .cloned()
                    .unwrap_or_default();
                let mut c = record("ContractLineItem");
                c.insert(
                    "Purser_Line_Id__c",
                    raw(format!("{}:{dimension}", entitlement.id)),
                );
                c.insert(
                    "ServiceContract",
                    raw(BTreeMap::from([(ENTITLEMENT_EXTERNAL_ID, &entitlement.id)])),
                );
                c.insert("Purser_Dimension__c", raw(dimension.as_str()));
                c.insert("Purser_Period__c", raw(&label));
                c.insert(
                    "Purser_Committed_This_Period__c",
                    number(
                        entitlement
                            .commitment_in(dimension, period)
                            .unwrap_or_default(),
                    ),
                );
                c.insert("Purser_Consumed_This_Period__c", number(line.consumed));
                c.insert("Purser_Overage_This_Period__c", number(line.overage));
                c.insert(
                    "Purser_Overage_Amount_This_Period__c",
                    number(line.overage_amount),
                );
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
