//! End to end over HTTP against purser-fakes, which enforce the same vendored
//! contracts (and verify SigV4 signatures).
// Test helpers outside #[test] functions may fail loudly too (clippy.toml only covers
// the test functions themselves).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use purser_core::account::Marketplace;
use purser_core::marketplace::record_key;
use purser_fakes::{FakeConfig, FakeMarketplaces};
use purser_marketplace::gcp::GcpCredentials;
use purser_marketplace::{
    AwsClient, AwsConfig, AzureClient, AzureConfig, Binding, GcpClient, GcpConfig, MeteringClient,
    RecordOutcome, Secret, SecretSource, UsageRecord,
};
use rust_decimal::Decimal;

fn last_hour() -> Timestamp {
    let now = Timestamp::now();
    let secs = now.as_second() - now.as_second().rem_euclid(3600) - 3600;
    Timestamp::from_second(secs).expect("hour")
}

fn record(
    m: Marketplace,
    account: &str,
    dim: &str,
    hour: Timestamp,
    q: &str,
    binding: Binding,
) -> UsageRecord {
    UsageRecord {
        key: record_key(m, account, dim, hour),
        account_id: account.into(),
        dimension: dim.into(),
        marketplace_dimension: dim.into(),
        hour,
        quantity: Decimal::from_str(q).expect("decimal"),
        binding,
        whole_units: false,
    }
}

fn no_secrets(s: &purser_marketplace::Submission, secrets: &[&str]) {
    let text = serde_json::to_string(&s.exchanges).expect("json");
    for secret in secrets {
        assert!(!text.contains(secret), "an exchange holds {secret}: {text}");
    }
}

#[tokio::test]
async fn aws_signed_requests_are_metered_and_resends_are_success() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let license = "arn:aws:license-manager::123456789012:license:l-0abc";
    fakes
        .aws()
        .add_license(license, "123456789012", &["storage"]);
    fakes.aws().add_product("prod-legacy", &["storage"]);
    fakes.aws().add_customer("cust-1", "prod-legacy");
    let defaults = purser_fakes::aws::AwsConfig::default();
    let mut config = AwsConfig::new(
        &defaults.region,
        &defaults.access_key_id,
        SecretSource::Inline(Secret::new(defaults.secret_access_key.clone())),
    );
    config.base_url = Some(fakes.aws_url());
    let client = AwsClient::new(&config).expect("client");
    let hour = last_hour();
    let records = vec![
        record(
            Marketplace::Aws,
            "a1",
            "storage",
            hour,
            "12.5",
            Binding::Aws {
                customer_aws_account_id: "123456789012".into(),
                license_arn: license.into(),
            },
        ),
        record(
            Marketplace::Aws,
            "a2",
            "storage",
            hour,
            "3",
            Binding::AwsLegacy {
                customer_identifier: "cust-1".into(),
                product_code: "prod-legacy".into(),
            },
        ),
    ];
    let first = client.submit(&records).await;
    assert_eq!(first.outcomes.len(), 2);
    for (_, o) in &first.outcomes {
        assert!(
            matches!(
                o,
                RecordOutcome::Accepted {
                    marketplace_id: Some(_)
                }
            ),
            "{o:?}"
        );
    }
    // Legacy and license records never share a request.
    assert_eq!(first.exchanges.len(), 2);
    assert!(
        first
            .exchanges
            .iter()
            .any(|e| e.request_body.contains("\"ProductCode\":\"prod-legacy\""))
    );
    no_secrets(&first, &[&defaults.secret_access_key, "Signature="]);

    // The same records again: Success again, not billed twice.
    let again = client.submit(&records).await;
    assert!(
        again.outcomes.iter().all(|(_, o)| o.is_accepted()),
        "{:?}",
        again.outcomes
    );
    // Another quantity for the same hour: a conflict.
    let mut changed = records[0].clone();
    changed.quantity = Decimal::from(13);
    let conflict = client.submit(&[changed]).await;
    assert!(
        matches!(conflict.outcomes[0].1, RecordOutcome::Conflict { .. }),
        "{:?}",
        conflict.outcomes
    );
}

#[tokio::test]
async fn aws_a_bad_record_is_isolated_and_only_it_is_refused() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let license = "arn:aws:license-manager::123456789012:license:l-0abc";
    fakes
        .aws()
        .add_license(license, "123456789012", &["storage"]);
    let defaults = purser_fakes::aws::AwsConfig::default();
    let mut config = AwsConfig::new(
        &defaults.region,
        &defaults.access_key_id,
        SecretSource::Inline(Secret::new(defaults.secret_access_key.clone())),
    );
    config.base_url = Some(fakes.aws_url());
    let client = AwsClient::new(&config).expect("client");
    let hour = last_hour();
    let binding = Binding::Aws {
        customer_aws_account_id: "123456789012".into(),
        license_arn: license.into(),
    };
    let good = record(
        Marketplace::Aws,
        "a1",
        "storage",
        hour,
        "1",
        binding.clone(),
    );
    let bad = record(
        Marketplace::Aws,
        "a1",
        "no-such-dimension",
        hour,
        "1",
        binding,
    );
    let s = client.submit(&[good.clone(), bad.clone()]).await;
    assert!(
        s.outcome(good.key).is_some_and(RecordOutcome::is_accepted),
        "{:?}",
        s.outcomes
    );
    assert!(
        matches!(s.outcome(bad.key), Some(RecordOutcome::Refused { .. })),
        "{:?}",
        s.outcomes
    );
}

#[tokio::test]
async fn aws_wrong_credentials_are_retried_not_refused() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let mut config = AwsConfig::new(
        "us-east-1",
        "AKIDWRONG",
        SecretSource::Inline(Secret::new("nope")),
    );
    config.base_url = Some(fakes.aws_url());
    let client = AwsClient::new(&config).expect("client");
    let r = record(
        Marketplace::Aws,
        "a1",
        "storage",
        last_hour(),
        "1",
        Binding::Aws {
            customer_aws_account_id: "123456789012".into(),
            license_arn: "arn:aws:license-manager::123456789012:license:l-0abc".into(),
        },
    );
    let s = client.submit(&[r]).await;
    assert!(
        matches!(s.outcomes[0].1, RecordOutcome::Retry { .. }),
        "{:?}",
        s.outcomes
    );
}

#[tokio::test]
async fn azure_accepts_then_reads_duplicates_by_quantity() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let sub = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    fakes.azure().add_subscription(sub, "gold", &["storage"]);
    let defaults = purser_fakes::azure::AzureConfig::default();
    let mut config = AzureConfig::new(
        &defaults.tenant_id,
        &defaults.client_id,
        SecretSource::Inline(Secret::new(defaults.client_secret.clone())),
    );
    config.base_url = fakes.azure_url();
    config.login_base = fakes.azure_login_url();
    let client = AzureClient::new(&config).expect("client");
    let hour = last_hour();
    let binding = Binding::Azure {
        resource_id: sub.into(),
        plan_id: "gold".into(),
    };
    let r = record(
        Marketplace::Azure,
        "a1",
        "storage",
        hour,
        "17.25",
        binding.clone(),
    );
    let first = client.submit(std::slice::from_ref(&r)).await;
    assert!(
        matches!(
            first.outcomes[0].1,
            RecordOutcome::Accepted {
                marketplace_id: Some(_)
            }
        ),
        "{:?}",
        first.outcomes
    );
    assert!(first.exchanges.iter().any(|e| e.operation == "token"));
    assert!(
        first
            .exchanges
            .iter()
            .any(|e| e.request_body.contains("\"quantity\":17.25"))
    );
    no_secrets(&first, &[&defaults.client_secret]);
    let token_answers: Vec<_> = first
        .exchanges
        .iter()
        .filter(|e| e.operation == "token")
        .collect();
    assert!(token_answers.iter().all(|e| {
        e.response_body
            .as_deref()
            .is_some_and(|b| b.contains("[redacted]"))
    }));

    // Same quantity (written differently): our earlier attempt.
    let mut same = r.clone();
    same.quantity = Decimal::from_str("17.250").expect("d");
    let again = client.submit(&[same]).await;
    assert!(
        matches!(
            again.outcomes[0].1,
            RecordOutcome::AlreadyAccepted {
                marketplace_id: Some(_)
            }
        ),
        "{:?}",
        again.outcomes
    );
    // The token is cached: no second token request.
    assert!(again.exchanges.iter().all(|e| e.operation != "token"));
    let mut other = r.clone();
    other.quantity = Decimal::from(5);
    let conflict = client.submit(&[other]).await;
    match &conflict.outcomes[0].1 {
        RecordOutcome::Conflict {
            accepted_quantity, ..
        } => {
            assert_eq!(
                *accepted_quantity,
                Some(Decimal::from_str("17.25").expect("d"))
            );
        }
        o => panic!("{o:?}"),
    }
    // Zero is refused without a request.
    let zero = record(Marketplace::Azure, "a1", "other", hour, "0", binding);
    let z = client.submit(&[zero]).await;
    assert!(matches!(z.outcomes[0].1, RecordOutcome::Refused { .. }));
    assert!(z.exchanges.is_empty());

    let listing = client
        .list_usage_events(
            hour.checked_sub(SignedDuration::from_hours(24)).expect("t"),
            Timestamp::now(),
        )
        .await;
    assert!(listing.is_ok(), "{listing:?}");
}

#[tokio::test]
async fn gcp_checks_then_reports_and_refuses_inactive_consumers() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .expect("fakes");
    let service = "product.endpoints.proj.cloud.goog";
    fakes.gcp().add_service(service);
    fakes
        .gcp()
        .add_metric(service, "storage", purser_fakes::gcp::GcpValueType::Double);
    fakes.gcp().add_consumer(service, "project_number:1");
    fakes.gcp().add_consumer(service, "project_number:2");
    fakes.gcp().set_consumer_state(
        service,
        "project_number:2",
        purser_fakes::gcp::GcpConsumerState::BillingDisabled,
    );
    let mut config = GcpConfig::new(GcpCredentials::Metadata {
        metadata_base: fakes.gcp_metadata_url(),
    });
    config.base_url = fakes.gcp_url();
    let client = GcpClient::new(&config).expect("client");
    let hour = last_hour();
    let ok = record(
        Marketplace::Gcp,
        "a1",
        "storage",
        hour,
        "2.5",
        Binding::Gcp {
            service_name: service.into(),
            usage_reporting_id: "project_number:1".into(),
        },
    );
    let disabled = record(
        Marketplace::Gcp,
        "a2",
        "storage",
        hour,
        "1.5",
        Binding::Gcp {
            service_name: service.into(),
            usage_reporting_id: "project_number:2".into(),
        },
    );
    let s = client.submit(&[ok.clone(), disabled.clone()]).await;
    assert!(
        s.outcome(ok.key).is_some_and(RecordOutcome::is_accepted),
        "{:?}",
        s.outcomes
    );
    assert!(
        matches!(s.outcome(disabled.key), Some(RecordOutcome::Refused { .. })),
        "{:?}",
        s.outcomes
    );
    assert_eq!(
        s.exchanges
            .iter()
            .filter(|e| e.operation == "services.check")
            .count(),
        2
    );
    assert_eq!(
        s.exchanges
            .iter()
            .filter(|e| e.operation == "services.report")
            .count(),
        1
    );
    no_secrets(&s, &["ya29.purser-fake-token"]);
    // A resend is deduplicated by operationId and answered as success again.
    let again = client.submit(std::slice::from_ref(&ok)).await;
    assert!(
        again
            .outcome(ok.key)
            .is_some_and(RecordOutcome::is_accepted)
    );
    assert_eq!(
        fakes.gcp().totals().values().copied().sum::<Decimal>(),
        Decimal::from_str("2.5").expect("d")
    );
}
