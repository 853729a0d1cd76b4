//! The OAuth names on the wire that the authorization server, the gateway, the SDK, the demo
//! and the bench share: one definition each.

/// RFC 8414 §3: where the authorization server's metadata is.
pub const AS_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery 1.0 §4: the same document for OpenID clients.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// RFC 9728 §3: where a protected resource's metadata is.
pub const PROTECTED_RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The token endpoint (RFC 6749 §3.2).
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The introspection endpoint (RFC 7662 §2).
pub const INTROSPECTION_PATH: &str = "/oauth2/introspect";
/// The revocation endpoint (RFC 7009 §2).
pub const REVOCATION_PATH: &str = "/oauth2/revoke";
/// The registration endpoint (RFC 7591 §3).
pub const REGISTRATION_PATH: &str = "/oauth2/register";
/// The `jwks_uri` (RFC 8414 §2).
pub const JWKS_PATH: &str = "/oauth2/jwks";
/// The authorization endpoint (RFC 6749 §3.1).
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// The pushed authorization request endpoint (RFC 9126 §2).
pub const PAR_PATH: &str = "/oauth2/par";
/// The CIBA backchannel authentication endpoint (CIBA Core §7).
pub const BACKCHANNEL_PATH: &str = "/oauth2/bc-authorize";

/// The scope that makes a request an OpenID Connect one (OpenID Connect Core §3.1.2.1).
pub const OPENID_SCOPE: &str = "openid";
/// The scope that asks for a refresh token (OpenID Connect Core §11).
pub const OFFLINE_ACCESS_SCOPE: &str = "offline_access";

/// `client_assertion_type` of a JWT-SVID (draft-ietf-oauth-spiffe-client-auth §3).
pub const JWT_SPIFFE_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// `client_assertion_type` of a JWT (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `grant_type` of a JWT authorization grant (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `grant_type` of token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of CIBA (CIBA Core §10.1).
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

/// RFC 8693 §3 token types.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3.
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// RFC 8693 §3.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693 §3.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// draft-ietf-oauth-identity-assertion-authz-grant-04 §4.3: an Identity Assertion JWT
/// Authorization Grant (ID-JAG).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// draft-ietf-oauth-identity-assertion-authz-grant-04 §3.1: an ID-JAG's `typ`.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// draft-ietf-oauth-identity-assertion-authz-grant-04 §7.2: the grant profile a resource AS
/// advertises in `authorization_grant_profiles_supported`.
pub const ID_JAG_GRANT_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// draft-ietf-oauth-transaction-tokens §7.1.
pub const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
