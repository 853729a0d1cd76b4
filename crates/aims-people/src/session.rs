//! Browser sessions and CSRF protection.
//!
//! The session is a random handle in a `__Host-` cookie (`Secure`, `Path=/`, no `Domain`:
//! RFC 6265bis §4.1.3.2), `HttpOnly`, `SameSite=Lax` so that an authorization request arriving
//! by a top-level redirect from the client's site finds the user signed in; the store keeps
//! only its hash. Every state-changing request carries a CSRF token equal to a second
//! `__Host-`, `SameSite=Strict` cookie (double submit), and when the browser names an `Origin`
//! it must be this site's.

use aims_credentials::jose::{random_b64url, sha256_b64url};
use aims_store::{SessionRow, UserRow};
use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

use crate::{People, PeopleError};

/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-aims-session";
/// The CSRF cookie.
pub const CSRF_COOKIE: &str = "__Host-aims-csrf";
/// The form field (and, for JSON requests, the `X-CSRF-Token` header) carrying the token.
pub const CSRF_FIELD: &str = "csrf";
/// The header JSON requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Who.
    pub user: UserRow,
    /// How (RFC 8176 `amr`: `hwk` for a passkey, `pwd` for a password).
    pub method: String,
    /// When, Unix seconds (OpenID `auth_time`).
    pub auth_time: i64,
}

/// The value of a request cookie.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn set_cookie(
    name: &'static str,
    value: String,
    same_site: SameSite,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut c = Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(same_site);
    if let Some(secs) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    // A cookie built from base64url text and fixed attributes is always a valid header value.
    HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl People {
    /// Who is signed in on this request, if anyone (an expired session, or a disabled user's,
    /// is nobody).
    pub async fn signed_in(&self, headers: &HeaderMap) -> Result<Option<SignedIn>, PeopleError> {
        let Some(handle) = cookie_value(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        Ok(self
            .store
            .live_session(&sha256_b64url(handle.as_bytes()), self.now())
            .await?
            .map(|(s, user)| SignedIn {
                user,
                method: s.method,
                auth_time: s.created_at,
            }))
    }

    /// Starts a session for `user` signed in by `method`; returns its `Set-Cookie`.
    pub(crate) async fn start_session(
        &self,
        user: &UserRow,
        method: &str,
    ) -> Result<HeaderValue, PeopleError> {
        let handle = random_b64url().map_err(|_| PeopleError::Internal("random".into()))?;
        let ttl = i64::try_from(self.settings.session_ttl.as_secs()).unwrap_or(28_800);
        let now = self.now();
        self.store
            .put_session(&SessionRow {
                session_hash: sha256_b64url(handle.as_bytes()),
                user_id: user.user_id.clone(),
                method: method.to_owned(),
                created_at: now,
                expires_at: now + ttl,
            })
            .await?;
        tracing::info!(user = %user.username, method, "signed in");
        Ok(set_cookie(SESSION_COOKIE, handle, SameSite::Lax, Some(ttl)))
    }

    /// Ends this request's session; returns the `Set-Cookie` that clears it.
    pub(crate) async fn end_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<HeaderValue, PeopleError> {
        if let Some(handle) = cookie_value(headers, SESSION_COOKIE) {
            self.store
                .delete_session(&sha256_b64url(handle.as_bytes()))
                .await?;
        }
        Ok(set_cookie(
            SESSION_COOKIE,
            String::new(),
            SameSite::Lax,
            Some(0),
        ))
    }

    /// The CSRF token for a page: the browser's, or a new one with the `Set-Cookie` to send.
    pub fn csrf_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<(String, Option<HeaderValue>), PeopleError> {
        if let Some(t) = cookie_value(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
            return Ok((t, None));
        }
        let t = random_b64url().map_err(|_| PeopleError::Internal("random".into()))?;
        let cookie = set_cookie(CSRF_COOKIE, t.clone(), SameSite::Strict, None);
        Ok((t, Some(cookie)))
    }

    /// Checks a state-changing request: the token it carries (form field or header) equals the
    /// CSRF cookie, and any `Origin` is this site's.
    pub fn check_csrf(
        &self,
        headers: &HeaderMap,
        presented: Option<&str>,
    ) -> Result<(), PeopleError> {
        if let Some(origin) = headers.get(header::ORIGIN)
            && origin.as_bytes() != self.settings.public_url.trim_end_matches('/').as_bytes()
        {
            return Err(PeopleError::Csrf);
        }
        let presented = presented
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or(PeopleError::Csrf)?;
        match cookie_value(headers, CSRF_COOKIE) {
            Some(expected) if same(&expected, &presented) => Ok(()),
            _ => Err(PeopleError::Csrf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-aims-session=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, CSRF_COOKIE), None);
    }

    #[test]
    fn session_cookies_are_host_only_secure_and_http_only() {
        let c = set_cookie(SESSION_COOKIE, "v".into(), SameSite::Lax, Some(60));
        let s = c.to_str().unwrap();
        for part in [
            "__Host-aims-session=v",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
