//! The grants (AIMS AZ-13…AZ-26).
//!
//! * `client_credentials` (RFC 6749 §4.4): the agent for itself; `sub` = its client_id.
//! * `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1): a JWT authorization grant
//!   from a trusted authorization server (identity chaining, step 2), or an agent's own
//!   JWT-SVID (AZ-15).
//! * token exchange (RFC 8693): for an access token (delegation: a nested `act` for every hop,
//!   `may_act` honoured, never wider scope, audience, details or life than the subject token),
//!   a transaction token (txn-tokens), or a JWT authorization grant for another domain
//!   (identity chaining, step 1).
//! * `refresh_token` with rotation and reuse detection.

use aims_authn::replay::ReplayKind;
use aims_authn::transport::ConnectionInfo;
use aims_core::SpiffeId;
use aims_credentials::jose::{
    ASYMMETRIC_ALGORITHMS, Audience, CompactJws, JoseHeader, check_time, sha256_b64url,
};
use aims_credentials::verify_jwt_svid;
use aims_store::{RefreshUse, StoreError, TokenKind};
use aims_token::claims::{AccessClaims, Actor, GRANT_TYP, TXN_TYP, TxnClaims};
use aims_token::wire::OFFLINE_ACCESS_SCOPE;
use aims_token::wire::{
    ACCESS_TOKEN_TYPE, ID_JAG_TOKEN_TYPE, ID_JAG_TYP, ID_TOKEN_TYPE, JWT_BEARER_GRANT,
    JWT_TOKEN_TYPE, REFRESH_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TXN_TOKEN_TYPE,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuthorizationServer;
use crate::audience;
use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::issue::{Binding, Grant, TokenResponse};
use crate::rar;
use crate::signing::sign_token;

/// `typ`s of a JWT authorization grant from a trusted issuer (ours is `JWT`; ID-JAG's).
const GRANT_TYPS: &[&str] = &[GRANT_TYP, ID_JAG_TYP];
/// `typ`s of an ID token (OpenID Connect Core names none; `JWT` is common).
const ID_TOKEN_TYPS: &[&str] = &["JWT"];
/// The longest delegation chain accepted.
const MAX_ACT_DEPTH: usize = 8;
/// Largest request_context / request_details.
const MAX_CONTEXT: usize = 4096;

/// What a presented token (subject or actor) says.
#[derive(Debug, Clone)]
pub(crate) struct Presented {
    pub(crate) sub: String,
    /// The client it was issued to, when it names one.
    pub(crate) client_id: Option<String>,
    /// `None`: the token names no scope (a JWT-SVID).
    scopes: Option<Vec<String>>,
    aud: Vec<String>,
    authorization_details: Option<Value>,
    act: Option<Actor>,
    may_act: Option<Value>,
    pub(crate) exp: i64,
    txn: Option<TxnClaims>,
    approval: Option<String>,
    /// For an ID token: who issued it.
    pub(crate) id_token_of: Option<String>,
}

impl Presented {
    fn view(&self) -> audience::SubjectView<'_> {
        audience::SubjectView {
            sub: &self.sub,
            client_id: self.client_id.as_deref(),
            aud: &self.aud,
            may_act: self.may_act.as_ref(),
            locations: self.authorization_details.as_ref().and_then(rar::locations),
        }
    }

    fn from_access(c: AccessClaims) -> Self {
        Self {
            scopes: Some(c.scopes()),
            client_id: Some(c.client_id),
            sub: c.sub,
            aud: c.aud.values().to_vec(),
            authorization_details: c.authorization_details,
            act: c.act,
            may_act: c.may_act,
            exp: c.exp,
            txn: None,
            approval: c.approval,
            id_token_of: None,
        }
    }
}

/// What an exchange may carry.
struct Narrowed {
    scopes: Vec<String>,
    audience: Vec<String>,
    details: Option<Value>,
}

/// Claims of a JWT authorization grant (identity chaining's, or an ID-JAG: draft-ietf-oauth-
/// identity-assertion-authz-grant-04 §3.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: Audience,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    /// ID-JAG: the resource server(s) the grant is for (RFC 8707 `resource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<Audience>,
    /// ID-JAG §9.8: the DPoP key the grant is bound to (`{"jkt": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cnf: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authorization_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) may_act: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<i64>,
}

fn split_scope(s: Option<&str>) -> Vec<String> {
    s.map(|s| {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// RFC 8707 §2: absolute URIs without a fragment.
pub(crate) fn resources(form: &Form) -> Result<Vec<String>, OAuthError> {
    form.all("resource")
        .iter()
        .map(|r| match reqwest::Url::parse(r) {
            Ok(u) if u.fragment().is_none() => Ok(r.clone()),
            _ => Err(OAuthError::invalid_target(format!(
                "resource {r:?} is not an absolute URI without a fragment"
            ))),
        })
        .collect()
}

/// Scopes requested, bounded by what the earlier token held (when it named any).
pub(crate) fn narrowed_scopes(
    requested: Option<Vec<String>>,
    held: Option<&Vec<String>>,
) -> Result<Vec<String>, OAuthError> {
    match (requested, held) {
        (Some(r), Some(h)) => {
            if let Some(extra) = r.iter().find(|s| !h.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {extra:?} is wider than the presented token's"
                )));
            }
            Ok(r)
        }
        (Some(r), None) => Ok(r),
        // Inherited, not asked for: offline_access is never inherited (a refresh family is
        // the grant's to open, not an exchange's).
        (None, Some(h)) => Ok(h
            .iter()
            .filter(|s| *s != OFFLINE_ACCESS_SCOPE)
            .cloned()
            .collect()),
        (None, None) => Ok(Vec::new()),
    }
}

impl AuthorizationServer {
    /// Runs the grant a token request names.
    pub(crate) async fn grant(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
        connection: Option<&ConnectionInfo>,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = form.require("grant_type")?;
        if !client.allows_grant(grant_type) {
            return Err(OAuthError::unauthorized_client(format!(
                "client {} is not registered for {grant_type}",
                client.client_id
            )));
        }
        match grant_type {
            "client_credentials" => self.client_credentials(form, client, binding).await,
            "refresh_token" => self.refresh(form, client, binding).await,
            "authorization_code" => self.authorization_code(form, client, binding).await,
            aims_token::wire::CIBA_GRANT => self.ciba_grant(form, client, binding).await,
            JWT_BEARER_GRANT => self.jwt_bearer(form, client, binding).await,
            TOKEN_EXCHANGE_GRANT => self.token_exchange(form, client, binding, connection).await,
            other => Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {other:?} is not supported"
            ))),
        }
    }

    fn details_param(form: &Form) -> Result<Option<Value>, OAuthError> {
        form.get("authorization_details")
            .map(rar::parse)
            .transpose()
    }

    pub(crate) fn registered_scopes(
        client: &AuthenticatedClient,
        scopes: &[String],
    ) -> Result<(), OAuthError> {
        match &client.metadata {
            Some(m) => m.metadata.check_scopes(&client.client_id, scopes),
            None => Ok(()),
        }
    }

    async fn client_credentials(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
    ) -> Result<TokenResponse, OAuthError> {
        // RFC 6749 §4.4.3: no refresh token for client credentials (`issue_access_token`
        // refuses offline_access where the grant sets no refresh family).
        let scopes = form.scopes()?.unwrap_or_default();
        Self::registered_scopes(client, &scopes)?;
        let g = Grant {
            grant_type: "client_credentials".into(),
            subject: client.client_id.clone(),
            scopes,
            audience: resources(form)?,
            authorization_details: Self::details_param(form)?,
            act: None,
            may_act: None,
            not_after: None,
            refresh: None,
            approval: None,
        };
        self.issue_access_token(client, g, binding, None).await
    }

    async fn refresh(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
    ) -> Result<TokenResponse, OAuthError> {
        let token = form.require("refresh_token")?;
        let hash = sha256_b64url(token.as_bytes());
        // The client check comes before the token is spent.
        match self.store.get_token(&hash).await {
            Ok(r) if r.kind == TokenKind::Refresh && r.client_id == client.client_id => {}
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(OAuthError::invalid_grant("unknown refresh token"));
            }
            Err(e) => return Err(e.into()),
        }
        let record = match self.store.use_refresh_token(&hash, self.now()).await? {
            RefreshUse::Fresh(r) => *r,
            RefreshUse::Reused => {
                tracing::warn!(client = %client.client_id, "refresh token reused: the grant is revoked");
                return Err(OAuthError::invalid_grant(
                    "refresh token reuse detected; the grant is revoked",
                ));
            }
            RefreshUse::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "refresh token expired, revoked or used",
                ));
            }
        };
        let held: AccessClaims = serde_json::from_value(record.claims)
            .map_err(|e| OAuthError::server_error("stored refresh token claims", e))?;
        let scopes = narrowed_scopes(form.scopes()?, Some(&held.scopes()))?;
        let g = Grant {
            grant_type: "refresh_token".into(),
            subject: held.sub.clone(),
            scopes,
            audience: held.aud.values().to_vec(),
            authorization_details: held.authorization_details.clone(),
            act: held.act.clone(),
            may_act: held.may_act.clone(),
            // The family ends where its first refresh token did: rotation never extends it.
            not_after: Some(record.expires_at),
            refresh: Some(record.family),
            approval: held.approval.clone(),
        };
        self.issue_access_token(client, g, binding, None).await
    }

    /// Verifies a JWT signed by a trusted issuer (another authorization server) and spends its
    /// `jti` ([`Self::verify_trusted_unspent`], then [`Self::spend_assertion`]).
    async fn verify_trusted(
        &self,
        token: &str,
        typs: &[&str],
    ) -> Result<(Value, String, JoseHeader), OAuthError> {
        let verified = self.verify_trusted_unspent(token, typs).await?;
        self.spend_assertion(&verified.1, &verified.0).await?;
        Ok(verified)
    }

    /// Identity chaining §2.4.2: the subject of a grant from `iss` must be one this server can
    /// identify as that issuer's to name: never a workload of this trust domain (another
    /// authorization server does not speak for it), and one of the issuer's configured
    /// `subjects` when it has any.
    fn check_foreign_subject(&self, iss: &str, sub: &str) -> Result<(), OAuthError> {
        if audience::is_hand_off(sub, &self.settings.trust_domain) {
            return Err(OAuthError::invalid_grant(format!(
                "{iss} cannot name {sub}, a workload of this trust domain"
            )));
        }
        let allowed = self
            .settings
            .trusted_issuers
            .iter()
            .find(|t| t.issuer == iss)
            .is_some_and(|t| t.may_name(sub));
        if !allowed {
            return Err(OAuthError::invalid_grant(format!(
                "{sub} is not a subject {iss} may name here"
            )));
        }
        Ok(())
    }

    /// Uses the `jti` of an assertion from `iss` once: a replay is `invalid_grant`.
    async fn spend_assertion(&self, iss: &str, claims: &Value) -> Result<(), OAuthError> {
        let now = self.now();
        let jti = claims["jti"].as_str().ok_or_else(|| {
            OAuthError::invalid_grant("the assertion has no jti (it could be replayed)")
        })?;
        self.used_once(
            ReplayKind::ClientAssertion,
            &format!("grant:{iss}"),
            jti,
            claims["exp"].as_i64().unwrap_or(now),
            now,
        )
        .await
        .map_err(|e| e.refusal(OAuthError::invalid_grant))
    }

    /// Verifies a JWT signed by a trusted issuer (another authorization server): a `typ` of
    /// `typs` (or none; RFC 8725 §3.11: an access token or a proof is not a grant), its key, an
    /// audience naming us, its time window, and that it has a `jti` (not yet spent: a grant is
    /// spent once every check passed, so a refused request burns nobody's grant).
    async fn verify_trusted_unspent(
        &self,
        token: &str,
        typs: &[&str],
    ) -> Result<(Value, String, JoseHeader), OAuthError> {
        let bad = |m: String| OAuthError::invalid_grant(m);
        let jws = CompactJws::parse(token).map_err(|e| bad(e.to_string()))?;
        jws.header
            .require_alg(ASYMMETRIC_ALGORITHMS)
            .map_err(|e| bad(e.to_string()))?;
        if let Some(typ) = jws.header.typ.as_deref()
            && !typs.iter().any(|t| jws.header.typ_is(t))
        {
            return Err(bad(format!("a JWT of typ {typ:?} is not accepted here")));
        }
        let claims: Value = jws.claims().map_err(|e| bad(e.to_string()))?;
        let iss = claims["iss"]
            .as_str()
            .ok_or_else(|| bad("the assertion has no iss".into()))?
            .to_owned();
        if !self.trusted.trusts(&iss) {
            return Err(bad(format!("{iss} is not a trusted issuer")));
        }
        let key = self
            .trusted
            .key(&iss, jws.header.kid.as_deref())
            .await
            .map_err(|e| bad(e.to_string()))?;
        jws.verify(&key).map_err(|e| bad(e.to_string()))?;
        let aud: Option<Audience> = serde_json::from_value(claims["aud"].clone()).ok();
        let ours = [self.settings.issuer.clone(), self.settings.token_endpoint()];
        if !aud.is_some_and(|a| a.values().iter().any(|v| ours.contains(v))) {
            return Err(bad(
                "the assertion is not for this authorization server".into()
            ));
        }
        let now = self.now();
        check_time(
            claims["exp"].as_i64(),
            claims["nbf"].as_i64(),
            now,
            self.leeway(),
        )
        .map_err(|e| bad(e.to_string()))?;
        if !claims["jti"].is_string() {
            return Err(bad("the assertion has no jti (it could be replayed)".into()));
        }
        Ok((claims, iss, jws.header.clone()))
    }

    /// Adds the client as the current actor unless it already is, or is the subject itself.
    pub(crate) fn actor_chain(
        client: &AuthenticatedClient,
        subject: &str,
        earlier: Option<Actor>,
    ) -> Result<Option<Actor>, OAuthError> {
        let act = if client.client_id == subject
            || earlier.as_ref().is_some_and(|a| a.sub == client.client_id)
        {
            earlier
        } else {
            Some(Actor {
                sub: client.client_id.clone(),
                iss: None,
                act: earlier.map(Box::new),
            })
        };
        if act.as_ref().is_some_and(|a| a.depth() > MAX_ACT_DEPTH) {
            return Err(OAuthError::invalid_request(format!(
                "delegation chain longer than {MAX_ACT_DEPTH}"
            )));
        }
        Ok(act)
    }

    async fn jwt_bearer(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
    ) -> Result<TokenResponse, OAuthError> {
        let assertion = form.require("assertion")?;
        let audience = resources(form)?;
        let requested = form.scopes()?;
        // An agent's own JWT-SVID as the grant (AIMS AZ-15).
        if let Ok(svid) = verify_jwt_svid(
            assertion,
            self.bundles.as_ref(),
            &self.settings.issuer,
            self.now(),
            self.leeway(),
        ) {
            let subject = svid.spiffe_id.to_string();
            let g = Grant {
                grant_type: JWT_BEARER_GRANT.into(),
                act: Self::actor_chain(client, &subject, None)?,
                subject,
                scopes: requested.unwrap_or_default(),
                audience,
                authorization_details: Self::details_param(form)?,
                may_act: None,
                not_after: Some(svid.expiry.max(self.now())),
                refresh: None,
                approval: None,
            };
            return self.issue_access_token(client, g, binding, None).await;
        }
        let (claims, iss, header) = self.verify_trusted_unspent(assertion, GRANT_TYPS).await?;
        let grant: GrantClaims = serde_json::from_value(claims.clone())
            .map_err(|e| OAuthError::invalid_grant(format!("assertion claims: {e}")))?;
        let audience =
            self.check_grant_bounds(&grant, binding, audience, header.typ_is(ID_JAG_TYP))?;
        self.check_foreign_subject(&iss, &grant.sub)?;
        // The grant is for the client it names (identity chaining §2.3.2; ID-JAG's client_id).
        if grant.client_id.as_deref() != Some(client.client_id.as_str()) {
            return Err(OAuthError::invalid_grant(format!(
                "the assertion was issued for another client than {}",
                client.client_id
            )));
        }
        // A grant without scope grants none (never "unrestricted").
        let held = split_scope(grant.scope.as_deref());
        let scopes = narrowed_scopes(requested, Some(&held))?;
        let details = match (Self::details_param(form)?, &grant.authorization_details) {
            (Some(d), Some(o)) if !rar::is_within(o, &d) => {
                return Err(OAuthError::invalid_authorization_details(
                    "wider than the grant's",
                ));
            }
            (Some(d), _) => Some(d),
            (None, o) => o.clone(),
        };
        self.spend_assertion(&iss, &claims).await?;
        tracing::info!(issuer = %iss, sub = %grant.sub, client = %client.client_id, "JWT authorization grant accepted");
        let g = Grant {
            grant_type: JWT_BEARER_GRANT.into(),
            act: Self::actor_chain(client, &grant.sub, grant.act.clone())?,
            subject: grant.sub,
            scopes,
            audience,
            authorization_details: details,
            may_act: grant.may_act,
            // Never longer than the grant it rests on.
            not_after: Some(grant.exp),
            refresh: None,
            approval: None,
        };
        self.issue_access_token(client, g, binding, None).await
    }

    /// Resolves a subject or actor token of `token_type`.
    async fn presented(
        &self,
        token: &str,
        token_type: &str,
        what: &str,
    ) -> Result<Presented, OAuthError> {
        let bad = |m: String| OAuthError::invalid_request(format!("{what}: {m}"));
        let now = self.now();
        match token_type {
            ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE if token.matches('.').count() == 2 => {
                match self.own_access_token(token, now) {
                    Ok(c) => {
                        if self.store.is_jti_revoked(&c.jti).await? {
                            return Err(bad("revoked".into()));
                        }
                        Ok(Presented::from_access(c))
                    }
                    Err(own) if token_type == JWT_TOKEN_TYPE => {
                        // A JWT-SVID addressed to us (an agent's own identity).
                        let svid = verify_jwt_svid(
                            token,
                            self.bundles.as_ref(),
                            &self.settings.issuer,
                            now,
                            self.leeway(),
                        )
                        .map_err(|e| bad(format!("{own}; as a JWT-SVID: {e}")))?;
                        Ok(Presented {
                            sub: svid.spiffe_id.to_string(),
                            client_id: None,
                            scopes: None,
                            aud: Vec::new(),
                            authorization_details: None,
                            act: None,
                            may_act: None,
                            exp: svid.expiry,
                            txn: None,
                            approval: None,
                            id_token_of: None,
                        })
                    }
                    Err(e) => Err(bad(e.to_string())),
                }
            }
            ACCESS_TOKEN_TYPE => {
                let rec = match self.store.get_token(&sha256_b64url(token.as_bytes())).await {
                    Ok(r) => r,
                    Err(StoreError::NotFound(_)) => return Err(bad("unknown token".into())),
                    Err(e) => return Err(e.into()),
                };
                if rec.kind != TokenKind::Access
                    || rec.revoked_at.is_some()
                    || rec.expires_at <= now
                {
                    return Err(bad("inactive token".into()));
                }
                let c: AccessClaims = serde_json::from_value(rec.claims)
                    .map_err(|e| OAuthError::server_error("stored token claims", e))?;
                Ok(Presented::from_access(c))
            }
            TXN_TOKEN_TYPE => {
                // Ours or an edge service's (a gateway's), for this trust domain only.
                let c = self
                    .txn_services
                    .verify(token, self.keys.as_ref(), &self.settings.issuer, now)
                    .map_err(|e| bad(e.to_string()))?;
                Ok(Presented {
                    sub: c.sub.clone(),
                    client_id: None,
                    scopes: Some(split_scope(Some(&c.scope))),
                    aud: vec![c.aud.clone()],
                    authorization_details: None,
                    act: None,
                    may_act: None,
                    exp: c.exp,
                    txn: Some(c),
                    approval: None,
                    id_token_of: None,
                })
            }
            ID_TOKEN_TYPE => {
                let (claims, iss) = match self.own_id_token(token, now) {
                    Some(claims) => (claims, self.settings.issuer.clone()),
                    None => {
                        let (claims, iss, _) = self
                            .verify_trusted(token, ID_TOKEN_TYPS)
                            .await
                            .map_err(|e| bad(e.description))?;
                        (claims, iss)
                    }
                };
                let sub = claims["sub"]
                    .as_str()
                    .ok_or_else(|| bad("no sub".into()))?
                    .to_owned();
                tracing::debug!(issuer = %iss, "ID token accepted as subject token");
                // The client it was issued to (`azp`, or ID-JAG's `client_id`): only that
                // client may exchange it.
                let client_id = claims["azp"]
                    .as_str()
                    .or_else(|| claims["client_id"].as_str())
                    .or_else(|| claims["aud"].as_str())
                    .map(str::to_owned);
                Ok(Presented {
                    sub,
                    client_id,
                    scopes: None,
                    aud: Vec::new(),
                    authorization_details: None,
                    act: None,
                    may_act: None,
                    exp: claims["exp"].as_i64().unwrap_or(now),
                    txn: None,
                    approval: None,
                    id_token_of: Some(iss),
                })
            }
            REFRESH_TOKEN_TYPE => Err(bad("refresh tokens cannot be exchanged".into())),
            other => Err(bad(format!("token type {other:?} is not supported"))),
        }
    }

    async fn token_exchange(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
        connection: Option<&ConnectionInfo>,
    ) -> Result<TokenResponse, OAuthError> {
        let subject = self
            .presented(
                form.require("subject_token")?,
                form.require("subject_token_type")?,
                "subject_token",
            )
            .await?;
        // RFC 8693 §2.1: actor_token_type with actor_token, and only then.
        match (form.get("actor_token"), form.get("actor_token_type")) {
            (Some(t), Some(tt)) => {
                let actor = self.presented(t, tt, "actor_token").await?;
                if actor.sub != client.client_id {
                    return Err(OAuthError::invalid_request(
                        "actor_token: the actor must be the authenticated client",
                    ));
                }
            }
            (None, None) => {}
            _ => {
                return Err(OAuthError::invalid_request(
                    "actor_token and actor_token_type go together",
                ));
            }
        }
        // RFC 8693 §4.4: only the actor the subject named may act for it.
        if let Some(may) = &subject.may_act
            && may.get("sub").and_then(Value::as_str) != Some(client.client_id.as_str())
        {
            return Err(OAuthError::invalid_request(
                "subject_token: its may_act does not name this client",
            ));
        }
        match form
            .get("requested_token_type")
            .unwrap_or(ACCESS_TOKEN_TYPE)
        {
            ACCESS_TOKEN_TYPE => {
                self.check_entitled(client, &subject)?;
                self.exchange_access(form, client, binding, subject).await
            }
            TXN_TOKEN_TYPE => self.txn_token(form, client, subject, connection).await,
            JWT_TOKEN_TYPE => {
                self.check_entitled(client, &subject)?;
                self.chaining_grant(form, client, subject).await
            }
            ID_JAG_TOKEN_TYPE => self.issue_id_jag(form, client, binding, subject).await,
            other => Err(OAuthError::invalid_request(format!(
                "requested_token_type {other:?} is not supported"
            ))),
        }
    }

    /// Only a client the subject token is for may present it (a transaction token travels
    /// inside its trust domain by design).
    fn check_entitled(
        &self,
        client: &AuthenticatedClient,
        subject: &Presented,
    ) -> Result<(), OAuthError> {
        if subject.txn.is_some() {
            return Ok(());
        }
        audience::check_entitled(&self.resources, client, &subject.view())
    }

    /// Scope, audience and details of an exchange, never wider than the subject token's.
    fn narrowed(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        subject: &Presented,
    ) -> Result<Narrowed, OAuthError> {
        let scopes = narrowed_scopes(form.scopes()?, subject.scopes.as_ref())?;
        let mut audience = resources(form)?;
        audience.extend(form.all("audience").iter().cloned());
        if audience.is_empty() {
            audience = subject.aud.clone();
        } else {
            audience::check_audiences(
                &self.resources,
                &self.settings.trust_domain,
                client,
                &subject.view(),
                &audience,
            )?;
        }
        if let Some(allowed) = subject
            .authorization_details
            .as_ref()
            .and_then(rar::locations)
            && let Some(a) = audience
                .iter()
                .filter(|a| !audience::is_hand_off(a, &self.settings.trust_domain))
                .find(|a| !allowed.contains(a))
        {
            return Err(OAuthError::invalid_target(format!(
                "{a} is outside the locations the original grant allows"
            )));
        }
        let details = match (Self::details_param(form)?, &subject.authorization_details) {
            (Some(d), Some(o)) if !rar::is_within(o, &d) => {
                return Err(OAuthError::invalid_authorization_details(
                    "wider than the subject token's",
                ));
            }
            (Some(_), None) if subject.scopes.is_some() => {
                return Err(OAuthError::invalid_authorization_details(
                    "the subject token grants no authorization details",
                ));
            }
            (Some(d), _) => Some(d),
            (None, o) => o.clone(),
        };
        Ok(Narrowed {
            scopes,
            audience,
            details,
        })
    }

    async fn exchange_access(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
        subject: Presented,
    ) -> Result<TokenResponse, OAuthError> {
        if subject.txn.is_some()
            && !client
                .spiffe_id
                .as_ref()
                .is_some_and(|id| id.is_member_of(&self.settings.trust_domain))
        {
            return Err(OAuthError::invalid_request(
                "subject_token: a transaction token is exchanged only by workloads of its trust domain",
            ));
        }
        let n = self.narrowed(form, client, &subject)?;
        let g = Grant {
            grant_type: TOKEN_EXCHANGE_GRANT.into(),
            act: Self::actor_chain(client, &subject.sub, subject.act.clone())?,
            subject: subject.sub,
            scopes: n.scopes,
            audience: n.audience,
            authorization_details: n.details,
            may_act: subject.may_act,
            not_after: Some(subject.exp),
            refresh: None,
            approval: subject.approval,
        };
        self.issue_access_token(client, g, binding, Some(ACCESS_TOKEN_TYPE))
            .await
    }

    fn context_param(form: &Form, name: &str) -> Result<Option<Value>, OAuthError> {
        form.get(name)
            .map(|s| {
                if s.len() > MAX_CONTEXT {
                    return Err(OAuthError::invalid_request(format!("{name} is too large")));
                }
                match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => Ok(v),
                    _ => Err(OAuthError::invalid_request(format!(
                        "{name} must be a JSON object"
                    ))),
                }
            })
            .transpose()
    }

    /// The Transaction Token Service (txn-tokens §7): for workloads of this trust domain only.
    async fn txn_token(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        subject: Presented,
        connection: Option<&ConnectionInfo>,
    ) -> Result<TokenResponse, OAuthError> {
        let td = &self.settings.trust_domain;
        let workload: &SpiffeId = client
            .spiffe_id
            .as_ref()
            .filter(|id| id.is_member_of(td))
            .ok_or_else(|| {
                OAuthError::unauthorized_client(format!(
                    "transaction tokens are issued to workloads of {td} only"
                ))
            })?;
        self.check_entitled(client, &subject)?;
        match form.all("audience") {
            [a] if *a == td.name() || *a == td.id_string() => {}
            _ => {
                return Err(OAuthError::invalid_target(format!(
                    "audience must be the trust domain {td}"
                )));
            }
        }
        let requested = form
            .scopes()?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("scope is required"))?;
        let held = subject.scopes.as_ref().ok_or_else(|| {
            OAuthError::invalid_request(
                "subject_token: its scope is unknown, so it cannot be narrowed",
            )
        })?;
        let scopes = narrowed_scopes(Some(requested), Some(held))?;
        // txn-tokens (Security Considerations): a Txn-Token never carries the access token it
        // was minted from, which would travel on to every workload of the call chain.
        if let Some(token) = form.get("subject_token").filter(|t| !t.is_empty()) {
            for name in ["request_details", "request_context"] {
                if form.get(name).is_some_and(|v| v.contains(token)) {
                    return Err(OAuthError::invalid_request(format!(
                        "{name} must not contain the subject token"
                    )));
                }
            }
        }
        let details = Self::context_param(form, "request_details")?;
        let mut rctx = Self::context_param(form, "request_context")?
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        // The service has the last word on rctx: the connection's address, unless the caller is
        // one of this trust domain's transaction-token services (a gateway asking on behalf of
        // the caller it fronts), whose `req_ip` names that original caller.
        if let (Some(conn), Some(obj)) = (connection, rctx.as_object_mut()) {
            let from_edge = self.txn_services.is_edge_service(workload)
                && obj
                    .get("req_ip")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok());
            if !from_edge {
                obj.insert("req_ip".into(), Value::String(conn.remote.ip().to_string()));
            }
        }
        let (txn, req_wl, tctx) = match &subject.txn {
            // A replacement keeps txn, sub and tctx, and extends the chain of workloads.
            Some(prev) => {
                if details
                    .as_ref()
                    .is_some_and(|d| Some(d) != prev.tctx.as_ref())
                {
                    return Err(OAuthError::invalid_request(
                        "request_details cannot change a transaction's context",
                    ));
                }
                (
                    prev.txn.clone(),
                    format!("{},{}", prev.req_wl, workload),
                    prev.tctx.clone(),
                )
            }
            // A new transaction: a fresh id (txn-tokens §4.2), and the task it belongs to in
            // its context: the trace the request details name (the gateway's), else the one
            // the caller sent (AIMS MO-9, MO-11), so recipients and the audit log join the
            // hops of one task.
            None => {
                let trace = client
                    .trace_id
                    .clone()
                    .filter(|t| aims_core::trace_context::is_trace_id(t));
                let tctx = match (details, trace) {
                    (Some(Value::Object(mut d)), Some(t)) => {
                        d.entry("trace").or_insert(Value::String(t));
                        Some(Value::Object(d))
                    }
                    (None, Some(t)) => Some(serde_json::json!({ "trace": t })),
                    (details, _) => details,
                };
                (
                    uuid::Uuid::new_v4().simple().to_string(),
                    workload.to_string(),
                    tctx,
                )
            }
        };
        let g = Grant {
            grant_type: TXN_TOKEN_TYPE.into(),
            subject: subject.sub.clone(),
            scopes: scopes.clone(),
            audience: vec![td.name().to_owned()],
            authorization_details: None,
            act: None,
            may_act: None,
            not_after: Some(subject.exp),
            refresh: None,
            approval: None,
        };
        self.decide(client, &g).await?;
        let now = self.now();
        let exp = (now + self.ttl(self.settings.txn_token_ttl)).min(subject.exp);
        let claims = TxnClaims {
            iss: self.settings.issuer.clone(),
            iat: now,
            exp,
            aud: td.name().to_owned(),
            txn,
            sub: subject.sub,
            scope: scopes.join(" "),
            req_wl,
            tctx,
            rctx: Some(rctx),
        };
        let token = sign_token(self.keys.as_ref(), TXN_TYP, &claims)?;
        tracing::debug!(txn = %claims.txn, workload = %workload, "transaction token issued");
        Ok(TokenResponse {
            access_token: token,
            token_type: "N_A",
            expires_in: exp - now,
            scope: Some(claims.scope),
            refresh_token: None,
            issued_token_type: Some(TXN_TOKEN_TYPE),
            authorization_details: None,
            id_token: None,
            issued: None,
        })
    }

    /// Identity chaining step 1 (draft-ietf-oauth-identity-chaining §2.3): a JWT authorization
    /// grant for another authorization server, which that server redeems with RFC 7523.
    async fn chaining_grant(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        subject: Presented,
    ) -> Result<TokenResponse, OAuthError> {
        let mut targets = resources(form)?;
        targets.extend(form.all("audience").iter().cloned());
        let [target] = targets.as_slice() else {
            return Err(OAuthError::invalid_target(
                "name exactly one target authorization server (audience or resource)",
            ));
        };
        audience::check_other_authorization_server(
            target,
            &self.settings.issuer,
            &self.settings.trust_domain,
        )?;
        audience::check_audiences(
            &self.resources,
            &self.settings.trust_domain,
            client,
            &subject.view(),
            std::slice::from_ref(target),
        )?;
        let scopes = narrowed_scopes(form.scopes()?, subject.scopes.as_ref())?;
        let act = Self::actor_chain(client, &subject.sub, subject.act.clone())?;
        let g = Grant {
            grant_type: "urn:ietf:params:oauth:grant-profile:identity-chaining".into(),
            subject: subject.sub.clone(),
            scopes: scopes.clone(),
            audience: vec![target.clone()],
            authorization_details: subject.authorization_details.clone(),
            act: act.clone(),
            may_act: subject.may_act.clone(),
            not_after: Some(subject.exp),
            refresh: None,
            approval: None,
        };
        self.signed_grant(client, g, GRANT_TYP, JWT_TOKEN_TYPE, (None, None))
            .await
    }

    /// Decides `g` (whose one audience is the target authorization server) and signs it as a
    /// JWT authorization grant of `typ`, at most for the grant TTL and never past
    /// `g.not_after`; `bound` adds an ID-JAG's `resource` and `cnf`. The token exchange's
    /// response: `token_type` `N_A`, the grant is no access token (identity chaining §2.3.3,
    /// ID-JAG §4.3.4).
    pub(crate) async fn signed_grant(
        &self,
        client: &AuthenticatedClient,
        g: Grant,
        typ: &'static str,
        issued_token_type: &'static str,
        bound: (Option<Audience>, Option<Value>),
    ) -> Result<TokenResponse, OAuthError> {
        self.decide(client, &g).await?;
        let now = self.now();
        let exp = (now + self.ttl(self.settings.grant_ttl)).min(g.not_after.unwrap_or(i64::MAX));
        let target = g.audience.first().cloned().unwrap_or_default();
        let (resource, cnf) = bound;
        let claims = GrantClaims {
            iss: self.settings.issuer.clone(),
            sub: g.subject,
            aud: Audience::One(target.clone()),
            exp,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            // ID-JAG §3.1: the client's identifier at the target; AIMS assumes the same one.
            client_id: Some(client.client_id.clone()),
            scope: (!g.scopes.is_empty()).then(|| g.scopes.join(" ")),
            authorization_details: g.authorization_details,
            act: g.act,
            may_act: g.may_act,
            nbf: None,
            resource,
            cnf,
        };
        let token = sign_token(self.keys.as_ref(), typ, &claims)?;
        tracing::info!(target = %target, sub = %claims.sub, client = %client.client_id, typ, "authorization grant issued for another authorization server");
        Ok(TokenResponse {
            access_token: token,
            token_type: "N_A",
            expires_in: exp - now,
            scope: claims.scope,
            refresh_token: None,
            issued_token_type: Some(issued_token_type),
            authorization_details: None,
            id_token: None,
            issued: None,
        })
    }
}
