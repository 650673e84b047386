//! Amazon SNS deliveries to an HTTP(S) endpoint, which carry AWS Marketplace's SaaS
//! notifications: reading them, verifying their signatures, and reading the
//! marketplace message inside.
//!
//! Sources (read 2026-12-01): the JSON formats in
//! docs.aws.amazon.com/sns/latest/dg/http-notification-json.html and
//! .../http-subscription-confirmation-json.html; signature verification in
//! .../sns-verify-signature-of-message.html and
//! .../sns-verify-signature-of-message-verify-message-signature.html:
//! - SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA (PKCS#1 v1.5), base64.
//! - The string to sign is `Name\nvalue\n` for, in this order, Message, MessageId,
//!   Subject (only if present), Timestamp, TopicArn, Type for a Notification, and
//!   Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type for a
//!   SubscriptionConfirmation or UnsubscribeConfirmation.
//! - The certificate is fetched over HTTPS from SigningCertURL only when that URL is
//!   Amazon SNS's (`https://sns.<region>.amazonaws.com/...`, `.amazonaws.com.cn` in
//!   China); never trust a certificate just because a message points at it; reject
//!   messages from unexpected topics.
//!
//! Marketplace messages: docs.aws.amazon.com/marketplace/latest/userguide/saas-notification.html.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine;
use jiff::Timestamp;
use rsa::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

use crate::{Clock, MalformedNotification, system_clock};

open_enum! {
    /// `Type` of an SNS delivery.
    SnsMessageType {
        Notification => "Notification",
        SubscriptionConfirmation => "SubscriptionConfirmation",
        UnsubscribeConfirmation => "UnsubscribeConfirmation",
    }
}

open_enum! {
    /// `action` of an AWS Marketplace SaaS notification (subscription topic:
    /// subscribe-success, subscribe-fail, unsubscribe-pending, unsubscribe-success;
    /// entitlement topic: entitlement-updated, after which GetEntitlements says what
    /// changed).
    MarketplaceAction {
        SubscribeSuccess => "subscribe-success",
        SubscribeFail => "subscribe-fail",
        UnsubscribePending => "unsubscribe-pending",
        UnsubscribeSuccess => "unsubscribe-success",
        EntitlementUpdated => "entitlement-updated",
    }
}

/// An SNS delivery as posted to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnsEnvelope {
    #[serde(rename = "Type")]
    pub message_type: SnsMessageType,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    #[serde(rename = "Subject", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(rename = "Message")]
    pub message: String,
    /// As sent: it is signed as text.
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(
        rename = "SubscribeURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subscribe_url: Option<String>,
    #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(
        rename = "UnsubscribeURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub unsubscribe_url: Option<String>,
}

impl SnsEnvelope {
    /// When SNS published it.
    pub fn published_at(&self) -> Option<Timestamp> {
        self.timestamp.parse().ok()
    }
}

/// Reads an SNS delivery's body. A body that is not such a JSON object, or lacks a
/// signed field, is malformed; an unknown `Type` is kept (and will not verify).
pub fn parse_envelope(body: &[u8]) -> Result<SnsEnvelope, MalformedNotification> {
    let malformed = |reason: String| MalformedNotification::new("sns", reason, body);
    let text = std::str::from_utf8(body).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| malformed(format!("{} (at {})", e.inner(), e.path())))
}

/// The text SNS signs for `envelope`, or why there is none.
pub fn string_to_sign(envelope: &SnsEnvelope) -> Result<String, SnsError> {
    let mut out = String::new();
    let mut push = |name: &str, value: &str| {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    };
    match &envelope.message_type {
        SnsMessageType::Notification => {
            push("Message", &envelope.message);
            push("MessageId", &envelope.message_id);
            if let Some(subject) = &envelope.subject {
                push("Subject", subject);
            }
            push("Timestamp", &envelope.timestamp);
            push("TopicArn", &envelope.topic_arn);
            push("Type", envelope.message_type.as_str());
        }
        SnsMessageType::SubscriptionConfirmation | SnsMessageType::UnsubscribeConfirmation => {
            let missing = |field: &'static str| SnsError::MissingField(field);
            push("Message", &envelope.message);
            push("MessageId", &envelope.message_id);
            push(
                "SubscribeURL",
                envelope
                    .subscribe_url
                    .as_deref()
                    .ok_or(missing("SubscribeURL"))?,
            );
            push("Timestamp", &envelope.timestamp);
            push("Token", envelope.token.as_deref().ok_or(missing("Token"))?);
            push("TopicArn", &envelope.topic_arn);
            push("Type", envelope.message_type.as_str());
        }
        SnsMessageType::Other(other) => return Err(SnsError::UnknownType(other.clone())),
    }
    Ok(out)
}

/// Why a delivery was not verified. Nothing but [`SnsVerifier::verify`] returning
/// `Ok` means the message came from SNS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    #[error(
        "SigningCertURL {0:?} is not Amazon SNS's (https://sns.<region>.amazonaws.com/…pem) nor a trusted one"
    )]
    UntrustedCertificateUrl(String),
    #[error("SignatureVersion {0:?} is not 1 (SHA1withRSA) or 2 (SHA256withRSA)")]
    UnsupportedSignatureVersion(String),
    #[error("message type {0:?} has no known string to sign")]
    UnknownType(String),
    #[error("{0} is required for this message type")]
    MissingField(&'static str),
    #[error("TopicArn {0:?} is not one this endpoint takes")]
    UnexpectedTopic(String),
    #[error("signing certificate: {0}")]
    Certificate(String),
    #[error("the signature is not valid base64")]
    SignatureEncoding,
    #[error("the signature does not match the message")]
    BadSignature,
}

/// Which certificates and topics a verifier trusts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsTrust {
    /// Only messages of these topics are taken; empty takes any (not advised: AWS
    /// says to reject unexpected topics).
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// URL prefixes trusted besides SNS's own, e.g. a fake's `http://127.0.0.1:PORT/`
    /// in tests. Never set in production.
    #[serde(default)]
    pub extra_cert_url_prefixes: Vec<String>,
}

/// Verifies SNS deliveries, fetching and caching signing certificates. The certificate is
/// trusted because it came over HTTPS from SNS's own host (TLS authenticates the host),
/// which is how AWS's SDK validators establish it; the certificate's own chain is not
/// walked.
pub struct SnsVerifier {
    http: reqwest::Client,
    trust: SnsTrust,
    cache: Mutex<HashMap<String, CachedKey>>,
    clock: Clock,
}

#[derive(Clone)]
struct CachedKey {
    key: rsa::PublicKey,
    not_before: Timestamp,
    not_after: Timestamp,
}

/// Whether `url` is where Amazon SNS serves its signing certificates: https, host
/// `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`), default port, no user
/// information, a `.pem` path. The region is letters, digits and dashes, as the AWS
/// SDKs' validators check (`^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`).
pub fn is_sns_certificate_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if parsed.scheme() != "https"
        || parsed.port().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || !parsed.path().ends_with(".pem")
    {
        return false;
    }
    let Some(url::Host::Domain(host)) = parsed.host() else {
        return false;
    };
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"));
    let Some(region) = rest.and_then(|r| r.strip_prefix("sns.")) else {
        return false;
    };
    region.len() >= 3
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl SnsVerifier {
    pub fn new(trust: SnsTrust) -> Result<SnsVerifier, crate::ClientError> {
        // No redirects: the certificate comes from the URL that was checked, or not at all.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::ClientError::Config(format!("SNS certificate client: {e}")))?;
        Ok(SnsVerifier {
            http,
            trust,
            cache: Mutex::new(HashMap::new()),
            clock: system_clock(),
        })
    }

    /// Reads certificate validity against `clock` (tests).
    pub fn with_clock(mut self, clock: Clock) -> SnsVerifier {
        self.clock = clock;
        self
    }

    fn trusted_url(&self, url: &str) -> bool {
        is_sns_certificate_url(url)
            || self
                .trust
                .extra_cert_url_prefixes
                .iter()
                .any(|prefix| !prefix.is_empty() && url.starts_with(prefix.as_str()))
    }

    /// Verifies `envelope`: topic, certificate URL, certificate validity, signature.
    pub async fn verify(&self, envelope: &SnsEnvelope) -> Result<(), SnsError> {
        if !self.trust.topic_arns.is_empty() && !self.trust.topic_arns.contains(&envelope.topic_arn)
        {
            return Err(SnsError::UnexpectedTopic(envelope.topic_arn.clone()));
        }
        let digest = match envelope.signature_version.as_str() {
            "1" => Digest::Sha1,
            "2" => Digest::Sha256,
            other => return Err(SnsError::UnsupportedSignatureVersion(other.to_owned())),
        };
        let text = string_to_sign(envelope)?;
        if !self.trusted_url(&envelope.signing_cert_url) {
            return Err(SnsError::UntrustedCertificateUrl(
                envelope.signing_cert_url.clone(),
            ));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.trim().as_bytes())
            .map_err(|_| SnsError::SignatureEncoding)?;
        let key = self.key(&envelope.signing_cert_url).await?;
        let now = (self.clock)();
        if now < key.not_before || now > key.not_after {
            return Err(SnsError::Certificate(format!(
                "valid from {} to {}, not at {now}",
                key.not_before, key.not_after
            )));
        }
        let verified = match digest {
            Digest::Sha1 => key
                .key
                .pkcs1v15_verify::<sha1::Sha1>(text.as_bytes(), &signature),
            Digest::Sha256 => key
                .key
                .pkcs1v15_verify::<rsa::sha2::Sha256>(text.as_bytes(), &signature),
        };
        verified.map_err(|_| SnsError::BadSignature)
    }

    /// The certificate's key, fetched once per URL (SNS rotates certificates under
    /// new URLs, so a URL's certificate does not change).
    async fn key(&self, url: &str) -> Result<CachedKey, SnsError> {
        if let Some(cached) = self.cache.lock().await.get(url) {
            return Ok(cached.clone());
        }
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| SnsError::Certificate(format!("fetching {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(SnsError::Certificate(format!(
                "fetching {url}: HTTP {}",
                response.status()
            )));
        }
        let pem = response
            .bytes()
            .await
            .map_err(|e| SnsError::Certificate(format!("reading {url}: {e}")))?;
        let cached = key_from_pem(&pem)?;
        self.cache
            .lock()
            .await
            .insert(url.to_owned(), cached.clone());
        Ok(cached)
    }
}

enum Digest {
    Sha1,
    Sha256,
}

fn key_from_pem(pem: &[u8]) -> Result<CachedKey, SnsError> {
    let certificate = Certificate::from_pem(pem)
        .map_err(|e| SnsError::Certificate(format!("not a PEM certificate: {e}")))?;
    let tbs = certificate.tbs_certificate();
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| SnsError::Certificate(format!("public key: {e}")))?;
    let key = rsa::PublicKey::from_public_key_der(&spki)
        .map_err(|e| SnsError::Certificate(format!("not an RSA key: {e}")))?;
    let instant = |t: x509_cert::time::Time| {
        let since_epoch = t.to_unix_duration();
        Timestamp::from_second(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX))
            .map_err(|e| SnsError::Certificate(format!("validity: {e}")))
    };
    let validity = tbs.validity();
    Ok(CachedKey {
        key,
        not_before: instant(validity.not_before)?,
        not_after: instant(validity.not_after)?,
    })
}

/// An AWS Marketplace SaaS message, the `Message` of a verified notification:
/// `{"action", "customer-identifier", "product-code", "offer-identifier",
/// "isFreeTrialTermPresent"}` (saas-notification page; Concurrent Agreements messages
/// may name the buyer's account and license instead, read when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketplaceMessage {
    pub action: MarketplaceAction,
    pub customer_identifier: Option<String>,
    pub customer_aws_account_id: Option<String>,
    pub license_arn: Option<String>,
    pub product_code: Option<String>,
    /// Only on subscribe-* messages.
    pub offer_identifier: Option<String>,
    pub is_free_trial_term_present: Option<bool>,
    /// Members this version does not read.
    pub other: BTreeMap<String, Value>,
    pub raw: String,
}

#[derive(Deserialize)]
struct WireMarketplaceMessage {
    action: MarketplaceAction,
    #[serde(rename = "customer-identifier")]
    customer_identifier: Option<String>,
    #[serde(rename = "customer-aws-account-id")]
    customer_aws_account_id: Option<String>,
    #[serde(rename = "license-arn")]
    license_arn: Option<String>,
    #[serde(rename = "product-code")]
    product_code: Option<String>,
    #[serde(rename = "offer-identifier")]
    offer_identifier: Option<String>,
    /// AWS's examples write it as a string ("true").
    #[serde(rename = "isFreeTrialTermPresent")]
    is_free_trial_term_present: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Reads the marketplace message of a notification. An unknown action is kept.
pub fn parse_marketplace_message(
    message: &str,
) -> Result<MarketplaceMessage, MalformedNotification> {
    let malformed = |reason: String| {
        MalformedNotification::new("aws marketplace message", reason, message.as_bytes())
    };
    let mut deserializer = serde_json::Deserializer::from_str(message);
    let w: WireMarketplaceMessage = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| malformed(format!("{} (at {})", e.inner(), e.path())))?;
    let is_free_trial_term_present = match w.is_free_trial_term_present {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => {
            return Err(malformed(format!(
                "isFreeTrialTermPresent is {other}, not true or false"
            )));
        }
    };
    Ok(MarketplaceMessage {
        action: w.action,
        customer_identifier: w.customer_identifier,
        customer_aws_account_id: w.customer_aws_account_id,
        license_arn: w.license_arn,
        product_code: w.product_code,
        offer_identifier: w.offer_identifier,
        is_free_trial_term_present,
        other: w.other,
        raw: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_serve_certificates() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        ] {
            assert!(is_sns_certificate_url(good), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.a_b.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(!is_sns_certificate_url(bad), "{bad}");
        }
    }

    #[test]
    fn strings_to_sign_follow_the_documented_order() {
        let mut e = SnsEnvelope {
            message_type: SnsMessageType::Notification,
            message_id: "m".into(),
            topic_arn: "t".into(),
            subject: None,
            message: "hello".into(),
            timestamp: "2026-12-01T00:00:00.000Z".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: Some("https://sub".into()),
            token: Some("tok".into()),
            unsubscribe_url: None,
        };
        assert_eq!(
            string_to_sign(&e).expect("s"),
            "Message\nhello\nMessageId\nm\nTimestamp\n2026-12-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        e.subject = Some("subj".into());
        assert!(
            string_to_sign(&e)
                .expect("s")
                .contains("MessageId\nm\nSubject\nsubj\nTimestamp")
        );
        e.message_type = SnsMessageType::SubscriptionConfirmation;
        assert_eq!(
            string_to_sign(&e).expect("s"),
            "Message\nhello\nMessageId\nm\nSubscribeURL\nhttps://sub\nTimestamp\n2026-12-01T00:00:00.000Z\nToken\ntok\nTopicArn\nt\nType\nSubscriptionConfirmation\n"
        );
        e.token = None;
        assert_eq!(string_to_sign(&e), Err(SnsError::MissingField("Token")));
    }

    #[test]
    fn marketplace_messages_keep_unknown_actions() {
        let m = parse_marketplace_message(
            r#"{"action":"subscribe-success","customer-identifier":"X01","product-code":"p1","offer-identifier":"offer-1","isFreeTrialTermPresent":"true"}"#,
        )
        .expect("m");
        assert_eq!(m.action, MarketplaceAction::SubscribeSuccess);
        assert_eq!(m.is_free_trial_term_present, Some(true));
        let m =
            parse_marketplace_message(r#"{"action":"license-teleported","x":1}"#).expect("kept");
        assert_eq!(
            m.action,
            MarketplaceAction::Other("license-teleported".into())
        );
        assert!(m.other.contains_key("x"));
        let err =
            parse_marketplace_message(r#"{"customer-identifier":"X"}"#).expect_err("no action");
        assert!(err.reason.contains("action"));
    }
}
