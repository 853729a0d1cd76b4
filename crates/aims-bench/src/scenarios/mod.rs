//! Benchmark scenarios. Each measures its own baseline in the same run.

pub mod audit;
pub mod authn;
mod baseline;
mod cpu;
pub mod credentials;
pub mod gateway;
pub mod oauth;
pub mod people;
mod process;
pub mod propagation;
pub mod replicas;
pub mod scale;
pub mod sync;
pub mod workload;
