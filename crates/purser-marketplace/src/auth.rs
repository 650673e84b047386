//! Bearer tokens for Google and Azure, cached until shortly before they expire.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::Exchange;
use crate::http::{self, Evidence};
use crate::secret::Secret;

/// Where a bearer token comes from.
pub(crate) enum TokenSource {
    /// Given by configuration; never refreshed.
    Static(Secret),
    /// The GCE/GKE metadata server's token for the instance's default service account
    /// (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications,
    /// `Metadata-Flavor: Google`, answer `{access_token, expires_in, token_type}`).
    GceMetadata { url: String },
    /// Microsoft Entra ID client credentials, as Microsoft documents for the metering
    /// API: POST https://login.microsoftonline.com/{tenantId}/oauth2/token, form
    /// `grant_type=client_credentials, client_id, client_secret,
    /// resource=20e940b3-4c77-4b0b-9a53-9e16a1b010a7`
    /// (https://learn.microsoft.com/azure/marketplace/marketplace-metering-service-authentication,
    /// read 2026-11-23; the same four parameters are in the ApiVersion description of
    /// contracts/azure/meteringapi.v1.json). The v1 endpoint answers `expires_in` as a
    /// string of seconds.
    Entra {
        url: String,
        client_id: String,
        client_secret: Secret,
        resource: String,
    },
}

struct Cached {
    token: Secret,
    /// When to stop using it: shortly before the issuer's expiry.
    refresh_at: Instant,
}

/// One client's token and how to get a new one.
pub(crate) struct BearerToken {
    marketplace: purser_core::account::Marketplace,
    source: TokenSource,
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl BearerToken {
    pub(crate) fn new(
        marketplace: purser_core::account::Marketplace,
        source: TokenSource,
    ) -> BearerToken {
        BearerToken {
            marketplace,
            source,
            cache: Mutex::new(None),
        }
    }

    /// A token to send now, fetching one when none is cached or it is about to
    /// expire. The fetch is recorded in `exchanges` without the secret or the token.
    /// The lock is held across the fetch so concurrent callers wait for one fetch.
    pub(crate) async fn get(
        &self,
        http_client: &reqwest::Client,
        exchanges: &mut Vec<Exchange>,
    ) -> Result<Secret, String> {
        let request = match &self.source {
            TokenSource::Static(token) => return Ok(token.clone()),
            TokenSource::GceMetadata { url } => http_client
                .get(url)
                .header("Metadata-Flavor", "Google")
                .build()
                .map(|r| (r, String::new())),
            TokenSource::Entra {
                url,
                client_id,
                client_secret,
                resource,
            } => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("resource", resource.as_str()),
                ];
                let recorded = serde_urlencoded::to_string([
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", "[redacted]"),
                    ("resource", resource.as_str()),
                ])
                .unwrap_or_default();
                http_client
                    .post(url)
                    .form(&form)
                    .build()
                    .map(|r| (r, recorded))
            }
        };
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (request, recorded) = request.map_err(|e| format!("token request: {e}"))?;
        let (exchange, result) = http::send(
            http_client,
            request,
            Evidence {
                marketplace: self.marketplace,
                operation: "token",
                request_body: recorded,
                record_keys: Vec::new(),
                redact_response: Some(redact_token_answer),
            },
        )
        .await;
        exchanges.push(exchange);
        let answer = result.map_err(|e| e.reason("token request"))?;
        if !answer.is_success() {
            return Err(format!(
                "token request answered HTTP {}: {}",
                answer.status,
                redact_token_answer(&answer.body)
            ));
        }
        let parsed: TokenAnswer = serde_json::from_str(&answer.body)
            .map_err(|e| format!("token answer unreadable: {e}"))?;
        if parsed.access_token.is_empty() {
            return Err("token answer has an empty access_token".into());
        }
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(Duration::from_secs)
            // No lifetime given: use it for a minute and ask again.
            .unwrap_or(Duration::from_secs(60));
        let token = Secret::new(parsed.access_token);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + refresh_after(lifetime),
        });
        Ok(token)
    }

    /// Forgets the cached token (after a 401/403), so the next call fetches anew.
    pub(crate) async fn clear(&self) {
        *self.cache.lock().await = None;
    }
}

/// Refresh a minute before expiry, or halfway for short-lived tokens, so a token never
/// expires in flight.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(Duration::from_secs(60).min(lifetime / 2))
}

/// A token answer as evidence: the token replaced, everything else kept.
fn redact_token_answer(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            for key in ["access_token", "refresh_token", "id_token"] {
                if let Some(value) = map.get_mut(key) {
                    *value = serde_json::Value::String("[redacted]".into());
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        Ok(other) => other.to_string(),
        Err(_) => format!("[{} bytes, not JSON, not recorded]", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_recorded_without_the_token() {
        let body = r#"{"access_token":"ya29.secret","expires_in":3599,"token_type":"Bearer"}"#;
        let recorded = redact_token_answer(body);
        assert!(!recorded.contains("ya29"));
        assert!(recorded.contains("3599") && recorded.contains("[redacted]"));
        assert!(!redact_token_answer("ya29.secret").contains("ya29"));
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
