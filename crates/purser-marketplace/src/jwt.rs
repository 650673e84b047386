//! Verifying the JWTs the marketplaces attach to what they push to Purser: Google's
//! OIDC token on a Pub/Sub push delivery and Microsoft Entra ID's token on a SaaS
//! fulfillment webhook. Both are RS256 tokens whose keys are published as a JWKS.
//!
//! - Google: https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions (read
//!   2026-12-01): RS256, keys at https://www.googleapis.com/oauth2/v3/certs, `iss`
//!   `accounts.google.com` or `https://accounts.google.com`, `aud` the audience set on
//!   the push subscription, `email` the push service account with `email_verified`.
//! - Microsoft: https://learn.microsoft.com/partner-center/marketplace-offers/pc-saas-fulfillment-webhook
//!   and https://learn.microsoft.com/entra/identity-platform/access-tokens (read
//!   2026-12-01): keys at https://login.microsoftonline.com/common/discovery/v2.0/keys,
//!   `aud` the offer's Entra application id, `iss` `https://sts.windows.net/{tenant}/`
//!   (v1) or `https://login.microsoftonline.com/{tenant}/v2.0` (v2).
//!
//! The signature and the standard claims are checked by `jsonwebtoken` (RustCrypto's
//! RSA), never by hand. Only RS256 is accepted, whatever the token's header says, so
//! `none` and HMAC tokens (signed with a public key as the secret) are refused. Keys
//! come over HTTPS from the configured URL and are cached per URL; a token naming a
//! key the cache lacks makes one refetch, at most once a [`MIN_REFETCH`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Google's published signing keys for the OIDC tokens Pub/Sub push attaches.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google's OIDC tokens carry (both spellings are documented).
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Entra ID's keys for every tenant (a tenant's own list is
/// `https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys`).
pub const ENTRA_JWKS_URL: &str = "https://login.microsoftonline.com/common/discovery/v2.0/keys";

/// The issuers an Entra ID token for `tenant` carries: v1 and v2 access tokens.
pub fn entra_issuers(tenant: &str) -> Vec<String> {
    vec![
        format!("https://sts.windows.net/{tenant}/"),
        format!("https://login.microsoftonline.com/{tenant}/v2.0"),
    ]
}

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// A key set is used this long before it is fetched again.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` makes a refetch at most this often per URL, so a stranger sending
/// made-up key ids cannot make Purser fetch on every request.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);

/// Why a token was refused: which check failed. The token itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("no bearer token in Authorization")]
    Missing,
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm is {0}; only RS256 is accepted")]
    Algorithm(String),
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the token's key {0} is not among the issuer's published keys")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("the token's issuer is not one trusted here")]
    Issuer,
    #[error("the token's audience is not this endpoint's")]
    Audience,
    #[error("claim {0} is missing")]
    MissingClaim(String),
    #[error("claim {claim} is not the one expected")]
    Claim { claim: String },
    /// The keys could not be had: not the sender's fault, but nothing can be verified.
    #[error("the signing keys could not be fetched: {0}")]
    Keys(String),
}

impl JwtError {
    /// Whether the failure is Purser's side (keys unreachable), so a 503 fits better
    /// than a 401: the sender should try again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, JwtError::Keys(_))
    }
}

/// A claim a token must carry with exactly this value (Google's `email` and
/// `email_verified`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredClaim {
    pub name: String,
    pub value: serde_json::Value,
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    pub jwks_url: String,
    /// Any of these.
    pub issuers: Vec<String>,
    pub audience: String,
    pub required: Vec<RequiredClaim>,
}

#[derive(Deserialize)]
struct Jwks {
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched: Instant,
}

/// Key sets by URL, shared by the verifiers that are given the same cache.
#[derive(Clone, Default)]
pub struct JwksCache {
    sets: Arc<Mutex<HashMap<String, KeySet>>>,
    /// Fetches made, by URL (tests check the cache is used).
    fetches: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

impl JwksCache {
    /// How often `url` was fetched.
    pub fn fetches(&self, url: &str) -> u64 {
        self.fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
            .copied()
            .unwrap_or(0)
    }
}

/// Verifies bearer tokens against one policy.
#[derive(Clone)]
pub struct JwksVerifier {
    policy: JwtPolicy,
    http: reqwest::Client,
    cache: JwksCache,
    min_refetch: Duration,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    pub fn new(policy: JwtPolicy, timeout_ms: u64) -> Result<JwksVerifier, crate::ClientError> {
        Self::with_cache(policy, timeout_ms, JwksCache::default())
    }

    /// A verifier sharing `cache` with others (one fetch per URL for all of them).
    pub fn with_cache(
        policy: JwtPolicy,
        timeout_ms: u64,
        cache: JwksCache,
    ) -> Result<JwksVerifier, crate::ClientError> {
        if policy.issuers.is_empty() || policy.audience.trim().is_empty() {
            return Err(crate::ClientError::Config(
                "a JWT policy needs at least one issuer and an audience".into(),
            ));
        }
        url::Url::parse(&policy.jwks_url).map_err(|e| {
            crate::ClientError::Config(format!("jwks_url {:?}: {e}", policy.jwks_url))
        })?;
        // No redirects: keys come from the configured URL or not at all.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(JwksVerifier {
            policy,
            http,
            cache,
            min_refetch: MIN_REFETCH,
        })
    }

    /// How soon an unknown `kid` may fetch the key set again ([`MIN_REFETCH`] unless
    /// set; tests shorten it).
    pub fn with_min_refetch(mut self, interval: Duration) -> JwksVerifier {
        self.min_refetch = interval;
        self
    }

    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    pub fn cache(&self) -> &JwksCache {
        &self.cache
    }

    /// Verifies an `Authorization` header's value (`Bearer <JWT>`) and gives the
    /// token's claims.
    pub async fn verify_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
        let token = authorization
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(JwtError::Missing)?;
        self.verify(token).await
    }

    /// Verifies a JWT and gives its claims.
    pub async fn verify(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(describe(&e)))?;
        if header.alg != Algorithm::RS256 {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(JwtError::NoKeyId)?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&self.policy.issuers);
        validation.set_audience(&[&self.policy.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtError::Signature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::Issuer,
            ErrorKind::InvalidAudience => JwtError::Audience,
            ErrorKind::InvalidAlgorithm => JwtError::Algorithm(format!("{:?}", header.alg)),
            ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
            _ => JwtError::Malformed(describe(&e)),
        })?;
        let claims = data.claims;
        // jsonwebtoken leaves `iat` alone; a token issued in the future is not one the
        // issuer made now.
        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_u64()
                .ok_or_else(|| JwtError::Malformed("iat is not a number".into()))?;
            if iat > jsonwebtoken::get_current_timestamp() + LEEWAY.as_secs() {
                return Err(JwtError::NotYetValid);
            }
        }
        for required in &self.policy.required {
            match claims.get(&required.name) {
                None => return Err(JwtError::MissingClaim(required.name.clone())),
                Some(value) if *value != required.value => {
                    return Err(JwtError::Claim {
                        claim: required.name.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(claims)
    }

    /// The key `kid` names: from the cache while it is fresh, else fetched again.
    async fn key(&self, kid: &str) -> Result<DecodingKey, JwtError> {
        let url = &self.policy.jwks_url;
        let mut sets = self.cache.sets.lock().await;
        if let Some(set) = sets.get(url) {
            let age = set.fetched.elapsed();
            if age < JWKS_MAX_AGE {
                if let Some(key) = set.keys.get(kid) {
                    return Ok(key.clone());
                }
                if age < self.min_refetch {
                    return Err(JwtError::UnknownKey(kid.to_owned()));
                }
            }
        }
        // Held across the fetch: concurrent deliveries wait for one fetch, not many.
        let keys = self.fetch().await;
        *self
            .cache
            .fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(url.clone())
            .or_default() += 1;
        let keys = match keys {
            Ok(keys) => keys,
            Err(error) => {
                // A stale set still serves the keys it has while the URL is down.
                return match sets.get(url).and_then(|s| s.keys.get(kid)) {
                    Some(key) => Ok(key.clone()),
                    None => Err(error),
                };
            }
        };
        let key = keys.get(kid).cloned();
        sets.insert(
            url.clone(),
            KeySet {
                keys,
                fetched: Instant::now(),
            },
        );
        key.ok_or_else(|| JwtError::UnknownKey(kid.to_owned()))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwtError> {
        let response = self
            .http
            .get(&self.policy.jwks_url)
            .send()
            .await
            .map_err(|e| JwtError::Keys(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwtError::Keys(format!(
                "{} answered {status}",
                self.policy.jwks_url
            )));
        }
        let text = response
            .text()
            .await
            .map_err(|e| JwtError::Keys(e.to_string()))?;
        parse_jwks(&text)
    }
}

/// The RSA signing keys of a JWKS document by key id; keys of other types or uses,
/// or without an id, are skipped (a set may hold keys Purser never needs).
fn parse_jwks(text: &str) -> Result<HashMap<String, DecodingKey>, JwtError> {
    let set: Jwks = serde_json::from_str(text)
        .map_err(|e| JwtError::Keys(format!("the key set is not a JWKS: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in set.keys {
        let usable = jwk.kty == "RSA"
            && jwk.key_use.as_deref().is_none_or(|u| u == "sig")
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
        if let (true, Some(kid), Some(n), Some(e)) = (usable, jwk.kid, jwk.n, jwk.e)
            && let Ok(key) = DecodingKey::from_rsa_components(&n, &e)
        {
            keys.insert(kid, key);
        }
    }
    Ok(keys)
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    match error.kind() {
        ErrorKind::Base64(_) => "a part is not base64url".into(),
        ErrorKind::Json(_) => "a part is not the JSON expected".into(),
        ErrorKind::Utf8(_) => "a part is not UTF-8".into(),
        ErrorKind::InvalidToken => "not three dot-separated parts".into(),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim {claim} has the wrong type"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_keeps_only_rsa_signing_keys() {
        let text = r#"{"keys":[
            {"kty":"RSA","kid":"a","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"},
            {"kty":"RSA","use":"sig","n":"sXch","e":"AQAB"}
        ]}"#;
        let keys = parse_jwks(text).expect("a JWKS");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(matches!(parse_jwks("not json"), Err(JwtError::Keys(_))));
        assert!(matches!(
            parse_jwks(r#"{"keys":3}"#),
            Err(JwtError::Keys(_))
        ));
    }

    #[test]
    fn a_policy_without_issuer_or_audience_is_refused() {
        let policy = JwtPolicy {
            jwks_url: GOOGLE_JWKS_URL.into(),
            issuers: vec![],
            audience: "a".into(),
            required: vec![],
        };
        assert!(JwksVerifier::new(policy.clone(), 1000).is_err());
        let policy = JwtPolicy {
            issuers: vec!["i".into()],
            audience: " ".into(),
            ..policy
        };
        assert!(JwksVerifier::new(policy, 1000).is_err());
    }

    #[tokio::test]
    async fn what_is_not_a_bearer_jwt_is_refused_before_any_fetch() {
        let verifier = JwksVerifier::new(
            JwtPolicy {
                // Nothing listens here: a fetch would fail with Keys.
                jwks_url: "http://127.0.0.1:9/keys".into(),
                issuers: vec!["i".into()],
                audience: "a".into(),
                required: vec![],
            },
            1000,
        )
        .expect("verifier");
        assert_eq!(verifier.verify_header(None).await, Err(JwtError::Missing));
        assert_eq!(
            verifier.verify_header(Some("Basic abc")).await,
            Err(JwtError::Missing)
        );
        assert!(matches!(
            verifier.verify_header(Some("Bearer not-a-jwt")).await,
            Err(JwtError::Malformed(_))
        ));
        // {"alg":"none"} / {} / no signature.
        assert!(matches!(
            verifier.verify("eyJhbGciOiJub25lIn0.e30.").await,
            Err(JwtError::Malformed(_) | JwtError::Algorithm(_))
        ));
        assert_eq!(verifier.cache().fetches("http://127.0.0.1:9/keys"), 0);
    }
}
