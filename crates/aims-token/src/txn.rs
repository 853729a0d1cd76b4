//! Transaction tokens (draft-ietf-oauth-transaction-tokens-11): who issues them in a trust
//! domain, how an instance at the edge signs one, and how every party reads one back.
//!
//! The trust domain has one logical Txn-Token Service (§7) with two kinds of instance:
//! * the AIMS authorization server, signing with its token keys (`kid`, in its JWKS);
//! * a Txn-Token Service at the trust domain's edge — an AIMS gateway, which mints the token
//!   for the call it has just authenticated and authorized, without a round trip. It signs with
//!   the key of its X509-SVID and carries the SVID's chain in `x5c` (RFC 7515 §4.1.6), so its
//!   key is published by the trust domain's own X.509 authorities (the SPIFFE bundle) and
//!   rotates with the SVID. Such a token is accepted only here: as a transaction token (`typ`
//!   txntoken+jwt, no `kid`, `iss` = the signer's SPIFFE ID), and only from SPIFFE IDs the trust
//!   domain names as transaction-token services. Access-token verifiers look keys up by `kid` in
//!   the AS's JWKS and never read `x5c`, so an edge key cannot mint anything else.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_authn::mtls::SigningSvid;
use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::jose::{
    CompactJws, EncodedHeader, JwsHeader, SPIFFE_JWT_ALGORITHMS, check_time,
    sign_with_encoded_header,
};
use aims_credentials::{
    BundleSource, SvidUsage, VerifyError, certificate_public_key, verify_x509_svid,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;

use crate::claims::{TXN_TYP, TxnClaims, verify_own};
use crate::error::TokenError;
use crate::keys::TokenKeys;

/// The longest `x5c` chain read (leaf and intermediates).
const MAX_X5C: usize = 4;

/// The SPIFFE paths, in a trust domain, of the transaction-token services at its edge by
/// default: the gateway `aims up` runs and gateways deployed under `/gateway/…`.
pub const DEFAULT_EDGE_SERVICES: [&str; 2] = ["/aims/gateway", "/gateway"];

/// The Txn-Token Service instances of one trust domain, as a recipient knows them.
#[derive(Clone)]
pub struct TxnTokenServices {
    trust_domain: TrustDomain,
    edge: Vec<SpiffeId>,
    x509_bundles: Arc<dyn BundleSource>,
}

impl std::fmt::Debug for TxnTokenServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnTokenServices")
            .field("trust_domain", &self.trust_domain)
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl TxnTokenServices {
    /// The services of `trust_domain`: its authorization server, and at its edge the workloads
    /// at or under `edge` whose X509-SVIDs chain to `x509_bundles`. IDs of another trust
    /// domain are ignored: a trust domain names only its own services.
    pub fn new(
        trust_domain: TrustDomain,
        edge: Vec<SpiffeId>,
        x509_bundles: Arc<dyn BundleSource>,
    ) -> Self {
        let edge = edge
            .into_iter()
            .filter(|id| id.is_member_of(&trust_domain))
            .collect();
        Self {
            trust_domain,
            edge,
            x509_bundles,
        }
    }

    /// [`DEFAULT_EDGE_SERVICES`] in `trust_domain`.
    pub fn default_edge(trust_domain: &TrustDomain) -> Vec<SpiffeId> {
        DEFAULT_EDGE_SERVICES
            .iter()
            .filter_map(|p| trust_domain.id_with_path(p).ok())
            .collect()
    }

    /// The trust domain (every token's `aud`).
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Whether `id` may issue transaction tokens at the edge.
    pub fn is_edge_service(&self, id: &SpiffeId) -> bool {
        self.edge.iter().any(|s| id.is_at_or_under(s))
    }

    /// Reads a transaction token back (txn-tokens §8, the receiver's checks): the explicit type,
    /// an allowed algorithm, a signature by the authorization server (`kid` in `as_keys`,
    /// `iss` = `as_issuer`) or by an edge service (`x5c`: an X509-SVID of this trust domain
    /// valid now, its SPIFFE ID a service's and the token's `iss`), `aud` = this trust domain,
    /// and not expired. No leeway: tokens live a minute.
    pub fn verify(
        &self,
        token: &str,
        as_keys: &dyn TokenKeys,
        as_issuer: &str,
        now: i64,
    ) -> Result<TxnClaims, TokenError> {
        let jws = CompactJws::parse(token)?;
        let claims: TxnClaims = match (&jws.header.kid, &jws.header.x5c) {
            (Some(_), None) => verify_own(as_keys, as_issuer, token, TXN_TYP, now)?,
            (None, Some(x5c)) => self.verify_edge(&jws, x5c, now)?,
            (Some(_), Some(_)) => {
                return Err(VerifyError::UnexpectedHeaderParameter("x5c".into()).into());
            }
            (None, None) => return Err(TokenError::NoKid),
        };
        if claims.aud != self.trust_domain.name() {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    fn verify_edge(
        &self,
        jws: &CompactJws<'_>,
        x5c: &[String],
        now: i64,
    ) -> Result<TxnClaims, TokenError> {
        let header = &jws.header;
        if !header.typ_is(TXN_TYP) {
            return Err(TokenError::WrongType(TXN_TYP));
        }
        header.require_alg(SPIFFE_JWT_ALGORITHMS)?;
        header.check_crit(&[])?;
        if x5c.is_empty() || x5c.len() > MAX_X5C {
            return Err(VerifyError::Malformed(format!(
                "x5c holds {} certificates (1 to {MAX_X5C})",
                x5c.len()
            ))
            .into());
        }
        let chain = x5c
            .iter()
            .map(|c| {
                STANDARD
                    .decode(c)
                    .map(CertificateDer::from)
                    .map_err(|_| VerifyError::Malformed("x5c is not base64".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(now).unwrap_or(0));
        let svid = verify_x509_svid(&chain, self.x509_bundles.as_ref(), at, SvidUsage::Client)?;
        if !svid.spiffe_id.is_member_of(&self.trust_domain)
            || !self.is_edge_service(&svid.spiffe_id)
        {
            return Err(TokenError::NotTxnTokenService(svid.spiffe_id.to_string()));
        }
        jws.verify(&certificate_public_key(&chain[0])?)?;
        let claims: TxnClaims = jws.claims()?;
        if claims.iss != svid.spiffe_id.as_str() {
            return Err(TokenError::WrongIssuer);
        }
        check_time(Some(claims.exp), None, now, 0)?;
        Ok(claims)
    }
}

/// The encoded JOSE header of the transaction tokens `svid` signs (`typ`, `alg` and the chain
/// in `x5c`, about 1 KB): the same for every token until the SVID rotates, so a signer keeps it.
pub fn edge_header(svid: &SigningSvid) -> Result<EncodedHeader, TokenError> {
    JwsHeader {
        x5c: Some(&svid.x5c),
        ..JwsHeader::new(&svid.key, Some(TXN_TYP), None)
    }
    .encode()
    .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Signs `claims` as an edge Txn-Token Service with `svid` under its [`edge_header`].
/// `claims.iss` must be the SVID's SPIFFE ID, as recipients check.
pub fn sign_at_edge(
    svid: &SigningSvid,
    header: &EncodedHeader,
    claims: &TxnClaims,
) -> Result<String, TokenError> {
    sign_with_encoded_header(&svid.key, header, claims)
        .map_err(|e| TokenError::Signing(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aims_authn::mtls::SvidStore;
    use aims_credentials::jose::sign;
    use aims_credentials::{BundleSet, CaManager, KeyType, PrivateKey, PublicKey, SlotKey};

    const ISSUER: &str = "https://as.example.org";

    struct Domain {
        ca: CaManager,
        bundles: Arc<BundleSet>,
    }

    fn domain(name: &str) -> Domain {
        let (ca, _, bundles) =
            aims_credentials::testing::authority(&TrustDomain::new(name).unwrap()).unwrap();
        Domain { ca, bundles }
    }

    impl Domain {
        fn signer(&self, id: &str) -> Arc<SigningSvid> {
            let (chain, key) = aims_credentials::testing::x509_svid(
                &self.ca.active().unwrap(),
                &SpiffeId::parse(id).unwrap(),
            )
            .unwrap();
            SvidStore::with(chain, &key)
                .unwrap()
                .signing_svid()
                .unwrap()
        }

        fn services(&self) -> TxnTokenServices {
            let td = self.ca.trust_domain().clone();
            TxnTokenServices::new(
                td.clone(),
                TxnTokenServices::default_edge(&td),
                self.bundles.clone(),
            )
        }
    }

    /// The AS's token keys: one key, signing.
    struct AsKeys(SlotKey);

    impl TokenKeys for AsKeys {
        fn signing_key(&self) -> Option<SlotKey> {
            Some(self.0.clone())
        }
        fn verifying_key(&self, kid: &str) -> Option<PublicKey> {
            (kid == self.0.kid).then(|| self.0.key.public_key().clone())
        }
        fn jwks(&self) -> Arc<String> {
            Arc::new(String::new())
        }
    }

    fn as_keys() -> AsKeys {
        AsKeys(SlotKey {
            kid: "as-1".into(),
            key: Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap()),
        })
    }

    fn now() -> i64 {
        aims_core::unix_seconds(SystemTime::now())
    }

    fn claims(iss: &str) -> TxnClaims {
        TxnClaims {
            iss: iss.into(),
            iat: now(),
            exp: now() + 60,
            aud: "example.org".into(),
            txn: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            sub: "spiffe://example.org/agent/a".into(),
            scope: "weather.read".into(),
            req_wl: "spiffe://example.org/aims/gateway".into(),
            tctx: Some(serde_json::json!({"tool": "weather"})),
            rctx: Some(serde_json::json!({"path": "/weather"})),
        }
    }

    const GW: &str = "spiffe://example.org/aims/gateway";

    fn edge(svid: &SigningSvid, claims: &TxnClaims) -> String {
        sign_at_edge(svid, &edge_header(svid).unwrap(), claims).unwrap()
    }

    #[test]
    fn an_edge_service_signs_what_every_recipient_reads_back() {
        let d = domain("example.org");
        let keys = as_keys();
        let gw = d.signer(GW);
        let token = edge(&gw, &claims(GW));
        let got = d.services().verify(&token, &keys, ISSUER, now()).unwrap();
        assert_eq!(got, claims(GW));
        // Deployed gateways under /gateway/… too.
        let other = "spiffe://example.org/gateway/eu-1";
        let token = edge(&d.signer(other), &claims(other));
        assert!(d.services().verify(&token, &keys, ISSUER, now()).is_ok());
        // The AS's own tokens (kid) still read.
        let key = keys.signing_key().unwrap();
        let header = JwsHeader::new(&key.key, Some(TXN_TYP), Some(&key.kid));
        let token = sign(&key.key, &header, &claims(ISSUER)).unwrap();
        assert!(d.services().verify(&token, &keys, ISSUER, now()).is_ok());
    }

    #[test]
    fn only_named_services_of_this_trust_domain_sign_and_only_transaction_tokens() {
        let d = domain("example.org");
        let keys = as_keys();
        let verify = |t: &str| d.services().verify(t, &keys, ISSUER, now());
        // A workload the trust domain does not name (an agent with its own SVID).
        let agent = "spiffe://example.org/agent/a";
        let t = edge(&d.signer(agent), &claims(agent));
        assert!(matches!(verify(&t), Err(TokenError::NotTxnTokenService(id)) if id == agent));
        // A look-alike path.
        let near = "spiffe://example.org/gatewayx";
        let t = edge(&d.signer(near), &claims(near));
        assert!(matches!(verify(&t), Err(TokenError::NotTxnTokenService(_))));
        // A gateway of another CA claiming this trust domain's path: its chain is unknown.
        let rogue = domain("example.org");
        let t = edge(&rogue.signer(GW), &claims(GW));
        assert!(matches!(
            verify(&t),
            Err(TokenError::Jws(VerifyError::UnknownIssuer))
        ));
        // Another trust domain's gateway, even with that domain's bundle at hand.
        let other = domain("other.org");
        let both = Arc::new(BundleSet::with(
            d.bundles
                .all()
                .into_iter()
                .chain(other.bundles.all())
                .map(|b| (*b).clone()),
        ));
        let services = TxnTokenServices::new(
            TrustDomain::new("example.org").unwrap(),
            vec![
                SpiffeId::parse(GW).unwrap(),
                SpiffeId::parse("spiffe://other.org/aims/gateway").unwrap(),
            ],
            both,
        );
        let og = "spiffe://other.org/aims/gateway";
        let t = edge(&other.signer(og), &claims(og));
        assert!(matches!(
            services.verify(&t, &keys, ISSUER, now()),
            Err(TokenError::NotTxnTokenService(_))
        ));
        // The gateway's key cannot mint an access token: verifiers of those want a kid.
        let gw = d.signer(GW);
        let at = sign(
            &gw.key,
            &JwsHeader {
                x5c: Some(&gw.x5c),
                ..JwsHeader::new(&gw.key, Some(crate::claims::AT_TYP), None)
            },
            &serde_json::json!({"iss": ISSUER, "sub": "x", "exp": now() + 60}),
        )
        .unwrap();
        assert!(matches!(
            verify_own::<serde_json::Value>(&keys, ISSUER, &at, crate::claims::AT_TYP, now()),
            Err(TokenError::NoKid)
        ));
        // … nor anything but a transaction token here.
        assert!(matches!(verify(&at), Err(TokenError::WrongType(_))));
    }

    #[test]
    fn tampered_misissued_expired_or_ambiguous_tokens_are_refused() {
        let d = domain("example.org");
        let keys = as_keys();
        let verify = |t: &str| d.services().verify(t, &keys, ISSUER, now());
        let gw = d.signer(GW);
        // iss must be the signer.
        let t = edge(&gw, &claims(ISSUER));
        assert!(matches!(verify(&t), Err(TokenError::WrongIssuer)));
        // Another trust domain's audience.
        let mut c = claims(GW);
        c.aud = "other.org".into();
        let t = edge(&gw, &c);
        assert!(matches!(verify(&t), Err(TokenError::WrongAudience)));
        // Expired.
        let mut c = claims(GW);
        c.exp = now() - 1;
        let t = edge(&gw, &c);
        assert!(matches!(
            verify(&t),
            Err(TokenError::Jws(VerifyError::Expired))
        ));
        // A payload changed after signing (a wider scope).
        let t = edge(&gw, &claims(GW));
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = claims(GW);
        c.scope = "weather.read admin".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&c).unwrap());
        assert!(matches!(
            verify(&parts.join(".")),
            Err(TokenError::Jws(VerifyError::BadSignature))
        ));
        // Signed by an agent's key under the gateway's chain.
        let agent = d.signer("spiffe://example.org/agent/a");
        let header = JwsHeader {
            x5c: Some(&gw.x5c),
            ..JwsHeader::new(&agent.key, Some(TXN_TYP), None)
        };
        let t = sign(&agent.key, &header, &claims(GW)).unwrap();
        assert!(matches!(
            verify(&t),
            Err(TokenError::Jws(VerifyError::BadSignature))
        ));
        // Both a kid and a chain: which key signed is not left to the token.
        let header = JwsHeader {
            x5c: Some(&gw.x5c),
            ..JwsHeader::new(&gw.key, Some(TXN_TYP), Some("as-1"))
        };
        let t = sign(&gw.key, &header, &claims(GW)).unwrap();
        assert!(matches!(
            verify(&t),
            Err(TokenError::Jws(VerifyError::UnexpectedHeaderParameter(_)))
        ));
        // Neither.
        let t = sign(
            &gw.key,
            &JwsHeader::new(&gw.key, Some(TXN_TYP), None),
            &claims(GW),
        )
        .unwrap();
        assert!(matches!(verify(&t), Err(TokenError::NoKid)));
        // A chain of garbage, or too long.
        for x5c in [
            vec!["!!".to_owned()],
            vec![gw.x5c[0].clone(); MAX_X5C + 1],
            vec![],
        ] {
            let header = JwsHeader {
                x5c: Some(&x5c),
                ..JwsHeader::new(&gw.key, Some(TXN_TYP), None)
            };
            let t = sign(&gw.key, &header, &claims(GW)).unwrap();
            assert!(matches!(
                verify(&t),
                Err(TokenError::Jws(VerifyError::Malformed(_)))
            ));
        }
    }
}
