//! Where the log's HTTP API answers (AIMS's own: no standard names an append API; reads
//! follow C2SP tlog-checkpoint and signed-note). The server serves them; gateways append.

/// Where records are appended.
pub const RECORDS_PATH: &str = "/audit/v1/records";
/// The newest signed checkpoint (C2SP tlog-checkpoint, `text/plain`).
pub const CHECKPOINT_PATH: &str = "/audit/v1/checkpoint";
/// The log's verifier key (C2SP signed-note vkey, `text/plain`).
pub const VKEY_PATH: &str = "/audit/v1/vkey";
/// `?leaf_index=&tree_size=`: an inclusion proof.
pub const INCLUSION_PATH: &str = "/audit/v1/proof/inclusion";
/// `?first=&second=`: a consistency proof.
pub const CONSISTENCY_PATH: &str = "/audit/v1/proof/consistency";
/// Records per append, at most (a gateway's batch).
pub const MAX_RECORDS: usize = 1_000;
