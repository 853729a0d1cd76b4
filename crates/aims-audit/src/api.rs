//! Where the log's HTTP API answers (AIMS's own: no standard names an append API; reads
//! follow C2SP tlog-checkpoint, signed-note and tlog-tiles, whose log prefix is
//! `/audit/v1`). The server serves them; gateways append.

/// Where records are appended.
pub const RECORDS_PATH: &str = "/audit/v1/records";
/// The newest signed checkpoint (C2SP tlog-checkpoint, `text/plain`).
pub const CHECKPOINT_PATH: &str = "/audit/v1/checkpoint";
/// C2SP tlog-tiles: `TILES_PATH` + `<L>/<N>[.p/<W>]`, a tile of the tree's hashes
/// (`application/octet-stream`; entry bundles are not served: records are read by operators).
pub const TILES_PATH: &str = "/audit/v1/tile/";
/// The log's verifier key (C2SP signed-note vkey, `text/plain`).
pub const VKEY_PATH: &str = "/audit/v1/vkey";
/// `?leaf_index=&tree_size=`: an inclusion proof.
pub const INCLUSION_PATH: &str = "/audit/v1/proof/inclusion";
/// `?first=&second=`: a consistency proof.
pub const CONSISTENCY_PATH: &str = "/audit/v1/proof/consistency";
/// Records per append, at most (a gateway's batch).
pub const MAX_RECORDS: usize = 1_000;
