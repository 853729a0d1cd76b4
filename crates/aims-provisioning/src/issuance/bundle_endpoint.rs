//! The SPIFFE bundle endpoint (SPIFFE Federation §5): `GET /bundle` answers the trust bundle as
//! a SPIFFE bundle JWK Set. No client authentication is asked for (Federation §5.1).

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::issuance::issuer::Issuer;

/// The path the bundle is served at.
pub const BUNDLE_PATH: &str = "/bundle";

/// The bundle endpoint routes.
pub fn router(issuer: Arc<Issuer>) -> Router {
    Router::new()
        .route(
            BUNDLE_PATH,
            get(move || {
                let published = issuer.published();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        published.document.clone(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}
