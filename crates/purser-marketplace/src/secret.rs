//! Secrets in configuration: a value that never prints, and where it comes from.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ClientError;

/// A credential (client secret, secret access key, bearer token). Debug and Display
/// print `[redacted]`, so a secret cannot reach a log line or an exchange by accident;
/// [`Secret::expose`] is the one way to read it, at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where configuration finds a secret: inline (`client_secret = "…"`), in a file
/// (`client_secret = { file = "/run/secrets/azure" }`, for mounted secrets) or in an
/// environment variable (`client_secret = { env = "PURSER_AZURE_SECRET" }`). Resolved
/// once, when a client is built, so a missing secret fails at start-up.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(Secret),
    File { file: PathBuf },
    Env { env: String },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline([redacted])"),
            SecretSource::File { file } => write!(f, "File({})", file.display()),
            SecretSource::Env { env } => write!(f, "Env({env})"),
        }
    }
}

impl SecretSource {
    /// The secret's value. A file's trailing line break is dropped (secrets mounted
    /// from files usually end with one); an empty secret is an error, not a credential.
    pub fn resolve(&self, what: &str) -> Result<Secret, ClientError> {
        let value = match self {
            SecretSource::Inline(secret) => secret.0.clone(),
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map_err(|e| {
                    ClientError::Config(format!("{what}: cannot read {}: {e}", file.display()))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            SecretSource::Env { env } => std::env::var(env).map_err(|_| {
                ClientError::Config(format!(
                    "{what}: the environment variable {env} is not set (or not UTF-8)"
                ))
            })?,
        };
        if value.is_empty() {
            return Err(ClientError::Config(format!("{what} is empty")));
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        secret: SecretSource,
    }

    fn parse(json: &str) -> SecretSource {
        serde_json::from_str::<Holder>(json).expect("holder").secret
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        let source = parse(r#"{"secret": "hunter2"}"#);
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(source.resolve("x").expect("inline").expose(), "hunter2");
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").expect("write");
        let source = parse(&format!(
            r#"{{"secret": {{"file": {}}}}}"#,
            serde_json::to_string(&path).expect("path")
        ));
        assert_eq!(source.resolve("x").expect("file").expose(), "from-file");

        let missing = parse(r#"{"secret": {"env": "PURSER_MARKETPLACE_TEST_SURELY_UNSET"}}"#);
        let err = missing.resolve("azure.client_secret").expect_err("unset");
        assert!(
            err.to_string()
                .contains("PURSER_MARKETPLACE_TEST_SURELY_UNSET")
        );
        assert!(parse(r#"{"secret": ""}"#).resolve("x").is_err());
    }
}
