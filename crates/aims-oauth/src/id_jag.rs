//! Identity Assertion JWT Authorization Grants (draft-ietf-oauth-identity-assertion-authz-grant-04,
//! MCP's enterprise-managed authorization). As the enterprise IdP, AIMS exchanges a person's ID
//! token, held by the client it was issued to, for an ID-JAG addressed to another authorization
//! server (§4.3); as a resource authorization server, it redeems ID-JAGs from issuers it trusts
//! by the JWT bearer grant with the checks §4.4.1 adds to RFC 7523.
//!
//! Not implemented: SAML assertions and refresh tokens as subject tokens (§4.3: MAY), `sub_id`
//! (§3.2.2), tenants (single-tenant issuers need none).

use aims_credentials::jose::Audience;
use aims_token::claims::{ID_TYP, verify_own};
use aims_token::wire::{ID_JAG_TOKEN_TYPE, ID_JAG_TYP, ID_TOKEN_TYPE};
use serde_json::{Value, json};

use crate::AuthorizationServer;
use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::grants::{GrantClaims, Presented, narrowed_scopes, resources};
use crate::issue::{Binding, Grant, TokenResponse};

/// The grant type the policy decision point sees for an ID-JAG's issuance.
pub(crate) const ID_JAG_GRANT: &str = aims_token::wire::ID_JAG_GRANT_PROFILE;

impl AuthorizationServer {
    /// An ID token this server issued, verified (OpenID Connect Core §3.1.3.7 as its issuer
    /// sees it). ID tokens and identity-chaining grants share `typ` `JWT`; a grant always
    /// carries `client_id` and `jti` and an ID token neither, so no grant passes for one
    /// (RFC 8725 §3.11).
    pub(crate) fn own_id_token(&self, token: &str, now: i64) -> Option<Value> {
        let claims: Value = verify_own(
            self.keys.as_ref(),
            &self.settings.issuer,
            token,
            ID_TYP,
            now,
        )
        .ok()?;
        (claims.get("client_id").is_none()
            && claims.get("jti").is_none()
            && claims["aud"].is_string())
        .then_some(claims)
    }

    /// §4.3: an ID-JAG for the person of `subject` (an ID token this server issued to the
    /// authenticated client), addressed to the authorization server `audience`, for the
    /// optional `resource` and `scope`; decided by policy like any grant (AIMS AZ-27).
    pub(crate) async fn issue_id_jag(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
        subject: Presented,
    ) -> Result<TokenResponse, OAuthError> {
        if form.get("subject_token_type") != Some(ID_TOKEN_TYPE) {
            return Err(OAuthError::invalid_request(
                "an ID-JAG is issued for an ID token (subject_token_type id_token)",
            ));
        }
        // §4.3.3: an identity assertion of this IdP, whose audience is the client asking.
        if subject.id_token_of.as_deref() != Some(self.settings.issuer.as_str()) {
            return Err(OAuthError::invalid_grant(
                "subject_token: not an ID token this identity provider issued",
            ));
        }
        if subject.client_id.as_deref() != Some(client.client_id.as_str()) {
            return Err(OAuthError::invalid_grant(format!(
                "subject_token: the ID token was not issued to {}",
                client.client_id
            )));
        }
        let audiences = form.all("audience");
        let [target] = audiences else {
            return Err(OAuthError::invalid_request(
                "audience: name exactly one authorization server (its issuer identifier)",
            ));
        };
        if !self.resources.knows(target) {
            return Err(OAuthError::invalid_target(format!(
                "{target} is not an authorization server this identity provider knows"
            )));
        }
        // §9.3: never to itself (this server would be redeeming its own assertion).
        crate::audience::check_other_authorization_server(
            target,
            &self.settings.issuer,
            &self.settings.trust_domain,
        )?;
        let resource = resources(form)?;
        let scopes = narrowed_scopes(form.scopes()?, None)?;
        let g = Grant {
            grant_type: ID_JAG_GRANT.into(),
            subject: subject.sub.clone(),
            scopes: scopes.clone(),
            audience: vec![target.clone()],
            authorization_details: None,
            act: None,
            may_act: None,
            not_after: Some(subject.exp),
            refresh: None,
            approval: None,
        };
        let resource = match resource.as_slice() {
            [] => None,
            [one] => Some(Audience::One(one.clone())),
            many => Some(Audience::Many(many.to_vec())),
        };
        // §9.8.1.1: a DPoP proof with the request binds the grant to its key.
        let cnf = binding.jkt.as_ref().map(|jkt| json!({"jkt": jkt}));
        self.signed_grant(client, g, ID_JAG_TYP, ID_JAG_TOKEN_TYPE, (resource, cnf))
            .await
    }

    /// §4.4.1: the bounds a grant sets on the token it is redeemed for, beyond the checks every
    /// grant passes (issuer trust, signature, lifetime, `jti`, `client_id`): a grant bound to a
    /// DPoP key (`cnf.jkt`) is redeemed only with a proof of that key, and a grant naming
    /// `resource`s yields a token for those (or fewer), whatever its `typ`; an ID-JAG's `aud`
    /// is moreover exactly this server's issuer. Returns the audience of the token to issue.
    pub(crate) fn check_grant_bounds(
        &self,
        grant: &GrantClaims,
        binding: &Binding,
        requested: Vec<String>,
        id_jag: bool,
    ) -> Result<Vec<String>, OAuthError> {
        if id_jag && grant.aud.values() != [self.settings.issuer.clone()] {
            return Err(OAuthError::invalid_grant(
                "the ID-JAG's aud is not this authorization server's issuer",
            ));
        }
        if let Some(cnf) = &grant.cnf {
            let bound = cnf.get("jkt").and_then(Value::as_str);
            if bound.is_none() || bound != binding.jkt.as_deref() {
                return Err(OAuthError::invalid_grant(
                    "the ID-JAG is bound to a DPoP key: present a proof of that key",
                ));
            }
        }
        let Some(allowed) = &grant.resource else {
            return Ok(requested);
        };
        if requested.is_empty() {
            return Ok(allowed.values().to_vec());
        }
        match requested.iter().find(|r| !allowed.values().contains(r)) {
            Some(r) => Err(OAuthError::invalid_target(format!(
                "{r} is not a resource the ID-JAG names"
            ))),
            None => Ok(requested),
        }
    }
}
