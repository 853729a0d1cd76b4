//! Event types: CAEP 1.0, RISC 1.0 and SSF 1.0's own, and what each asks a receiver to do
//! (AIMS MO-3).

/// CAEP 1.0 §3.1: the subject's sessions are revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0 §3.2: claims of the subject's tokens changed.
pub const TOKEN_CLAIMS_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change";
/// CAEP 1.0 §3.3: a credential was created, changed, revoked or deleted.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP 1.0 §3.4: the assurance level changed.
pub const ASSURANCE_LEVEL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change";
/// CAEP 1.0 §3.5: the device's compliance changed.
pub const DEVICE_COMPLIANCE_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";
/// RISC 1.0 §2.7: a credential was compromised.
pub const CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
/// RISC 1.0 §2.3: the account was disabled.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC 1.0 §2.4: the account was enabled.
pub const ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// RISC 1.0 §2.5: the identifier changed.
pub const IDENTIFIER_CHANGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/identifier-changed";
/// SSF 1.0 §8.1.4.1: a verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// SSF 1.0 §8.1.5: the stream's status changed.
pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";

/// The CAEP and RISC events AIMS transmits and acts on.
pub const SUPPORTED: &[&str] = &[
    SESSION_REVOKED,
    TOKEN_CLAIMS_CHANGE,
    CREDENTIAL_CHANGE,
    ASSURANCE_LEVEL_CHANGE,
    DEVICE_COMPLIANCE_CHANGE,
    CREDENTIAL_COMPROMISE,
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    IDENTIFIER_CHANGED,
];

/// What an event asks of a receiver (AIMS MO-3, MO-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// End the subject's access: drop its cached tokens and decisions, refuse it.
    Revoke,
    /// The subject may be served again (earlier tokens stay dead).
    Restore,
    /// Something behind earlier decisions changed: drop cached tokens and decisions for the
    /// subject and decide again.
    Reevaluate,
    /// Nothing to do (stream management).
    None,
}

/// The effect of an event of `event_type` with body `event`.
pub fn effect(event_type: &str, event: &serde_json::Value) -> Effect {
    match event_type {
        SESSION_REVOKED | CREDENTIAL_COMPROMISE | ACCOUNT_DISABLED => Effect::Revoke,
        CREDENTIAL_CHANGE => match event["change_type"].as_str() {
            Some("revoke" | "delete") => Effect::Revoke,
            _ => Effect::Reevaluate,
        },
        DEVICE_COMPLIANCE_CHANGE if event["current_status"] == "not-compliant" => Effect::Revoke,
        ACCOUNT_ENABLED => Effect::Restore,
        TOKEN_CLAIMS_CHANGE
        | ASSURANCE_LEVEL_CHANGE
        | DEVICE_COMPLIANCE_CHANGE
        | IDENTIFIER_CHANGED => Effect::Reevaluate,
        _ => Effect::None,
    }
}
