//! The issuance service (AIMS §7, §8): the trust domain's CA slots and token keys kept in the
//! store and rotated ([`issuer`]), the agent API that attests nodes and issues their workloads'
//! SVIDs by registration entry ([`agent_api`]) with the change feed that wakes agents
//! ([`changes`]), the server's own SVID ([`server_svid`]), the bundle endpoint
//! ([`bundle_endpoint`]) and federation with other trust domains ([`federation`]). The server
//! composes them with its listeners.

pub mod agent_api;
pub mod bundle_endpoint;
pub mod changes;
pub mod error;
pub mod federation;
pub mod issuer;
pub mod registrations;
pub mod server_svid;
pub mod sync_stream;

pub use error::IssuanceError;
