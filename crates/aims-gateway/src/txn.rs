//! The transaction tokens the gateway forwards (draft-ietf-oauth-transaction-tokens-11): minted
//! here, the gateway being the trust domain's Txn-Token Service at its edge (see
//! [`aims_token::txn`]), or asked of the AIMS server with an RFC 8693 exchange per call.
//!
//! Minted here, a token costs one signature and no round trip; the call's own audit record
//! says it was issued (its hash), so one call is one record (AIMS MO-8). What the draft asks of
//! the claims holds either way: `aud` the trust domain, `txn` the task's id (kept on
//! replacement, AIMS MO-11), `sub` and `scope` those of the access token (never wider), `tctx`
//! set once and kept, `rctx` this request's, `req_wl` the chain of requesting workloads.

use std::sync::{Arc, Mutex};

use aims_authn::mtls::{SigningSvid, SvidStore};
use aims_core::SpiffeId;
use aims_credentials::jose::{EncodedHeader, sha256_b64url};
use aims_token::TokenError;
use aims_token::claims::{AccessClaims, TxnClaims};
use aims_token::txn::{TxnTokenServices, edge_header, sign_at_edge};
use serde_json::Value;

use crate::GatewayError;
use crate::identity::WorkloadIdentity;
use crate::server_client::{ServerClient, TxnSubject};
use crate::settings::{GatewaySettings, TxnTokenIssuer};

/// A transaction token for one call.
pub(crate) struct Minted {
    /// The token.
    pub token: String,
    /// The task it belongs to ([`TxnClaims::task_trace`]).
    pub trace: String,
    /// What the call's audit record says was issued (minted here), else `None` (the AIMS
    /// server records its own issuance).
    pub issued: Option<String>,
}

/// Where the gateway's transaction tokens come from.
pub(crate) struct TxnTokens {
    server: Arc<ServerClient>,
    edge: Option<Edge>,
}

/// The gateway as an edge Txn-Token Service.
struct Edge {
    svid: Arc<SvidStore>,
    /// The header of the current SVID's tokens, encoded once per SVID.
    header: Mutex<Option<(Arc<SigningSvid>, Arc<EncodedHeader>)>>,
    services: TxnTokenServices,
    ttl: i64,
}

fn now_unix() -> i64 {
    aims_core::unix_seconds(std::time::SystemTime::now())
}

impl TxnTokens {
    /// The gateway's source of transaction tokens, as `settings` say. Minting here needs the
    /// gateway's SPIFFE ID among the trust domain's transaction-token services, or recipients
    /// would refuse every token it mints: that is a configuration error, said at start.
    pub(crate) fn new(
        settings: &GatewaySettings,
        server: Arc<ServerClient>,
        identity: &WorkloadIdentity,
    ) -> Result<Self, GatewayError> {
        let edge = match settings.txn_token_issuer {
            TxnTokenIssuer::Server => None,
            TxnTokenIssuer::Gateway => {
                let services = TxnTokenServices::new(
                    settings.trust_domain.clone(),
                    settings.txn_token_services.clone(),
                    identity.x509_bundles.clone(),
                );
                let id = identity
                    .spiffe_id()
                    .ok_or_else(|| GatewayError::Identity("no X509-SVID".into()))?;
                if !services.is_edge_service(&id) {
                    return Err(GatewayError::Config(format!(
                        "the gateway ({id}) mints transaction tokens but is not a transaction-token service of {}: add it to gateway.transaction_token_services and server.oauth.transaction_token_services, or set gateway.transaction_token_issuer = \"server\"",
                        settings.trust_domain
                    )));
                }
                Some(Edge {
                    svid: identity.svid.clone(),
                    header: Mutex::new(None),
                    services,
                    ttl: i64::try_from(settings.txn_token_ttl.as_secs())
                        .unwrap_or(60)
                        .max(1),
                })
            }
        };
        Ok(Self { server, edge })
    }

    /// A new transaction for a call made with `token` (`claims` validated for this route):
    /// a fresh `txn`, the call's `details` (with its `trace`) as `tctx`.
    pub(crate) async fn start(
        &self,
        token: &str,
        claims: &AccessClaims,
        rctx: Value,
        details: Value,
    ) -> Result<Minted, GatewayError> {
        let scope = claims.scope.as_deref().unwrap_or_default();
        let Some(edge) = &self.edge else {
            let subject = TxnSubject::AccessToken(token);
            let (token, trace) = self
                .server
                .txn_token(subject, scope, &rctx, &details)
                .await?;
            return Ok(Minted {
                token,
                trace,
                issued: None,
            });
        };
        // txn-tokens §7.3: the scope is narrowed from the subject's; an unknown one cannot be.
        if scope.trim().is_empty() {
            return Err(GatewayError::Refused(
                "the access token has no scope to give the transaction".into(),
            ));
        }
        let txn = uuid::Uuid::new_v4().simple().to_string();
        let now = now_unix();
        edge.mint(|iss: &SpiffeId| TxnClaims {
            iss: iss.to_string(),
            iat: now,
            exp: now.saturating_add(edge.ttl).min(claims.exp),
            aud: edge.services.trust_domain().name().to_owned(),
            txn,
            sub: claims.sub.clone(),
            scope: scope.to_owned(),
            req_wl: iss.to_string(),
            tctx: Some(details),
            rctx: Some(rctx),
        })
    }

    /// The replacement of a transaction token the caller forwarded (txn-tokens §7.4): read
    /// back as any recipient would; same `txn`, `sub`, `aud`, `scope` and `tctx`, this
    /// gateway appended to `req_wl`, never outliving it. A token that does not verify is
    /// [`GatewayError::Refused`].
    pub(crate) async fn replace(
        &self,
        forwarded: &str,
        rctx: Value,
    ) -> Result<Minted, GatewayError> {
        let Some(edge) = &self.edge else {
            let subject = TxnSubject::TxnToken(forwarded);
            let (token, trace) = self
                .server
                .txn_token(subject, "", &rctx, &Value::Null)
                .await?;
            return Ok(Minted {
                token,
                trace,
                issued: None,
            });
        };
        let prev = self.read_forwarded(edge, forwarded).await?;
        let now = now_unix();
        edge.mint(|iss: &SpiffeId| TxnClaims {
            iss: iss.to_string(),
            iat: now,
            exp: now.saturating_add(edge.ttl).min(prev.exp),
            aud: prev.aud,
            txn: prev.txn,
            sub: prev.sub,
            scope: prev.scope,
            req_wl: format!("{},{iss}", prev.req_wl),
            tctx: prev.tctx,
            rctx: Some(rctx),
        })
    }

    async fn read_forwarded(&self, edge: &Edge, token: &str) -> Result<TxnClaims, GatewayError> {
        let verify = || {
            edge.services
                .verify(token, self.server.keys(), &self.server.issuer, now_unix())
        };
        let refused = |e: TokenError| GatewayError::Refused(e.to_string());
        match verify() {
            // A key the AS published since the last fetch: fetch again, once.
            Err(TokenError::UnknownKey(_)) => {
                self.server.refresh_keys().await?;
                verify().map_err(refused)
            }
            other => other.map_err(refused),
        }
    }
}

impl Edge {
    /// The encoded header for `svid`, kept until the SVID rotates.
    fn header_of(&self, svid: &Arc<SigningSvid>) -> Result<Arc<EncodedHeader>, GatewayError> {
        let mut kept = self
            .header
            .lock()
            .map_err(|_| GatewayError::Identity("signer state poisoned".into()))?;
        if let Some((of, header)) = kept.as_ref()
            && Arc::ptr_eq(of, svid)
        {
            return Ok(header.clone());
        }
        let header =
            Arc::new(edge_header(svid).map_err(|e| GatewayError::Identity(e.to_string()))?);
        *kept = Some((svid.clone(), header.clone()));
        Ok(header)
    }

    /// Signs the claims `claims(iss)` builds for this gateway's current SVID.
    fn mint(&self, claims: impl FnOnce(&SpiffeId) -> TxnClaims) -> Result<Minted, GatewayError> {
        let svid = self
            .svid
            .signing_svid()
            .ok_or_else(|| GatewayError::Identity("no X509-SVID to sign with".into()))?;
        let header = self.header_of(&svid)?;
        let claims = claims(&svid.spiffe_id);
        let token = sign_at_edge(&svid, &header, &claims)
            .map_err(|e| GatewayError::Identity(e.to_string()))?;
        metrics::counter!("aims_gateway_txn_tokens_minted_total").increment(1);
        Ok(Minted {
            issued: Some(format!("txn_token:{}", sha256_b64url(token.as_bytes()))),
            trace: claims.task_trace().to_owned(),
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aims_core::TrustDomain;
    use aims_credentials::{PublicKey, SlotKey};
    use aims_token::keys::TokenKeys;

    struct NoKeys;

    impl TokenKeys for NoKeys {
        fn signing_key(&self) -> Option<SlotKey> {
            None
        }
        fn verifying_key(&self, _: &str) -> Option<PublicKey> {
            None
        }
        fn jwks(&self) -> Arc<String> {
            Arc::new(String::new())
        }
    }

    /// A rotated SVID signs with its own key and chain: the header kept for the old one is
    /// not reused, and recipients read both tokens.
    #[test]
    fn a_rotation_gets_a_new_header() {
        let td = TrustDomain::new("example.org").unwrap();
        let (_ca, slot, bundles) = aims_credentials::testing::authority(&td).unwrap();
        let id = SpiffeId::parse("spiffe://example.org/aims/gateway").unwrap();
        let issue = || aims_credentials::testing::x509_svid(&slot, &id).unwrap();
        let (chain, key) = issue();
        let store = Arc::new(SvidStore::with(chain, &key).unwrap());
        let services =
            TxnTokenServices::new(td.clone(), TxnTokenServices::default_edge(&td), bundles);
        let edge = Edge {
            svid: store.clone(),
            header: Mutex::new(None),
            services: services.clone(),
            ttl: 60,
        };
        let now = now_unix();
        let claims = |iss: &SpiffeId| TxnClaims {
            iss: iss.to_string(),
            iat: now,
            exp: now + 60,
            aud: "example.org".into(),
            txn: "t".into(),
            sub: "s".into(),
            scope: "a".into(),
            req_wl: iss.to_string(),
            tctx: None,
            rctx: None,
        };
        let first = edge.mint(claims).unwrap();
        assert!(first.issued.unwrap().starts_with("txn_token:"));
        let (chain, key) = issue();
        store.set(chain, &key).unwrap();
        let second = edge.mint(claims).unwrap();
        for token in [&first.token, &second.token] {
            services.verify(token, &NoKeys, "https://as", now).unwrap();
        }
        assert_ne!(
            first.token.split('.').next(),
            second.token.split('.').next(),
            "the rotated SVID's chain is in the second token's header"
        );
    }
}
