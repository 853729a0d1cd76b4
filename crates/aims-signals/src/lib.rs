//! # aims-signals
//!
//! OpenID Shared Signals for AIMS (AIMS §11, MO-2…MO-5): Security Event Tokens (RFC 8417) as
//! SSF 1.0 profiles them, subject identifiers (RFC 9493), CAEP 1.0 and RISC 1.0 event types and
//! their effect on a receiver, the SSF stream objects, the [`Transmitter`] (streams and an
//! outbox in the store, push delivery per RFC 8935 with retries, poll per RFC 8936 with long
//! polling) and the [`PollReceiver`] that gateways and agents use.
#![forbid(unsafe_code)]

pub mod event;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod intake;
mod receiver;
#[cfg(feature = "remediation")]
pub mod remediation;
mod set;
pub mod stream;
mod subject;
#[cfg(feature = "store")]
mod transmitter;

pub use receiver::{PollReceiver, ReceiverError};
pub use set::{SET_MEDIA_TYPE, SET_TYP, SecEvent, SetError, verify_set};
pub use subject::{ComplexSubject, SubjectId};
#[cfg(feature = "store")]
pub use transmitter::{SetSigner, StreamOwner, Transmitter, TransmitterError};
