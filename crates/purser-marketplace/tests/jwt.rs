//! The JWT verifier against the fakes' OIDC issuers: a token the fake Google issuer
//! signs for the right audience and service account is accepted; each check that
//! fails is named; the key set is fetched once and again only for an unknown key.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use purser_fakes::oidc::Signing;
use purser_fakes::{FakeConfig, FakeMarketplaces};
use purser_marketplace::jwt::{
    GOOGLE_ISSUERS, JwksVerifier, JwtError, JwtPolicy, RequiredClaim, entra_issuers,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://purser.example/hooks/gcp/pubsub";
const EMAIL: &str = "pubsub-push@vendor.iam.gserviceaccount.com";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn google_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": EMAIL,
        "email_verified": true,
        "sub": "1137742644630",
        "iat": now(),
        "exp": now() + 3600,
    })
}

fn google_verifier(fakes: &FakeMarketplaces) -> JwksVerifier {
    JwksVerifier::new(
        JwtPolicy {
            jwks_url: fakes.google_jwks_url(),
            issuers: GOOGLE_ISSUERS.iter().map(|i| (*i).to_owned()).collect(),
            audience: AUDIENCE.into(),
            required: vec![
                RequiredClaim {
                    name: "email".into(),
                    value: json!(EMAIL),
                },
                RequiredClaim {
                    name: "email_verified".into(),
                    value: json!(true),
                },
            ],
        },
        5_000,
    )
    .unwrap()
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[tokio::test]
async fn google_tokens_are_accepted_and_every_failed_check_is_named() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .unwrap();
    let verifier = google_verifier(&fakes);
    let issuer = fakes.google_oidc();

    let token = issuer.sign(&google_claims()).unwrap();
    let claims = verifier
        .verify_header(Some(&format!("Bearer {token}")))
        .await
        .expect("a token the issuer signed");
    assert_eq!(claims["email"], EMAIL);
    // Both documented spellings of Google's issuer are taken.
    let bare = with(google_claims(), "iss", json!("accounts.google.com"));
    verifier.verify(&issuer.sign(&bare).unwrap()).await.unwrap();
    // Within the leeway of 60 s: expired 30 s ago still passes; 120 s ago does not.
    let skewed = with(google_claims(), "exp", json!(now() - 30));
    verifier
        .verify(&issuer.sign(&skewed).unwrap())
        .await
        .unwrap();

    let refusals: Vec<(&str, String, JwtError)> = vec![
        (
            "wrong audience",
            issuer
                .sign(&with(
                    google_claims(),
                    "aud",
                    json!("https://elsewhere.example"),
                ))
                .unwrap(),
            JwtError::Audience,
        ),
        (
            "wrong email",
            issuer
                .sign(&with(
                    google_claims(),
                    "email",
                    json!("someone@else.example"),
                ))
                .unwrap(),
            JwtError::Claim {
                claim: "email".into(),
            },
        ),
        (
            "email not verified",
            issuer
                .sign(&with(google_claims(), "email_verified", json!(false)))
                .unwrap(),
            JwtError::Claim {
                claim: "email_verified".into(),
            },
        ),
        (
            "no email",
            issuer.sign(&without(google_claims(), "email")).unwrap(),
            JwtError::MissingClaim("email".into()),
        ),
        (
            "expired",
            issuer
                .sign(&with(google_claims(), "exp", json!(now() - 120)))
                .unwrap(),
            JwtError::Expired,
        ),
        (
            "no exp",
            issuer.sign(&without(google_claims(), "exp")).unwrap(),
            JwtError::MissingClaim("exp".into()),
        ),
        (
            "issued in the future",
            issuer
                .sign(&with(google_claims(), "iat", json!(now() + 600)))
                .unwrap(),
            JwtError::NotYetValid,
        ),
        (
            "wrong issuer",
            issuer
                .sign(&with(google_claims(), "iss", json!("https://evil.example")))
                .unwrap(),
            JwtError::Issuer,
        ),
        (
            "unknown key id",
            issuer
                .sign_as(&google_claims(), Signing::UnknownKeyId)
                .unwrap(),
            JwtError::UnknownKey(format!("{}-retired", issuer.kid())),
        ),
        (
            "a key the issuer never published",
            issuer
                .sign_as(&google_claims(), Signing::UnpublishedKey)
                .unwrap(),
            JwtError::Signature,
        ),
        (
            "HS256 keyed with the public key",
            issuer
                .sign_as(&google_claims(), Signing::Hs256WithPublicKey)
                .unwrap(),
            JwtError::Algorithm("HS256".into()),
        ),
        (
            "tampered",
            issuer.sign_as(&google_claims(), Signing::Tampered).unwrap(),
            JwtError::Signature,
        ),
        (
            "signed by the other issuer",
            fakes.entra_oidc().sign(&google_claims()).unwrap(),
            JwtError::UnknownKey(fakes.entra_oidc().kid().into()),
        ),
    ];
    for (what, token, expected) in refusals {
        let refused = verifier.verify(&token).await;
        assert_eq!(refused, Err(expected), "{what}");
        let message = refused.unwrap_err().to_string();
        assert!(
            !message.contains(&token),
            "{what}: the token is never echoed"
        );
    }
    // `alg: none` has no algorithm jsonwebtoken knows: refused as not a JWT Purser takes.
    let none = issuer.sign_as(&google_claims(), Signing::None).unwrap();
    assert!(
        matches!(
            verifier.verify(&none).await,
            Err(JwtError::Malformed(_) | JwtError::Algorithm(_))
        ),
        "alg none"
    );

    // One fetch for everything: the unknown key ids came within the refetch interval
    // of the first fetch, so made-up ids cost no fetch at all.
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(verifier.cache().fetches(&fakes.google_jwks_url()), 1);
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_key_set_again_once_the_interval_has_passed() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .unwrap();
    // An interval of zero: every unknown kid may refetch (a rotated key is found at once).
    let verifier = google_verifier(&fakes).with_min_refetch(std::time::Duration::ZERO);
    let issuer = fakes.google_oidc();
    let good = issuer.sign(&google_claims()).unwrap();
    verifier.verify(&good).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    verifier.verify(&good).await.unwrap();
    assert_eq!(
        issuer.jwks_fetches(),
        1,
        "a known key is served from the cache"
    );
    let unknown = issuer
        .sign_as(&google_claims(), Signing::UnknownKeyId)
        .unwrap();
    assert!(matches!(
        verifier.verify(&unknown).await,
        Err(JwtError::UnknownKey(_))
    ));
    assert_eq!(issuer.jwks_fetches(), 2, "an unknown kid fetched again");
    verifier.verify(&good).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn entra_tokens_are_checked_for_the_tenant_and_application() {
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .unwrap();
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let app = "5f2bba1c-0000-4000-8000-0000000000aa";
    let verifier = JwksVerifier::new(
        JwtPolicy {
            jwks_url: fakes.entra_jwks_url(),
            issuers: entra_issuers(tenant),
            audience: app.into(),
            required: vec![],
        },
        5_000,
    )
    .unwrap();
    let issuer = fakes.entra_oidc();
    let claims = |iss: String, aud: &str| json!({"iss": iss, "aud": aud, "tid": tenant, "iat": now(), "nbf": now(), "exp": now() + 3600});
    for iss in entra_issuers(tenant) {
        verifier
            .verify(&issuer.sign(&claims(iss.clone(), app)).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{iss}: {e}"));
    }
    let other_tenant = entra_issuers("00000000-0000-0000-0000-000000000bad").remove(0);
    assert_eq!(
        verifier
            .verify(&issuer.sign(&claims(other_tenant, app)).unwrap())
            .await,
        Err(JwtError::Issuer)
    );
    assert_eq!(
        verifier
            .verify(
                &issuer
                    .sign(&claims(entra_issuers(tenant).remove(0), "another-app"))
                    .unwrap()
            )
            .await,
        Err(JwtError::Audience)
    );
    let mut early = claims(entra_issuers(tenant).remove(0), app);
    early["nbf"] = json!(now() + 600);
    assert_eq!(
        verifier.verify(&issuer.sign(&early).unwrap()).await,
        Err(JwtError::NotYetValid)
    );
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_unavailable_not_a_refusal() {
    let verifier = JwksVerifier::new(
        JwtPolicy {
            // Nothing listens on the discard port.
            jwks_url: "http://127.0.0.1:9/keys".into(),
            issuers: vec!["https://accounts.google.com".into()],
            audience: AUDIENCE.into(),
            required: vec![],
        },
        2_000,
    )
    .unwrap();
    let fakes = FakeMarketplaces::start(FakeConfig::default())
        .await
        .unwrap();
    let token = fakes.google_oidc().sign(&google_claims()).unwrap();
    let error = verifier.verify(&token).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
}
