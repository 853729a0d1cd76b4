//! # aims-credentials
//!
//! The credentials layer of the AIMS stack (draft-ietf-wimse-aims §7): the keys agents and servers
//! sign with, the X.509 certificate authority, and every credential format AIMS issues and
//! verifies: X.509-SVID (compatible with the WIMSE WIC), JWT-SVID, and the WIMSE Workload Identity
//! Token in its WIT-SVID profile (AIMS CR-1, CR-2, CR-4). Trust bundles carry the keys that verify
//! them, per trust domain, as SPIFFE JWK Sets and PEM.
#![forbid(unsafe_code)]

pub mod authority;
pub mod bundle;
pub mod ca;
pub mod error;
pub mod jose;
pub mod jwt_authority;
pub mod jwt_svid;
pub mod key_manager;
pub mod keys;
pub mod testing;
pub mod wit;
pub mod x509_svid;

pub use authority::{
    AuthorityPolicy, AuthoritySlot, CaManager, RotationEvent, SlotKey, SlotKeyRecord, SlotRecord,
};
pub use bundle::{BundleSet, BundleSource, TrustBundle};
pub use ca::{
    CertificateRequest, SubjectKey, UpstreamAuthority, X509Authority, X509Svid, X509SvidRequest,
};
pub use error::{IssueError, VerifyError};
pub use jwt_authority::{JwtAuthority, JwtAuthorityUse};
pub use jwt_svid::{JwtSvid, verify_jwt_svid};
pub use key_manager::{DiskKeyManager, KeyManager, MemoryKeyManager};
pub use keys::{KeyError, KeyType, PrivateKey, PublicKey};
pub use wit::{Wit, WitProfile, cnf_key_from_jwk, verify_wit};
pub use x509_svid::{
    SvidUsage, VerifiedX509Svid, certificate_public_key, verify_x509_svid, verify_x509_svid_parts,
};
