//! The fakes' RSA signing keys, each made once per process (RSA key generation takes a
//! moment) and shared by whoever signs with it: SNS's certificate key and the fake
//! OIDC issuers' keys.

use std::sync::OnceLock;

/// Which key: each signer its own, so that a verifier trusting one never accepts
/// another's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySlot {
    Sns,
    Google,
    Entra,
    /// Never published in any key set: tokens it signs must be refused.
    Unpublished,
}

/// The key of `slot` (2048 bits, exponent 65537).
pub(crate) fn rsa_key(slot: KeySlot) -> &'static rsa::PrivateKey {
    static SNS: OnceLock<rsa::PrivateKey> = OnceLock::new();
    static GOOGLE: OnceLock<rsa::PrivateKey> = OnceLock::new();
    static ENTRA: OnceLock<rsa::PrivateKey> = OnceLock::new();
    static UNPUBLISHED: OnceLock<rsa::PrivateKey> = OnceLock::new();
    let cell = match slot {
        KeySlot::Sns => &SNS,
        KeySlot::Google => &GOOGLE,
        KeySlot::Entra => &ENTRA,
        KeySlot::Unpublished => &UNPUBLISHED,
    };
    cell.get_or_init(|| {
        use rsa::Generate;
        rsa::PrivateKey::generate()
    })
}
