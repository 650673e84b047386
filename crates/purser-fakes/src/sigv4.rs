//! Verifying AWS Signature Version 4 by recomputing it, as AWS does: the published algorithm
//! (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv_create-signed-request.html, read
//! 2026-11-23), checked against AWS's published test vectors in the tests below and, over
//! HTTP, against the `aws-sigv4` crate's signer (tests/aws.rs), an independent implementation.
//!
//! HMAC-SHA256 is written out here (RFC 2104, a dozen lines) over `sha2`, so the fake needs
//! no second digest crate version.

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// No `Authorization` header: AWS answers `MissingAuthenticationTokenException`.
    Missing,
    /// An access key id the fake does not know: `UnrecognizedClientException`.
    UnknownKey,
    /// Anything else: `InvalidSignatureException` with this message.
    Invalid(String),
}

pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    pub query: &'a str,
    /// Header names lower-case, in received order; repeated names repeated.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

pub(crate) struct Expected<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub now: Timestamp,
    /// AWS refuses a signature dated more than five minutes from its clock ("Signature
    /// expired: ... is now earlier than ... (... - 5 min.)", AWS SigV4 troubleshooting page,
    /// read 2026-11-23).
    pub max_skew: SignedDuration,
}

fn header<'a>(request: &'a Request<'_>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn verify(request: &Request<'_>, expected: &Expected<'_>) -> Result<(), SigError> {
    let authorization = header(request, "authorization").ok_or(SigError::Missing)?;
    let invalid = |m: &str| SigError::Invalid(m.to_owned());
    let rest = authorization
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| invalid("Authorization header requires the AWS4-HMAC-SHA256 algorithm."))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminal] = scope.as_slice() else {
        return Err(invalid("Credential should be scoped to a valid region."));
    };
    if *key != expected.access_key_id {
        return Err(SigError::UnknownKey);
    }
    if *terminal != "aws4_request" {
        return Err(invalid(
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ));
    }
    if *region != expected.region {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to a valid region. (got {region}, expected {})",
            expected.region
        )));
    }
    if *service != expected.service {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: '{}'.",
            expected.service
        )));
    }
    let amz_date = header(request, "x-amz-date").ok_or_else(|| {
        invalid(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        invalid("X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z'.")
    })?;
    if !amz_date.starts_with(date) {
        return Err(invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
        ));
    }
    let skew = expected.now.duration_since(signed_at);
    if skew > expected.max_skew {
        return Err(SigError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            amz(expected.now - expected.max_skew),
            amz(expected.now)
        )));
    }
    if skew < -expected.max_skew {
        return Err(SigError::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            amz(expected.now + expected.max_skew),
            amz(expected.now)
        )));
    }
    let signed: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    for required in ["host", "x-amz-date"] {
        if !signed.iter().any(|s| s == required) {
            return Err(SigError::Invalid(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    let canonical = canonical_request(request, &signed, &hex::encode(Sha256::digest(request.body)));
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(expected.secret_access_key, date, region, service);
    let computed = hex::encode(hmac(&key, to_sign.as_bytes()));
    if !constant_time_eq(computed.as_bytes(), signature.as_bytes()) {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

fn amz(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

fn parse_amz_date(text: &str) -> Option<Timestamp> {
    jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", text)
        .ok()?
        .to_datetime()
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// RFC 3986 encoding of everything but the unreserved characters, as SigV4 specifies.
fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Vec<u8> {
    fn hex_digit(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_digit);
            let lo = bytes.get(i + 2).copied().and_then(hex_digit);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

pub(crate) fn canonical_request(
    request: &Request<'_>,
    signed: &[String],
    payload_hash: &str,
) -> String {
    // Services other than S3 encode each path segment once more (the received path is
    // already encoded once).
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    let canonical_uri = path
        .split('/')
        .map(|segment| uri_encode(segment.as_bytes()))
        .collect::<Vec<_>>()
        .join("/");
    let mut query: Vec<(String, String)> = request
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        request.method,
        signed.join(";")
    )
}

pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// AWS's published signing-key example (secret above, 20120215, us-east-1, iam).
    #[test]
    fn signing_key_matches_aws_example() {
        assert_eq!(
            hex::encode(signing_key(SECRET, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    fn vanilla(method: &str, signature: &str) -> Result<(), SigError> {
        let headers = vec![
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
            (
                "authorization".to_owned(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
                ),
            ),
        ];
        let request = Request {
            method,
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        verify(
            &request,
            &Expected {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: SECRET,
                region: "us-east-1",
                service: "service",
                now: "2015-08-30T12:37:00Z".parse().unwrap(),
                max_skew: SignedDuration::from_mins(5),
            },
        )
    }

    /// The SigV4 test suite's get-vanilla and post-vanilla cases.
    #[test]
    fn aws_test_suite_vanilla_cases_verify() {
        vanilla(
            "GET",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        )
        .unwrap();
        vanilla(
            "POST",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        )
        .unwrap();
        assert!(matches!(
            vanilla(
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30"
            ),
            Err(SigError::Invalid(_))
        ));
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        let headers = vec![("host".to_owned(), "h".to_owned())];
        let request = Request {
            method: "GET",
            path: "/",
            query: "b=2&a=x%20y&a=1",
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(&request, &["host".to_owned()], "e3");
        assert_eq!(canonical, "GET\n/\na=1&a=x%20y&b=2\nhost:h\n\nhost\ne3");
    }
}
