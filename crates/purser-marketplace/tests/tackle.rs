//! The Tackle client against the Tackle fake over HTTP: one PUT a record, 409 read as
//! "already forwarded" and decided by the ledger's uncertainty, zero never sent, no
//! POST ever, refusals, throttling and lost answers.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::str::FromStr;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use purser_core::account::Marketplace;
use purser_core::marketplace::{DeliveryState, record_key};
use purser_fakes::{FakeClock, FakeConfig, FakeMarketplaces, FaultConfig};
use purser_marketplace::{
    Binding, MeteringClient, RecordOutcome, Route, Secret, SecretSource, TackleClient,
    TackleConfig, UsageRecord,
};
use rust_decimal::Decimal;

const PRODUCT: &str = "prod-tackle-1";

fn hour() -> Timestamp {
    "2026-11-10T13:00:00Z".parse().expect("hour")
}

fn record(cloud: Marketplace, customer: &str, dim: &str, q: &str) -> UsageRecord {
    UsageRecord {
        key: record_key(cloud, customer, dim, hour()),
        account_id: customer.into(),
        dimension: dim.into(),
        marketplace_dimension: dim.into(),
        hour: hour(),
        quantity: Decimal::from_str(q).expect("decimal"),
        whole_units: false,
        binding: Binding::Tackle {
            cloud,
            product_id: PRODUCT.into(),
            customer_id: customer.into(),
        },
    }
}

/// The fakes on a clock stopped 20 minutes after the test hour's end, with one AWS and
/// one Google customer registered with Tackle.
async fn fakes(config: FakeConfig) -> (FakeMarketplaces, TackleConfig) {
    let fakes = FakeMarketplaces::start(FakeConfig {
        clock: FakeClock::fixed(hour() + SignedDuration::from_mins(80)),
        ..config.clone()
    })
    .await
    .expect("fakes");
    fakes
        .tackle()
        .add_customer(PRODUCT, "cust-aws", "aws", &["written"]);
    fakes
        .tackle()
        .add_customer(PRODUCT, "cust-gcp", "gcp", &["written"]);
    let mut client = TackleConfig::new(SecretSource::Inline(Secret::new(
        config.tackle.access_token.clone(),
    )));
    client.base_url = fakes.tackle_url();
    client.request_timeout_ms = 200;
    (fakes, client)
}

fn no_token(s: &purser_marketplace::Submission, token: &str) {
    let text = serde_json::to_string(&s.exchanges).expect("json");
    assert!(!text.contains(token), "an exchange holds the token: {text}");
}

#[tokio::test]
async fn records_are_put_once_and_forwarded_with_end_time_for_google() {
    let config = FakeConfig::default();
    let (fakes, client_config) = fakes(config.clone()).await;
    let aws = TackleClient::new(&client_config, Marketplace::Aws).expect("client");
    let gcp = TackleClient::new(&client_config, Marketplace::Gcp).expect("client");
    assert_eq!(
        (aws.route(), aws.marketplace()),
        (Route::Tackle, Marketplace::Aws)
    );
    assert_eq!(aws.rules().max_records_per_request, 1);

    let records = vec![
        record(Marketplace::Aws, "cust-aws", "written", "12.5"),
        // Another route's record and another cloud's are never sent.
        UsageRecord {
            binding: Binding::AwsLegacy {
                customer_identifier: "c".into(),
                product_code: "p".into(),
            },
            ..record(Marketplace::Aws, "direct", "written", "1")
        },
        record(Marketplace::Gcp, "cust-gcp", "written", "1"),
    ];
    let s = aws.submit(&records).await;
    assert!(
        matches!(&s.outcomes[0].1, RecordOutcome::Accepted { marketplace_id: Some(id) } if !id.is_empty()),
        "{:?}",
        s.outcomes
    );
    assert!(
        matches!(&s.outcomes[1].1, RecordOutcome::Refused { code, .. } if code == "wrong_route")
    );
    assert!(
        matches!(&s.outcomes[2].1, RecordOutcome::Refused { code, .. } if code == "wrong_marketplace")
    );
    assert_eq!(s.exchanges.len(), 1, "one PUT, for the one record sent");
    assert_eq!(s.exchanges[0].method, "PUT");
    assert!(s.exchanges[0].url.ends_with("/v1/metering/usage-records"));
    assert!(
        s.exchanges[0]
            .request_body
            .contains("\"start_time\":\"2026-11-10 13:00:00.000000\"")
    );
    no_token(&s, &config.tackle.access_token);

    let g = gcp.submit(&records[2..]).await;
    assert!(g.outcomes[0].1.is_accepted(), "{:?}", g.outcomes);
    assert!(
        g.exchanges[0]
            .request_body
            .contains("\"end_time\":\"2026-11-10 14:00:00.000000\"")
    );

    let forwarded = fakes.tackle().records();
    assert_eq!(forwarded.len(), 2);
    assert_eq!(
        (forwarded[0].customer_id.as_str(), forwarded[0].quantity),
        ("cust-aws", Decimal::from_str("12.5").unwrap())
    );
    assert!(forwarded.iter().all(|r| !r.zero_fill && r.hour == hour()));
    assert_eq!(fakes.tackle().counts().posts, 0);
}

#[tokio::test]
async fn a_lost_answer_then_409_is_ours_and_accepted_once() {
    let config = FakeConfig {
        faults: FaultConfig {
            timeout_after_apply: 1.0,
            hang: Duration::from_millis(600),
            ..FaultConfig::default()
        },
        ..FakeConfig::default()
    };
    let (fakes, client_config) = fakes(config).await;
    let client = TackleClient::new(&client_config, Marketplace::Aws).expect("client");
    let r = record(Marketplace::Aws, "cust-aws", "written", "3");
    // Tackle took it and forwarded it; the answer never came.
    let first = client.submit(std::slice::from_ref(&r)).await;
    assert!(
        matches!(
            first.outcomes[0].1,
            RecordOutcome::Retry {
                may_have_applied: true,
                ..
            }
        ),
        "{:?}",
        first.outcomes
    );
    fakes.tackle().set_faults(FaultConfig::default());
    let again = client.submit(std::slice::from_ref(&r)).await;
    let outcome = &again.outcomes[0].1;
    assert!(
        matches!(outcome, RecordOutcome::AlreadyForwarded { .. }),
        "{outcome:?}"
    );
    // The ledger marked the record uncertain after the lost answer: the 409 is ours.
    assert_eq!(
        DeliveryState::after_given(outcome, true),
        DeliveryState::Accepted
    );
    let forwarded = fakes.tackle().records();
    assert_eq!(forwarded.len(), 1, "billed once");
    assert_eq!(forwarded[0].quantity, Decimal::from(3));
    assert_eq!(fakes.tackle().counts().conflicts, 1);
}

#[tokio::test]
async fn a_409_on_a_first_attempt_after_tackles_zero_fill_is_a_conflict() {
    let (fakes, client_config) = fakes(FakeConfig::default()).await;
    let client = TackleClient::new(&client_config, Marketplace::Aws).expect("client");
    // Purser is late: Tackle has sent its own zero for every registered dimension.
    assert_eq!(fakes.tackle().zero_fill(hour()), 2);
    let s = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "4")])
        .await;
    let outcome = &s.outcomes[0].1;
    assert!(
        matches!(outcome, RecordOutcome::AlreadyForwarded { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        DeliveryState::after_given(outcome, false),
        DeliveryState::Conflict
    );
    let forwarded = fakes.tackle().records();
    assert!(
        forwarded
            .iter()
            .all(|r| r.zero_fill && r.quantity.is_zero())
    );
}

#[tokio::test]
async fn zero_is_never_sent_refusals_are_final_and_throttling_is_retried_after_its_delay() {
    let config = FakeConfig::default();
    let (fakes, client_config) = fakes(config.clone()).await;
    let client = TackleClient::new(&client_config, Marketplace::Aws).expect("client");
    let zero = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "0")])
        .await;
    assert!(
        matches!(&zero.outcomes[0].1, RecordOutcome::Refused { code, .. } if code == "zero_quantity")
    );
    assert!(zero.exchanges.is_empty());
    assert_eq!(
        fakes.tackle().counts().requests,
        0,
        "zero never reached Tackle"
    );

    let unknown = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "egress", "1")])
        .await;
    assert!(
        matches!(&unknown.outcomes[0].1, RecordOutcome::Refused { code, message } if code == "HTTP 400" && message.contains("egress")),
        "{:?}",
        unknown.outcomes
    );

    fakes.tackle().set_faults(FaultConfig {
        throttle: 1.0,
        ..FaultConfig::default()
    });
    let throttled = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "1")])
        .await;
    assert!(matches!(
        throttled.outcomes[0].1,
        RecordOutcome::Retry {
            may_have_applied: false,
            ..
        }
    ));
    assert_eq!(throttled.retry_after, Some(Duration::from_secs(1)));
    fakes.tackle().set_faults(FaultConfig::default());
    let resent = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "1")])
        .await;
    assert!(resent.outcomes[0].1.is_accepted(), "{:?}", resent.outcomes);

    // A wrong token is retried (credentials), never refused for good.
    let mut wrong = client_config.clone();
    wrong.access_token = SecretSource::Inline(Secret::new("not-the-token"));
    let wrong = TackleClient::new(&wrong, Marketplace::Aws).expect("client");
    let s = wrong
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "2")])
        .await;
    assert!(matches!(
        s.outcomes[0].1,
        RecordOutcome::Retry {
            may_have_applied: false,
            ..
        }
    ));
    assert_eq!(fakes.tackle().counts().unauthorized, 1);
    assert_eq!(fakes.tackle().counts().posts, 0, "Purser never POSTs");
}

#[tokio::test]
async fn the_fake_holds_a_record_until_it_forwards_it_and_refuses_post() {
    let mut config = FakeConfig::default();
    config.tackle.forward_after = SignedDuration::from_mins(30);
    let (fakes, client_config) = fakes(config.clone()).await;
    let client = TackleClient::new(&client_config, Marketplace::Aws).expect("client");
    for q in ["5", "7"] {
        let s = client
            .submit(&[record(Marketplace::Aws, "cust-aws", "written", q)])
            .await;
        assert!(s.outcomes[0].1.is_accepted(), "{:?}", s.outcomes);
    }
    // Held, not yet forwarded; the second PUT replaced the quantity.
    assert!(fakes.tackle().records().is_empty());
    assert_eq!(fakes.tackle().counts().updated, 1);
    fakes.clock().advance(SignedDuration::from_mins(31));
    let forwarded = fakes.tackle().records();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].quantity, Decimal::from(7));
    let late = client
        .submit(&[record(Marketplace::Aws, "cust-aws", "written", "9")])
        .await;
    assert!(matches!(
        late.outcomes[0].1,
        RecordOutcome::AlreadyForwarded { .. }
    ));

    // POST creates duplicates on Tackle: the fake refuses it and counts it.
    let post = reqwest::Client::new()
        .post(format!("{}/v1/metering/usage-records", fakes.tackle_url()))
        .bearer_auth(&config.tackle.access_token)
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(fakes.tackle().counts().posts, 1);
}
