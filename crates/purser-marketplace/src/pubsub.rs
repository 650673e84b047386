//! A Pub/Sub subscriber over Pub/Sub's REST API v1: `projects.subscriptions.pull`,
//! `acknowledge` and `modifyAckDeadline`, plus creating topics and subscriptions (for
//! tests and set-up). https://cloud.google.com/pubsub/docs/reference/rest (read
//! 2026-12-01). The same calls work against the Pub/Sub emulator, which takes no
//! credentials.
//!
//! Delivery is at least once: a message not acknowledged before its deadline is
//! delivered again, so whoever processes a message acknowledges it only after its
//! effect is stored, and processes it idempotently (Procurement's `eventId`).

use std::collections::BTreeMap;

use base64::Engine;
use jiff::Timestamp;
use purser_core::account::Marketplace;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{self, BearerApi, Request};
use crate::auth::{BearerToken, TokenSource};
use crate::gcp::{GcpCredentials, token_source};
use crate::http;
use crate::{ClientError, Secret};

/// Where Pub/Sub is and how to authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// `https://pubsub.googleapis.com`, or the emulator's `http://127.0.0.1:PORT`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// None for the emulator, which ignores credentials.
    #[serde(default)]
    pub credentials: Option<GcpCredentials>,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://pubsub.googleapis.com".into()
}

impl PubSubConfig {
    pub fn new(credentials: GcpCredentials) -> PubSubConfig {
        PubSubConfig {
            base_url: default_base_url(),
            credentials: Some(credentials),
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }

    /// The Pub/Sub emulator at `base_url` (`http://127.0.0.1:PORT`).
    pub fn emulator(base_url: &str) -> PubSubConfig {
        PubSubConfig {
            base_url: base_url.into(),
            credentials: None,
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }
}

/// A message pulled from a subscription (`ReceivedMessage` + `PubsubMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedMessage {
    /// What `acknowledge` and `modifyAckDeadline` take; new on every delivery.
    pub ack_id: String,
    /// The same on every delivery of one message.
    pub message_id: String,
    /// `data`, base64-decoded.
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: Option<Timestamp>,
    pub ordering_key: Option<String>,
    /// Set only when the subscription has a dead-letter policy.
    pub delivery_attempt: Option<u32>,
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<WireReceived>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceived {
    ack_id: String,
    message: WireMessage,
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    publish_time: Option<Timestamp>,
    ordering_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    #[serde(default)]
    message_ids: Vec<String>,
}

/// The Pub/Sub client.
pub struct PubSubClient {
    api: BearerApi,
    base: String,
}

impl PubSubClient {
    pub fn new(config: &PubSubConfig) -> Result<PubSubClient, ClientError> {
        let source = match &config.credentials {
            Some(credentials) => token_source(credentials)?,
            // The emulator accepts any token; a fixed one keeps one code path.
            None => TokenSource::Static(Secret::new("emulator")),
        };
        Ok(PubSubClient {
            api: BearerApi {
                http: http::build_client(config.request_timeout_ms)?,
                token: BearerToken::new(Marketplace::Gcp, source),
                marketplace: Marketplace::Gcp,
            },
            base: http::trim_base(&config.base_url),
        })
    }

    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, ClientError> {
        let url = format!("{}/{path}", self.base);
        self.api
            .call(Request {
                operation,
                method,
                url: &url,
                query: &[],
                headers: &[],
                body: body.map(|b| b.to_string()),
            })
            .await
            .map(|answer| answer.body)
    }

    /// `projects.subscriptions.pull` of at most `max_messages`. With `return_immediately`
    /// the call answers at once, possibly with nothing (deprecated by Google for
    /// production, where a pull waits for messages, but what tests against the emulator
    /// need: a waiting pull there holds for about 90 seconds).
    pub async fn pull(
        &self,
        subscription: &str,
        max_messages: u32,
        return_immediately: bool,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        resource("pull", "subscription", subscription, "subscriptions")?;
        let text = self
            .call(
                "pull",
                Method::POST,
                &path(subscription, Some("pull")),
                Some(pull_body(max_messages, return_immediately)),
            )
            .await?;
        let response: PullResponse = api::decode("pull", &text)?;
        let engine = base64::engine::general_purpose::STANDARD;
        response
            .received_messages
            .into_iter()
            .map(|m| {
                let data =
                    engine
                        .decode(m.message.data.as_bytes())
                        .map_err(|e| ClientError::Decode {
                            operation: "pull",
                            message: format!(
                                "message {} has data that is not base64: {e}",
                                m.message.message_id
                            ),
                        })?;
                Ok(ReceivedMessage {
                    ack_id: m.ack_id,
                    message_id: m.message.message_id,
                    data,
                    attributes: m.message.attributes,
                    publish_time: m.message.publish_time,
                    ordering_key: m.message.ordering_key.filter(|k| !k.is_empty()),
                    delivery_attempt: m.delivery_attempt,
                })
            })
            .collect()
    }

    /// `projects.subscriptions.acknowledge`: these deliveries are done with.
    pub async fn acknowledge(
        &self,
        subscription: &str,
        ack_ids: &[String],
    ) -> Result<(), ClientError> {
        resource("acknowledge", "subscription", subscription, "subscriptions")?;
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.call(
            "acknowledge",
            Method::POST,
            &path(subscription, Some("acknowledge")),
            Some(json!({ "ackIds": ack_ids })),
        )
        .await
        .map(|_| ())
    }

    /// `projects.subscriptions.modifyAckDeadline`: 0 hands the messages back for
    /// redelivery at once (a "nack"); more extends the time to process them (at most
    /// 600 seconds, the API's limit).
    pub async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: &[String],
        ack_deadline_seconds: u32,
    ) -> Result<(), ClientError> {
        resource(
            "modifyAckDeadline",
            "subscription",
            subscription,
            "subscriptions",
        )?;
        if ack_deadline_seconds > 600 {
            return Err(ClientError::InvalidArgument {
                operation: "modifyAckDeadline",
                message: format!("ackDeadlineSeconds {ack_deadline_seconds} is above 600"),
            });
        }
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.call(
            "modifyAckDeadline",
            Method::POST,
            &path(subscription, Some("modifyAckDeadline")),
            Some(json!({ "ackIds": ack_ids, "ackDeadlineSeconds": ack_deadline_seconds })),
        )
        .await
        .map(|_| ())
    }

    /// `projects.topics.create` (`PUT v1/{name}`); an existing topic is not an error.
    pub async fn create_topic(&self, topic: &str) -> Result<(), ClientError> {
        resource("topics.create", "topic", topic, "topics")?;
        match self
            .call("topics.create", Method::PUT, &path(topic, None), None)
            .await
        {
            Err(e) if e.code() == Some("ALREADY_EXISTS") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `projects.subscriptions.create` on `topic` with an ack deadline (10..600 seconds);
    /// an existing subscription is not an error.
    pub async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline_seconds: u32,
    ) -> Result<(), ClientError> {
        let body = json!({ "topic": topic, "ackDeadlineSeconds": ack_deadline_seconds });
        self.create_subscription_with(subscription, topic, body)
            .await
    }

    /// `projects.subscriptions.create` of a push subscription: Pub/Sub POSTs each
    /// message to `push_endpoint` (`pushConfig.pushEndpoint`), with an OIDC token for
    /// `(service account email, audience)` when given (`pushConfig.oidcToken`;
    /// https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#PushConfig,
    /// read 2026-12-01). An existing subscription is not an error.
    pub async fn create_push_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline_seconds: u32,
        push_endpoint: &str,
        oidc_token: Option<(&str, &str)>,
    ) -> Result<(), ClientError> {
        let body = push_subscription_body(topic, ack_deadline_seconds, push_endpoint, oidc_token);
        self.create_subscription_with(subscription, topic, body)
            .await
    }

    /// `projects.subscriptions.create` with `body` (the subscription's resource), the
    /// names checked first; an existing subscription is not an error.
    async fn create_subscription_with(
        &self,
        subscription: &str,
        topic: &str,
        body: serde_json::Value,
    ) -> Result<(), ClientError> {
        resource(
            "subscriptions.create",
            "subscription",
            subscription,
            "subscriptions",
        )?;
        resource("subscriptions.create", "topic", topic, "topics")?;
        match self
            .call(
                "subscriptions.create",
                Method::PUT,
                &path(subscription, None),
                Some(body),
            )
            .await
        {
            Err(e) if e.code() == Some("ALREADY_EXISTS") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `projects.topics.publish`; the message ids, in order.
    pub async fn publish(
        &self,
        topic: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<String>, ClientError> {
        resource("publish", "topic", topic, "topics")?;
        let engine = base64::engine::general_purpose::STANDARD;
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| json!({ "data": engine.encode(&m.data), "attributes": m.attributes }))
            .collect();
        let text = self
            .call(
                "publish",
                Method::POST,
                &path(topic, Some("publish")),
                Some(json!({ "messages": messages })),
            )
            .await?;
        let response: PublishResponse = api::decode("publish", &text)?;
        Ok(response.message_ids)
    }
}

/// A push delivery: Pub/Sub POSTs `{"message": {data, attributes, messageId,
/// publishTime}, "subscription": "projects/…/subscriptions/…", "deliveryAttempt"}` to the
/// push endpoint, and a 2xx answer acknowledges it
/// (https://cloud.google.com/pubsub/docs/push, read 2026-12-01). Verifying the OIDC token
/// Pub/Sub can attach is the endpoint's business, not this parser's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushDelivery {
    pub subscription: String,
    pub message_id: String,
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: Option<Timestamp>,
    pub delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePush {
    message: WireMessage,
    subscription: String,
    delivery_attempt: Option<u32>,
}

/// Reads a push delivery's body; anything else is malformed, with its bytes kept.
pub fn parse_push(body: &[u8]) -> Result<PushDelivery, crate::MalformedNotification> {
    let malformed = |reason: String| crate::MalformedNotification::new("pubsub push", reason, body);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let push: WirePush = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| malformed(format!("{} (at {})", e.inner(), e.path())))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(push.message.data.as_bytes())
        .map_err(|e| malformed(format!("message.data is not base64: {e}")))?;
    Ok(PushDelivery {
        subscription: push.subscription,
        message_id: push.message.message_id,
        data,
        attributes: push.message.attributes,
        publish_time: push.message.publish_time,
        delivery_attempt: push.delivery_attempt,
    })
}

/// A method's path under the root, as the discovery document (contracts/gcp/pubsub.v1.json,
/// revision 20261027) writes it: `v1/{+subscription}:pull`, `v1/{+name}`.
pub(crate) fn path(resource: &str, verb: Option<&str>) -> String {
    match verb {
        Some(verb) => format!("v1/{resource}:{verb}"),
        None => format!("v1/{resource}"),
    }
}

/// A push `Subscription`: `pushConfig` with its endpoint and, when given, the OIDC
/// token's service account and audience.
pub(crate) fn push_subscription_body(
    topic: &str,
    ack_deadline_seconds: u32,
    push_endpoint: &str,
    oidc_token: Option<(&str, &str)>,
) -> serde_json::Value {
    let mut push_config = json!({ "pushEndpoint": push_endpoint });
    if let Some((email, audience)) = oidc_token {
        push_config["oidcToken"] = json!({ "serviceAccountEmail": email, "audience": audience });
    }
    json!({
        "topic": topic,
        "ackDeadlineSeconds": ack_deadline_seconds,
        "pushConfig": push_config,
    })
}

/// `PullRequest`. `returnImmediately` is deprecated: sent only when asked for (tests
/// against the emulator), never as `false`.
pub(crate) fn pull_body(max_messages: u32, return_immediately: bool) -> serde_json::Value {
    let mut body = json!({ "maxMessages": max_messages.max(1) });
    if return_immediately {
        body["returnImmediately"] = json!(true);
    }
    body
}

/// `projects/{project}/{collection}/{name}`, each part one path segment.
fn resource(
    operation: &'static str,
    what: &str,
    name: &str,
    collection: &str,
) -> Result<(), ClientError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", project, c, id] if *c == collection => {
            api::segment(operation, "project", project)?;
            api::segment(operation, what, id)
        }
        _ => Err(ClientError::InvalidArgument {
            operation,
            message: format!("{what} {name:?} is not projects/{{project}}/{collection}/{{name}}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_deliveries_are_read() {
        let body = br#"{"message":{"attributes":{"k":"v"},"data":"eyJldmVudElkIjoiZS0xIn0=","messageId":"136969346945","publishTime":"2026-12-01T10:00:00.000Z"},"subscription":"projects/p/subscriptions/s","deliveryAttempt":2}"#;
        let push = parse_push(body).expect("push");
        assert_eq!(push.data, br#"{"eventId":"e-1"}"#);
        assert_eq!(push.subscription, "projects/p/subscriptions/s");
        assert_eq!(push.delivery_attempt, Some(2));
        let err = parse_push(br#"{"message":{"data":"***","messageId":"1"},"subscription":"s"}"#)
            .expect_err("not base64");
        assert!(err.reason.contains("base64"));
        assert!(
            parse_push(b"{}")
                .expect_err("empty")
                .reason
                .contains("message")
        );
    }

    #[test]
    fn names_are_checked_before_use() {
        assert!(
            resource(
                "pull",
                "subscription",
                "projects/p/subscriptions/s",
                "subscriptions"
            )
            .is_ok()
        );
        for bad in [
            "p/s",
            "projects/p/topics/s",
            "projects/p/subscriptions/s/x",
            "projects//subscriptions/s",
        ] {
            assert!(
                resource("pull", "subscription", bad, "subscriptions").is_err(),
                "{bad}"
            );
        }
        assert_eq!(pull_body(0, false), json!({"maxMessages": 1}));
    }
}
