//! The pages people see: sign-in (passkey, or password when it is on), enrolment, their account
//! (passkeys, and the consents they gave, which they can withdraw), and the layout other
//! crates' pages are wrapped in. Server-rendered with askama (escaped by default); one small
//! script runs the WebAuthn ceremonies.

use std::sync::Arc;

use askama::Template;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::session::SignedIn;
use crate::{People, PeopleError};

/// Largest body of a page's form or JSON request.
const MAX_BODY: usize = 32 * 1024;

type S = State<Arc<People>>;

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    title: &'a str,
    csrf: &'a str,
    user: Option<&'a str>,
    admin: bool,
    body: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    return_to: &'a str,
    error: &'a str,
    passkeys: bool,
    passwords: bool,
}

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrolPage<'a> {
    csrf: &'a str,
    token: &'a str,
    username: &'a str,
    display_name: &'a str,
    passkeys: bool,
    passwords: bool,
}

struct ConsentView {
    client: String,
    what: String,
    since: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    csrf: &'a str,
    username: &'a str,
    display_name: &'a str,
    method: &'a str,
    passkeys: usize,
    passkeys_enabled: bool,
    consents: Vec<ConsentView>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    message: &'a str,
    class: &'a str,
    link: Option<&'a str>,
}

/// Headers every page carries: no caching, no framing, no referrer leaking codes, scripts and
/// styles from this origin only.
fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // same-origin: no URL (with a code or a handle in it) leaks to another site, while form
    // posts keep their `Origin` (no-referrer would make it "null").
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

/// Renders a template, or a plain 500 if it cannot (it always can: templates are checked at
/// compile time; only a formatting error of a value could fail).
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "page rendering failed");
        String::from("<p>This page could not be rendered.</p>")
    })
}

/// A whole page: the HTML `body` renders (given the page's CSRF token, which its forms carry)
/// in the layout, with the CSRF cookie set if the browser had none.
pub fn layout(
    people: &People,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    signed_in: Option<&SignedIn>,
    body: impl FnOnce(&str) -> String,
) -> Response {
    let (csrf, set) = match people.csrf_token(headers) {
        Ok(t) => t,
        Err(e) => return error_page(people, headers, &e),
    };
    let html = render(&Layout {
        title,
        csrf: &csrf,
        user: signed_in.map(|s| s.user.display_name.as_str()),
        admin: signed_in.is_some_and(|s| s.user.is_admin),
        body: &body(&csrf),
    });
    let mut resp = (status, Html(html)).into_response();
    if let Some(c) = set {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    page_headers(&mut resp);
    resp
}

/// A page with one message.
pub fn message(
    people: &People,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<&str>,
) -> Response {
    let class = if status.is_success() { "ok" } else { "error" };
    layout(people, headers, status, title, None, |_| {
        render(&MessagePage {
            message: text,
            class,
            link,
        })
    })
}

fn status_of(e: &PeopleError) -> StatusCode {
    match e {
        PeopleError::Invalid(_) | PeopleError::WebAuthn(_) | PeopleError::Expired(_) => {
            StatusCode::BAD_REQUEST
        }
        PeopleError::SignInFailed | PeopleError::SignInRequired => StatusCode::UNAUTHORIZED,
        PeopleError::Csrf => StatusCode::FORBIDDEN,
        PeopleError::PasskeysUnavailable(_) => StatusCode::NOT_IMPLEMENTED,
        PeopleError::Store(aims_store::StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        PeopleError::Config(_) | PeopleError::Store(_) | PeopleError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn public_text(e: &PeopleError) -> String {
    match status_of(e) {
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %e, "people pages");
            "Something went wrong on the server; try again.".into()
        }
        _ => e.to_string(),
    }
}

/// The error page for `e`.
pub fn error_page(people: &People, headers: &HeaderMap, e: &PeopleError) -> Response {
    let (csrf, _) = people.csrf_token(headers).unwrap_or_default();
    let body = render(&MessagePage {
        message: &public_text(e),
        class: "error",
        link: None,
    });
    let mut resp = (
        status_of(e),
        Html(render(&Layout {
            title: "Error",
            csrf: &csrf,
            user: None,
            admin: false,
            body: &body,
        })),
    )
        .into_response();
    page_headers(&mut resp);
    resp
}

fn json_error(e: &PeopleError) -> Response {
    (
        status_of(e),
        Json(json!({"error": "request_failed", "error_description": public_text(e)})),
    )
        .into_response()
}

/// A local path to return to after sign-in: relative to this site, never another origin.
pub fn safe_return(to: Option<&str>) -> &str {
    match to {
        Some(t)
            if t.starts_with('/')
                && !t.starts_with("//")
                && !t.contains('\\')
                && !t.chars().any(char::is_control) =>
        {
            t
        }
        _ => "/account",
    }
}

/// Where a page that needs a signed-in user sends the browser: the sign-in page, coming back
/// to `return_to` afterwards.
pub fn sign_in_redirect(return_to: &str) -> Response {
    let q = serde_urlencoded_pair("return_to", safe_return(Some(return_to)));
    Redirect::to(&format!("/login?{q}")).into_response()
}

fn serde_urlencoded_pair(k: &str, v: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair(k, v)
        .finish()
}

/// The routes of the people pages.
pub fn router(people: Arc<People>) -> Router {
    Router::new()
        .route("/login", get(login_page))
        .route("/login/password", post(password_sign_in))
        .route("/login/passkey/options", post(passkey_sign_in_options))
        .route("/login/passkey/finish", post(passkey_sign_in_finish))
        .route("/logout", post(sign_out))
        .route("/enroll", get(enrol_page))
        .route("/enroll/password", post(enrol_password))
        .route("/passkeys/options", post(registration_options))
        .route("/passkeys/finish", post(registration_finish))
        .route("/account", get(account_page))
        .route("/account/consents/withdraw", post(withdraw_consent))
        .route("/static/aims.js", get(script))
        .route("/static/aims.css", get(style))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(people)
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../assets/aims.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../assets/aims.css"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

fn login_form(
    people: &People,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    error: &str,
) -> Response {
    layout(people, headers, status, "Sign in", None, |csrf| {
        render(&LoginPage {
            csrf,
            return_to: safe_return(Some(return_to)),
            error,
            passkeys: people.passkeys_enabled(),
            passwords: people.settings.password_sign_in,
        })
    })
}

async fn login_page(State(p): S, headers: HeaderMap, Query(q): Query<ReturnTo>) -> Response {
    login_form(
        &p,
        &headers,
        StatusCode::OK,
        q.return_to.as_deref().unwrap_or(""),
        "",
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    username: String,
    password: String,
    csrf: Option<String>,
    return_to: Option<String>,
}

/// Redirects (303) after a sign-in, with the session cookie.
fn signed_in_redirect(to: &str, cookie: HeaderValue) -> Response {
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

async fn password_sign_in(
    State(p): S,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    if let Err(e) = p.check_csrf(&headers, f.csrf.as_deref()) {
        return error_page(&p, &headers, &e);
    }
    let to = safe_return(f.return_to.as_deref()).to_owned();
    match p.check_password(&f.username, &f.password).await {
        Ok(user) => match p.start_session(&user, "pwd").await {
            Ok(cookie) => signed_in_redirect(&to, cookie),
            Err(e) => error_page(&p, &headers, &e),
        },
        Err(e @ PeopleError::SignInFailed) => {
            tracing::info!(user = %f.username, "password sign-in refused");
            login_form(&p, &headers, StatusCode::UNAUTHORIZED, &to, &e.to_string())
        }
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[derive(Deserialize)]
struct UsernameBody {
    username: String,
}

async fn passkey_sign_in_options(
    State(p): S,
    headers: HeaderMap,
    Json(b): Json<UsernameBody>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, None)?;
        p.sign_in_options(&b.username).await
    }
    .await;
    match result {
        Ok((handle, options)) => {
            Json(json!({"handle": handle, "options": options})).into_response()
        }
        Err(e) => json_error(&e),
    }
}

#[derive(Deserialize)]
struct FinishBody {
    handle: String,
    credential: Value,
    return_to: Option<String>,
    enrolment_token: Option<String>,
}

async fn passkey_sign_in_finish(
    State(p): S,
    headers: HeaderMap,
    Json(b): Json<FinishBody>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, None)?;
        let user = p.finish_sign_in(&b.handle, b.credential).await?;
        p.start_session(&user, "hwk").await
    }
    .await;
    match result {
        Ok(cookie) => {
            let mut resp =
                Json(json!({"redirect": safe_return(b.return_to.as_deref())})).into_response();
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp
        }
        Err(e) => json_error(&e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn sign_out(State(p): S, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let result = async {
        p.check_csrf(&headers, f.csrf.as_deref())?;
        p.end_session(&headers).await
    }
    .await;
    match result {
        Ok(cookie) => signed_in_redirect("/login", cookie),
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn enrol_page(State(p): S, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    match p.enrolling_user(&q.token).await {
        Ok(user) => layout(
            &p,
            &headers,
            StatusCode::OK,
            "Set up sign-in",
            None,
            |csrf| {
                render(&EnrolPage {
                    csrf,
                    token: &q.token,
                    username: &user.username,
                    display_name: &user.display_name,
                    passkeys: p.passkeys_enabled(),
                    passwords: p.settings.password_sign_in,
                })
            },
        ),
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[derive(Deserialize)]
struct EnrolPasswordForm {
    token: String,
    password: String,
    csrf: Option<String>,
}

async fn enrol_password(
    State(p): S,
    headers: HeaderMap,
    Form(f): Form<EnrolPasswordForm>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, f.csrf.as_deref())?;
        let user = p.enrolling_user(&f.token).await?;
        p.set_password(&user.user_id, &f.password).await?;
        p.finish_enrolment(&f.token).await?;
        p.start_session(&user, "pwd").await
    }
    .await;
    match result {
        Ok(cookie) => signed_in_redirect("/account", cookie),
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[derive(Deserialize)]
struct RegistrationBody {
    enrolment_token: Option<String>,
}

/// Who a passkey is being registered for: the signed-in user, or the user of an enrolment link.
async fn registrant(
    p: &People,
    headers: &HeaderMap,
    enrolment: Option<&str>,
) -> Result<aims_store::UserRow, PeopleError> {
    match enrolment {
        Some(token) => p.enrolling_user(token).await,
        None => p
            .signed_in(headers)
            .await?
            .map(|s| s.user)
            .ok_or(PeopleError::SignInRequired),
    }
}

async fn registration_options(
    State(p): S,
    headers: HeaderMap,
    Json(b): Json<RegistrationBody>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, None)?;
        let user = registrant(&p, &headers, b.enrolment_token.as_deref()).await?;
        p.registration_options(&user).await
    }
    .await;
    match result {
        Ok((handle, options)) => {
            Json(json!({"handle": handle, "options": options})).into_response()
        }
        Err(e) => json_error(&e),
    }
}

async fn registration_finish(
    State(p): S,
    headers: HeaderMap,
    Json(b): Json<FinishBody>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, None)?;
        let user = registrant(&p, &headers, b.enrolment_token.as_deref()).await?;
        let owner = p.finish_registration(&b.handle, b.credential).await?;
        if owner != user.user_id {
            return Err(PeopleError::Expired("the passkey ceremony"));
        }
        match &b.enrolment_token {
            // Enrolment ends signed in, by the passkey just made.
            Some(token) => {
                p.finish_enrolment(token).await?;
                Ok(Some(p.start_session(&user, "hwk").await?))
            }
            None => Ok(None),
        }
    }
    .await;
    match result {
        Ok(cookie) => {
            let mut resp = Json(json!({"redirect": "/account"})).into_response();
            if let Some(c) = cookie {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => json_error(&e),
    }
}

/// Plain-language summary of what a consent covers.
pub fn describe_grant(grant: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(scopes) = grant["scopes"].as_array().filter(|s| !s.is_empty()) {
        let s: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
        parts.push(format!("scopes {}", s.join(", ")));
    }
    if let Some(r) = grant["resources"].as_array().filter(|s| !s.is_empty()) {
        let s: Vec<&str> = r.iter().filter_map(Value::as_str).collect();
        parts.push(format!("at {}", s.join(", ")));
    }
    if let Some(d) = grant["authorization_details"]
        .as_array()
        .filter(|s| !s.is_empty())
    {
        parts.push(format!("{} authorization detail(s)", d.len()));
    }
    if parts.is_empty() {
        "basic access".into()
    } else {
        parts.join("; ")
    }
}

async fn account_page(State(p): S, headers: HeaderMap) -> Response {
    let result = async {
        let Some(me) = p.signed_in(&headers).await? else {
            return Ok(None);
        };
        let passkeys = p.store.passkeys_of(&me.user.user_id).await?.len();
        let consents = p
            .store
            .consents_of(&me.user.user_id)
            .await?
            .into_iter()
            .map(|(client, grant, at)| ConsentView {
                client,
                what: describe_grant(&grant),
                since: aims_core::format_unix(at),
            })
            .collect();
        Ok::<_, PeopleError>(Some((me, passkeys, consents)))
    }
    .await;
    match result {
        Ok(Some((me, passkeys, consents))) => {
            let method = if me.method == "hwk" {
                "a passkey"
            } else {
                "a password"
            };
            layout(
                &p,
                &headers,
                StatusCode::OK,
                "Your account",
                Some(&me),
                |csrf| {
                    render(&AccountPage {
                        csrf,
                        username: &me.user.username,
                        display_name: &me.user.display_name,
                        method,
                        passkeys,
                        passkeys_enabled: p.passkeys_enabled(),
                        consents,
                    })
                },
            )
        }
        Ok(None) => sign_in_redirect("/account"),
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[derive(Deserialize)]
struct WithdrawForm {
    client_id: String,
    csrf: Option<String>,
}

async fn withdraw_consent(
    State(p): S,
    headers: HeaderMap,
    Form(f): Form<WithdrawForm>,
) -> Response {
    let result = async {
        p.check_csrf(&headers, f.csrf.as_deref())?;
        let me = p
            .signed_in(&headers)
            .await?
            .ok_or(PeopleError::SignInRequired)?;
        p.store
            .delete_consent(&me.user.user_id, &f.client_id)
            .await?;
        tracing::info!(user = %me.user.username, client = %f.client_id, "consent withdrawn");
        Ok::<_, PeopleError>(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => error_page(&p, &headers, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(
            safe_return(Some("/oauth2/authorize?x=1")),
            "/oauth2/authorize?x=1"
        );
        assert_eq!(safe_return(Some("//evil.example/")), "/account");
        assert_eq!(safe_return(Some("https://evil.example/")), "/account");
        assert_eq!(safe_return(Some("/\\evil.example")), "/account");
        assert_eq!(safe_return(None), "/account");
    }

    #[test]
    fn grants_are_described_in_plain_words() {
        assert_eq!(
            describe_grant(
                &json!({"scopes": ["read", "write"], "resources": ["https://api.example"]})
            ),
            "scopes read, write; at https://api.example"
        );
        assert_eq!(describe_grant(&json!({})), "basic access");
    }
}
