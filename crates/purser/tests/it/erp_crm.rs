//! `purser crm import` and `purser crm export` through a running server's API, and
//! `purser erp export` from the database beside it.

use jiff::{SignedDuration, Timestamp};
use purser_core::audit::Actor;
use purser_core::identity::{NewUser, secret_digest};
use purser_store::{Location, OpenMode, Store};

use crate::support::{Server, data_dir_arg, purser, run};

const RECORDS: &str = r#"{"records": [
  {"attributes": {"type": "Account"}, "Id": "001Dn00000AbCdEfGH", "Name": "Acme Storage",
   "Purser_External_Id__c": "acme-storage", "Marketplace__c": "direct", "Region__c": "us-east-1"},
  {"attributes": {"type": "Opportunity"}, "Purser_Offer_Id__c": "direct-capacity", "Name": "Direct capacity",
   "Offer_Kind__c": "private", "Marketplace__c": "direct",
   "OpportunityLineItems": {"records": [{"Purser_Dimension__c": "capacity", "Unit__c": "TiB-hour"}]}},
  {"attributes": {"type": "ServiceContract"}, "Purser_Entitlement_Id__c": "ent-acme",
   "Account": {"Purser_External_Id__c": "acme-storage"}, "Offer__r": {"Purser_Offer_Id__c": "direct-capacity"},
   "StartDate": "2020-01-01", "EndDate": "2099-12-31", "Status": "Active",
   "ContractLineItems": {"records": [{"Purser_Dimension__c": "capacity", "Committed_Quantity__c": 100,
     "Overage_Price__c": 0.0125, "Committed_Fee__c": 1234.5678901234}]}}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_imports_from_the_crm_and_exports_to_the_erp_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = data_dir_arg(dir.path());
    let token = "psr_finance-cli-token";
    {
        let store = Store::open(&Location::sqlite_in(dir.path()), OpenMode::Write)
            .await
            .expect("open");
        let actor = Actor::new("system:test", None);
        let user =
            NewUser::validate("fin", "", &["finance".into()], &[], Some("US")).expect("valid");
        let user = store.create_user(&actor, user, None).await.expect("user");
        store
            .create_token(
                &actor,
                &user.id,
                "cli",
                &secret_digest(token),
                Timestamp::now() + SignedDuration::from_hours(1),
            )
            .await
            .expect("token");
    }
    let file = dir.path().join("salesforce.json");
    std::fs::write(&file, RECORDS).expect("file");
    let copy = dir.path().join("copy.json");
    std::fs::write(
        &copy,
        r#"[{"attributes": {"type": "Account"}, "Name": "ACME Storage, Inc.", "Purser_External_Id__c": "acme-storage-2",
            "Marketplace__c": "direct", "Region__c": "us-east-1"}]"#,
    )
    .expect("file");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, RECORDS.replace("0.0125", "\"cheap\"")).expect("file");
    let server = Server::start(purser(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]))
    .await;
    let crm = |args: &[&str]| {
        let mut command = purser(&["crm"]);
        command
            .args(args)
            .env("PURSER_API_URL", &server.url)
            .env("PURSER_API_TOKEN", token);
        command
    };
    let path = file.to_str().expect("path");

    let (ok, stdout, stderr) = run(crm(&["import", path, "--dry-run"]), None).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    let (ok, stdout, stderr) = run(crm(&["import", path]), None).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("accounts: 1 created") && stdout.contains("entitlements: 1 created"),
        "{stdout}"
    );
    // A near-identical name is held back, said with its record and reason.
    let (ok, stdout, stderr) = run(crm(&["import", copy.to_str().expect("path")]), None).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("records[0] Account acme-storage-2: duplicate_name")
            && stdout.contains("Acme Storage"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(crm(&["--json", "import", path]), None).await;
    assert!(ok);
    let again: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(again["unchanged"], 3, "{again}");

    let (ok, _, stderr) = run(crm(&["import", bad.to_str().expect("path")]), None).await;
    assert!(!ok, "a bad record fails the import");
    assert!(
        stderr.contains("records[2].ContractLineItems.records[0].Overage_Price__c"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(crm(&["export"]), None).await;
    assert!(ok, "{stderr}");
    let export: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        export["records"][0]["Purser_External_Id__c"],
        "acme-storage"
    );
    // Numbers stay exact on the way out too.
    assert!(
        stdout.contains("\"Purser_Committed_This_Period__c\":100"),
        "{stdout}"
    );

    // The ERP export, read-only beside the server: the committed fee, exactly.
    let month = purser_core::commercial::BillingPeriod::containing(Timestamp::now()).month_label();
    let (ok, stdout, stderr) = run(
        purser(&["erp", "export", "--month", &month, "--data-dir", &data_dir]),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("month,account_id,account_external_id")),
        "{stdout}"
    );
    let line = lines.next().expect("the committed line");
    assert!(
        line.contains(",acme-storage,Acme Storage,001Dn00000AbCdEfGH,direct,")
            && line
                .contains(",committed,capacity,month,1,1234.5678901234,1234.5678901234,USD,100,"),
        "{line}"
    );
    assert!(stderr.contains("not kept yet"), "{stderr}");
    let (ok, _, stderr) = run(
        purser(&[
            "erp",
            "export",
            "--month",
            "2026-13",
            "--data-dir",
            &data_dir,
        ]),
        None,
    )
    .await;
    assert!(!ok && stderr.contains("--month"), "{stderr}");
    assert!(server.stop().await);
}
