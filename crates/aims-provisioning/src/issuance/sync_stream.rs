//! One agent's `Sync` stream: what to send it after each refresh of the replica's
//! registration state (issue 18, incremental sync).
//!
//! An agent that asks for `incremental` sync gets its complete state once (or, resuming with
//! the sequence number it holds, only what changed since) and then only the entries that
//! changed under it, the ids it lost, and the bundles when they changed. An agent that does not
//! ask gets its complete state on every change that concerns it, as before.

use std::sync::Arc;

use aims_core::SpiffeId;
use aims_store::RegistrationEntry;

use crate::issuance::issuer::Issuer;
use crate::issuance::registrations::{AgentUpdate, Registrations};
use crate::proto::{Entry, SyncResponse};

/// The next thing to do on a stream.
#[derive(Debug)]
pub struct Next {
    /// The message to send, if any.
    pub message: Option<SyncResponse>,
    /// The agent was banned or evicted since: check it before sending anything.
    pub agent_changed: bool,
}

/// The state of one agent's stream.
pub struct AgentSync {
    agent: SpiffeId,
    registrations: Arc<Registrations>,
    incremental: bool,
    /// The sequence number the agent holds.
    sequence: i64,
    /// The revision of the last message sent.
    revision: u64,
    /// The bundles as last sent: our bundle's sequence and the federated bundles.
    bundle: u64,
    federated: Arc<Vec<(String, String)>>,
}

impl AgentSync {
    /// A stream for `agent`.
    pub fn new(agent: SpiffeId, registrations: Arc<Registrations>, incremental: bool) -> Self {
        let federated = registrations.federated();
        Self {
            agent,
            registrations,
            incremental,
            sequence: 0,
            revision: 0,
            bundle: 0,
            federated,
        }
    }

    /// The first message: the agent's complete state, or for an incremental agent resuming at
    /// `since` (> 0) what changed since, if this replica still knows; with the bundles.
    pub fn first(&mut self, issuer: &Issuer, since: i64) -> SyncResponse {
        let (sequence, update) = if self.incremental && since > 0 {
            self.registrations.update_for(&self.agent, since)
        } else {
            (self.registrations.sequence(), AgentUpdate::Full)
        };
        self.message(issuer, sequence, update, true)
    }

    /// What to send after a refresh: nothing if nothing that concerns the agent changed.
    pub fn next(&mut self, issuer: &Issuer) -> Option<Next> {
        let (sequence, update) = self.registrations.update_for(&self.agent, self.sequence);
        let bundles = issuer.published().bundle.sequence() != self.bundle
            || !Arc::ptr_eq(&self.registrations.federated(), &self.federated);
        if update.is_empty() && !bundles {
            self.sequence = sequence;
            return None;
        }
        let agent_changed = matches!(
            update,
            AgentUpdate::Delta {
                agent_changed: true,
                ..
            }
        );
        let revision = self.revision;
        let message = self.message(issuer, sequence, update, bundles);
        // A complete state that equals the last one sent is not sent again.
        let message = (message.delta || message.revision != revision).then_some(message);
        Some(Next {
            message,
            agent_changed,
        })
    }

    fn message(
        &mut self,
        issuer: &Issuer,
        sequence: i64,
        update: AgentUpdate,
        bundles: bool,
    ) -> SyncResponse {
        let (_, entries) = self.registrations.state_of(&self.agent);
        let published = issuer.published();
        let federated = self.registrations.federated();
        let full = SyncResponse {
            revision: 0,
            entries: entries.iter().map(entry_message).collect(),
            bundle: published.document.clone(),
            federated_bundles: federated.iter().cloned().collect(),
            sequence,
            delta: false,
            removed: Vec::new(),
        };
        let revision = revision(&full.entries, &published.document, &federated);
        self.sequence = sequence;
        self.revision = revision;
        self.bundle = published.bundle.sequence();
        self.federated = federated;
        match update {
            AgentUpdate::Delta {
                changed, removed, ..
            } if self.incremental => SyncResponse {
                revision,
                entries: changed.iter().map(entry_message).collect(),
                removed,
                delta: true,
                ..if bundles {
                    full
                } else {
                    SyncResponse {
                        sequence,
                        ..SyncResponse::default()
                    }
                }
            },
            _ => SyncResponse { revision, ..full },
        }
    }
}

fn entry_message(e: &RegistrationEntry) -> Entry {
    Entry {
        id: e.id.clone(),
        spiffe_id: e.spiffe_id.to_string(),
        selectors: e.selectors.iter().map(ToString::to_string).collect(),
        x509_svid_ttl: e.x509_svid_ttl,
        jwt_svid_ttl: e.jwt_svid_ttl,
        dns_names: e.dns_names.clone(),
        hint: e.hint.clone().unwrap_or_default(),
        revision: e.revision,
    }
}

/// A digest of an agent's complete state (entries by id, bundles in a fixed order), so agents
/// and their logs can tell states apart.
fn revision(entries: &[Entry], bundle: &str, federated: &[(String, String)]) -> u64 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for e in entries {
        let encoded = prost::Message::encode_length_delimited_to_vec(e);
        ctx.update(&encoded);
    }
    for part in std::iter::once(bundle).chain(
        federated
            .iter()
            .flat_map(|(td, doc)| [td.as_str(), doc.as_str()]),
    ) {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}
