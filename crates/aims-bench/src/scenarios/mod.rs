//! Benchmark scenarios. Each measures its own baseline in the same run.

pub mod credentials;
