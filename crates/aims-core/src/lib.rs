//! # aims-core
//!
//! The bottom of the AIMS stack (draft-ietf-wimse-aims §6, "Agent Identifier"): the identifiers every
//! other layer names agents by, and the injectable [`Clock`] every time-dependent check reads.
//!
//! * [`SpiffeId`] and [`TrustDomain`]: parsed and validated exactly as the SPIFFE-ID standard §2 says
//!   (AIMS ID-4, ID-6).
//! * [`WorkloadIdentifier`]: the WIMSE workload identifier (draft-ietf-wimse-identifier-03), of which a
//!   SPIFFE ID is one instance (AIMS ID-2, ID-3, ID-5).
//! * [`Clock`], [`SystemClock`] and [`ManualClock`]: time as a dependency, so expiry, rotation and
//!   replay windows are testable without sleeping.
//! * [`RequestTarget`]: one canonical HTTP request target for routing, policy and forwarding.
//! * [`files`]: atomic writes of key and state files with exact modes (0600 keys, 0700 directories).
#![forbid(unsafe_code)]

mod clock;
pub mod duration;
pub mod files;
mod request_target;
mod spiffe_id;
pub mod trace_context;
mod wimse_id;

pub use clock::{
    Clock, ManualClock, SharedClock, SystemClock, format_unix, unix_millis, unix_seconds,
};
pub use duration::{HumanDuration, format_duration, parse_duration};
pub use request_target::{RequestTarget, TargetError};
pub use spiffe_id::{
    MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SPIFFE_SCHEME_PREFIX, SpiffeId, SpiffeIdError,
    TrustDomain,
};
pub use wimse_id::{WimseIdError, WorkloadIdentifier};
