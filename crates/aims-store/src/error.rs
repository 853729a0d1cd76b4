//! Store errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record.
    #[error("not found: {0}")]
    NotFound(String),
    /// The record conflicts with one that exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is invalid.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Migrating the schema failed.
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
