//! Fake OIDC issuers: Google's (the tokens Pub/Sub push attaches) and Microsoft Entra
//! ID's (the token on a SaaS webhook call). Each signs RS256 JWTs with its own key and
//! publishes that key in a JWKS served on the fakes' `oidc` server, as
//! https://www.googleapis.com/oauth2/v3/certs and
//! https://login.microsoftonline.com/common/discovery/v2.0/keys publish theirs (RFC 7517
//! key sets of `kty` RSA, `n` and `e` base64url, with `kid`, `use` sig and `alg` RS256;
//! read 2026-12-01).
//!
//! The signing here is written against the `rsa` crate directly, not through the
//! `jsonwebtoken` crate Purser verifies with, so the tests check one implementation
//! against another. [`OidcIssuer::sign_as`] makes the tokens a verifier must refuse:
//! signed by a key the set does not hold, `alg` none, HS256 keyed with the public key,
//! or altered after signing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::FakeError;
use crate::keys::{KeySlot, rsa_key};

/// How a token is signed, for tests of what a verifier refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// RS256 with the issuer's published key: what the issuer sends.
    Published,
    /// RS256 with a key the issuer never published, under the published key's id.
    UnpublishedKey,
    /// RS256 with the published key, under a key id the set does not hold.
    UnknownKeyId,
    /// `alg: none`, no signature.
    None,
    /// HS256 with the issuer's public key (its `n`) as the HMAC secret: the classic
    /// algorithm confusion.
    Hs256WithPublicKey,
    /// Signed, then a claim changed.
    Tampered,
}

#[derive(Debug)]
struct Inner {
    slot: KeySlot,
    kid: String,
    jwks_fetches: AtomicU64,
}

/// A fake issuer of RS256 JWTs.
#[derive(Debug, Clone)]
pub struct OidcIssuer {
    inner: Arc<Inner>,
}

impl OidcIssuer {
    fn new(name: &'static str, slot: KeySlot) -> OidcIssuer {
        OidcIssuer {
            inner: Arc::new(Inner {
                slot,
                kid: format!("purser-fake-{name}-1"),
                jwks_fetches: AtomicU64::new(0),
            }),
        }
    }

    /// The key id its tokens carry.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// How often its key set was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks_fetches.load(Ordering::Relaxed)
    }

    /// The key set it publishes.
    pub fn jwks(&self) -> Value {
        let public = rsa_key(self.inner.slot).to_public_key();
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.inner.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
            "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
        }]})
    }

    /// An RS256 JWT of `claims` under its published key.
    pub fn sign(&self, claims: &Value) -> Result<String, FakeError> {
        self.sign_as(claims, Signing::Published)
    }

    /// A JWT of `claims` made as `signing` says.
    pub fn sign_as(&self, claims: &Value, signing: Signing) -> Result<String, FakeError> {
        let (alg, kid) = match signing {
            Signing::None => ("none", self.inner.kid.clone()),
            Signing::Hs256WithPublicKey => ("HS256", self.inner.kid.clone()),
            Signing::UnknownKeyId => ("RS256", format!("{}-retired", self.inner.kid)),
            _ => ("RS256", self.inner.kid.clone()),
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", encode(&header), encode(claims));
        let signature = match signing {
            Signing::None => Vec::new(),
            Signing::Hs256WithPublicKey => {
                let secret = rsa_key(self.inner.slot).to_public_key().n_bytes();
                hmac_sha256(&secret, input.as_bytes())?
            }
            Signing::UnpublishedKey => rs256(KeySlot::Unpublished, &input)?,
            _ => rs256(self.inner.slot, &input)?,
        };
        let mut token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        if signing == Signing::Tampered {
            // The same header and signature over claims with one more claim.
            let mut changed = claims.clone();
            changed["tampered"] = json!(true);
            let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
            token = format!("{}.{}.{signature}", encode(&header), encode(&changed));
        }
        Ok(token)
    }
}

fn rs256(slot: KeySlot, input: &str) -> Result<Vec<u8>, FakeError> {
    rsa_key(slot)
        .pkcs1v15_sign::<rsa::sha2::Sha256>(input.as_bytes())
        .map_err(|e| FakeError::Publish(format!("signing a JWT: {e}")))
}

/// HMAC-SHA256, only for making the HS256 token a verifier must refuse.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<Vec<u8>, FakeError> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<rsa::sha2::Sha256>::new_from_slice(key)
        .map_err(|e| FakeError::Publish(format!("HMAC key: {e}")))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The two issuers and the router serving their key sets.
pub(crate) fn build() -> (OidcIssuer, OidcIssuer, Router) {
    let google = OidcIssuer::new("google", KeySlot::Google);
    let entra = OidcIssuer::new("entra", KeySlot::Entra);
    async fn keys(State(issuer): State<OidcIssuer>) -> axum::Json<Value> {
        issuer.inner.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        axum::Json(issuer.jwks())
    }
    let router = Router::new()
        .route(GOOGLE_JWKS_PATH, get(keys).with_state(google.clone()))
        .route(ENTRA_JWKS_PATH, get(keys).with_state(entra.clone()));
    (google, entra, router)
}

/// Where the fake Google issuer's keys are (Google's are at `/oauth2/v3/certs`).
pub const GOOGLE_JWKS_PATH: &str = "/oauth2/v3/certs";
/// Where the fake Entra issuer's keys are (Entra's common keys are at this path).
pub const ENTRA_JWKS_PATH: &str = "/common/discovery/v2.0/keys";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_have_three_parts_and_the_asked_algorithm() {
        let (google, _, _) = build();
        let claims = json!({"iss": "https://accounts.google.com"});
        for (signing, alg) in [
            (Signing::Published, "RS256"),
            (Signing::None, "none"),
            (Signing::Hs256WithPublicKey, "HS256"),
        ] {
            let token = google.sign_as(&claims, signing).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(header["alg"], alg);
        }
        let tampered = google.sign_as(&claims, Signing::Tampered).unwrap();
        let signed = google.sign(&claims).unwrap();
        assert_eq!(tampered.rsplit('.').next(), signed.rsplit('.').next());
        assert_ne!(tampered, signed);
    }
}
