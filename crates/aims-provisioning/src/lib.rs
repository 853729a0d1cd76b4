//! # aims-provisioning
//!
//! The provisioning layer of the AIMS stack (draft-ietf-wimse-aims §8): who gets which
//! credential, decided from posture evidence at every issuance and rotation (AIMS PR-1…PR-9).
//!
//! * [`attest`]: workload attestation. The [`attest::WorkloadAttestor`] trait is the seam where
//!   posture evidence plugs in (TPM, TEE, Kubernetes); [`attest::unix::UnixAttestor`] derives
//!   selectors from the kernel's peer credentials of the Workload API caller.
//! * [`node`]: node attestation of agents to the server: single-use join tokens and x509pop.
//! * [`matching`]: the issuance decision: which registration entries an agent may issue and
//!   which of them a workload matches.
//! * [`rotation`]: when a credential is due for renewal.
//! * [`proto`]: the agent↔server gRPC protocol.
#![forbid(unsafe_code)]

pub mod attest;
#[cfg(feature = "server")]
pub mod issuance;
pub mod matching;
pub mod node;
pub mod rotation;

/// The generated agent protocol (`aims.agent.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/aims.agent.v1.rs"));
}
