//! AWS Marketplace SaaS subscriptions: `ResolveCustomer` (Metering Service, which the
//! registration page's `x-amzn-marketplace-token` goes to) and `GetEntitlements`
//! (Entitlement Service), both JSON 1.1 signed with SigV4 under the signing name
//! `aws-marketplace` (contracts/aws/meteringmarketplace.service-2.json and
//! contracts/aws/marketplace-entitlement.service-2.json, botocore 1.44.5, read
//! 2026-12-01). The Entitlement Service's model prefers smithy-rpc-v2-cbor but lists
//! `json` among its protocols; JSON keeps one protocol for every AWS call.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use jiff::Timestamp;
use purser_core::account::Marketplace;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::api;
use crate::aws::{SigningTarget, credentials, signed_json_request};
use crate::azure::decimal_from_json;
use crate::http;
use crate::secret::SecretSource;
use crate::{ClientError, Clock, system_clock};

/// The model's `signingName`, the same for both services.
const SIGNING_NAME: &str = "aws-marketplace";
const RESOLVE_TARGET: &str = "AWSMPMeteringService.ResolveCustomer";
const ENTITLEMENTS_TARGET: &str = "AWSMPEntitlementService.GetEntitlements";
/// (ResolveCustomer's target, GetEntitlements' target, signing name), for contract tests.
pub(crate) const TARGETS: (&str, &str, &str) = (RESOLVE_TARGET, ENTITLEMENTS_TARGET, SIGNING_NAME);
/// `PageSizeInteger` max.
const MAX_RESULTS: u32 = 25;
/// More pages than this is a loop.
const MAX_PAGES: usize = 100_000;

/// The seller account's credentials and the two services' endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSaasConfig {
    pub region: String,
    /// Defaults to `https://metering.marketplace.{region}.amazonaws.com` (endpointPrefix).
    #[serde(default)]
    pub metering_base_url: Option<String>,
    /// Defaults to `https://entitlement.marketplace.{region}.amazonaws.com`
    /// (endpointPrefix `entitlement.marketplace`; AWS serves it in us-east-1).
    #[serde(default)]
    pub entitlement_base_url: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: SecretSource,
    #[serde(default)]
    pub session_token: Option<SecretSource>,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl AwsSaasConfig {
    pub fn new(
        region: &str,
        access_key_id: &str,
        secret_access_key: SecretSource,
    ) -> AwsSaasConfig {
        AwsSaasConfig {
            region: region.into(),
            metering_base_url: None,
            entitlement_base_url: None,
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }
}

/// What `ResolveCustomer` answers (`ResolveCustomerResult`). New integrations get
/// `customer_aws_account_id` and `license_arn` and no `customer_identifier` (the
/// model's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedCustomer {
    #[serde(rename = "CustomerIdentifier", default)]
    pub customer_identifier: Option<String>,
    #[serde(rename = "ProductCode", default)]
    pub product_code: Option<String>,
    #[serde(rename = "CustomerAWSAccountId", default)]
    pub customer_aws_account_id: Option<String>,
    #[serde(rename = "LicenseArn", default)]
    pub license_arn: Option<String>,
    /// The model's `Metadata` map, when present.
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<Value>,
}

/// `GetEntitlements`' `Filter` (keys of `GetEntitlementFilterName`): values are unioned
/// within a key and keys intersected; CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID
/// are mutually exclusive (the model's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitlementFilter {
    pub customer_identifier: Vec<String>,
    pub customer_aws_account_id: Vec<String>,
    pub license_arn: Vec<String>,
    pub dimension: Vec<String>,
}

impl EntitlementFilter {
    pub fn account(account_id: &str) -> EntitlementFilter {
        EntitlementFilter {
            customer_aws_account_id: vec![account_id.into()],
            ..EntitlementFilter::default()
        }
    }

    pub fn license(license_arn: &str) -> EntitlementFilter {
        EntitlementFilter {
            license_arn: vec![license_arn.into()],
            ..EntitlementFilter::default()
        }
    }

    pub fn customer(customer_identifier: &str) -> EntitlementFilter {
        EntitlementFilter {
            customer_identifier: vec![customer_identifier.into()],
            ..EntitlementFilter::default()
        }
    }

    pub(crate) fn to_json(&self) -> Result<Option<Value>, String> {
        if !self.customer_identifier.is_empty() && !self.customer_aws_account_id.is_empty() {
            return Err(
                "CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID are mutually exclusive".into(),
            );
        }
        let mut map = BTreeMap::new();
        for (key, values) in [
            ("CUSTOMER_IDENTIFIER", &self.customer_identifier),
            ("CUSTOMER_AWS_ACCOUNT_ID", &self.customer_aws_account_id),
            ("LICENSE_ARN", &self.license_arn),
            ("DIMENSION", &self.dimension),
        ] {
            if !values.is_empty() {
                map.insert(key, values.clone());
            }
        }
        Ok((!map.is_empty()).then(|| json!(map)))
    }
}

/// `EntitlementValue`: exactly one of its members is set, by the dimension's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum EntitlementValue {
    Integer(i64),
    /// Read from the JSON number's text, exactly.
    Double(Decimal),
    Boolean(bool),
    String(String),
    /// No value (a dimension without a quantity).
    None,
}

/// One entitlement (`Entitlement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsEntitlement {
    pub product_code: Option<String>,
    pub dimension: Option<String>,
    pub customer_identifier: Option<String>,
    pub customer_aws_account_id: Option<String>,
    pub license_arn: Option<String>,
    pub value: EntitlementValue,
    /// For contracts, the date the entitlement renews or ends.
    pub expiration_date: Option<Timestamp>,
}

#[derive(Deserialize)]
struct WireEntitlements {
    #[serde(rename = "Entitlements", default)]
    entitlements: Vec<WireEntitlement>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct WireEntitlement {
    #[serde(rename = "ProductCode")]
    product_code: Option<String>,
    #[serde(rename = "Dimension")]
    dimension: Option<String>,
    #[serde(rename = "CustomerIdentifier")]
    customer_identifier: Option<String>,
    #[serde(rename = "CustomerAWSAccountId")]
    customer_aws_account_id: Option<String>,
    #[serde(rename = "LicenseArn")]
    license_arn: Option<String>,
    #[serde(rename = "Value")]
    value: Option<WireValue>,
    /// JSON 1.1 timestamps are epoch seconds, possibly fractional.
    #[serde(rename = "ExpirationDate")]
    expiration_date: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct WireValue {
    #[serde(rename = "IntegerValue")]
    integer_value: Option<i64>,
    #[serde(rename = "DoubleValue")]
    double_value: Option<Box<RawValue>>,
    #[serde(rename = "BooleanValue")]
    boolean_value: Option<bool>,
    #[serde(rename = "StringValue")]
    string_value: Option<String>,
}

/// The ResolveCustomer and GetEntitlements client.
pub struct AwsSaasClient {
    http: reqwest::Client,
    metering_url: String,
    entitlement_url: String,
    region: String,
    credentials: Credentials,
    clock: Clock,
}

impl AwsSaasClient {
    pub fn new(config: &AwsSaasConfig) -> Result<AwsSaasClient, ClientError> {
        if config.region.is_empty() {
            return Err(ClientError::Config("aws: region is required".into()));
        }
        let credentials = credentials(
            &config.access_key_id,
            &config.secret_access_key,
            config.session_token.as_ref(),
        )?;
        let metering = config.metering_base_url.clone().unwrap_or_else(|| {
            format!(
                "https://metering.marketplace.{}.amazonaws.com",
                config.region
            )
        });
        let entitlement = config.entitlement_base_url.clone().unwrap_or_else(|| {
            format!(
                "https://entitlement.marketplace.{}.amazonaws.com",
                config.region
            )
        });
        Ok(AwsSaasClient {
            http: http::build_client(config.request_timeout_ms)?,
            metering_url: format!("{}/", http::trim_base(&metering)),
            entitlement_url: format!("{}/", http::trim_base(&entitlement)),
            region: config.region.clone(),
            credentials,
            clock: system_clock(),
        })
    }

    /// Signs at `clock`'s time (tests).
    pub fn with_clock(mut self, clock: Clock) -> AwsSaasClient {
        self.clock = clock;
        self
    }

    async fn call(
        &self,
        operation: &'static str,
        url: &str,
        target: &str,
        body: String,
    ) -> Result<String, ClientError> {
        let request = signed_json_request(
            &self.http,
            &SigningTarget {
                url,
                region: &self.region,
                signing_name: SIGNING_NAME,
                target,
            },
            &self.credentials,
            SystemTime::from((self.clock)()),
            &body,
        )
        .map_err(|message| ClientError::InvalidArgument { operation, message })?;
        let answer = api::send(&self.http, request, Marketplace::Aws, operation, body).await?;
        if !answer.is_success() {
            return Err(api::refusal(operation, &answer));
        }
        Ok(answer.body)
    }

    /// `ResolveCustomer` of the registration token the buyer's browser posted. AWS asks
    /// that it be redeemed at once: a token held too long or submitted twice is refused
    /// with `ExpiredTokenException` (the model's documentation).
    pub async fn resolve_customer(
        &self,
        registration_token: &str,
    ) -> Result<ResolvedCustomer, ClientError> {
        if registration_token.is_empty() {
            return Err(ClientError::InvalidArgument {
                operation: "ResolveCustomer",
                message: "RegistrationToken is empty (NonEmptyString)".into(),
            });
        }
        let body = json!({ "RegistrationToken": registration_token }).to_string();
        let text = self
            .call("ResolveCustomer", &self.metering_url, RESOLVE_TARGET, body)
            .await?;
        api::decode("ResolveCustomer", &text)
    }

    /// Every entitlement of `product_code` matching `filter`, following `NextToken` (a
    /// page may be empty and still have one, the model says).
    pub async fn get_entitlements(
        &self,
        product_code: &str,
        filter: &EntitlementFilter,
    ) -> Result<Vec<AwsEntitlement>, ClientError> {
        let operation = "GetEntitlements";
        if product_code.is_empty() || product_code.chars().count() > 255 {
            return Err(ClientError::InvalidArgument {
                operation,
                message: "ProductCode must have 1..255 characters".into(),
            });
        }
        let filter = filter
            .to_json()
            .map_err(|message| ClientError::InvalidArgument { operation, message })?;
        let mut all = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = entitlements_body(product_code, filter.as_ref(), next_token.as_deref());
            let text = self
                .call(operation, &self.entitlement_url, ENTITLEMENTS_TARGET, body)
                .await?;
            let page: WireEntitlements = api::decode(operation, &text)?;
            for e in page.entitlements {
                all.push(entitlement(e)?);
            }
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(token) if Some(&token) == next_token.as_ref() => {
                    return Err(ClientError::Decode {
                        operation,
                        message: "NextToken repeats the one sent: paging would not end".into(),
                    });
                }
                Some(token) => next_token = Some(token),
                None => return Ok(all),
            }
        }
        Err(ClientError::Decode {
            operation,
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}

pub(crate) fn entitlements_body(
    product_code: &str,
    filter: Option<&Value>,
    next_token: Option<&str>,
) -> String {
    let mut body = json!({ "ProductCode": product_code, "MaxResults": MAX_RESULTS });
    if let Some(f) = filter {
        body["Filter"] = f.clone();
    }
    if let Some(t) = next_token {
        body["NextToken"] = json!(t);
    }
    body.to_string()
}

fn entitlement(e: WireEntitlement) -> Result<AwsEntitlement, ClientError> {
    let decode = |message: String| ClientError::Decode {
        operation: "GetEntitlements",
        message,
    };
    let value =
        match e.value {
            None => EntitlementValue::None,
            Some(v) => {
                if let Some(i) = v.integer_value {
                    EntitlementValue::Integer(i)
                } else if let Some(d) = v.double_value {
                    EntitlementValue::Double(decimal_from_json(d.get()).ok_or_else(|| {
                        decode(format!("DoubleValue {} is not a number", d.get()))
                    })?)
                } else if let Some(b) = v.boolean_value {
                    EntitlementValue::Boolean(b)
                } else if let Some(s) = v.string_value {
                    EntitlementValue::String(s)
                } else {
                    EntitlementValue::None
                }
            }
        };
    let expiration_date =
        match e.expiration_date {
            None => None,
            Some(raw) => Some(epoch_seconds(raw.get()).ok_or_else(|| {
                decode(format!("ExpirationDate {} is not epoch seconds", raw.get()))
            })?),
        };
    Ok(AwsEntitlement {
        product_code: e.product_code,
        dimension: e.dimension,
        customer_identifier: e.customer_identifier,
        customer_aws_account_id: e.customer_aws_account_id,
        license_arn: e.license_arn,
        value,
        expiration_date,
    })
}

/// A JSON 1.1 timestamp (epoch seconds as a number, fractions allowed) exactly.
fn epoch_seconds(text: &str) -> Option<Timestamp> {
    let seconds = decimal_from_json(text)?;
    let micros = (seconds * Decimal::from(1_000_000)).trunc();
    let micros = i64::try_from(micros).ok()?;
    Timestamp::from_microsecond(micros).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_model() {
        let mut f = EntitlementFilter::account("123456789012");
        f.dimension = vec!["storage".into()];
        let json = f.to_json().expect("ok").expect("some");
        assert_eq!(json["CUSTOMER_AWS_ACCOUNT_ID"][0], "123456789012");
        assert_eq!(json["DIMENSION"][0], "storage");
        f.customer_identifier = vec!["c".into()];
        assert!(f.to_json().is_err());
        assert_eq!(EntitlementFilter::default().to_json(), Ok(None));
    }

    #[test]
    fn expiration_dates_are_epoch_seconds() {
        assert_eq!(
            epoch_seconds("1767225600.5"),
            Some("2026-01-01T00:00:00.5Z".parse().expect("t"))
        );
        assert_eq!(epoch_seconds("\"x\""), None);
    }
}
