//! Every enforced rule exercised over real HTTP.

// Test helpers outside #[test] functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use jiff::{SignedDuration, Timestamp};
use purser_fakes::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const NOW: &str = "2026-11-20T12:30:00Z";
const ARN: &str = "arn:aws:license-manager::123456789012:license:l-0123456789abcdef";
const ACCOUNT: &str = "210987654321";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

async fn start(config: FakeConfig) -> FakeMarketplaces {
    let config = FakeConfig {
        clock: FakeClock::fixed(now()),
        ..config
    };
    let fakes = FakeMarketplaces::start(config).await.unwrap();
    fakes.aws().add_license(ARN, ACCOUNT, &["storage_gb"]);
    fakes.aws().add_product("prod1", &["storage_gb"]);
    fakes.aws().add_customer("cust-1", "prod1");
    fakes
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- AWS

/// Signs with the aws-sigv4 crate (an implementation independent of the fake's verifier)
/// at `sign_at`, and sends.
async fn aws_try(
    fakes: &FakeMarketplaces,
    body: &[u8],
    secret: &str,
    key: &str,
    tamper: bool,
    sign_at: Timestamp,
    client: &reqwest::Client,
) -> Result<(u16, Value), reqwest::Error> {
    aws_try_at(
        &fakes.aws_url(),
        "AWSMPMeteringService.BatchMeterUsage",
        body,
        secret,
        key,
        tamper,
        sign_at,
        client,
    )
    .await
}

/// [`aws_try`] for any endpoint and operation of the fake AWS services.
#[allow(clippy::too_many_arguments)]
async fn aws_try_at(
    endpoint: &str,
    target: &str,
    body: &[u8],
    secret: &str,
    key: &str,
    tamper: bool,
    sign_at: Timestamp,
    client: &reqwest::Client,
) -> Result<(u16, Value), reqwest::Error> {
    let url = format!("{endpoint}/");
    let host = endpoint.trim_start_matches("http://").to_owned();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let credentials = aws_credential_types::Credentials::new(key, secret, None, None, "test");
    let identity = credentials.into();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(sign_at.as_second() as u64);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("aws-marketplace")
        .time(at)
        .settings(aws_sigv4::http_request::SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = aws_sigv4::http_request::SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        aws_sigv4::http_request::SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
        .unwrap()
        .into_parts();
    let mut request = client.post(&url);
    for (k, v) in headers.iter().copied().chain(instructions.headers()) {
        request = request.header(k, v);
    }
    let mut body = body.to_vec();
    if tamper {
        body.push(b' ');
    }
    let response = request.body(body).send().await?;
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-ErrorType")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut value: Value = response.json().await.unwrap_or(Value::Null);
    if let (Some(kind), Value::Object(map)) = (error_type, &mut value) {
        assert_eq!(
            map.get("__type").and_then(Value::as_str),
            Some(kind.as_str())
        );
    }
    Ok((status, value))
}

async fn aws_post(
    fakes: &FakeMarketplaces,
    body: &[u8],
    secret: &str,
    key: &str,
    tamper: bool,
) -> (u16, Value) {
    aws_try(
        fakes,
        body,
        secret,
        key,
        tamper,
        fakes.clock().now(),
        &client(),
    )
    .await
    .unwrap()
}

async fn aws(fakes: &FakeMarketplaces, body: Value) -> (u16, Value) {
    let config = AwsConfig::default();
    aws_post(
        fakes,
        body.to_string().as_bytes(),
        &config.secret_access_key,
        &config.access_key_id,
        false,
    )
    .await
}

fn record(ts: Timestamp, qty: &str) -> Value {
    json!({"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN, "QuantityAsDecimal": qty})
}

fn hour(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn error_type(v: &Value) -> &str {
    v.get("__type").and_then(Value::as_str).unwrap_or("")
}

#[tokio::test]
async fn aws_signed_request_is_accepted_and_recorded() {
    let fakes = start(FakeConfig::default()).await;
    let (status, body) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-20T11:00:00Z"), "17.5")]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Results"][0]["Status"], "Success");
    let records = fakes.aws().records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].quantity, Decimal::new(175, 1));
    assert_eq!(
        records[0].metering_record_id,
        body["Results"][0]["MeteringRecordId"].as_str().unwrap()
    );
}

#[tokio::test]
async fn aws_refuses_bad_signatures() {
    let fakes = start(FakeConfig::default()).await;
    let c = AwsConfig::default();
    let body = json!({"UsageRecords": [record(hour("2026-11-20T11:00:00Z"), "1")]}).to_string();
    let (s, v) = aws_post(
        &fakes,
        body.as_bytes(),
        &c.secret_access_key,
        &c.access_key_id,
        true,
    )
    .await;
    assert_eq!((s, error_type(&v)), (403, "InvalidSignatureException"));
    let (s, v) = aws_post(
        &fakes,
        body.as_bytes(),
        "wrong-secret",
        &c.access_key_id,
        false,
    )
    .await;
    assert_eq!((s, error_type(&v)), (403, "InvalidSignatureException"));
    let (s, v) = aws_post(
        &fakes,
        body.as_bytes(),
        &c.secret_access_key,
        "AKIDUNKNOWN",
        false,
    )
    .await;
    assert_eq!((s, error_type(&v)), (403, "UnrecognizedClientException"));
    let unsigned = client()
        .post(format!("{}/", fakes.aws_url()))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "AWSMPMeteringService.BatchMeterUsage")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    assert!(fakes.aws().records().is_empty());
}

#[tokio::test]
async fn aws_refuses_a_signature_more_than_five_minutes_off() {
    let fakes = start(FakeConfig::default()).await;
    let c = AwsConfig::default();
    let body = json!({"UsageRecords": []}).to_string();
    let send = |at: Timestamp| {
        let fakes = &fakes;
        let body = body.clone();
        let c = c.clone();
        async move {
            aws_try(
                fakes,
                body.as_bytes(),
                &c.secret_access_key,
                &c.access_key_id,
                false,
                at,
                &client(),
            )
            .await
            .unwrap()
        }
    };
    let (s, v) = send(now() - SignedDuration::from_mins(6)).await;
    assert_eq!((s, error_type(&v)), (403, "InvalidSignatureException"));
    assert!(
        v["message"].as_str().unwrap().contains("Signature expired"),
        "{v}"
    );
    let (s, v) = send(now() + SignedDuration::from_mins(6)).await;
    assert_eq!((s, error_type(&v)), (403, "InvalidSignatureException"));
    let (s, _) = send(now() - SignedDuration::from_mins(4)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn aws_enforces_the_record_shapes_from_the_contract() {
    let unlimited = AwsConfig {
        requests_per_second: 0,
        ..AwsConfig::default()
    };
    let fakes = start(FakeConfig {
        aws: unlimited,
        ..FakeConfig::default()
    })
    .await;
    let ts = hour("2026-11-20T11:00:00Z");
    let many: Vec<Value> = (0..26).map(|_| record(ts, "1")).collect();
    let cases = vec![
        (
            "26 records (UsageRecordList max 25)",
            json!({"UsageRecords": many}),
        ),
        (
            "QuantityAsDecimal pattern",
            json!({"UsageRecords": [record(ts, "1.1234567")]}),
        ),
        (
            "QuantityAsDecimal leading zero",
            json!({"UsageRecords": [record(ts, "01")]}),
        ),
        (
            "Quantity and QuantityAsDecimal",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN, "Quantity": 1, "QuantityAsDecimal": "1"}]}),
        ),
        (
            "CustomerAWSAccountId pattern",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": "12ab", "LicenseArn": ARN}]}),
        ),
        (
            "LicenseArn pattern",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": "not-an-arn"}]}),
        ),
        (
            "account without LicenseArn",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT}]}),
        ),
        (
            "ProductCode with license records",
            json!({"ProductCode": "prod1", "UsageRecords": [record(ts, "1")]}),
        ),
        (
            "ProductCode pattern",
            json!({"ProductCode": "bad code!", "UsageRecords": []}),
        ),
        (
            "CustomerIdentifier without ProductCode",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerIdentifier": "cust-1"}]}),
        ),
        (
            "both customer ids",
            json!({"ProductCode": "prod1", "UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerIdentifier": "cust-1", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN}]}),
        ),
        (
            "no Timestamp",
            json!({"UsageRecords": [{"Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN}]}),
        ),
        (
            "no Dimension",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN}]}),
        ),
        (
            "Quantity over max",
            json!({"UsageRecords": [{"Timestamp": ts.as_second(), "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN, "Quantity": 2147483648i64}]}),
        ),
    ];
    for (what, body) in cases {
        let (status, v) = aws(&fakes, body).await;
        assert_eq!(
            (status, error_type(&v)),
            (400, "ValidationException"),
            "{what}: {v}"
        );
    }
    // A malformed record refuses the whole request: the good one beside it is not applied.
    let (status, _) = aws(
        &fakes,
        json!({"UsageRecords": [record(ts, "1"), record(ts, "-1")]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(fakes.aws().records().is_empty());
    // Timestamp must be epoch seconds as a number.
    let (status, v) = aws(&fakes, json!({"UsageRecords": [{"Timestamp": "2026-11-20T11:00:00Z", "Dimension": "storage_gb", "CustomerAWSAccountId": ACCOUNT, "LicenseArn": ARN}]})).await;
    assert_eq!((status, error_type(&v)), (400, "SerializationException"));
    // Body of 1 MB or more.
    let padding = "x".repeat(1_000_000);
    let (status, v) = aws(&fakes, json!({"UsageRecords": [], "Pad": padding})).await;
    assert_eq!((status, error_type(&v)), (400, "ValidationException"));
}

#[tokio::test]
async fn aws_refuses_unknown_dimension_license_and_product_whole() {
    let fakes = start(FakeConfig::default()).await;
    let ts = hour("2026-11-20T11:00:00Z");
    let mut bad = record(ts, "1");
    bad["Dimension"] = json!("cpu_hours");
    let (s, v) = aws(&fakes, json!({"UsageRecords": [record(ts, "1"), bad]})).await;
    assert_eq!((s, error_type(&v)), (400, "InvalidUsageDimensionException"));
    let mut other = record(ts, "1");
    other["CustomerAWSAccountId"] = json!("999999999999");
    let (s, v) = aws(&fakes, json!({"UsageRecords": [other]})).await;
    assert_eq!((s, error_type(&v)), (400, "InvalidLicenseException"));
    let (s, v) = aws(&fakes, json!({"ProductCode": "nope", "UsageRecords": []})).await;
    assert_eq!((s, error_type(&v)), (400, "InvalidProductCodeException"));
    assert!(fakes.aws().records().is_empty());
}

#[tokio::test]
async fn aws_timestamp_window_refuses_the_whole_batch() {
    let fakes = start(FakeConfig::default()).await;
    let fresh = record(hour("2026-11-20T11:00:00Z"), "1");
    let stale = record(hour("2026-11-19T12:30:00Z"), "1");
    let (s, v) = aws(&fakes, json!({"UsageRecords": [fresh, stale]})).await;
    assert_eq!((s, error_type(&v)), (400, "TimestampOutOfBoundsException"));
    let future = record(hour("2026-11-20T13:00:00Z"), "1");
    let (s, v) = aws(&fakes, json!({"UsageRecords": [future]})).await;
    assert_eq!((s, error_type(&v)), (400, "TimestampOutOfBoundsException"));
    assert!(fakes.aws().records().is_empty());
    // Month end: November's last hour is accepted until 06:00 UTC on 1 December.
    fakes.clock().set(hour("2026-12-01T05:59:00Z"));
    let (s, _) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-30T23:00:00Z"), "1")]}),
    )
    .await;
    assert_eq!(s, 200);
    fakes.clock().set(hour("2026-12-01T06:00:00Z"));
    let mut late = record(hour("2026-11-30T22:00:00Z"), "1");
    late["Dimension"] = json!("storage_gb");
    let (s, v) = aws(&fakes, json!({"UsageRecords": [late]})).await;
    assert_eq!((s, error_type(&v)), (400, "TimestampOutOfBoundsException"));
    assert_eq!(fakes.aws().records().len(), 1);
}

#[tokio::test]
async fn aws_deduplicates_by_customer_dimension_and_hour() {
    let fakes = start(FakeConfig::default()).await;
    let (_, first) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-20T11:00:00Z"), "17")]}),
    )
    .await;
    let id = first["Results"][0]["MeteringRecordId"].clone();
    // Same quantity by value (17 = 17.0), later in the same hour: idempotent Success.
    let (_, again) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-20T11:20:00Z"), "17.0")]}),
    )
    .await;
    assert_eq!(again["Results"][0]["Status"], "Success");
    assert_eq!(again["Results"][0]["MeteringRecordId"], id);
    let (_, different) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-20T11:00:00Z"), "18")]}),
    )
    .await;
    assert_eq!(different["Results"][0]["Status"], "DuplicateRecord");
    // The legacy form is a different customer key (and bills separately).
    let legacy = json!({"ProductCode": "prod1", "UsageRecords": [{"Timestamp": hour("2026-11-20T11:00:00Z").as_second(), "Dimension": "storage_gb", "CustomerIdentifier": "cust-1", "Quantity": 3}]});
    let (_, v) = aws(&fakes, legacy).await;
    assert_eq!(v["Results"][0]["Status"], "Success");
    let unknown = json!({"ProductCode": "prod1", "UsageRecords": [{"Timestamp": hour("2026-11-20T11:00:00Z").as_second(), "Dimension": "storage_gb", "CustomerIdentifier": "cust-unknown", "Quantity": 3}]});
    let (_, v) = aws(&fakes, unknown).await;
    assert_eq!(v["Results"][0]["Status"], "CustomerNotSubscribed");
    fakes.aws().set_license_subscribed(ARN, false);
    let (_, v) = aws(
        &fakes,
        json!({"UsageRecords": [record(hour("2026-11-20T12:00:00Z"), "1")]}),
    )
    .await;
    assert_eq!(v["Results"][0]["Status"], "CustomerNotSubscribed");
    let records = fakes.aws().records();
    assert_eq!(records.len(), 2);
    let counts = fakes.aws().counts();
    assert_eq!(
        (
            counts.idempotent_resends,
            counts.duplicate_records,
            counts.customer_not_subscribed
        ),
        (1, 1, 2)
    );
    assert_eq!(
        fakes.aws().totals().values().sum::<Decimal>(),
        Decimal::from(20)
    );
}

#[tokio::test]
async fn aws_throttles_over_the_quota() {
    let config = FakeConfig {
        aws: AwsConfig {
            requests_per_second: 1,
            burst: 2,
            ..AwsConfig::default()
        },
        ..FakeConfig::default()
    };
    let fakes = start(config).await;
    let body = json!({"UsageRecords": []});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (s, v) = aws(&fakes, body.clone()).await;
        statuses.push((s, error_type(&v).to_owned()));
    }
    assert_eq!(statuses[2], (400, "ThrottlingException".to_owned()));
    assert_eq!(fakes.aws().counts().throttled, 1);
}

#[tokio::test]
async fn aws_faults_unprocessed_dropped_and_timeout_after_apply() {
    let fakes = start(FakeConfig::default()).await;
    let ts = hour("2026-11-20T11:00:00Z");
    let c = AwsConfig::default();
    fakes.aws().set_faults(FaultConfig {
        partial_batch: 1.0,
        ..FaultConfig::default()
    });
    let (s, v) = aws(&fakes, json!({"UsageRecords": [record(ts, "1")]})).await;
    assert_eq!(s, 200);
    assert_eq!(v["UnprocessedRecords"].as_array().unwrap().len(), 1);
    assert!(fakes.aws().records().is_empty());

    let body = json!({"UsageRecords": [record(ts, "1")]}).to_string();
    fakes.aws().set_faults(FaultConfig {
        drop_before_apply: 1.0,
        ..FaultConfig::default()
    });
    let dropped = aws_try(
        &fakes,
        body.as_bytes(),
        &c.secret_access_key,
        &c.access_key_id,
        false,
        now(),
        &client(),
    )
    .await;
    assert!(dropped.is_err(), "the connection should drop: {dropped:?}");
    assert!(fakes.aws().records().is_empty());

    fakes.aws().set_faults(FaultConfig {
        timeout_after_apply: 1.0,
        hang: Duration::from_secs(3),
        ..FaultConfig::default()
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let timed_out = aws_try(
        &fakes,
        body.as_bytes(),
        &c.secret_access_key,
        &c.access_key_id,
        false,
        now(),
        &impatient,
    )
    .await;
    assert!(timed_out.is_err());
    // Applied although the client never heard: the retry is idempotent and bills once.
    assert_eq!(fakes.aws().records().len(), 1);
    fakes.aws().set_faults(FaultConfig::default());
    let (_, v) = aws(&fakes, json!({"UsageRecords": [record(ts, "1")]})).await;
    assert_eq!(v["Results"][0]["Status"], "Success");
    assert_eq!(fakes.aws().records().len(), 1);
    assert!(fakes.aws().counts().faults >= 3);
}

// ---------------------------------------------------------------- Azure

const SUB: &str = "6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01";

async fn azure_token(fakes: &FakeMarketplaces, secret: &str) -> (u16, Value) {
    let c = AzureConfig::default();
    let r = client()
        .post(format!(
            "{}/{}/oauth2/token",
            fakes.azure_login_url(),
            c.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", secret),
            ("resource", "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn azure_batch(fakes: &FakeMarketplaces, token: &str, events: Vec<Value>) -> (u16, Value) {
    let r = client()
        .post(format!(
            "{}/batchUsageEvent?api-version=2018-08-31",
            fakes.azure_url()
        ))
        .bearer_auth(token)
        .json(&json!({"request": events}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn event(start: &str, qty: f64) -> Value {
    json!({"resourceId": SUB, "quantity": qty, "dimension": "storage_gb", "effectiveStartTime": start, "planId": "plan-a"})
}

async fn azure_fakes() -> (FakeMarketplaces, String) {
    let fakes = start(FakeConfig::default()).await;
    fakes
        .azure()
        .add_subscription(SUB, "plan-a", &["storage_gb"]);
    let (s, t) = azure_token(&fakes, &AzureConfig::default().client_secret).await;
    assert_eq!(s, 200);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], "3599");
    (fakes, t["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn azure_token_and_auth() {
    let (fakes, token) = azure_fakes().await;
    let (s, body) = azure_token(&fakes, "wrong").await;
    assert_eq!(s, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    let r = client()
        .post(format!(
            "{}/batchUsageEvent?api-version=2018-08-31",
            fakes.azure_url()
        ))
        .json(&json!({"request": [event("2026-11-20T11:00:00Z", 1.0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = azure_batch(&fakes, "forged", vec![event("2026-11-20T11:00:00Z", 1.0)]).await;
    assert_eq!(s, 403);
    let r = client()
        .post(format!("{}/batchUsageEvent", fakes.azure_url()))
        .bearer_auth(&token)
        .json(&json!({"request": [event("2026-11-20T11:00:00Z", 1.0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "api-version is required");
    // Tokens expire with the fake's clock.
    fakes.clock().advance(SignedDuration::from_hours(1));
    let (s, _) = azure_batch(&fakes, &token, vec![event("2026-11-20T13:00:00Z", 1.0)]).await;
    assert_eq!(s, 403);
    assert!(fakes.azure().events().is_empty());
}

#[tokio::test]
async fn azure_batch_size_from_the_contract() {
    let (fakes, token) = azure_fakes().await;
    let (s, _) = azure_batch(&fakes, &token, vec![]).await;
    assert_eq!(s, 400);
    let many = (0..26)
        .map(|_| event("2026-11-20T11:00:00Z", 1.0))
        .collect();
    let (s, _) = azure_batch(&fakes, &token, many).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn azure_per_event_statuses() {
    let (fakes, token) = azure_fakes().await;
    fakes.azure().add_resource(AzureResource {
        id: "7d7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d02".into(),
        offer_id: "o".into(),
        plan_id: "plan-a".into(),
        dimensions: vec!["storage_gb".into()],
        status: AzureStatus::Suspended,
    });
    let mut unknown = event("2026-11-20T11:00:00Z", 1.0);
    unknown["resourceId"] = json!("8e7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d03");
    let mut suspended = event("2026-11-20T11:00:00Z", 1.0);
    suspended["resourceId"] = json!("7d7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d02");
    let mut dimension = event("2026-11-20T10:00:00Z", 1.0);
    dimension["dimension"] = json!("cpu");
    let mut plan = event("2026-11-20T10:00:00Z", 1.0);
    plan["planId"] = json!("plan-b");
    let mut missing = event("2026-11-20T10:00:00Z", 1.0);
    missing.as_object_mut().unwrap().remove("planId");
    let events = vec![
        event("2026-11-20T11:00:00Z", 5.0),
        event("2026-11-20T11:45:00Z", 7.0),
        event("2026-11-19T12:00:00Z", 1.0),
        event("2026-11-20T14:00:00Z", 1.0),
        event("2026-11-20T09:00:00Z", 0.0),
        unknown,
        suspended,
        dimension,
        plan,
        missing,
    ];
    let (s, body) = azure_batch(&fakes, &token, events).await;
    assert_eq!(s, 200);
    assert_eq!(body["count"], 10);
    let statuses: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "Accepted",
            "Duplicate",
            "Expired",
            "BadArgument",
            "InvalidQuantity",
            "ResourceNotFound",
            "ResourceNotActive",
            "InvalidDimension",
            "BadArgument",
            "BadArgument"
        ]
    );
    let accepted = &body["result"][0];
    assert!(accepted["usageEventId"].is_string());
    assert_eq!(accepted["planId"], "plan-a");
    let dup = &body["result"][1]["error"]["additionalInfo"]["acceptedMessage"];
    assert_eq!(dup["usageEventId"], accepted["usageEventId"]);
    assert_eq!(dup["quantity"], 5.0);
    assert_eq!(fakes.azure().events().len(), 1);
    assert_eq!(fakes.azure().counts().duplicates, 1);
    assert_eq!(
        fakes.azure().totals().values().sum::<Decimal>(),
        Decimal::from(5)
    );
}

#[tokio::test]
async fn azure_single_event_and_reconciliation() {
    let (fakes, token) = azure_fakes().await;
    let url = format!("{}/usageEvent?api-version=2018-08-31", fakes.azure_url());
    let post = |body: Value| client().post(&url).bearer_auth(&token).json(&body).send();
    let r = post(event("2026-11-20T11:00:00Z", 2.5)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ok: Value = r.json().await.unwrap();
    assert_eq!(ok["status"], "Accepted");
    let r = post(event("2026-11-20T11:10:00Z", 2.5)).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let conflict: Value = r.json().await.unwrap();
    assert_eq!(
        conflict["additionalInfo"]["acceptedMessage"]["usageEventId"],
        ok["usageEventId"]
    );
    let r = post(event("2026-11-18T11:00:00Z", 1.0)).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client()
        .get(format!(
            "{}/usageEvents?api-version=2018-08-31&usageStartDate=2026-11-20",
            fakes.azure_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let rows: Value = r.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["usageResourceId"], SUB);
    assert_eq!(rows[0]["processedQuantity"], 2.5);
    assert_eq!(rows[0]["reconStatus"], "Accepted");
}

#[tokio::test]
async fn azure_throttles_with_retry_after_and_fails_partially() {
    let config = FakeConfig {
        azure: AzureConfig {
            requests_per_second: 1,
            burst: 1,
            retry_after_seconds: 7,
            ..AzureConfig::default()
        },
        ..FakeConfig::default()
    };
    let fakes = start(config).await;
    fakes
        .azure()
        .add_subscription(SUB, "plan-a", &["storage_gb"]);
    let token = azure_token(&fakes, &AzureConfig::default().client_secret)
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let _ = azure_batch(&fakes, &token, vec![event("2026-11-20T11:00:00Z", 1.0)]).await;
    let r = client()
        .post(format!(
            "{}/batchUsageEvent?api-version=2018-08-31",
            fakes.azure_url()
        ))
        .bearer_auth(&token)
        .json(&json!({"request": [event("2026-11-20T12:00:00Z", 1.0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fakes.azure().set_faults(FaultConfig {
        partial_batch: 1.0,
        ..FaultConfig::default()
    });
    let (s, body) = azure_batch(&fakes, &token, vec![event("2026-11-20T12:00:00Z", 1.0)]).await;
    assert_eq!(s, 200);
    assert_eq!(body["result"][0]["status"], "Error");
    assert_eq!(fakes.azure().events().len(), 1);
}

// ---------------------------------------------------------------- Google

const SVC: &str = "purser.endpoints.example.cloud.goog";

async fn gcp_fakes() -> FakeMarketplaces {
    let fakes = start(FakeConfig::default()).await;
    let g = fakes.gcp();
    g.add_service(SVC);
    g.add_metric(SVC, "storage_gb", GcpValueType::Double);
    g.add_metric(SVC, "requests", GcpValueType::Int64);
    g.add_consumer(SVC, "project_number:1");
    g.set_consumer_state(
        SVC,
        "project_number:2",
        GcpConsumerState::ServiceNotActivated,
    );
    g.set_consumer_state(SVC, "project_number:3", GcpConsumerState::BillingDisabled);
    fakes
}

async fn gcp_call(
    fakes: &FakeMarketplaces,
    method: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let r = client()
        .post(format!("{}/v1/services/{SVC}:{method}", fakes.gcp_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn op(id: &str, start: &str, end: &str, metric: &str, value: Value) -> Value {
    json!({"operationId": id, "operationName": "usage", "consumerId": "project_number:1", "startTime": start, "endTime": end,
           "metricValueSets": [{"metricName": format!("{SVC}/{metric}"), "metricValues": [value]}]})
}

fn token() -> String {
    GcpConfig::default().token
}

#[tokio::test]
async fn gcp_metadata_token_and_auth() {
    let fakes = gcp_fakes().await;
    let url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        fakes.gcp_metadata_url()
    );
    assert_eq!(
        client().get(&url).send().await.unwrap().status().as_u16(),
        403
    );
    let t: Value = client()
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued = t["access_token"].as_str().unwrap();
    let check = json!({"operation": {"operationId": "op-1", "consumerId": "project_number:1"}});
    let (s, _) = gcp_call(&fakes, "check", issued, &check).await;
    assert_eq!(s, 200);
    let (s, v) = gcp_call(&fakes, "check", "nope", &check).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let r = client()
        .post(format!(
            "{}/v1/services/other.example:check",
            fakes.gcp_url()
        ))
        .bearer_auth(token())
        .json(&check)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn gcp_check_errors() {
    let fakes = gcp_fakes().await;
    for (consumer, code) in [
        ("project_number:9", Some("CONSUMER_INVALID")),
        ("project_number:2", Some("SERVICE_NOT_ACTIVATED")),
        ("project_number:3", Some("BILLING_DISABLED")),
        ("project_number:1", None),
    ] {
        let (s, v) = gcp_call(
            &fakes,
            "check",
            &token(),
            &json!({"operation": {"operationId": "op-7", "consumerId": consumer}}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["operationId"], "op-7");
        assert_eq!(v["checkErrors"][0]["code"].as_str(), code, "{consumer}");
    }
}

#[tokio::test]
async fn gcp_report_dedups_and_records_adjoining_intervals() {
    let fakes = gcp_fakes().await;
    let ops = json!({"operations": [
        op("a", "2026-11-20T11:00:00Z", "2026-11-20T11:30:00Z", "storage_gb", json!({"doubleValue": 1.5})),
        op("b", "2026-11-20T11:30:00Z", "2026-11-20T12:30:00Z", "storage_gb", json!({"doubleValue": 2.5})),
    ]});
    let (s, v) = gcp_call(&fakes, "report", &token(), &ops).await;
    assert_eq!(s, 200);
    assert!(v.get("reportErrors").is_none(), "{v}");
    let (s, _) = gcp_call(&fakes, "report", &token(), &ops).await;
    assert_eq!(s, 200);
    assert_eq!(fakes.gcp().counts().resends, 2);
    assert_eq!(fakes.gcp().usage().len(), 2);
    let metric = format!("{SVC}/storage_gb");
    assert!(
        fakes
            .gcp()
            .continuity("project_number:1", &metric)
            .is_empty()
    );
    assert_eq!(
        fakes.gcp().totals()[&("project_number:1".to_owned(), metric.clone())],
        Decimal::from(4)
    );
    let gap = json!({"operations": [op("c", "2026-11-20T12:31:00Z", "2026-11-20T12:34:00Z", "storage_gb", json!({"doubleValue": 1}))]});
    gcp_call(&fakes, "report", &token(), &gap).await;
    assert_eq!(
        fakes.gcp().continuity("project_number:1", &metric),
        vec![Continuity::Gap {
            from: "2026-11-20T12:30:00Z".parse().unwrap(),
            to: "2026-11-20T12:31:00Z".parse().unwrap()
        }]
    );
}

#[tokio::test]
async fn gcp_report_errors_per_operation() {
    let fakes = gcp_fakes().await;
    let mut no_end = op(
        "e1",
        "2026-11-20T11:00:00Z",
        "2026-11-20T12:00:00Z",
        "requests",
        json!({"int64Value": "3"}),
    );
    no_end.as_object_mut().unwrap().remove("endTime");
    let mut no_consumer = op(
        "e6",
        "2026-11-20T11:00:00Z",
        "2026-11-20T12:00:00Z",
        "requests",
        json!({"int64Value": "3"}),
    );
    no_consumer.as_object_mut().unwrap().remove("consumerId");
    let ops = json!({"operations": [
        no_end,
        op("e2", "2026-11-20T12:00:00Z", "2026-11-20T11:00:00Z", "requests", json!({"int64Value": "3"})),
        op("e3", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z", "unknown", json!({"int64Value": "3"})),
        op("e4", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z", "requests", json!({"int64Value": 3})),
        op("e5", "2026-11-20T10:00:00Z", "2026-11-20T11:29:00Z", "requests", json!({"int64Value": "3"})),
        no_consumer,
        op("ok", "2026-11-20T11:30:00Z", "2026-11-20T12:30:00Z", "requests", json!({"int64Value": "3"})),
    ]});
    let (s, v) = gcp_call(&fakes, "report", &token(), &ops).await;
    assert_eq!(s, 200);
    let failed: Vec<&str> = v["reportErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["e1", "e2", "e3", "e4", "e5", "e6"]);
    assert!(
        v["reportErrors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"]["code"] == 3)
    );
    assert_eq!(fakes.gcp().usage().len(), 1);
}

#[tokio::test]
async fn gcp_whole_request_refusals_throttle_and_partial_failure() {
    let fakes = gcp_fakes().await;
    let mut twice = op(
        "d",
        "2026-11-20T11:30:00Z",
        "2026-11-20T12:30:00Z",
        "requests",
        json!({"int64Value": "3"}),
    );
    let set = twice["metricValueSets"][0].clone();
    twice["metricValueSets"].as_array_mut().unwrap().push(set);
    let (s, v) = gcp_call(&fakes, "report", &token(), &json!({"operations": [twice]})).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let big = json!({"operations": [], "pad": "x".repeat(1_000_001)});
    let (s, _) = gcp_call(&fakes, "report", &token(), &big).await;
    assert_eq!(s, 400);
    fakes.gcp().set_faults(FaultConfig {
        partial_batch: 1.0,
        ..FaultConfig::default()
    });
    let one = json!({"operations": [op("p", "2026-11-20T11:30:00Z", "2026-11-20T12:30:00Z", "requests", json!({"int64Value": "3"}))]});
    let (s, v) = gcp_call(&fakes, "report", &token(), &one).await;
    assert_eq!(s, 200);
    assert_eq!(v["reportErrors"][0]["status"]["code"], 14);
    fakes.gcp().set_faults(FaultConfig {
        throttle: 1.0,
        ..FaultConfig::default()
    });
    let (s, v) = gcp_call(&fakes, "report", &token(), &one).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED"))
    );
    assert!(fakes.gcp().usage().is_empty());
}

#[tokio::test]
async fn latency_is_applied() {
    let fakes = start(FakeConfig {
        latency: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await;
    let begun = std::time::Instant::now();
    let _ = client()
        .get(format!(
            "{}/computeMetadata/v1/project/project-id",
            fakes.gcp_metadata_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await;
    let _ = aws(&fakes, json!({"UsageRecords": []})).await;
    assert!(begun.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn demo_registry_accepts_usage() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .unwrap();
    let demo = seed_demo(&fakes);
    let ts = hour_of_now(&fakes);
    let body = json!({"UsageRecords": [{"Timestamp": ts, "Dimension": "requests", "CustomerAWSAccountId": demo.aws_account_id, "LicenseArn": demo.aws_license_arn, "QuantityAsDecimal": "1"}]});
    let (s, v) = aws(&fakes, body).await;
    assert_eq!(
        (s, v["Results"][0]["Status"].as_str()),
        (200, Some("Success")),
        "{v}"
    );
}

fn hour_of_now(fakes: &FakeMarketplaces) -> i64 {
    fakes.clock().now().as_second() / 3600 * 3600
}

/// The emulator harness leaves nothing behind: gcloud and its Java child are gone once
/// the harness is dropped, and the port no longer answers.
#[tokio::test]
async fn pubsub_emulator_is_killed_with_its_children_on_drop() {
    let emulator = purser_fakes::PubSubEmulator::start()
        .await
        .expect("emulator");
    let url = emulator.url();
    let pid = emulator.pid();
    let answer = reqwest::get(&url).await.expect("answers");
    assert!(answer.status().is_success());
    drop(emulator);
    // The whole process group: `kill -0 -PGID` fails once no member is left.
    let mut gone = false;
    for _ in 0..50 {
        let alive = std::process::Command::new("kill")
            .args(["-0", "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("kill")
            .success();
        if !alive {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "processes of group {pid} are still running");
    assert!(reqwest::get(&url).await.is_err(), "the port still answers");
}

/// The demo subscriptions can be taken up by the clients' calls.
#[tokio::test]
async fn demo_subscriptions_are_seeded() {
    let fakes = start(FakeConfig::default()).await;
    let demo = purser_fakes::seed_demo_subscriptions(&fakes)
        .await
        .expect("seed");
    let entitlement = fakes
        .procurement()
        .entitlement(&demo.gcp_entitlement_id)
        .expect("ent");
    assert_eq!(entitlement.state, "ENTITLEMENT_ACTIVATION_REQUESTED");
    let id: uuid::Uuid = demo.azure_subscription_id.parse().expect("uuid");
    assert_eq!(
        fakes.fulfillment().subscription(id).expect("sub").status,
        "PendingFulfillmentStart"
    );
    assert!(!demo.aws_registration_token.is_empty());
}

// ---------------------------------------------------------------- AWS SaaS

async fn aws_saas_call(
    fakes: &FakeMarketplaces,
    endpoint: &str,
    target: &str,
    body: Value,
) -> (u16, Value) {
    let config = AwsConfig::default();
    aws_try_at(
        endpoint,
        target,
        body.to_string().as_bytes(),
        &config.secret_access_key,
        &config.access_key_id,
        false,
        fakes.clock().now(),
        &client(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn aws_get_entitlements_enforces_the_model() {
    let fakes = start(FakeConfig::default()).await;
    let url = fakes.aws_entitlement_url();
    let target = "AWSMPEntitlementService.GetEntitlements";
    fakes.aws_saas().add_entitlement(FakeAwsEntitlement {
        product_code: "prod-1".into(),
        dimension: "storage".into(),
        customer_identifier: Some("cust-1".into()),
        customer_aws_account_id: Some("123456789012".into()),
        license_arn: None,
        value: FakeEntitlementValue::Integer(5),
        expiration_date: None,
    });
    let (status, body) =
        aws_saas_call(&fakes, &url, target, json!({"ProductCode": "prod-1"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Entitlements"][0]["Value"]["IntegerValue"], 5);
    for bad in [
        json!({}),
        json!({"ProductCode": ""}),
        json!({"ProductCode": "prod-1", "MaxResults": 26}),
        json!({"ProductCode": "prod-1", "MaxResults": 0}),
        json!({"ProductCode": "prod-1", "Filter": {"CUSTOMER_IDENTIFIER": ["c"], "CUSTOMER_AWS_ACCOUNT_ID": ["1"]}}),
        json!({"ProductCode": "prod-1", "Filter": {"REGION": ["us-east-1"]}}),
        json!({"ProductCode": "prod-1", "Filter": {"DIMENSION": []}}),
        json!({"ProductCode": "prod-1", "NextToken": "forged"}),
    ] {
        let (status, answer) = aws_saas_call(&fakes, &url, target, bad.clone()).await;
        assert_eq!(
            (status, error_type(&answer)),
            (400, "InvalidParameterException"),
            "{bad}"
        );
    }
    let (status, answer) =
        aws_saas_call(&fakes, &url, "AWSMPEntitlementService.Other", json!({})).await;
    assert_eq!(
        (status, error_type(&answer)),
        (400, "UnknownOperationException")
    );
    let unsigned = client()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(json!({"ProductCode": "prod-1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    // A signature for another secret is refused.
    let config = AwsConfig::default();
    let (status, answer) = aws_try_at(
        &url,
        target,
        json!({"ProductCode": "prod-1"}).to_string().as_bytes(),
        "wrong-secret",
        &config.access_key_id,
        false,
        fakes.clock().now(),
        &client(),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, error_type(&answer)),
        (403, "InvalidSignatureException")
    );
}

#[tokio::test]
async fn aws_resolve_customer_refuses_missing_and_unknown_tokens() {
    let fakes = start(FakeConfig::default()).await;
    let url = fakes.aws_url();
    let target = "AWSMPMeteringService.ResolveCustomer";
    let (status, answer) = aws_saas_call(&fakes, &url, target, json!({})).await;
    assert_eq!(
        (status, error_type(&answer)),
        (400, "InvalidTokenException")
    );
    let (status, answer) =
        aws_saas_call(&fakes, &url, target, json!({"RegistrationToken": "x"})).await;
    assert_eq!(
        (status, error_type(&answer)),
        (400, "InvalidTokenException")
    );
    // A token older than the fake's lifetime has expired.
    let token = fakes.aws_saas().issue_registration_token(AwsSaasCustomer {
        product_code: "prod-1".into(),
        customer_aws_account_id: "123456789012".into(),
        license_arn: None,
        customer_identifier: Some("cust-1".into()),
    });
    fakes.clock().advance(SignedDuration::from_hours(2));
    let (status, answer) =
        aws_saas_call(&fakes, &url, target, json!({"RegistrationToken": token})).await;
    assert_eq!(
        (status, error_type(&answer)),
        (400, "ExpiredTokenException")
    );
}

#[tokio::test]
async fn procurement_test_controls_follow_the_state_machine() {
    let fakes = start(FakeConfig::default()).await;
    let procurement = fakes.procurement();
    let id = procurement
        .order(EntitlementOrder {
            account_id: "a".into(),
            product: "p".into(),
            plan: "standard".into(),
            ..EntitlementOrder::default()
        })
        .await
        .unwrap();
    // Not active yet: no plan change, no cancellation revert.
    assert!(matches!(
        procurement.request_plan_change(&id, "premium").await,
        Err(FakeError::State(_))
    ));
    assert!(matches!(
        procurement.revert_cancellation(&id).await,
        Err(FakeError::State(_))
    ));
    assert!(matches!(
        procurement.delete_entitlement(&id).await,
        Err(FakeError::State(_))
    ));
    let events: Vec<String> = procurement
        .published()
        .iter()
        .map(|m| m["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        vec!["ACCOUNT_ACTIVE", "ENTITLEMENT_CREATION_REQUESTED"]
    );
    assert_eq!(procurement.published()[1]["entitlement"]["id"], id.as_str());
    // Without a connected topic nothing fails: notifications are only recorded.
    assert!(procurement.publish_failures().is_empty());
}

#[tokio::test]
async fn fulfillment_test_controls_follow_the_statuses() {
    let fakes = start(FakeConfig::default()).await;
    let saas = fakes.fulfillment();
    let (id, _) = saas.purchase("o", "gold", None);
    // Pending: no plan change, suspension or reinstatement; unsubscribing is allowed.
    assert!(saas.change_plan(id, "silver").is_err());
    assert!(saas.suspend(id).is_err());
    assert!(saas.reinstate(id).is_err());
    let op = saas.unsubscribe(id).unwrap();
    assert_eq!(saas.operation(op).unwrap().status, "Succeeded");
    assert_eq!(saas.subscription(id).unwrap().status, "Unsubscribed");
    assert!(saas.renew(id).is_err());
    // No webhook URL: no deliveries.
    assert!(saas.deliveries().is_empty());
}

#[tokio::test]
async fn fulfillment_webhooks_give_up_after_the_configured_tries() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", closed.local_addr().unwrap());
    drop(closed);
    let fakes = start(FakeConfig {
        fulfillment: FulfillmentConfig {
            webhook_url: Some(url),
            webhook_attempts: 3,
            webhook_retry_interval: Duration::from_millis(5),
            ..FulfillmentConfig::default()
        },
        ..FakeConfig::default()
    })
    .await;
    let (id, _) = fakes.fulfillment().purchase("o", "gold", None);
    fakes.fulfillment().unsubscribe(id).unwrap();
    let deliveries = fakes
        .fulfillment()
        .wait_for_deliveries(1, Duration::from_secs(5))
        .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].attempts, deliveries[0].delivered),
        (3, false)
    );
    assert_eq!(deliveries[0].last_status, None);
    assert_eq!(deliveries[0].body["action"], "Unsubscribe");
}
