//! A client for the admin API over its Unix socket, used by the CLI and by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aims_core::SpiffeId;
use aims_store::{
    AttestedNode, EntryUpdate, FederatedBundleRow, IssuedCredential, NewEntry, OAuthClientRow,
    RegistrationEntry,
};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    AgentRequest, ApplyPolicyRequest, BundleResponse, CreateClientRequest, CreateJoinTokenRequest,
    ErrorBody, HealthResponse, JoinTokenResponse, MintJwtRequest, MintTokenResponse,
    MintWitRequest, MintX509Request, MintX509Response,
};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be reached.
    #[error(
        "cannot reach the AIMS server at {path}: {source} (is `aims server` or `aims up` running on this data directory?)"
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({status}, {code})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Error code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The exchange failed at the HTTP or JSON level.
    #[error("admin API protocol error: {0}")]
    Protocol(String),
}

/// The admin API client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
        }
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, AdminError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| AdminError::Protocol(e.to_string()))?,
            None => Vec::new(),
        };
        let body = self.call_bytes(method, path, bytes).await?;
        let body = if body.is_empty() {
            Bytes::from_static(b"null")
        } else {
            body
        };
        serde_json::from_slice(&body).map_err(|e| AdminError::Protocol(format!("response: {e}")))
    }

    /// Sends `body` as it is to `path` and returns the response body of a successful answer.
    pub async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, AdminError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| AdminError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "aims-admin")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
            .await
            .map_err(|_| AdminError::Protocol("timed out".into()))?
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AdminError::Protocol(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let err: ErrorBody = serde_json::from_slice(&body).unwrap_or(ErrorBody {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        Err(AdminError::Api {
            status,
            code: err.error,
            message: err.message,
        })
    }

    /// Audit log entries `from..from+limit`.
    pub async fn audit_records(
        &self,
        from: u64,
        limit: u64,
    ) -> Result<Vec<aims_audit::LogEntry>, AdminError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/audit/records?from={from}&limit={limit}"),
            None,
        )
        .await
    }

    /// Revokes a principal's access for `cause`.
    pub async fn revoke(
        &self,
        principal: &str,
        cause: &str,
    ) -> Result<aims_signals::remediation::Remediated, AdminError> {
        let req = super::api::RemediationRequest {
            principal: principal.into(),
            cause: cause.into(),
        };
        self.call(Method::POST, "/v1/remediation/revoke", Some(&req))
            .await
    }

    /// Lifts a principal's revocation.
    pub async fn lift_revocation(&self, principal: &str, cause: &str) -> Result<(), AdminError> {
        let req = super::api::RemediationRequest {
            principal: principal.into(),
            cause: cause.into(),
        };
        self.call::<_, ()>(Method::POST, "/v1/remediation/lift", Some(&req))
            .await
    }

    /// Disables (or enables) a registration entry for `cause`.
    pub async fn remediate_entry(
        &self,
        entry_id: &str,
        disabled: bool,
        cause: &str,
    ) -> Result<aims_store::RegistrationEntry, AdminError> {
        let req = super::api::EntryRemediationRequest {
            entry_id: entry_id.into(),
            disabled,
            cause: cause.into(),
        };
        self.call(Method::POST, "/v1/remediation/entry", Some(&req))
            .await
    }

    /// A compliance report over the server's evidence, against `rules` (TOML) or the shipped
    /// rules.
    pub async fn compliance_report(
        &self,
        rules: Option<String>,
    ) -> Result<aims_compliance::Report, AdminError> {
        let req = super::api::ComplianceRequest { rules };
        self.call(Method::POST, "/v1/compliance/report", Some(&req))
            .await
    }

    /// Every revocation, newest first.
    pub async fn revocations(&self) -> Result<Vec<aims_store::Revocation>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/remediation", None)
            .await
    }

    /// The newest signed checkpoint and its verifier key.
    pub async fn audit_checkpoint(&self) -> Result<super::api::AuditCheckpoint, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/audit/checkpoint", None)
            .await
    }

    /// The audit log's records and the bytes they take in the store.
    pub async fn audit_storage(&self) -> Result<aims_store::AuditStorage, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/audit/storage", None)
            .await
    }

    /// The log entries of one task.
    pub async fn audit_trace(&self, id: &str) -> Result<Vec<aims_audit::LogEntry>, AdminError> {
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        self.call::<(), _>(Method::GET, &format!("/v1/audit/trace/{id}"), None)
            .await
    }

    /// The policy set in force.
    pub async fn current_policy(&self) -> Result<aims_policy::PolicyDocument, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/policy", None).await
    }

    /// One recorded policy version.
    pub async fn policy_version(
        &self,
        version: u64,
    ) -> Result<aims_store::PolicyVersionRow, AdminError> {
        self.call::<(), _>(Method::GET, &format!("/v1/policy/{version}"), None)
            .await
    }

    /// Every recorded policy version (without texts).
    pub async fn policy_history(&self) -> Result<Vec<aims_store::PolicyVersionRow>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/policy/history", None)
            .await
    }

    /// The gateways following the policy, with the version each decides with.
    pub async fn policy_followers(&self) -> Result<Vec<aims_store::PolicyFollower>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/policy/followers", None)
            .await
    }

    /// Validates `text` (with `application`, if any) and, unless `dry_run`, puts it in force.
    pub async fn apply_policy(
        &self,
        text: &str,
        application: Option<aims_policy::Application>,
        dry_run: bool,
        author: Option<String>,
    ) -> Result<aims_policy::service::ApplyOutcome, AdminError> {
        let req = ApplyPolicyRequest {
            text: text.to_owned(),
            application,
            dry_run,
            author,
        };
        self.call(Method::POST, "/v1/policy", Some(&req)).await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<HealthResponse, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/health", None).await
    }

    /// Creates a registration entry.
    pub async fn create_entry(&self, entry: &NewEntry) -> Result<RegistrationEntry, AdminError> {
        self.call(Method::POST, "/v1/entries", Some(entry)).await
    }

    /// Lists registration entries, optionally by SPIFFE ID or parent.
    pub async fn list_entries(
        &self,
        spiffe_id: Option<&SpiffeId>,
        parent_id: Option<&SpiffeId>,
    ) -> Result<Vec<RegistrationEntry>, AdminError> {
        let mut pairs = Vec::new();
        if let Some(id) = spiffe_id {
            pairs.push(("spiffe_id", id.as_str()));
        }
        if let Some(id) = parent_id {
            pairs.push(("parent_id", id.as_str()));
        }
        let path = format!("/v1/entries?{}", query(&pairs));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Shows one entry.
    pub async fn show_entry(&self, id: &str) -> Result<RegistrationEntry, AdminError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/entries/{}", path_segment(id)),
            None,
        )
        .await
    }

    /// Updates one entry.
    pub async fn update_entry(
        &self,
        id: &str,
        update: &EntryUpdate,
    ) -> Result<RegistrationEntry, AdminError> {
        self.call(
            Method::PATCH,
            &format!("/v1/entries/{}", path_segment(id)),
            Some(update),
        )
        .await
    }

    /// Deletes one entry.
    pub async fn delete_entry(&self, id: &str) -> Result<(), AdminError> {
        self.call::<(), ()>(
            Method::DELETE,
            &format!("/v1/entries/{}", path_segment(id)),
            None,
        )
        .await
    }

    /// Signs a CSR into an X509-SVID.
    pub async fn mint_x509(&self, req: &MintX509Request) -> Result<MintX509Response, AdminError> {
        self.call(Method::POST, "/v1/svid/x509", Some(req)).await
    }

    /// Mints a JWT-SVID.
    pub async fn mint_jwt(&self, req: &MintJwtRequest) -> Result<MintTokenResponse, AdminError> {
        self.call(Method::POST, "/v1/svid/jwt", Some(req)).await
    }

    /// Mints a WIT-SVID.
    pub async fn mint_wit(&self, req: &MintWitRequest) -> Result<MintTokenResponse, AdminError> {
        self.call(Method::POST, "/v1/svid/wit", Some(req)).await
    }

    /// The trust bundle.
    pub async fn bundle(&self) -> Result<BundleResponse, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/bundle", None).await
    }

    /// The federated bundles the server holds.
    pub async fn federated_bundles(&self) -> Result<Vec<FederatedBundleRow>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/bundles/federated", None)
            .await
    }

    /// Registers an OAuth client; answers its metadata with `client_id` (and a one-time
    /// secret for a legacy secret client).
    pub async fn create_client(
        &self,
        req: &CreateClientRequest,
    ) -> Result<serde_json::Value, AdminError> {
        self.call(Method::POST, "/v1/clients", Some(req)).await
    }

    /// Every registered OAuth client.
    pub async fn list_clients(&self) -> Result<Vec<OAuthClientRow>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/clients", None).await
    }

    /// Deletes an OAuth client.
    pub async fn delete_client(&self, client_id: &str) -> Result<(), AdminError> {
        self.call::<(), ()>(
            Method::DELETE,
            &format!("/v1/clients/{}", path_segment(client_id)),
            None,
        )
        .await
    }

    /// Creates a user; answers the user and their enrolment link.
    pub async fn create_user(
        &self,
        req: &crate::api::CreateUserRequest,
    ) -> Result<serde_json::Value, AdminError> {
        self.call(Method::POST, "/v1/users", Some(req)).await
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<aims_store::UserRow>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/users", None).await
    }

    /// Disables (`disable`) or enables a user.
    pub async fn set_user_disabled(
        &self,
        user: &str,
        disable: bool,
    ) -> Result<aims_store::UserRow, AdminError> {
        let verb = if disable { "disable" } else { "enable" };
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/users/{}/{verb}", path_segment(user)),
            None,
        )
        .await
    }

    /// Deletes a user.
    pub async fn delete_user(&self, user: &str) -> Result<(), AdminError> {
        self.call::<(), ()>(
            Method::DELETE,
            &format!("/v1/users/{}", path_segment(user)),
            None,
        )
        .await
    }

    /// A new enrolment link for a user.
    pub async fn enrol_user(&self, user: &str) -> Result<serde_json::Value, AdminError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/users/{}/enrolment", path_segment(user)),
            None,
        )
        .await
    }

    /// Creates a join token.
    pub async fn create_join_token(
        &self,
        req: &CreateJoinTokenRequest,
    ) -> Result<JoinTokenResponse, AdminError> {
        self.call(Method::POST, "/v1/tokens", Some(req)).await
    }

    /// Every attested agent.
    pub async fn list_agents(&self) -> Result<Vec<AttestedNode>, AdminError> {
        self.call::<(), _>(Method::GET, "/v1/agents", None).await
    }

    /// Bans an agent: it may no longer call the server or re-attest.
    pub async fn ban_agent(&self, spiffe_id: &SpiffeId) -> Result<AttestedNode, AdminError> {
        let req = AgentRequest {
            spiffe_id: spiffe_id.clone(),
        };
        self.call(Method::POST, "/v1/agents/ban", Some(&req)).await
    }

    /// Evicts an agent: its record is deleted and it must attest again.
    pub async fn evict_agent(&self, spiffe_id: &SpiffeId) -> Result<(), AdminError> {
        let req = AgentRequest {
            spiffe_id: spiffe_id.clone(),
        };
        self.call::<_, ()>(Method::POST, "/v1/agents/evict", Some(&req))
            .await
    }

    /// Issued-credential records, newest first.
    pub async fn issued(
        &self,
        spiffe_id: Option<&SpiffeId>,
        limit: u32,
    ) -> Result<Vec<IssuedCredential>, AdminError> {
        let limit = limit.to_string();
        let mut pairs = vec![("limit", limit.as_str())];
        if let Some(id) = spiffe_id {
            pairs.push(("spiffe_id", id.as_str()));
        }
        let path = format!("/v1/issued?{}", query(&pairs));
        self.call::<(), _>(Method::GET, &path, None).await
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
