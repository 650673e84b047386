//! The fake AWS Marketplace SaaS services: `ResolveCustomer` (answered on the fake
//! metering endpoint, the service it belongs to), `GetEntitlements` (its own endpoint,
//! as `entitlement.marketplace` is), and an SNS publisher that signs notifications with
//! its own RSA key and serves its certificate.
//!
//! Rules, each with its source (contract = botocore 1.44.5's
//! `meteringmarketplace/2016-01-14` and `marketplace-entitlement/2017-01-11` models,
//! vendored in `contracts/aws/`, read through [`crate::contract`]; prose = AWS's
//! saas-notification and SNS signature pages, read 2026-12-01):
//! - Both: JSON 1.1 `POST /` with `X-Amz-Target: <targetPrefix>.<operation>` and SigV4
//!   under the model's signingName (`aws-marketplace`), checked like the metering fake.
//! - ResolveCustomer: `RegistrationToken` required (contract) and a token the fake issued
//!   → else `InvalidTokenException`; a token used before or older than
//!   `AwsSaasConfig::registration_token_lifetime` → `ExpiredTokenException` (contract:
//!   "the buyer has resubmitted the registration token, or your application has held on
//!   to the registration token for too long"). New integrations get no
//!   CustomerIdentifier (contract documentation).
//! - GetEntitlements: `ProductCode` required, 1..255 (contract); `Filter` keys from
//!   `GetEntitlementFilterName`, each with at least one value (`FilterValueList.min`),
//!   CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID not both (contract documentation);
//!   `MaxResults` 1..25 (`PageSizeInteger`); paging by `NextToken`; refusals are
//!   `InvalidParameterException` (the operation's error shapes). Values are unioned
//!   within a key and intersected across keys (contract documentation).
//! - SNS: HTTP POST of the JSON document with `x-amz-sns-message-type`,
//!   `x-amz-sns-message-id` and `x-amz-sns-topic-arn` headers and `text/plain` content
//!   (SNS's "Parsing message formats" page), signed SHA256withRSA (SignatureVersion 2)
//!   or SHA1withRSA (1) over the documented string to sign.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use rsa::pkcs8::EncodePublicKey;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::FakeError;
use crate::aws::{AwsConfig, bad, check_signature};
use crate::clock::FakeClock;
use crate::contract::AwsSaasContract;
use crate::server::random_token;

/// Whom a registration token resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsSaasCustomer {
    pub product_code: String,
    pub customer_aws_account_id: String,
    pub license_arn: Option<String>,
    /// Only legacy integrations get one.
    pub customer_identifier: Option<String>,
}

/// An entitlement value (`EntitlementValue`); a double keeps its exact text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FakeEntitlementValue {
    Integer(i64),
    Double(String),
    Boolean(bool),
    String(String),
}

/// An entitlement the fake answers GetEntitlements with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeAwsEntitlement {
    pub product_code: String,
    pub dimension: String,
    pub customer_identifier: Option<String>,
    pub customer_aws_account_id: Option<String>,
    pub license_arn: Option<String>,
    pub value: FakeEntitlementValue,
    pub expiration_date: Option<Timestamp>,
}

/// One SNS delivery the fake made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnsDelivery {
    /// The body posted, exactly.
    pub body: String,
    pub status: Option<u16>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// token → (customer, issued at, used).
    tokens: HashMap<String, (AwsSaasCustomer, Timestamp, bool)>,
    entitlements: Vec<FakeAwsEntitlement>,
    sns_endpoint: Option<String>,
    sns_cert_base: Option<String>,
    deliveries: Vec<SnsDelivery>,
    resolve_calls: u64,
    entitlement_calls: u64,
    certificate_fetches: u64,
    /// SubscriptionConfirmation tokens issued, by token: (topic, confirmed).
    confirmations: HashMap<String, (String, bool)>,
    confirmation_visits: u64,
}

/// How long a registration token resolves (AWS publishes no figure; "redeem this token
/// as soon as it is submitted").
const REGISTRATION_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_mins(60);

/// A handle to the fake AWS SaaS side.
#[derive(Debug, Clone)]
pub struct AwsSaasFake {
    ledger: Arc<Mutex<Ledger>>,
    clock: FakeClock,
    http: reqwest::Client,
}

/// The fake SNS's signing key and certificate, made once per process (RSA key generation
/// takes a moment).
struct SnsKey {
    key: &'static rsa::PrivateKey,
    certificate_pem: String,
}

fn sns_key() -> Result<&'static SnsKey, FakeError> {
    static KEY: OnceLock<Result<SnsKey, String>> = OnceLock::new();
    KEY.get_or_init(make_sns_key)
        .as_ref()
        .map_err(|e| FakeError::Publish(format!("SNS signing key: {e}")))
}

fn make_sns_key() -> Result<SnsKey, String> {
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, profile};
    use x509_cert::der::EncodePem;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::{Time, Validity};

    let key = crate::keys::rsa_key(crate::keys::KeySlot::Sns);
    let public_der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| e.to_string())?;
    let spki =
        SubjectPublicKeyInfoOwned::try_from(public_der.as_bytes()).map_err(|e| e.to_string())?;
    let subject = Name::from_str("CN=sns.amazonaws.com.purser-fake,O=Purser fake SNS,C=US")
        .map_err(|e| e.to_string())?;
    let year = Duration::from_secs(365 * 24 * 3600);
    let now = SystemTime::now();
    // Valid long before and after now, so tests on a fake clock set in the past or the
    // future still verify.
    let validity = Validity::new(
        Time::try_from(now - 10 * year).map_err(|e| e.to_string())?,
        Time::try_from(now + 10 * year).map_err(|e| e.to_string())?,
    );
    let profile = profile::cabf::Root::new(false, subject).map_err(|e| e.to_string())?;
    let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key.clone());
    let builder = CertificateBuilder::new(profile, SerialNumber::from(1u32), validity, spki)
        .map_err(|e| e.to_string())?;
    let certificate = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(|e| e.to_string())?;
    let certificate_pem = certificate
        .to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok(SnsKey {
        key,
        certificate_pem,
    })
}

/// The certificate's path on the fake's certificate server, shaped like SNS's.
pub const SNS_CERT_PATH: &str = "/SimpleNotificationService-purserfake.pem";

impl AwsSaasFake {
    pub(crate) fn new(clock: FakeClock) -> AwsSaasFake {
        AwsSaasFake {
            ledger: Arc::new(Mutex::new(Ledger::default())),
            clock,
            http: reqwest::Client::new(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buyer subscribes and is redirected to the registration page with this token.
    pub fn issue_registration_token(&self, customer: AwsSaasCustomer) -> String {
        let token = random_token("");
        self.ledger()
            .tokens
            .insert(token.clone(), (customer, self.clock.now(), false));
        token
    }

    pub fn add_entitlement(&self, entitlement: FakeAwsEntitlement) {
        self.ledger().entitlements.push(entitlement);
    }

    /// Drops the entitlements of a license (a contract ended or was replaced).
    pub fn remove_entitlements(&self, license_arn: &str) {
        self.ledger()
            .entitlements
            .retain(|e| e.license_arn.as_deref() != Some(license_arn));
    }

    /// (ResolveCustomer calls, GetEntitlements calls) that reached the fake.
    pub fn calls(&self) -> (u64, u64) {
        let ledger = self.ledger();
        (ledger.resolve_calls, ledger.entitlement_calls)
    }

    /// Posts later SNS notifications to `url` (the endpoint subscribed to the topics).
    pub fn set_sns_endpoint(&self, url: &str) {
        self.ledger().sns_endpoint = Some(url.to_owned());
    }

    pub(crate) fn set_sns_cert_base(&self, base: &str) {
        self.ledger().sns_cert_base = Some(base.to_owned());
    }

    /// Where the signing certificate is served (`SigningCertURL`).
    pub fn sns_certificate_url(&self) -> Option<String> {
        self.ledger()
            .sns_cert_base
            .as_ref()
            .map(|b| format!("{b}{SNS_CERT_PATH}"))
    }

    /// How often the signing certificate was fetched (a verifier should cache it).
    pub fn sns_certificate_fetches(&self) -> u64 {
        self.ledger().certificate_fetches
    }

    pub fn sns_deliveries(&self) -> Vec<SnsDelivery> {
        self.ledger().deliveries.clone()
    }

    /// A signed SNS Notification on `topic_arn` carrying `message`, as SNS would post it
    /// (not sent). `signature_version` is "1" or "2".
    pub fn signed_notification(
        &self,
        topic_arn: &str,
        message: &str,
        subject: Option<&str>,
        signature_version: &str,
    ) -> Result<Value, FakeError> {
        let mut envelope = json!({
            "Type": "Notification",
            "MessageId": uuid::Uuid::new_v4().to_string(),
            "TopicArn": topic_arn,
            "Message": message,
            "Timestamp": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "SignatureVersion": signature_version,
            "UnsubscribeURL": format!("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:fake"),
        });
        if let Some(subject) = subject {
            envelope["Subject"] = json!(subject);
        }
        self.sign(envelope)
    }

    /// The topics whose subscription was confirmed by visiting a SubscribeURL, sorted.
    pub fn confirmed_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .ledger()
            .confirmations
            .values()
            .filter(|(_, confirmed)| *confirmed)
            .map(|(topic, _)| topic.clone())
            .collect();
        topics.sort();
        topics
    }

    /// How often a SubscribeURL was visited, whatever it carried.
    pub fn confirmation_visits(&self) -> u64 {
        self.ledger().confirmation_visits
    }

    /// A signed SubscriptionConfirmation for `topic_arn` (not sent). Its SubscribeURL
    /// is the fake's own ConfirmSubscription (on the certificate server, so the same
    /// trusted prefix covers both), or SNS's real one when that server is not running.
    pub fn signed_subscription_confirmation(&self, topic_arn: &str) -> Result<Value, FakeError> {
        let token = random_token("");
        let base = {
            let mut ledger = self.ledger();
            ledger
                .confirmations
                .insert(token.clone(), (topic_arn.to_owned(), false));
            ledger
                .sns_cert_base
                .clone()
                .unwrap_or_else(|| "https://sns.us-east-1.amazonaws.com".into())
        };
        let envelope = json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": uuid::Uuid::new_v4().to_string(),
            "Token": token,
            "TopicArn": topic_arn,
            "Message": format!("You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
            "SubscribeURL": format!("{base}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}"),
            "Timestamp": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "SignatureVersion": "2",
        });
        self.sign(envelope)
    }

    fn sign(&self, mut envelope: Value) -> Result<Value, FakeError> {
        let cert_url = self.sns_certificate_url().ok_or_else(|| {
            FakeError::Publish("the SNS certificate server is not running".into())
        })?;
        envelope["SigningCertURL"] = json!(cert_url);
        let text = string_to_sign(&envelope)?;
        let key = sns_key()?;
        let signature = match envelope["SignatureVersion"].as_str() {
            Some("1") => key.key.pkcs1v15_sign::<sha1::Sha1>(text.as_bytes()),
            _ => key.key.pkcs1v15_sign::<rsa::sha2::Sha256>(text.as_bytes()),
        }
        .map_err(|e| FakeError::Publish(format!("signing: {e}")))?;
        envelope["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature));
        Ok(envelope)
    }

    /// Posts `envelope` to the SNS endpoint as SNS does, and records the delivery.
    pub async fn deliver(&self, envelope: &Value) -> Result<SnsDelivery, FakeError> {
        let endpoint = self
            .ledger()
            .sns_endpoint
            .clone()
            .ok_or_else(|| FakeError::Publish("no SNS endpoint set".into()))?;
        let body = envelope.to_string();
        let header = |k: &str| envelope[k].as_str().unwrap_or("").to_owned();
        let status = self
            .http
            .post(&endpoint)
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", header("Type"))
            .header("x-amz-sns-message-id", header("MessageId"))
            .header("x-amz-sns-topic-arn", header("TopicArn"))
            .body(body.clone())
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        let delivery = SnsDelivery { body, status };
        self.ledger().deliveries.push(delivery.clone());
        Ok(delivery)
    }

    /// Publishes a marketplace message (`{"action", "customer-identifier", …}`) on the
    /// product's subscription or entitlement topic, signed with SignatureVersion 2.
    pub async fn notify(
        &self,
        product_code: &str,
        message: Value,
    ) -> Result<SnsDelivery, FakeError> {
        let topic = if message["action"] == "entitlement-updated" {
            format!(
                "arn:aws:sns:us-east-1:287250355862:aws-mp-entitlement-notification-{product_code}"
            )
        } else {
            format!(
                "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-{product_code}"
            )
        };
        let envelope = self.signed_notification(&topic, &message.to_string(), None, "2")?;
        self.deliver(&envelope).await
    }
}

/// SNS's string to sign (the fake's own reading of the documented order).
fn string_to_sign(envelope: &Value) -> Result<String, FakeError> {
    let fields: &[&str] = match envelope["Type"].as_str() {
        Some("Notification") => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    let mut out = String::new();
    for field in fields {
        match envelope[*field].as_str() {
            Some(value) => {
                out.push_str(field);
                out.push('\n');
                out.push_str(value);
                out.push('\n');
            }
            None if *field == "Subject" => {}
            None => return Err(FakeError::Publish(format!("{field} missing"))),
        }
    }
    Ok(out)
}

/// ResolveCustomer, after the metering fake checked the protocol and the signature.
pub(crate) fn resolve_customer(fake: &AwsSaasFake, body: &[u8]) -> Response {
    let mut ledger = fake.ledger();
    ledger.resolve_calls += 1;
    let token = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("RegistrationToken")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return bad(
            "InvalidTokenException",
            "1 validation error detected: Value at 'registrationToken' failed to satisfy constraint: Member must not be null",
        );
    };
    let now = fake.clock.now();
    let Some((customer, issued, used)) = ledger.tokens.get_mut(&token) else {
        return bad("InvalidTokenException", "Registration token is invalid");
    };
    if *used || now.duration_since(*issued) > REGISTRATION_TOKEN_LIFETIME {
        return bad("ExpiredTokenException", "Registration token has expired");
    }
    *used = true;
    let mut answer = json!({
        "ProductCode": customer.product_code,
        "CustomerAWSAccountId": customer.customer_aws_account_id,
    });
    if let Some(arn) = &customer.license_arn {
        answer["LicenseArn"] = json!(arn);
    }
    if let Some(id) = &customer.customer_identifier {
        answer["CustomerIdentifier"] = json!(id);
    }
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        answer.to_string(),
    )
        .into_response()
}

#[derive(Clone)]
struct AppState {
    fake: AwsSaasFake,
    config: Arc<AwsConfig>,
    contract: &'static AwsSaasContract,
    clock: FakeClock,
}

/// The Entitlement Service router and the SNS certificate router.
pub(crate) fn build(
    fake: AwsSaasFake,
    config: AwsConfig,
    contract: &'static AwsSaasContract,
    clock: FakeClock,
) -> (Router, Router) {
    let certificates = Router::new()
        .route(SNS_CERT_PATH, get(certificate))
        .route("/", get(confirm_subscription))
        .with_state(fake.clone());
    let state = AppState {
        fake,
        config: Arc::new(config),
        contract,
        clock,
    };
    let entitlement = Router::new()
        .route("/", any(get_entitlements))
        .with_state(state);
    (entitlement, certificates)
}

/// SNS's `ConfirmSubscription` as a SubscribeURL visit makes it: a token issued for
/// the topic confirms it (again: SNS answers a repeated visit the same), anything else
/// is refused as SNS does, with its XML error.
async fn confirm_subscription(
    State(fake): State<AwsSaasFake>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let refuse = |code: &str, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"),
        )
            .into_response()
    };
    if query.get("Action").map(String::as_str) != Some("ConfirmSubscription") {
        return refuse("InvalidAction", "the action is not ConfirmSubscription");
    }
    let (Some(topic), Some(token)) = (query.get("TopicArn"), query.get("Token")) else {
        return refuse("InvalidParameter", "TopicArn and Token are required");
    };
    let mut ledger = fake.ledger();
    ledger.confirmation_visits += 1;
    match ledger.confirmations.get_mut(token) {
        Some((issued_for, confirmed)) if issued_for == topic => {
            *confirmed = true;
            (
                StatusCode::OK,
                [("content-type", "text/xml")],
                format!("<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>{topic}:{}</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>", uuid::Uuid::new_v4()),
            )
                .into_response()
        }
        _ => refuse("InvalidParameter", "Invalid token"),
    }
}

async fn certificate(State(fake): State<AwsSaasFake>) -> Response {
    fake.ledger().certificate_fetches += 1;
    match sns_key() {
        Ok(key) => (
            StatusCode::OK,
            [("content-type", "application/x-pem-file")],
            key.certificate_pem.clone(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn invalid(message: &str) -> Response {
    bad("InvalidParameterException", message)
}

#[derive(Serialize)]
struct WireEntitlement<'a> {
    #[serde(rename = "ProductCode")]
    product_code: &'a str,
    #[serde(rename = "Dimension")]
    dimension: &'a str,
    #[serde(rename = "CustomerIdentifier", skip_serializing_if = "Option::is_none")]
    customer_identifier: Option<&'a str>,
    #[serde(
        rename = "CustomerAWSAccountId",
        skip_serializing_if = "Option::is_none"
    )]
    customer_aws_account_id: Option<&'a str>,
    #[serde(rename = "LicenseArn", skip_serializing_if = "Option::is_none")]
    license_arn: Option<&'a str>,
    #[serde(rename = "Value")]
    value: BTreeMap<&'static str, Box<RawValue>>,
    #[serde(rename = "ExpirationDate", skip_serializing_if = "Option::is_none")]
    expiration_date: Option<i64>,
}

async fn get_entitlements(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.fake.ledger().entitlement_calls += 1;
    let contract = state.contract;
    let expected = format!("{}.GetEntitlements", contract.entitlement_target_prefix);
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    if method != Method::POST || uri.path() != "/" || target != Some(expected.as_str()) {
        return bad(
            "UnknownOperationException",
            "The operation is not supported by this fake.",
        );
    }
    let content_type = format!(
        "application/x-amz-json-{}",
        contract.entitlement_json_version
    );
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(&content_type) {
        return bad(
            "UnknownOperationException",
            &format!("Content-Type must be {content_type}."),
        );
    }
    if let Err(response) = check_signature(
        &state.config,
        &contract.entitlement_signing_name,
        &state.clock,
        &method,
        &uri,
        &headers,
        &body,
    ) {
        return response;
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            "SerializationException",
            "The request body is not a JSON object.",
        );
    };
    for required in &contract.entitlements_required {
        if !request.contains_key(required) {
            return invalid(&format!("{required} is required."));
        }
    }
    if let Some(unknown) = request
        .keys()
        .find(|k| !contract.entitlements_members.contains(k))
    {
        return bad(
            "SerializationException",
            &format!("Unknown member {unknown}."),
        );
    }
    let product_code = request
        .get("ProductCode")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(message) = contract.product_code.violation(product_code, "productCode") {
        return invalid(&message);
    }
    let max_results = match request.get("MaxResults") {
        None => contract.page_max,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (contract.page_min..=contract.page_max).contains(&n) => n,
            _ => {
                return invalid(&format!(
                    "MaxResults must be between {} and {}.",
                    contract.page_min, contract.page_max
                ));
            }
        },
    };
    let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match request.get("Filter") {
        None => {}
        Some(Value::Object(map)) => {
            for (key, values) in map {
                if !contract.filter_names.contains(key) {
                    return invalid(&format!(
                        "Filter key {key} is not one of {:?}.",
                        contract.filter_names
                    ));
                }
                let Some(list) = values.as_array() else {
                    return invalid(&format!("Filter {key} must be a list."));
                };
                let values: Vec<String> = list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if values.is_empty() || values.len() != list.len() {
                    return invalid(&format!("Filter {key} needs at least one string value."));
                }
                filters.insert(key.clone(), values);
            }
        }
        Some(_) => return invalid("Filter must be a map."),
    }
    if filters.contains_key("CUSTOMER_IDENTIFIER")
        && filters.contains_key("CUSTOMER_AWS_ACCOUNT_ID")
    {
        return invalid("CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID cannot be used together.");
    }
    let start = match request.get("NextToken") {
        None => 0,
        Some(v) => match v
            .as_str()
            .and_then(|t| t.strip_prefix("page-"))
            .and_then(|n| n.parse().ok())
        {
            Some(n) => n,
            None => return invalid("NextToken is invalid."),
        },
    };
    let ledger = state.fake.ledger();
    let matches = |e: &&FakeAwsEntitlement| {
        e.product_code == product_code
            && filters.iter().all(|(key, values)| {
                let field = match key.as_str() {
                    "CUSTOMER_IDENTIFIER" => e.customer_identifier.as_deref(),
                    "CUSTOMER_AWS_ACCOUNT_ID" => e.customer_aws_account_id.as_deref(),
                    "LICENSE_ARN" => e.license_arn.as_deref(),
                    "DIMENSION" => Some(e.dimension.as_str()),
                    _ => None,
                };
                field.is_some_and(|f| values.iter().any(|v| v == f))
            })
    };
    let all: Vec<&FakeAwsEntitlement> = ledger.entitlements.iter().filter(matches).collect();
    let mut page = Vec::new();
    for e in all.iter().skip(start).take(max_results) {
        let (key, raw) = match &e.value {
            FakeEntitlementValue::Integer(i) => ("IntegerValue", i.to_string()),
            FakeEntitlementValue::Double(d) => ("DoubleValue", d.clone()),
            FakeEntitlementValue::Boolean(b) => ("BooleanValue", b.to_string()),
            FakeEntitlementValue::String(s) => ("StringValue", json!(s).to_string()),
        };
        let Ok(raw) = RawValue::from_string(raw) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "bad fake value").into_response();
        };
        page.push(WireEntitlement {
            product_code: &e.product_code,
            dimension: &e.dimension,
            customer_identifier: e.customer_identifier.as_deref(),
            customer_aws_account_id: e.customer_aws_account_id.as_deref(),
            license_arn: e.license_arn.as_deref(),
            value: BTreeMap::from([(key, raw)]),
            expiration_date: e.expiration_date.map(|t| t.as_second()),
        });
    }
    let next = (start + max_results < all.len()).then(|| format!("page-{}", start + max_results));
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "Entitlements")]
        entitlements: Vec<WireEntitlement<'a>>,
        #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    }
    let text = serde_json::to_string(&Answer {
        entitlements: page,
        next_token: next,
    })
    .unwrap_or_default();
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        text,
    )
        .into_response()
}
