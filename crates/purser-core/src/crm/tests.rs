//! Salesforce-shaped records into plans, on inline fixtures.

use super::*;
use crate::account::AccountId;
use crate::identity::{Principal, Role};

fn rules() -> Vec<BoundaryRule> {
    BoundaryRule::built_in()
}

fn system() -> crate::AccountScope {
    crate::AccountScope::system("test", &rules())
}

/// A user cleared for nothing but standard.
fn uncleared() -> crate::AccountScope {
    let principal = Principal {
        user_id: "u".into(),
        username: "u".into(),
        roles: [Role::Admin].into_iter().collect(),
        clearances: Default::default(),
        residency: Country::parse("US").ok(),
        via_token: None,
    };
    crate::AccountScope::for_principal(&principal, &rules(), None)
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("new-{n}")
    }
}

const FILE: &str = r#"{"totalSize": 3, "done": true, "records": [
  {"attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001Dn00000AbCdEfGH"},
   "Id": "001Dn00000AbCdEfGH", "Name": "Acme Corp", "Purser_External_Id__c": "acme-prod",
   "Marketplace__c": "aws", "Marketplace_Account_Id__c": "123456789012", "Region__c": "us-east-1",
   "Data_Boundary__c": "standard", "CSM_Email__c": "csm@vendor.example", "Industry": "Manufacturing"},
  {"attributes": {"type": "Opportunity"}, "Purser_Offer_Id__c": "aws-private-500", "Name": "AWS private offer",
   "Offer_Kind__c": "private", "Marketplace__c": "aws", "CurrencyIsoCode": "USD",
   "OpportunityLineItems": {"totalSize": 1, "done": true, "records": [
     {"attributes": {"type": "OpportunityLineItem"}, "Purser_Dimension__c": "capacity", "Unit__c": "TiB-hour"}]}},
  {"attributes": {"type": "ServiceContract"}, "Purser_Entitlement_Id__c": "ent-acme-2026",
   "Account": {"Purser_External_Id__c": "acme-prod"}, "Offer__r": {"Purser_Offer_Id__c": "aws-private-500"},
   "StartDate": "2026-11-16", "EndDate": "2027-11-15", "Status": "Active",
   "AWS_Account_Id__c": "123456789012", "AWS_License_Arn__c": "arn:aws:license-manager::123456789012:license:l-0abc",
   "ContractLineItems": {"records": [
     {"Purser_Dimension__c": "capacity", "Committed_Quantity__c": 360000, "Overage_Price__c": 0.012500000000000000001,
      "Committed_Fee__c": "4500.00"}]}}
]}"#;

#[test]
fn a_salesforce_file_becomes_an_account_an_offer_and_an_entitlement_once() {
    let records = parse_records(FILE).expect("readable");
    assert_eq!(
        (
            records.accounts.len(),
            records.offers.len(),
            records.entitlements.len()
        ),
        (1, 1, 1)
    );
    let rules = rules();
    let existing = Existing {
        accounts: &[],
        offers: &[],
        entitlements: &[],
        rules: &rules,
    };
    let plan = plan_import(&records, existing, &system(), ids()).expect("valid");
    assert!(plan.findings.is_empty(), "{:?}", plan.findings);
    let AccountChange::Create { id, fields } = &plan.accounts[0] else {
        panic!("a new account: {:?}", plan.accounts);
    };
    assert_eq!(id, "new-1");
    assert_eq!(fields.crm_account_id.as_deref(), Some("001Dn00000AbCdEfGH"));
    let EntitlementChange::Create(entitlement) = &plan.entitlements[0] else {
        panic!("a new entitlement");
    };
    assert_eq!(entitlement.account_id, "new-1");
    assert_eq!(entitlement.start.to_string(), "2026-11-16T00:00:00Z");
    // The CRM's end date is inclusive.
    assert_eq!(entitlement.end.to_string(), "2027-11-16T00:00:00Z");
    let commitment = entitlement.commitments.values().next().expect("one");
    // The number's own text, not a float's.
    assert_eq!(
        commitment.overage.price_per_unit.amount.to_string(),
        "0.012500000000000000001"
    );
    assert_eq!(
        commitment.committed_fee.map(|f| f.amount.to_string()),
        Some("4500.00".into())
    );
    assert!(matches!(
        entitlement.marketplace_binding,
        Some(Binding::Aws { .. })
    ));

    // Importing the same file again over what it stored changes nothing.
    let account = Account {
        id: AccountId(id.clone()),
        fields: fields.clone(),
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
    };
    let again = plan_import(
        &records,
        Existing {
            accounts: std::slice::from_ref(&account),
            offers: &plan.offers,
            entitlements: std::slice::from_ref(entitlement),
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    assert!(again.accounts.is_empty() && again.offers.is_empty() && again.entitlements.is_empty());
    assert_eq!(again.unchanged, 3);

    // A changed status is a status change; changed terms are refused.
    let changed = FILE.replace(r#""Status": "Active""#, r#""Status": "Expired""#);
    let plan = plan_import(
        &parse_records(&changed).expect("readable"),
        Existing {
            accounts: std::slice::from_ref(&account),
            offers: &plan.offers,
            entitlements: std::slice::from_ref(entitlement),
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    assert!(matches!(
        plan.entitlements[..],
        [EntitlementChange::Status {
            status: EntitlementStatus::Expired,
            ..
        }]
    ));
}

fn fields(result: Result<ImportPlan, ValidationErrors>) -> Vec<String> {
    result
        .expect_err("invalid")
        .errors
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn a_bad_record_is_named_by_its_position_and_its_salesforce_field() {
    let bad = FILE
        .replace(r#""Region__c": "us-east-1""#, r#""Region__c": "US East""#)
        .replace("0.012500000000000000001", r#""cheap""#)
        .replace(r#""EndDate": "2027-11-15""#, r#""EndDate": "15/11/2027""#);
    let rules = rules();
    let existing = Existing {
        accounts: &[],
        offers: &[],
        entitlements: &[],
        rules: &rules,
    };
    let records = parse_records(&bad);
    assert_eq!(
        records
            .clone()
            .expect_err("a bad date")
            .errors
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        ["records[2].EndDate"]
    );
    let bad = bad.replace("15/11/2027", "2027-11-15");
    assert_eq!(
        fields(plan_import(
            &parse_records(&bad).expect("readable"),
            existing,
            &system(),
            ids()
        )),
        [
            "records[0].Region__c",
            // Its account did not validate, so the entitlement has none to belong to.
            "records[2].Account.Purser_External_Id__c",
        ]
    );
    let bad = FILE.replace("0.012500000000000000001", r#""cheap""#);
    assert_eq!(
        fields(plan_import(
            &parse_records(&bad).expect("readable"),
            existing,
            &system(),
            ids()
        )),
        ["records[2].ContractLineItems.records[0].Overage_Price__c"]
    );
    let unknown = r#"[{"attributes": {"type": "Lead"}}, {"Name": "x"}, 7]"#;
    assert_eq!(
        parse_records(unknown)
            .expect_err("not records")
            .errors
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        [
            "records[0].attributes.type",
            "records[1].attributes.type",
            "records[2]"
        ]
    );
    // Nobody places an account in a boundary they are not cleared for.
    let gov = FILE.replace(
        r#""Data_Boundary__c": "standard""#,
        r#""Data_Boundary__c": "us-gov""#,
    );
    assert!(
        fields(plan_import(
            &parse_records(&gov).expect("readable"),
            existing,
            &uncleared(),
            ids()
        ))
        .contains(&"records[0].Data_Boundary__c".to_owned())
    );
}

fn stored(id: &str, name: &str, external_id: &str, buyer: &str, boundary: &str) -> Account {
    Account {
        id: AccountId(id.into()),
        fields: NewAccount {
            name: name.into(),
            external_id: external_id.into(),
            marketplace: crate::Marketplace::Aws,
            marketplace_account_id: Some(buyer.into()),
            crm_account_id: None,
            boundary: BoundaryName::parse(boundary).expect("boundary"),
            region: "us-east-1".into(),
            owners: Owners::default(),
            status: crate::AccountStatus::Active,
        },
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
    }
}

#[test]
fn records_that_would_corrupt_billing_are_held_back_with_the_reason() {
    let rules = rules();
    // A stored us-gov account with Acme's AWS buyer id, and one named "ACME, Inc.".
    let accounts = [
        stored(
            "s1",
            "Federal Storage Agency",
            "fed-agency",
            "123456789012",
            "us-gov",
        ),
        stored(
            "s2",
            "ACME, Inc.",
            "acme-legacy",
            "999999999999",
            "standard",
        ),
    ];
    let plan = plan_import(
        &parse_records(FILE).expect("readable"),
        Existing {
            accounts: &accounts,
            offers: &[],
            entitlements: &[],
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    let summary: Vec<(FindingKind, &str, &str)> = plan
        .findings
        .iter()
        .map(|f| (f.kind, f.record_external_id.as_str(), f.boundary.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            // The duplicate involves a us-gov account: only the cleared see it.
            (FindingKind::DuplicateMarketplaceId, "acme-prod", "us-gov"),
            (FindingKind::DuplicateName, "acme-prod", "standard"),
            (FindingKind::AccountHeldBack, "ent-acme-2026", "us-gov"),
        ]
    );
    assert!(plan.accounts.is_empty() && plan.entitlements.is_empty());
    assert_eq!(plan.offers.len(), 1, "the offer itself is sound");

    // A GovCloud region outside us-gov; an entitlement without marketplace ids; one
    // overlapping another of the same account and offer.
    let file = FILE
        .replace(
            r#""Region__c": "us-east-1""#,
            r#""Region__c": "us-gov-west-1""#,
        )
        .replace(r#""AWS_Account_Id__c": "123456789012", "#, "")
        .replace(
            r#""AWS_License_Arn__c": "arn:aws:license-manager::123456789012:license:l-0abc","#,
            "",
        );
    let plan = plan_import(
        &parse_records(&file).expect("readable"),
        Existing {
            accounts: &[],
            offers: &[],
            entitlements: &[],
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    assert_eq!(
        plan.findings
            .iter()
            .map(|f| (f.kind, f.boundary.as_str()))
            .collect::<Vec<_>>(),
        [
            (FindingKind::BoundaryRegionMismatch, "us-gov"),
            (FindingKind::AccountHeldBack, "us-gov"),
        ]
    );
    let file = FILE
        .replace(r#""AWS_Account_Id__c": "123456789012", "#, "")
        .replace(
            r#""AWS_License_Arn__c": "arn:aws:license-manager::123456789012:license:l-0abc","#,
            "",
        );
    let records = parse_records(&file).expect("readable");
    let plan = plan_import(
        &records,
        Existing {
            accounts: &[],
            offers: &[],
            entitlements: &[],
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    assert_eq!(
        plan.findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FindingKind::MissingMarketplaceId]
    );
    assert_eq!(plan.accounts.len(), 1, "the account itself is imported");

    let first = parse_records(FILE).expect("readable");
    let plan = plan_import(
        &first,
        Existing {
            accounts: &[],
            offers: &[],
            entitlements: &[],
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    let (AccountChange::Create { id, fields }, EntitlementChange::Create(entitlement)) =
        (&plan.accounts[0], &plan.entitlements[0])
    else {
        panic!("created");
    };
    let account = Account {
        id: AccountId(id.clone()),
        fields: fields.clone(),
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
    };
    let overlapping = FILE
        .replace("ent-acme-2026", "ent-acme-renewal")
        .replace("2026-11-16", "2027-06-01")
        .replace("2027-11-15", "2028-05-31");
    let plan = plan_import(
        &parse_records(&overlapping).expect("readable"),
        Existing {
            accounts: std::slice::from_ref(&account),
            offers: &plan.offers,
            entitlements: std::slice::from_ref(entitlement),
            rules: &rules,
        },
        &system(),
        ids(),
    )
    .expect("valid");
    assert_eq!(
        plan.findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FindingKind::OverlappingEntitlements]
    );
}

#[test]
fn names_match_across_case_punctuation_and_legal_suffixes() {
    for (a, b, same) in [
        ("ACME, Inc.", "Acme Inc", true),
        ("Acme Corp", "acme", true),
        ("The Acme Company Ltd.", "Acme", true),
        ("Müller GmbH", "MÜLLER", true),
        ("Acme Labs", "Acme", false),
        ("Inc", "Inc.", true),
    ] {
        assert_eq!(normalised_name(a) == normalised_name(b), same, "{a} / {b}");
    }
}

#[test]
fn a_region_must_lie_within_its_account_s_boundary() {
    let rules = rules();
    let check = |boundary: &str, region: &str| {
        boundary_region_mismatch(
            &BoundaryName::parse(boundary).expect("name"),
            region,
            &rules,
        )
        .is_some()
    };
    assert!(check("standard", "us-gov-west-1"));
    assert!(check("standard", "usgovvirginia"));
    assert!(check("eu-sovereign", "us-gov-east-1"));
    assert!(!check("us-gov", "us-gov-east-1"));
    assert!(
        !check("us-gov", "us-east-1"),
        "a US region in a US boundary"
    );
    assert!(check("us-gov", "europe-west4"));
    assert!(check("eu-sovereign", "us-east-1"));
    assert!(!check("eu-sovereign", "europe-west4"));
    assert!(!check("eu-sovereign", "germanywestcentral"));
    assert!(check("sg-gov", "eu-central-1"));
    assert!(!check("sg-gov", "asia-southeast1"));
    assert!(!check("standard", "eu-central-1"));
    assert!(
        !check("eu-sovereign", "mars-north-1"),
        "an unknown region is no guess"
    );
}
