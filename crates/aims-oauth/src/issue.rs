//! Minting access tokens, the one place every grant ends: ask the policy decision point, bind
//! the token to the client's key when it proved one (DPoP `cnf.jkt`, or its TLS certificate
//! `cnf.x5t#S256`), sign it as an RFC 9068 JWT or store it as an opaque reference, and answer
//! as RFC 6749 §5.1 says.

use aims_credentials::jose::{Audience, sha256_b64url};
use aims_store::{TokenKind, TokenRecord};
use aims_token::claims::{AT_TYP, AccessClaims, Actor, Confirmation, ID_TYP, IdClaims};
use aims_token::wire::OFFLINE_ACCESS_SCOPE;
use serde::Serialize;

use crate::AuthorizationServer;
use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::policy::{AccessRequest, Decision, DenyKind};
use crate::settings::TokenFormat;
use crate::signing::sign_token;

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// `Bearer`, `DPoP` or `N_A`.
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: i64,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Token exchange: what was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// RFC 9396 §7: the authorization details granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// OpenID Connect Core §3.1.3.3: with `openid` in the scope of a delegated grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// What was issued, to revoke it if the grant behind it turns out to be compromised.
    #[serde(skip)]
    pub issued: Option<Issued>,
}

/// The revocable handles of an issued token response.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Issued {
    /// The access token's `jti`.
    pub jti: String,
    /// Its expiry.
    pub exp: i64,
    /// The refresh token family, if one was issued.
    pub family: Option<String>,
}

/// How the token is bound to the client.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// DPoP key thumbprint.
    pub jkt: Option<String>,
}

/// What a grant decided to issue.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The grant type, for policy.
    pub grant_type: String,
    /// The token's subject.
    pub subject: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Audiences.
    pub audience: Vec<String>,
    /// Authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// Delegation chain.
    pub act: Option<Actor>,
    /// Who may act for the subject later.
    pub may_act: Option<serde_json::Value>,
    /// A bound on expiry inherited from an earlier token or grant (an exchange never extends
    /// life); a refresh family issued on the grant ends there too.
    pub not_after: Option<i64>,
    /// Issue a refresh token too (its family, if continuing one). Only grants whose subject's
    /// authorization outlives the request set this: a person's consent (authorization code)
    /// or approval (CIBA), and the refresh grant continuing such a family.
    pub refresh: Option<Option<String>>,
    /// The person's approval the grant rests on.
    pub approval: Option<String>,
}

/// A random token: 256 bits, base64url.
pub fn random_token() -> Result<String, OAuthError> {
    aims_credentials::jose::random_b64url()
        .map_err(|_| OAuthError::server_error("token generation", "random generator failed"))
}

impl AuthorizationServer {
    /// Refuses a grant to or for a revoked principal (AIMS MO-4), then asks the policy
    /// decision point.
    pub(crate) async fn decide(
        &self,
        client: &AuthenticatedClient,
        g: &Grant,
    ) -> Result<(), OAuthError> {
        let actors = g.act.as_ref().map(Actor::chain).unwrap_or_default();
        let mut principals: Vec<&str> = vec![&client.client_id, &g.subject];
        principals.extend(client.spiffe_id.as_ref().map(|id| id.as_str()));
        principals.extend(actors.iter().map(String::as_str));
        if let Some(r) = self
            .store
            .revocations_of(&principals)
            .await?
            .into_iter()
            .find(|r| r.lifted_at.is_none())
        {
            tracing::warn!(client = %client.client_id, principal = %r.principal, cause = %r.cause, "grant refused: access revoked");
            return Err(OAuthError::invalid_grant(format!(
                "access for {} was revoked",
                r.principal
            )));
        }
        let request = AccessRequest {
            grant_type: g.grant_type.clone(),
            client_id: client.client_id.clone(),
            client_spiffe_id: client.spiffe_id.clone(),
            subject: g.subject.clone(),
            actors,
            scopes: g.scopes.clone(),
            audience: g.audience.clone(),
            authorization_details: g.authorization_details.clone(),
            approval: g.approval.clone(),
            correlation_id: client.trace_id.clone(),
        };
        let decision = self
            .pdp
            .decide(&request)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        match decision {
            Decision::Permit => Ok(()),
            Decision::Deny(DenyKind::Approval, m) => Err(OAuthError::interaction_required(m)),
            Decision::Deny(DenyKind::Scope, m) => Err(OAuthError::invalid_scope(m)),
            Decision::Deny(DenyKind::Target, m) => Err(OAuthError::invalid_target(m)),
            Decision::Deny(DenyKind::Client, m) => Err(OAuthError::unauthorized_client(m)),
        }
    }

    /// Issues an access token (and a refresh token, if the grant asks) for `g`.
    pub(crate) async fn issue_access_token(
        &self,
        client: &AuthenticatedClient,
        mut g: Grant,
        binding: &Binding,
        issued_token_type: Option<&'static str>,
    ) -> Result<TokenResponse, OAuthError> {
        // `offline_access` is granted only where the grant says a refresh family may exist;
        // elsewhere (a JWT-SVID, an ID token, a trusted issuer's grant) the subject's
        // authorization is the presented token's, and must not outlive it.
        if g.refresh.is_none() && g.scopes.iter().any(|s| s == OFFLINE_ACCESS_SCOPE) {
            return Err(OAuthError::invalid_scope(format!(
                "offline_access: a {} grant issues no refresh token",
                g.grant_type
            )));
        }
        let wants_refresh = g.refresh.is_some();
        g.scopes.retain(|s| s != OFFLINE_ACCESS_SCOPE);
        if g.audience.is_empty() {
            return Err(OAuthError::invalid_target(
                "name the resource the token is for (resource, RFC 8707)",
            ));
        }
        self.decide(client, &g).await?;
        let now = self.now();
        let mut exp = now + self.ttl(self.settings.access_token_ttl);
        if let Some(limit) = g.not_after {
            exp = exp.min(limit);
        }
        let cnf = match (&binding.jkt, &client.certificate_thumbprint) {
            (Some(jkt), _) => Some(Confirmation {
                jkt: Some(jkt.clone()),
                x5t_s256: None,
            }),
            (None, Some(x5t)) => Some(Confirmation {
                x5t_s256: Some(x5t.clone()),
                jkt: None,
            }),
            (None, None) => None,
        };
        let dpop_required = client
            .metadata
            .as_ref()
            .and_then(|m| m.metadata.dpop_bound_access_tokens)
            .unwrap_or(false);
        if binding.jkt.is_none() && dpop_required {
            return Err(OAuthError::invalid_request(
                "this client's tokens must be DPoP-bound: send a DPoP proof",
            ));
        }
        if cnf.is_none() && self.settings.require_sender_constraint {
            return Err(OAuthError::invalid_request(
                "this server issues sender-constrained tokens only: use DPoP or mutual TLS",
            ));
        }
        let token_type = if binding.jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        };
        let scope = (!g.scopes.is_empty()).then(|| g.scopes.join(" "));
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: g.subject.clone(),
            aud: Audience::from_values(g.audience.clone()),
            exp,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            authorization_details: g.authorization_details.clone(),
            act: g.act.clone(),
            may_act: g.may_act.clone(),
            cnf,
            approval: g.approval.clone(),
        };
        let access_token = match self.settings.token_format {
            TokenFormat::Jwt => sign_token(self.keys.as_ref(), AT_TYP, &claims)?,
            TokenFormat::Opaque => {
                let token = random_token()?;
                self.store
                    .put_token(&TokenRecord {
                        token_hash: sha256_b64url(token.as_bytes()),
                        kind: TokenKind::Access,
                        jti: claims.jti.clone(),
                        client_id: claims.client_id.clone(),
                        subject: claims.sub.clone(),
                        claims: serde_json::to_value(&claims)
                            .map_err(|e| OAuthError::server_error("token claims", e))?,
                        family: None,
                        expires_at: exp,
                        revoked_at: None,
                        used_at: None,
                    })
                    .await?;
                token
            }
        };
        let (refresh_token, family) = if wants_refresh {
            let (token, family) = self
                .issue_refresh_token(&claims, g.refresh.flatten(), g.not_after)
                .await?;
            (Some(token), Some(family))
        } else {
            (None, None)
        };
        tracing::debug!(
            client = %claims.client_id,
            sub = %claims.sub,
            grant = %g.grant_type,
            jti = %claims.jti,
            "access token issued"
        );
        Ok(TokenResponse {
            access_token,
            token_type,
            expires_in: exp - now,
            scope,
            refresh_token,
            issued_token_type,
            authorization_details: g.authorization_details,
            id_token: None,
            issued: Some(Issued {
                jti: claims.jti,
                exp,
                family,
            }),
        })
    }

    /// An ID token for `user` and `client_id` (OpenID Connect Core §2; CIBA Core §10.1.1 adds
    /// `auth_req_id`).
    pub(crate) fn id_token(
        &self,
        client_id: &str,
        user: &str,
        auth_time: Option<i64>,
        nonce: Option<String>,
        amr: Option<String>,
        auth_req_id: Option<String>,
    ) -> Result<String, OAuthError> {
        let now = self.now();
        let claims = IdClaims {
            iss: self.settings.issuer.clone(),
            sub: user.to_owned(),
            aud: client_id.to_owned(),
            exp: now + self.ttl(self.settings.access_token_ttl),
            iat: now,
            auth_time,
            nonce,
            amr: amr.into_iter().collect(),
            auth_req_id,
        };
        sign_token(self.keys.as_ref(), ID_TYP, &claims)
    }

    /// A refresh token of `family` (a new one if `None`); it expires with the refresh TTL or at
    /// `not_after`, whichever is first, so that rotation never extends a family past the
    /// grant it came from.
    async fn issue_refresh_token(
        &self,
        claims: &AccessClaims,
        family: Option<String>,
        not_after: Option<i64>,
    ) -> Result<(String, String), OAuthError> {
        let token = random_token()?;
        let family = family.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.store
            .put_token(&TokenRecord {
                token_hash: sha256_b64url(token.as_bytes()),
                kind: TokenKind::Refresh,
                jti: uuid::Uuid::new_v4().to_string(),
                client_id: claims.client_id.clone(),
                subject: claims.sub.clone(),
                claims: serde_json::to_value(claims)
                    .map_err(|e| OAuthError::server_error("token claims", e))?,
                family: Some(family.clone()),
                expires_at: not_after.map_or(
                    self.now() + self.ttl(self.settings.refresh_token_ttl),
                    |limit| limit.min(self.now() + self.ttl(self.settings.refresh_token_ttl)),
                ),
                revoked_at: None,
                used_at: None,
            })
            .await?;
        Ok((token, family))
    }
}
