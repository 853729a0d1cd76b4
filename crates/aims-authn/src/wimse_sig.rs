//! WIMSE Workload-to-Workload Authentication with HTTP Signatures,
//! draft-ietf-wimse-http-signature-07 (AIMS AU-8, AU-9), on RFC 9421.
//!
//! The WIT's `cnf` key signs the request (and, when asked, the response) with the algorithm of
//! `cnf.jwk.alg` (RFC 9421 §3.3.7); the signature is found by its `tag`, never by label; no
//! `keyid` or `alg` parameter is allowed. Requests cover `@method`, `@path`, `@query` and every
//! present `content-type`, `content-digest`, `authorization`, `txn-token` and
//! `workload-identity-token`; a body is covered through `Content-Digest` (RFC 9530), recomputed
//! by the receiver. Nonces are one-time, whoever sends them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SharedClock, unix_seconds};
use aims_credentials::{BundleSource, PrivateKey, PublicKey, WitProfile};

use crate::verified_cache::WitVerifier;
use http::{HeaderMap, HeaderValue};

use crate::error::AuthnError;
use crate::httpsig::digest::{DigestAlgorithm, content_digest, verify_content_digest};
use crate::httpsig::{
    Algorithm, Component, HttpSigError, Message, RequestParts, SignatureInput, Signatures,
    SigningKey, VerifyingKey, sign, verify,
};
use crate::replay::{ReplayCache, ReplayKind};
use crate::wpt::{Mechanism, TXN_TOKEN_HEADER, VerifiedWorkload, single_header};

/// The signature tag of the profile (-07 §4.1).
pub const WIMSE_TAG: &str = "wimse-workload-to-workload";
/// The label AIMS signs under (the draft's example label).
pub const LABEL: &str = "sig1";
const WIT: &str = aims_credentials::wit::WIT_HEADER;

/// Request fields that must be covered whenever present (-07 §4.1).
const REQUEST_FIELDS: &[&str] = &[
    "content-type",
    "content-digest",
    "authorization",
    TXN_TOKEN_HEADER,
    WIT,
];
/// Response fields that must be covered whenever present (-07 §4.2).
const RESPONSE_FIELDS: &[&str] = &["content-type", "content-digest", WIT];

fn sig_err(e: HttpSigError) -> AuthnError {
    match e {
        HttpSigError::BadSignature => AuthnError::InvalidProof("signature does not verify".into()),
        HttpSigError::MissingComponent(c) => AuthnError::MissingComponent(c),
        other => AuthnError::Malformed(other.to_string()),
    }
}

fn random_nonce() -> Result<String, AuthnError> {
    aims_credentials::jwt_authority::new_kid().map_err(|e| AuthnError::Malformed(e.to_string()))
}

fn header_value(s: &str) -> Result<HeaderValue, AuthnError> {
    HeaderValue::from_str(s).map_err(|_| AuthnError::Malformed("header value".into()))
}

fn set_digest(headers: &mut HeaderMap, body: &[u8]) -> Result<(), AuthnError> {
    if !body.is_empty() {
        headers.insert(
            "content-digest",
            header_value(&content_digest(body, DigestAlgorithm::Sha256))?,
        );
    }
    Ok(())
}

fn append_signature(
    headers: &mut HeaderMap,
    fields: crate::httpsig::SignatureFields,
) -> Result<(), AuthnError> {
    headers.append("signature-input", header_value(&fields.signature_input)?);
    headers.append("signature", header_value(&fields.signature)?);
    Ok(())
}

/// What the client does to sign a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSigning<'a> {
    /// The recipient: the target URI without query or fragment, or a deployment value.
    pub audience: &'a str,
    /// Signature lifetime (`expires - created`).
    pub ttl: Duration,
    /// Ask the server to sign its response (`wimse-sign-response`).
    pub sign_response: bool,
}

/// Signs a request with the WIT's `cnf` key: sets `Workload-Identity-Token` and, for a body,
/// `Content-Digest`, then appends `Signature-Input`/`Signature`. Returns the nonce, which a
/// signed response must echo.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    key: &PrivateKey,
    wit: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    signing: &RequestSigning<'_>,
    now: SystemTime,
) -> Result<String, AuthnError> {
    headers.insert(WIT, header_value(wit)?);
    set_digest(headers, body)?;
    let mut components = vec![
        Component::new("@method").map_err(sig_err)?,
        Component::new("@path").map_err(sig_err)?,
        Component::new("@query").map_err(sig_err)?,
    ];
    for f in REQUEST_FIELDS {
        if headers.contains_key(*f) {
            components.push(Component::new(f).map_err(sig_err)?);
        }
    }
    let nonce = random_nonce()?;
    let mut input = wimse_input(components, now, signing.ttl, &nonce)
        .and_then(|i| i.param("wimse-aud", sfv_string(signing.audience)?))
        .map_err(sig_err)?;
    if signing.sign_response {
        input = input.param("wimse-sign-response", true).map_err(sig_err)?;
    }
    let headers_snapshot = headers.clone();
    let msg = Message::Request(RequestParts::from_http(
        method,
        uri,
        &headers_snapshot,
        "https",
    ));
    let fields = sign(&msg, LABEL, &input, SigningKey::Private(key)).map_err(sig_err)?;
    append_signature(headers, fields)?;
    Ok(nonce)
}

/// The parameters every WIMSE signature carries, in the draft's order: created, expires,
/// nonce, tag.
fn wimse_input(
    components: Vec<Component>,
    now: SystemTime,
    ttl: Duration,
    nonce: &str,
) -> Result<SignatureInput, HttpSigError> {
    let created = unix_seconds(now);
    let expires = created.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(300));
    SignatureInput::new(components)
        .param("created", sfv_int(created)?)?
        .param("expires", sfv_int(expires)?)?
        .param("nonce", sfv_string(nonce)?)?
        .param("tag", sfv_string(WIMSE_TAG)?)
}

fn sfv_int(i: i64) -> Result<sfv::BareItem, HttpSigError> {
    sfv::Integer::try_from(i)
        .map(sfv::BareItem::Integer)
        .map_err(|e| HttpSigError::Malformed(e.to_string()))
}

fn sfv_string(s: &str) -> Result<sfv::BareItem, HttpSigError> {
    sfv::String::from_string(s.to_owned())
        .map(sfv::BareItem::String)
        .map_err(|(e, _)| HttpSigError::Malformed(e.to_string()))
}

/// Signs a response (-07 §4.2) with the responder's WIT key, echoing the request's nonce.
#[allow(clippy::too_many_arguments)]
pub fn sign_response(
    key: &PrivateKey,
    wit: &str,
    status: u16,
    headers: &mut HeaderMap,
    body: &[u8],
    request: RequestParts<'_>,
    request_nonce: &str,
    ttl: Duration,
    now: SystemTime,
) -> Result<(), AuthnError> {
    headers.insert(WIT, header_value(wit)?);
    set_digest(headers, body)?;
    let mut components = vec![Component::new("@status").map_err(sig_err)?];
    for name in ["@method", "@path", "@query"] {
        components.push(
            Component::new(name)
                .and_then(Component::from_request)
                .map_err(sig_err)?,
        );
    }
    for f in RESPONSE_FIELDS {
        if headers.contains_key(*f) {
            components.push(Component::new(f).map_err(sig_err)?);
        }
    }
    let input = wimse_input(components, now, ttl, &random_nonce()?)
        .and_then(|i| i.param("wimse-req-nonce", sfv_string(request_nonce)?))
        .map_err(sig_err)?;
    let snapshot = headers.clone();
    let msg = Message::Response {
        status,
        headers: &snapshot,
        request: Some(request),
    };
    let fields = sign(&msg, LABEL, &input, SigningKey::Private(key)).map_err(sig_err)?;
    append_signature(headers, fields)
}

/// The freshness rules: `created` and `expires` present, ordered, not too far apart, and `now`
/// inside the window give or take `skew`.
fn check_window(
    input: &SignatureInput,
    now: i64,
    skew: i64,
    max_lifetime: i64,
) -> Result<i64, AuthnError> {
    let created = input
        .int_param("created")
        .ok_or_else(|| AuthnError::Malformed("signature has no created".into()))?;
    let expires = input
        .int_param("expires")
        .ok_or_else(|| AuthnError::Malformed("signature has no expires".into()))?;
    if expires <= created {
        return Err(AuthnError::Malformed("expires is not after created".into()));
    }
    if expires - created > max_lifetime {
        return Err(AuthnError::LifetimeTooLong(max_lifetime));
    }
    if now.saturating_add(skew) < created || now > expires.saturating_add(skew) {
        return Err(AuthnError::Expired);
    }
    Ok(expires)
}

/// The single WIMSE signature of a message (selected by `tag`), with the profile's parameter
/// rules: no `keyid`, no `alg`, a `nonce`.
fn wimse_signature(headers: &HeaderMap) -> Result<(SignatureInput, Vec<u8>), AuthnError> {
    let sigs = Signatures::from_headers(headers).map_err(sig_err)?;
    let tagged = sigs.with_tag(WIMSE_TAG);
    let (_, input, signature) = match tagged.as_slice() {
        [one] => *one,
        [] => return Err(AuthnError::Missing),
        _ => {
            return Err(AuthnError::Malformed(
                "more than one WIMSE signature".into(),
            ));
        }
    };
    for forbidden in ["keyid", "alg"] {
        if input.params.contains_key(forbidden) {
            return Err(AuthnError::Malformed(format!(
                "the WIMSE profile forbids the {forbidden} parameter"
            )));
        }
    }
    if input.string_param("nonce").is_none_or(str::is_empty) {
        return Err(AuthnError::Malformed("signature has no nonce".into()));
    }
    Ok((input.clone(), signature.clone()))
}

fn require_covered(
    input: &SignatureInput,
    headers: &HeaderMap,
    derived: &[&str],
    fields: &[&str],
    req_derived: &[&str],
) -> Result<(), AuthnError> {
    for d in derived {
        if !input.covers(d) {
            return Err(AuthnError::MissingComponent((*d).to_owned()));
        }
    }
    for d in req_derived {
        if !input.covers_from_request(d) {
            return Err(AuthnError::MissingComponent(format!("\"{d}\";req")));
        }
    }
    for f in fields {
        if headers.contains_key(*f) && !input.covers(f) {
            return Err(AuthnError::MissingComponent((*f).to_owned()));
        }
    }
    Ok(())
}

fn check_body(headers: &HeaderMap, body: &[u8]) -> Result<(), AuthnError> {
    match single_header(headers, "content-digest")? {
        Some(d) => verify_content_digest(d, body).map_err(|e| AuthnError::Tampered(e.to_string())),
        None if body.is_empty() => Ok(()),
        None => Err(AuthnError::MissingComponent(
            "content-digest (the message has a body)".into(),
        )),
    }
}

/// What a verified request signature established.
#[derive(Debug, Clone)]
pub struct VerifiedRequestSignature {
    /// The nonce, which a signed response echoes.
    pub nonce: String,
    /// Whether the client asked for a signed response.
    pub sign_response: bool,
}

/// Policy for signature verification.
#[derive(Debug, Clone, Copy)]
pub struct SignaturePolicy {
    /// Clock skew tolerated, seconds.
    pub skew: i64,
    /// Longest `expires - created` accepted, seconds.
    pub max_lifetime: i64,
}

/// Verifies the WIMSE signature of a request with the signer's `cnf` key, without checking the
/// WIT itself (callers verify the WIT first, or use [`WimseSigVerifier`]). The nonce is not
/// recorded here.
pub fn verify_request_signature(
    request: RequestParts<'_>,
    body: &[u8],
    cnf_key: &PublicKey,
    cnf_alg: jsonwebtoken::Algorithm,
    audience: &str,
    now: i64,
    policy: SignaturePolicy,
) -> Result<(VerifiedRequestSignature, i64), AuthnError> {
    let headers = request.headers;
    let (input, signature) = wimse_signature(headers)?;
    require_covered(
        &input,
        headers,
        &["@method", "@path", "@query"],
        REQUEST_FIELDS,
        &[],
    )?;
    if !input.covers(WIT) {
        return Err(AuthnError::MissingComponent(WIT.into()));
    }
    let expires = check_window(&input, now, policy.skew, policy.max_lifetime)?;
    match input.string_param("wimse-aud") {
        Some(a) if a == audience => {}
        Some(a) => {
            return Err(AuthnError::WrongAudience {
                expected: audience.to_owned(),
                found: a.to_owned(),
            });
        }
        None => return Err(AuthnError::Malformed("signature has no wimse-aud".into())),
    }
    check_body(headers, body)?;
    verify(
        &Message::Request(request),
        &input,
        &signature,
        &VerifyingKey::Public(Box::new(cnf_key.clone()), Algorithm::Jws(cnf_alg)),
    )
    .map_err(sig_err)?;
    Ok((
        VerifiedRequestSignature {
            nonce: input.string_param("nonce").unwrap_or_default().to_owned(),
            sign_response: input.flag("wimse-sign-response"),
        },
        expires,
    ))
}

/// Verifies the WIMSE signature of a response with the responder's `cnf` key (-07 §4.2):
/// `@status`, the request's `@method`/`@path`/`@query`, the WIT, and `wimse-req-nonce` equal to
/// the request's nonce.
#[allow(clippy::too_many_arguments)]
pub fn verify_response_signature(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    request: RequestParts<'_>,
    request_nonce: &str,
    cnf_key: &PublicKey,
    cnf_alg: jsonwebtoken::Algorithm,
    now: i64,
    policy: SignaturePolicy,
) -> Result<(), AuthnError> {
    let (input, signature) = wimse_signature(headers)?;
    require_covered(
        &input,
        headers,
        &["@status"],
        RESPONSE_FIELDS,
        &["@method", "@path", "@query"],
    )?;
    if !input.covers(WIT) {
        return Err(AuthnError::MissingComponent(WIT.into()));
    }
    check_window(&input, now, policy.skew, policy.max_lifetime)?;
    if input.string_param("wimse-req-nonce") != Some(request_nonce) {
        return Err(AuthnError::BindingMismatch("wimse-req-nonce".into()));
    }
    check_body(headers, body)?;
    verify(
        &Message::Response {
            status,
            headers,
            request: Some(request),
        },
        &input,
        &signature,
        &VerifyingKey::Public(Box::new(cnf_key.clone()), Algorithm::Jws(cnf_alg)),
    )
    .map_err(sig_err)
}

/// Verifies WIT + HTTP-signature presentations, nonce replay included.
#[derive(Clone)]
pub struct WimseSigVerifier {
    wits: Arc<WitVerifier>,
    replay: Arc<ReplayCache>,
    clock: SharedClock,
    max_lifetime: i64,
}

impl std::fmt::Debug for WimseSigVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WimseSigVerifier")
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl WimseSigVerifier {
    /// A verifier accepting signatures that live at most 5 minutes.
    pub fn new(
        bundles: Arc<dyn BundleSource>,
        replay: Arc<ReplayCache>,
        clock: SharedClock,
    ) -> Self {
        Self {
            wits: Arc::new(WitVerifier::new(bundles, WitProfile::Wimse, 10_000)),
            replay,
            clock,
            max_lifetime: 300,
        }
    }

    /// Shares a WIT verifier (and its cache) with other verifiers.
    pub fn with_wit_verifier(mut self, wits: Arc<WitVerifier>) -> Self {
        self.wits = wits;
        self
    }

    /// The WIT verifier.
    pub fn wit_verifier(&self) -> &Arc<WitVerifier> {
        &self.wits
    }

    /// Sets the longest signature lifetime accepted.
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Verifies a signed request addressed to `audience`: the WIT first (-07 §5), then the
    /// signature, then the nonce is recorded.
    pub fn verify(
        &self,
        request: RequestParts<'_>,
        body: &[u8],
        audience: &str,
    ) -> Result<(VerifiedWorkload, VerifiedRequestSignature), AuthnError> {
        let now = self.clock.unix_now();
        let skew = self.replay.skew();
        let wit_token = single_header(request.headers, WIT)?.ok_or_else(|| {
            AuthnError::Malformed("signature without a Workload-Identity-Token".into())
        })?;
        let wit = self
            .wits
            .verify(wit_token, now, skew)
            .map_err(AuthnError::InvalidWit)?;
        let (verified, expires) = verify_request_signature(
            request,
            body,
            &wit.cnf_key,
            wit.cnf_alg,
            audience,
            now,
            SignaturePolicy {
                skew,
                max_lifetime: self.max_lifetime,
            },
        )?;
        // -07 §5: duplicate nonces are refused whoever the sender.
        self.replay.check_and_insert_owned(
            ReplayKind::SignatureNonce,
            "",
            wit.subject.as_str(),
            &verified.nonce,
            expires,
            now,
        )?;
        let txn_token = single_header(request.headers, TXN_TOKEN_HEADER)?.map(str::to_owned);
        Ok((
            VerifiedWorkload {
                id: wit.subject.clone(),
                mechanism: Mechanism::HttpSignature,
                wit: Some(wit),
                txn_token,
            },
            verified,
        ))
    }
}
