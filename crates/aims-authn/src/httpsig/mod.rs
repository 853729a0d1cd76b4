//! HTTP Message Signatures (RFC 9421): component values, the signature base, and signing and
//! verifying with every algorithm of RFC 9421 §3.3 plus JWS algorithms chosen by the key
//! (§3.3.7, as the WIMSE profile uses them). Structured fields are parsed and serialized by the
//! `sfv` crate (RFC 9651).
//!
//! This layer applies no policy: which components must be covered, which parameters are
//! required and how fresh a signature must be belong to the profile on top
//! ([`crate::wimse_sig`]).

pub mod digest;

use aims_credentials::{PrivateKey, PublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sfv::{
    BareItem, Dictionary, FieldType as _, InnerList, Item, Key, List, ListEntry, Parameters, Parser,
};

/// The largest `Signature-Input` or `Signature` field AIMS parses (8 KiB).
pub const MAX_SIGNATURE_FIELD: usize = 8 * 1024;

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSigError {
    /// A signature field is malformed.
    #[error("malformed {0}")]
    Malformed(String),
    /// A covered component is absent from the message.
    #[error("covered component {0} is not in the message")]
    MissingComponent(String),
    /// A component identifier AIMS does not implement, or one not allowed here.
    #[error("unsupported component {0}")]
    UnsupportedComponent(String),
    /// The same component is covered twice (RFC 9421 §2.5).
    #[error("component {0} is covered twice")]
    DuplicateComponent(String),
    /// A signature label has no matching input, or an input no signature.
    #[error("no signature labelled {0:?}")]
    NoSuchLabel(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The algorithm is unknown or not usable with the key.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
}

fn malformed(what: impl Into<String>) -> HttpSigError {
    HttpSigError::Malformed(what.into())
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// A request as signature components see it (RFC 9421 §2.2).
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The authority: `host[:port]` (from the absolute URI, `:authority`, or `Host`).
    pub authority: &'a str,
    /// The path, not decoded.
    pub path: &'a str,
    /// The query without `?`, if any.
    pub query: Option<&'a str>,
    /// Header fields.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestParts<'a> {
    /// The parts of an `http` request. `scheme` is what the server was reached over: a server
    /// behind TLS termination knows it from configuration, never from the message.
    pub fn from_http(
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a HeaderMap,
        scheme: &'a str,
    ) -> Self {
        let authority = uri
            .authority()
            .map(http::uri::Authority::as_str)
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        Self {
            method: method.as_str(),
            scheme: uri.scheme_str().unwrap_or(scheme),
            authority,
            path: uri.path(),
            query: uri.query(),
            headers,
        }
    }
}

/// A message to sign or verify: a request, or a response with (optionally) its request for
/// `;req` components.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A request.
    Request(RequestParts<'a>),
    /// A response.
    Response {
        /// Its status.
        status: u16,
        /// Its header fields.
        headers: &'a HeaderMap,
        /// The request it answers, for `;req` components.
        request: Option<RequestParts<'a>>,
    },
}

impl<'a> Message<'a> {
    fn headers(&self) -> &'a HeaderMap {
        match self {
            Message::Request(r) => r.headers,
            Message::Response { headers, .. } => headers,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Components.

/// A component identifier (RFC 9421 §2): a name with parameters, held as the structured-field
/// item it serializes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Component(Item);

impl Component {
    /// A derived component (`@method`, …) or a header field (lowercased).
    pub fn new(name: &str) -> Result<Self, HttpSigError> {
        let name = if name.starts_with('@') {
            name.to_owned()
        } else {
            name.to_ascii_lowercase()
        };
        let s = sfv::String::from_string(name)
            .map_err(|(e, _)| malformed(format!("component name: {e}")))?;
        Ok(Self(Item::new(BareItem::String(s))))
    }

    /// Adds a parameter (`req`, `sf`, `bs`, `tr` as booleans; `key`, `name` as strings).
    pub fn with_param(
        mut self,
        key: &str,
        value: impl Into<BareItem>,
    ) -> Result<Self, HttpSigError> {
        let k = Key::from_string(key.to_owned()).map_err(|(e, _)| malformed(e.to_string()))?;
        self.0.params.insert(k, value.into());
        Ok(self)
    }

    /// The same component taken from the request (`;req`, RFC 9421 §2.4).
    pub fn from_request(self) -> Result<Self, HttpSigError> {
        self.with_param("req", true)
    }

    /// The name.
    pub fn name(&self) -> &str {
        match &self.0.bare_item {
            BareItem::String(s) => s.as_str(),
            _ => "",
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.0.params.get(key), Some(BareItem::Boolean(true)))
    }

    fn string_param(&self, key: &str) -> Option<&str> {
        match self.0.params.get(key) {
            Some(BareItem::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The identifier as it appears in the signature base, e.g. `"@query-param";name="Pet"`.
    pub fn identifier(&self) -> String {
        self.0.serialize()
    }
}

/// RFC 9421 §2.2.8: the application/x-www-form-urlencoded percent-encode set.
const QUERY_PARAM_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Field names whose values are structured-field dictionaries (for `;sf` and `;key`).
const DICTIONARY_FIELDS: &[&str] = &[
    "signature",
    "signature-input",
    "accept-signature",
    "content-digest",
    "repr-digest",
    "want-content-digest",
    "want-repr-digest",
    "cache-status",
    "priority",
];

fn derived_value(
    req: &RequestParts<'_>,
    name: &str,
    c: &Component,
) -> Result<String, HttpSigError> {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let query = req
        .query
        .map_or_else(|| "?".to_owned(), |q| format!("?{q}"));
    Ok(match name {
        "@method" => req.method.to_owned(),
        "@scheme" => req.scheme.to_ascii_lowercase(),
        "@authority" => normalize_authority(req.scheme, req.authority),
        "@target-uri" => format!(
            "{}://{}{}{}",
            req.scheme.to_ascii_lowercase(),
            req.authority,
            path,
            req.query.map(|q| format!("?{q}")).unwrap_or_default()
        ),
        "@request-target" => format!(
            "{path}{}",
            req.query.map(|q| format!("?{q}")).unwrap_or_default()
        ),
        "@path" => path.to_owned(),
        "@query" => query,
        "@query-param" => {
            let wanted = c
                .string_param("name")
                .ok_or_else(|| malformed("@query-param without name"))?;
            let values: Vec<String> = form_urlencoded::parse(req.query.unwrap_or("").as_bytes())
                .filter(|(k, _)| k == wanted)
                .map(|(_, v)| utf8_percent_encode(&v, QUERY_PARAM_SET).to_string())
                .collect();
            match values.as_slice() {
                [one] => one.clone(),
                [] => return Err(HttpSigError::MissingComponent(c.identifier())),
                // RFC 9421 §2.2.8: a repeated parameter must not be signed by name.
                _ => {
                    return Err(HttpSigError::UnsupportedComponent(format!(
                        "{} (repeated)",
                        c.identifier()
                    )));
                }
            }
        }
        _ => return Err(HttpSigError::UnsupportedComponent(c.identifier())),
    })
}

/// RFC 9421 §2.2.3: lowercase host, default port removed.
fn normalize_authority(scheme: &str, authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    match a.strip_suffix(default) {
        Some(stripped) if !default.is_empty() => stripped.to_owned(),
        _ => a,
    }
}

fn field_value(headers: &HeaderMap, c: &Component) -> Result<String, HttpSigError> {
    let name = c.name();
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map(str::trim))
        .collect::<Result<_, _>>()
        .map_err(|_| malformed(format!("field {name} is not visible ASCII")))?;
    if lines.is_empty() {
        return Err(HttpSigError::MissingComponent(c.identifier()));
    }
    if c.flag("tr") {
        return Err(HttpSigError::UnsupportedComponent(format!(
            "{} (trailers)",
            c.identifier()
        )));
    }
    if c.flag("bs") {
        return Ok(lines
            .iter()
            .map(|l| format!(":{}:", STANDARD.encode(l.as_bytes())))
            .collect::<Vec<_>>()
            .join(", "));
    }
    let joined = lines.join(", ");
    if let Some(member) = c.string_param("key") {
        let dict: Dictionary = Parser::new(&joined)
            .parse()
            .map_err(|e| malformed(format!("{name} is not a dictionary: {e}")))?;
        let entry = dict
            .get(member)
            .ok_or_else(|| HttpSigError::MissingComponent(c.identifier()))?;
        return serialize_entry(entry);
    }
    if c.flag("sf") {
        return reserialize(name, &joined);
    }
    Ok(joined)
}

fn serialize_entry(entry: &ListEntry) -> Result<String, HttpSigError> {
    match entry {
        ListEntry::Item(item) => Ok(item.serialize()),
        ListEntry::InnerList(_) => {
            let list: List = vec![entry.clone()];
            list.serialize()
                .ok_or_else(|| malformed("empty inner list"))
        }
    }
}

/// Strict parse and re-serialization of a structured field (RFC 9421 §2.1.1).
fn reserialize(name: &str, value: &str) -> Result<String, HttpSigError> {
    let err = |e: sfv::Error| malformed(format!("{name} is not a structured field: {e}"));
    if DICTIONARY_FIELDS.contains(&name) {
        let d: Dictionary = Parser::new(value).parse().map_err(err)?;
        return d.serialize().ok_or_else(|| malformed("empty dictionary"));
    }
    if let Ok(l) = Parser::new(value).parse::<List>() {
        return l.serialize().ok_or_else(|| malformed("empty list"));
    }
    let i: Item = Parser::new(value).parse().map_err(err)?;
    Ok(i.serialize())
}

/// The value of one covered component in `msg`.
pub fn component_value(msg: &Message<'_>, c: &Component) -> Result<String, HttpSigError> {
    let name = c.name();
    if name == "@signature-params" {
        return Err(HttpSigError::UnsupportedComponent(c.identifier()));
    }
    let from_request = c.flag("req");
    match (msg, from_request) {
        (Message::Request(_), true) => Err(malformed("req parameter on a request component")),
        (Message::Response { request: None, .. }, true) => {
            Err(HttpSigError::MissingComponent(c.identifier()))
        }
        (
            Message::Response {
                request: Some(req), ..
            },
            true,
        ) => {
            if name.starts_with('@') {
                derived_value(req, name, c)
            } else {
                field_value(req.headers, c)
            }
        }
        (Message::Response { status, .. }, false) if name == "@status" => {
            Ok(format!("{status:03}"))
        }
        (Message::Response { .. }, false) if name.starts_with('@') => Err(
            HttpSigError::UnsupportedComponent(format!("{} on a response", c.identifier())),
        ),
        (Message::Request(req), false) if name.starts_with('@') => {
            if name == "@status" {
                return Err(HttpSigError::UnsupportedComponent(
                    "@status on a request".into(),
                ));
            }
            derived_value(req, name, c)
        }
        (m, false) => field_value(m.headers(), c),
    }
}

// ---------------------------------------------------------------------------------------------
// Signature input and base.

/// One signature's covered components and parameters (a `Signature-Input` member).
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureInput {
    /// The components, in order.
    pub components: Vec<Component>,
    /// The parameters, in order.
    pub params: Parameters,
}

impl SignatureInput {
    /// Input covering `components` with no parameters yet.
    pub fn new(components: Vec<Component>) -> Self {
        Self {
            components,
            params: Parameters::new(),
        }
    }

    /// Appends a parameter (order is kept: the serialization is signed).
    pub fn param(mut self, key: &str, value: impl Into<BareItem>) -> Result<Self, HttpSigError> {
        let k = Key::from_string(key.to_owned()).map_err(|(e, _)| malformed(e.to_string()))?;
        self.params.insert(k, value.into());
        Ok(self)
    }

    /// A string parameter.
    pub fn string_param(&self, key: &str) -> Option<&str> {
        match self.params.get(key) {
            Some(BareItem::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// An integer parameter.
    pub fn int_param(&self, key: &str) -> Option<i64> {
        match self.params.get(key) {
            Some(BareItem::Integer(i)) => Some(i64::from(*i)),
            _ => None,
        }
    }

    /// A boolean parameter (absent is false).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.params.get(key), Some(BareItem::Boolean(true)))
    }

    /// Whether a component with this name (and no `req`) is covered.
    pub fn covers(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name() == name && !c.flag("req"))
    }

    /// Whether a `;req` component with this name is covered.
    pub fn covers_from_request(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name() == name && c.flag("req"))
    }

    /// The serialized inner list with parameters: the `@signature-params` value and the
    /// `Signature-Input` member value.
    pub fn serialize(&self) -> Result<String, HttpSigError> {
        let inner = InnerList::with_params(
            self.components.iter().map(|c| c.0.clone()).collect(),
            self.params.clone(),
        );
        let list: List = vec![ListEntry::InnerList(inner)];
        list.serialize()
            .ok_or_else(|| malformed("empty signature input"))
    }

    /// The signature base (RFC 9421 §2.5): one line per component, then `@signature-params`,
    /// with no trailing newline.
    pub fn signature_base(&self, msg: &Message<'_>) -> Result<String, HttpSigError> {
        let mut base = String::with_capacity(256);
        let mut seen: Vec<String> = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let id = c.identifier();
            if seen.contains(&id) {
                return Err(HttpSigError::DuplicateComponent(id));
            }
            let value = component_value(msg, c)?;
            base.push_str(&id);
            base.push_str(": ");
            base.push_str(&value);
            base.push('\n');
            seen.push(id);
        }
        base.push_str("\"@signature-params\": ");
        base.push_str(&self.serialize()?);
        Ok(base)
    }
}

/// The signatures of a message: each label with its input and signature bytes.
#[derive(Debug, Clone)]
pub struct Signatures(pub Vec<(String, SignatureInput, Vec<u8>)>);

fn joined_field(headers: &HeaderMap, name: &str) -> Result<Option<String>, HttpSigError> {
    let mut lines = Vec::new();
    for v in headers.get_all(name) {
        lines.push(
            v.to_str()
                .map_err(|_| malformed(format!("{name} is not ASCII")))?
                .trim()
                .to_owned(),
        );
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let joined = lines.join(", ");
    if joined.len() > MAX_SIGNATURE_FIELD {
        return Err(malformed(format!(
            "{name} larger than {MAX_SIGNATURE_FIELD} bytes"
        )));
    }
    Ok(Some(joined))
}

/// Parses a `Signature-Input` field value (a dictionary of inner lists of strings).
pub fn parse_signature_input(value: &str) -> Result<Vec<(String, SignatureInput)>, HttpSigError> {
    let dict: Dictionary = Parser::new(value)
        .parse()
        .map_err(|e| malformed(format!("Signature-Input: {e}")))?;
    dict.into_iter()
        .map(|(label, entry)| {
            let ListEntry::InnerList(inner) = entry else {
                return Err(malformed(format!(
                    "Signature-Input {label} is not an inner list"
                )));
            };
            let components = inner
                .items
                .into_iter()
                .map(|item| match &item.bare_item {
                    BareItem::String(s) if !s.as_str().is_empty() => {
                        let n = s.as_str();
                        if !n.starts_with('@') && n.chars().any(|c| c.is_ascii_uppercase()) {
                            return Err(malformed(format!("component {n:?} is not lowercase")));
                        }
                        Ok(Component(item))
                    }
                    _ => Err(malformed("component identifiers are strings")),
                })
                .collect::<Result<_, _>>()?;
            Ok((
                label.as_str().to_owned(),
                SignatureInput {
                    components,
                    params: inner.params,
                },
            ))
        })
        .collect()
}

impl Signatures {
    /// Reads every signature of a message. Each `Signature` member must have a matching
    /// `Signature-Input` member and vice versa.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, HttpSigError> {
        let (Some(input), Some(sigs)) = (
            joined_field(headers, "signature-input")?,
            joined_field(headers, "signature")?,
        ) else {
            return Ok(Self(Vec::new()));
        };
        let inputs = parse_signature_input(&input)?;
        let sig_dict: Dictionary = Parser::new(&sigs)
            .parse()
            .map_err(|e| malformed(format!("Signature: {e}")))?;
        if sig_dict.len() != inputs.len() {
            return Err(malformed("Signature and Signature-Input labels differ"));
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (label, si) in inputs {
            let Some(ListEntry::Item(item)) = sig_dict.get(label.as_str()) else {
                return Err(HttpSigError::NoSuchLabel(label));
            };
            let BareItem::ByteSequence(bytes) = &item.bare_item else {
                return Err(malformed(format!(
                    "Signature {label} is not a byte sequence"
                )));
            };
            out.push((label, si, bytes.clone()));
        }
        Ok(Self(out))
    }

    /// The signatures whose `tag` parameter is `tag`.
    pub fn with_tag(&self, tag: &str) -> Vec<&(String, SignatureInput, Vec<u8>)> {
        self.0
            .iter()
            .filter(|(_, si, _)| si.string_param("tag") == Some(tag))
            .collect()
    }

    /// The signature labelled `label`.
    pub fn labelled(&self, label: &str) -> Option<&(String, SignatureInput, Vec<u8>)> {
        self.0.iter().find(|(l, _, _)| l == label)
    }
}

/// The `Signature-Input` and `Signature` member values for one new signature, to append as
/// `label=<input>` and `label=<signature>`.
#[derive(Debug, Clone)]
pub struct SignatureFields {
    /// `Signature-Input` field value (one member).
    pub signature_input: String,
    /// `Signature` field value (one member).
    pub signature: String,
}

// ---------------------------------------------------------------------------------------------
// Algorithms and keys.

/// The algorithms of RFC 9421 §3.3, and JWS algorithms fixed by the key (§3.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-pss-sha512`.
    RsaPssSha512,
    /// `rsa-v1_5-sha256`.
    RsaV15Sha256,
    /// `hmac-sha256`.
    HmacSha256,
    /// `ecdsa-p256-sha256` (raw r‖s).
    EcdsaP256Sha256,
    /// `ecdsa-p384-sha384` (raw r‖s).
    EcdsaP384Sha384,
    /// `ed25519`.
    Ed25519,
    /// A JWS algorithm named by the key, never by the message (WIMSE: `cnf.jwk.alg`).
    Jws(jsonwebtoken::Algorithm),
}

impl Algorithm {
    /// The algorithm registered under `name` in the HTTP Signature Algorithms registry.
    pub fn from_name(name: &str) -> Result<Self, HttpSigError> {
        Ok(match name {
            "rsa-pss-sha512" => Algorithm::RsaPssSha512,
            "rsa-v1_5-sha256" => Algorithm::RsaV15Sha256,
            "hmac-sha256" => Algorithm::HmacSha256,
            "ecdsa-p256-sha256" => Algorithm::EcdsaP256Sha256,
            "ecdsa-p384-sha384" => Algorithm::EcdsaP384Sha384,
            "ed25519" => Algorithm::Ed25519,
            other => {
                return Err(HttpSigError::UnsupportedAlgorithm(
                    other.chars().take(32).collect(),
                ));
            }
        })
    }

    /// The equivalent JWS algorithm (same signature bytes), for asymmetric algorithms.
    fn jws(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::RsaPssSha512 => Some(J::PS512),
            Algorithm::RsaV15Sha256 => Some(J::RS256),
            Algorithm::EcdsaP256Sha256 => Some(J::ES256),
            Algorithm::EcdsaP384Sha384 => Some(J::ES384),
            Algorithm::Ed25519 => Some(J::EdDSA),
            Algorithm::Jws(j) => Some(j),
            Algorithm::HmacSha256 => None,
        }
    }
}

/// A key to verify with, and the algorithm it is used with.
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    /// An asymmetric key.
    Public(Box<PublicKey>, Algorithm),
    /// An HMAC secret (`hmac-sha256`).
    Hmac(Vec<u8>),
}

/// A key to sign with.
#[derive(Debug, Clone, Copy)]
pub enum SigningKey<'a> {
    /// An asymmetric key, signing with its JWS algorithm (ES256, ES384, EdDSA, RS256).
    Private(&'a PrivateKey),
    /// An HMAC secret.
    Hmac(&'a [u8]),
}

fn hmac(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec()
}

/// Signs `input` over `msg` under `label`.
pub fn sign(
    msg: &Message<'_>,
    label: &str,
    input: &SignatureInput,
    key: SigningKey<'_>,
) -> Result<SignatureFields, HttpSigError> {
    Key::from_string(label.to_owned()).map_err(|(e, _)| malformed(format!("label: {e}")))?;
    let base = input.signature_base(msg)?;
    let sig = match key {
        SigningKey::Private(k) => k
            .sign_jws(base.as_bytes())
            .map_err(|e| HttpSigError::UnsupportedAlgorithm(e.to_string()))?,
        SigningKey::Hmac(secret) => hmac(secret, base.as_bytes()),
    };
    Ok(SignatureFields {
        signature_input: format!("{label}={}", input.serialize()?),
        signature: format!("{label}=:{}:", STANDARD.encode(sig)),
    })
}

/// Verifies `signature` over `input` on `msg` with `key`.
pub fn verify(
    msg: &Message<'_>,
    input: &SignatureInput,
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<(), HttpSigError> {
    let base = input.signature_base(msg)?;
    let ok = match key {
        VerifyingKey::Public(pk, alg) => {
            let pk: &PublicKey = pk;
            let jws = alg.jws().ok_or_else(|| {
                HttpSigError::UnsupportedAlgorithm("hmac with a public key".into())
            })?;
            pk.verify_raw(jws, base.as_bytes(), signature)
        }
        VerifyingKey::Hmac(secret) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::verify(&key, base.as_bytes(), signature).is_ok()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(HttpSigError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn authority_normalization() {
        assert_eq!(
            normalize_authority("https", "Example.COM:443"),
            "example.com"
        );
        assert_eq!(
            normalize_authority("https", "example.com:8443"),
            "example.com:8443"
        );
        assert_eq!(normalize_authority("http", "example.com:80"), "example.com");
    }

    proptest! {
        /// Parsing any Signature-Input value never panics, and whatever parses re-serializes to
        /// something that parses to the same input.
        #[test]
        fn signature_input_parsing_round_trips(s in r#"[a-z0-9]{1,5}=\((\"[@a-z\-]{1,10}\"(;[a-z]{1,4}(=\"[a-z]{0,4}\")?)? ?){0,4}\)(;[a-z]{1,6}=([0-9]{1,6}|\"[a-z0-9]{0,8}\"))*"#) {
            if let Ok(parsed) = parse_signature_input(&s) {
                for (label, si) in parsed {
                    let again = parse_signature_input(&format!("{label}={}", si.serialize().unwrap())).unwrap();
                    prop_assert_eq!(&again[0].1, &si);
                }
            }
        }

        /// Arbitrary bytes never panic the parsers.
        #[test]
        fn arbitrary_fields_never_panic(s in ".{0,200}") {
            let _ = parse_signature_input(&s);
            let mut h = HeaderMap::new();
            if let (Ok(a), Ok(b)) = (s.parse(), s.parse()) {
                h.insert("signature-input", a);
                h.insert("signature", b);
                let _ = Signatures::from_headers(&h);
            }
            let _ = digest::verify_content_digest(&s, b"x");
        }
    }
}
