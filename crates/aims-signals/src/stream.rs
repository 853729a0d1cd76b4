//! SSF 1.0 wire objects: transmitter metadata (§7.1), the stream configuration (§8.1.1), stream
//! status (§8.1.2), RFC 8936 poll requests and responses, RFC 8935 error bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// RFC 8935: push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936: poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";
/// SSF 1.0 §7.1: the metadata's well-known path.
pub const METADATA_PATH: &str = "/.well-known/ssf-configuration";

/// Transmitter configuration metadata (SSF 1.0 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransmitterMetadata {
    /// `1_0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_version: Option<String>,
    /// The transmitter's issuer; SETs carry it as `iss`.
    pub issuer: String,
    /// Where its signing keys are.
    pub jwks_uri: String,
    /// Delivery methods.
    #[serde(default)]
    pub delivery_methods_supported: Vec<String>,
    /// Stream configuration endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_endpoint: Option<String>,
    /// Stream status endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_endpoint: Option<String>,
    /// Add-subject endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_subject_endpoint: Option<String>,
    /// Remove-subject endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_subject_endpoint: Option<String>,
    /// Verification endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_endpoint: Option<String>,
    /// How receivers authenticate to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_schemes: Vec<Value>,
    /// `ALL` or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_subjects: Option<String>,
}

/// How a stream's events travel (SSF 1.0 §8.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// [`PUSH`] or [`POLL`].
    pub method: String,
    /// Push: the receiver's endpoint; poll: the transmitter's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Push: sent verbatim as `Authorization` on every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_header: Option<String>,
}

/// A stream configuration (SSF 1.0 §8.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamConfiguration {
    /// Set by the transmitter.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream_id: String,
    /// The transmitter's issuer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    /// The receiver, as SETs name it (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Events the transmitter can send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events_supported: Vec<String>,
    /// Events the receiver asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events_requested: Vec<String>,
    /// Events delivered: supported ∩ requested.
    #[serde(default)]
    pub events_delivered: Vec<String>,
    /// How.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Minimum seconds between verification requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_verification_interval: Option<u64>,
    /// The receiver's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A stream's status (SSF 1.0 §8.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Events flow.
    Enabled,
    /// Events are held and sent later.
    Paused,
    /// Events are dropped.
    Disabled,
}

impl Status {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Paused => "paused",
            Status::Disabled => "disabled",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enabled" => Some(Status::Enabled),
            "paused" => Some(Status::Paused),
            "disabled" => Some(Status::Disabled),
            _ => None,
        }
    }
}

/// SSF 1.0 §8.1.2: a stream's status object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The stream.
    pub stream_id: String,
    /// Its status.
    pub status: Status,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// RFC 8936 §2.4: a poll request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollRequest {
    /// How many SETs at most (0: only acknowledge).
    #[serde(rename = "maxEvents", default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u32>,
    /// Answer at once even with nothing to deliver (default true); false is a long poll.
    #[serde(
        rename = "returnImmediately",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub return_immediately: Option<bool>,
    /// SETs received and processed, by `jti`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ack: Vec<String>,
    /// SETs refused, by `jti`.
    #[serde(
        rename = "setErrs",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub set_errs: BTreeMap<String, SetErr>,
}

/// RFC 8936 §2.4 / RFC 8935 §2.3: why a SET was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetErr {
    /// An RFC 8935 §2.4 code.
    pub err: String,
    /// Readable text.
    pub description: String,
}

/// RFC 8936 §2.5: a poll response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollResponse {
    /// SETs by `jti`.
    pub sets: BTreeMap<String, String>,
    /// Whether more are waiting.
    #[serde(rename = "moreAvailable", default)]
    pub more_available: bool,
}
