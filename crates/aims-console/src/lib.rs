//! The AIMS operator console (issue 9): server-rendered, read-only pages for administrators, who sign in
//! with their user accounts (`aims user create --admin-user`). Agents and entries, issued
//! credentials (serials and hashes, never keys), pending approvals, recent decisions, the trace
//! of one task, Shared Signals streams, the compliance report and the policy versions with
//! their diff. Changes stay with the CLI and the admin API, where they are audited.

#![forbid(unsafe_code)]

use std::sync::Arc;

use aims_people::pages::{self, render};
use aims_people::{People, SignedIn};
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use aims_audit::http::LogView;
use aims_policy::service::PolicyService;

/// Where the console lives.
pub const CONSOLE_PATH: &str = "/console";
/// Rows a list page shows at most (newest first).
const ROWS: u64 = 200;

/// What the console reads.
#[derive(Clone)]
pub struct Console {
    /// Sign-in and the page layout.
    pub people: Arc<People>,
    /// The policy versions.
    pub policy: Arc<PolicyService>,
    /// The store and the audit log's key.
    pub log: LogView,
}

/// A table cell: text, maybe a link, maybe set as code.
struct Cell {
    text: String,
    link: Option<String>,
    code: bool,
}

fn text(s: impl Into<String>) -> Cell {
    Cell {
        text: s.into(),
        link: None,
        code: false,
    }
}

fn code(s: impl Into<String>) -> Cell {
    Cell {
        text: s.into(),
        link: None,
        code: true,
    }
}

fn link(s: impl Into<String>, href: String) -> Cell {
    Cell {
        text: s.into(),
        link: Some(href),
        code: true,
    }
}

fn time(ts: i64) -> Cell {
    text(aims_core::format_unix(ts))
}

#[derive(Template)]
#[template(path = "console_table.html")]
struct Table<'a> {
    id: &'a str,
    intro: Option<String>,
    columns: &'a [&'a str],
    rows: Vec<Vec<Cell>>,
    empty: &'a str,
}

#[derive(Template)]
#[template(path = "console_text.html")]
struct Text {
    intro: Option<String>,
    sections: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console_home.html")]
struct Home {
    links: Vec<(&'static str, &'static str, &'static str)>,
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route(CONSOLE_PATH, get(home))
        .route("/console/agents", get(agents))
        .route("/console/credentials", get(credentials))
        .route("/console/approvals", get(approvals))
        .route("/console/decisions", get(decisions))
        .route("/console/trace/{id}", get(trace))
        .route("/console/signals", get(signals))
        .route("/console/compliance", get(compliance))
        .route("/console/policy", get(policy_versions))
        .route("/console/policy/{version}", get(policy_version))
        .with_state(console)
}

type S = State<Console>;

/// The signed-in administrator, or the response to send instead.
async fn admin(c: &Console, headers: &HeaderMap, here: &str) -> Result<SignedIn, Response> {
    match c.people.signed_in(headers).await {
        Ok(Some(me)) if me.user.is_admin => Ok(me),
        Ok(Some(_)) => Err(pages::message(
            &c.people,
            headers,
            StatusCode::FORBIDDEN,
            "Administrators only",
            "The console is for administrators (aims user create --admin-user).",
            Some("/account"),
        )),
        Ok(None) => Err(pages::sign_in_redirect(here)),
        Err(e) => Err(pages::error_page(&c.people, headers, &e)),
    }
}

/// A console page: the administrator check, then `body` (which may fail with a store error).
async fn page<F, Fut>(
    c: &Console,
    headers: &HeaderMap,
    here: &str,
    title: &str,
    body: F,
) -> Response
where
    F: FnOnce(SignedIn) -> Fut,
    Fut: std::future::Future<Output = Result<String, aims_store::StoreError>>,
{
    let me = match admin(c, headers, here).await {
        Ok(me) => me,
        Err(r) => return r,
    };
    match body(me.clone()).await {
        Ok(html) => pages::layout(&c.people, headers, StatusCode::OK, title, Some(&me), |_| {
            format!("<p class=\"crumbs\"><a href=\"{CONSOLE_PATH}\">Console</a></p>{html}")
        }),
        Err(e) => pages::error_page(&c.people, headers, &aims_people::PeopleError::Store(e)),
    }
}

fn table(
    id: &str,
    intro: Option<String>,
    columns: &[&str],
    rows: Vec<Vec<Cell>>,
    empty: &str,
) -> String {
    render(&Table {
        id,
        intro,
        columns,
        rows,
        empty,
    })
}

async fn home(State(c): S, headers: HeaderMap) -> Response {
    page(&c, &headers, CONSOLE_PATH, "Console", |_| async {
        Ok(render(&Home {
            links: vec![
                ("/console/agents", "Agents and entries", "attested node agents and the registration entries that give workloads their identities"),
                ("/console/credentials", "Issued credentials", "the newest X.509-SVIDs, JWT-SVIDs and WITs, by serial or hash"),
                ("/console/approvals", "Pending approvals", "CIBA requests waiting for a person"),
                ("/console/decisions", "Recent decisions", "the newest audit records: decisions, issuance, remediation"),
                ("/console/signals", "Signals", "Shared Signals streams and their receivers"),
                ("/console/compliance", "Compliance", "the shipped rules evaluated over the recorded evidence"),
                ("/console/policy", "Policy", "every policy version, with its diff"),
            ],
        }))
    })
    .await
}

async fn agents(State(c): S, headers: HeaderMap) -> Response {
    page(
        &c,
        &headers,
        "/console/agents",
        "Agents and entries",
        |_| async {
            let store = &c.log.store;
            let nodes = store
                .list_nodes()
                .await?
                .into_iter()
                .map(|n| {
                    vec![
                        code(n.spiffe_id.to_string()),
                        text(n.attestation_type),
                        time(n.cert_not_after),
                        text(if n.banned { "banned" } else { "active" }),
                    ]
                })
                .collect();
            let entries = store
                .list_entries(&aims_store::EntryFilter::default())
                .await?
                .into_iter()
                .map(|e| {
                    vec![
                        code(e.spiffe_id.to_string()),
                        code(e.parent_id.to_string()),
                        text(
                            e.selectors
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                        text(if e.disabled { "disabled" } else { "enabled" }),
                        code(e.id),
                    ]
                })
                .collect();
            Ok(format!(
                "<h2>Node agents</h2>{}<h2>Registration entries</h2>{}",
                table(
                    "nodes",
                    None,
                    &["Agent", "Attestation", "SVID expires", "State"],
                    nodes,
                    "No agent has attested yet."
                ),
                table(
                    "entries",
                    None,
                    &["SPIFFE ID", "Parent", "Selectors", "State", "Entry"],
                    entries,
                    "No registration entries."
                )
            ))
        },
    )
    .await
}

async fn credentials(State(c): S, headers: HeaderMap) -> Response {
    page(&c, &headers, "/console/credentials", "Issued credentials", |_| async {
        let rows = c
            .log
            .store
            .list_issued(None, ROWS as u32)
            .await?
            .into_iter()
            .map(|i| {
                vec![
                    text(format!("{:?}", i.kind)),
                    code(i.spiffe_id.to_string()),
                    code(i.serial),
                    time(i.issued_at),
                    time(i.expires_at),
                ]
            })
            .collect();
        Ok(table(
            "credentials",
            Some("Serials of certificates and SHA-256 of tokens; keys never leave the workloads that hold them.".into()),
            &["Kind", "Identity", "Serial or hash", "Issued", "Expires"],
            rows,
            "Nothing issued yet.",
        ))
    })
    .await
}

async fn approvals(State(c): S, headers: HeaderMap) -> Response {
    let store = &c.log.store;
    page(&c, &headers, "/console/approvals", "Pending approvals", |me| async move {
        let now = aims_core::unix_seconds(std::time::SystemTime::now());
        let mut rows = Vec::new();
        for u in store.list_users().await? {
            for r in store.pending_ciba(&u.user_id, now).await? {
                rows.push(vec![
                    text(u.username.clone()),
                    code(r.client_id),
                    text(r.request["binding_message"].as_str().unwrap_or("—")),
                    text(
                        r.request["scopes"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
                            .unwrap_or_default(),
                    ),
                    time(r.created_at),
                    time(r.expires_at),
                    if u.user_id == me.user.user_id {
                        link("approve or deny", "/approvals".into())
                    } else {
                        text("")
                    },
                ]);
            }
        }
        Ok(table(
            "approvals",
            Some("Each person decides their own on the approvals page (/approvals); nobody approves for another.".into()),
            &["For", "Agent", "Binding message", "Scopes", "Asked", "Expires", ""],
            rows,
            "Nothing waits for a decision.",
        ))
    })
    .await
}

async fn decisions(State(c): S, headers: HeaderMap) -> Response {
    page(&c, &headers, "/console/decisions", "Recent decisions", |_| async {
        let store = &c.log.store;
        let len = store.audit_len().await?;
        let from = len.saturating_sub(ROWS);
        let mut rows: Vec<Vec<Cell>> = aims_audit::read_entries(store, from, ROWS)
            .await?
            .into_iter()
            .map(|e| match e.parsed() {
                Ok(r) => vec![
                    text(e.index.to_string()),
                    time(r.time_ms / 1000),
                    text(format!("{:?}", r.kind).to_lowercase()),
                    text(r.action),
                    text(r.decision.map(|d| format!("{d:?}").to_lowercase()).unwrap_or_default()),
                    code(r.agent.unwrap_or_default()),
                    text(r.resource.unwrap_or_default()),
                    match r.correlation_id {
                        Some(id) => link(id.clone(), format!("/console/trace/{id}")),
                        None => text(""),
                    },
                ],
                Err(_) => vec![text(e.index.to_string()), text("(record does not parse)")],
            })
            .collect();
        rows.reverse();
        Ok(table(
            "decisions",
            Some(format!("The newest {} of {len} audit records, newest first; a task id opens its trace.", rows.len())),
            &["#", "Time", "Kind", "Action", "Decision", "Agent", "Resource", "Task"],
            rows,
            "The audit log is empty.",
        ))
    })
    .await
}

async fn trace(State(c): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let here = format!("/console/trace/{id}");
    page(&c, &headers, &here, "Task trace", |_| async {
        let entries = aims_audit::read_task(&c.log.store, &id, 10_000).await?;
        Ok(render(&Text {
            intro: Some("The execution chain of one task: the person, the agents along the delegation chain, each decision and remediation.".into()),
            sections: vec![(format!("Task {id}"), aims_audit::render_trace(&id, &entries))],
        }))
    })
    .await
}

async fn signals(State(c): S, headers: HeaderMap) -> Response {
    page(&c, &headers, "/console/signals", "Signals", |_| async {
        let store = &c.log.store;
        let mut rows = Vec::new();
        for s in store.streams(None).await? {
            let pending = store.pending_count(&s.stream_id).await?;
            rows.push(vec![
                code(s.stream_id),
                code(s.owner),
                text(if s.method.ends_with("8935") {
                    "push"
                } else {
                    "poll"
                }),
                text(s.status),
                text(pending.to_string()),
                time(s.created_at),
            ]);
        }
        Ok(table(
            "streams",
            Some(
                "OpenID Shared Signals streams this server transmits on (CAEP and RISC events)."
                    .into(),
            ),
            &[
                "Stream",
                "Receiver",
                "Delivery",
                "Status",
                "Undelivered",
                "Created",
            ],
            rows,
            "No receiver has a stream.",
        ))
    })
    .await
}

async fn compliance(State(c): S, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&c, &headers, "/console/compliance").await {
        return r;
    }
    let result = async {
        let rules = aims_compliance::RuleSet::parse(aims_compliance::DEFAULT_RULES)
            .map_err(|e| e.to_string())?;
        let evidence = aims_compliance::Evidence::collect(&c.log.store, &c.log.vkey)
            .await
            .map_err(|e| e.to_string())?;
        let now = aims_core::unix_seconds(std::time::SystemTime::now());
        Ok::<_, String>(aims_compliance::Report::build(&rules, &evidence, now).html())
    }
    .await;
    match result {
        // The report is a whole HTML document of its own (the one `aims compliance report` writes).
        Ok(html) => (StatusCode::OK, Html(html)).into_response(),
        Err(e) => pages::message(
            &c.people,
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Compliance",
            &e,
            Some(CONSOLE_PATH),
        ),
    }
}

async fn policy_versions(State(c): S, headers: HeaderMap) -> Response {
    page(
        &c,
        &headers,
        "/console/policy",
        "Policy versions",
        |_| async {
            let current = c.policy.current().version;
            let rows = c
                .log
                .store
                .policy_history()
                .await?
                .into_iter()
                .rev()
                .map(|v| {
                    vec![
                        link(
                            format!("v{}", v.version),
                            format!("/console/policy/{}", v.version),
                        ),
                        text(if v.version == current { "in force" } else { "" }),
                        time(v.created_at),
                        text(v.author),
                        code(v.hash),
                    ]
                })
                .collect();
            Ok(table(
                "policies",
                None,
                &["Version", "", "Applied", "By", "Content hash"],
                rows,
                "No policy.",
            ))
        },
    )
    .await
}

async fn policy_version(State(c): S, headers: HeaderMap, Path(version): Path<u64>) -> Response {
    let here = format!("/console/policy/{version}");
    page(
        &c,
        &headers,
        &here,
        &format!("Policy version {version}"),
        |_| async {
            let store = &c.log.store;
            let row = store.policy_version(version).await?;
            let mut sections = Vec::new();
            if version > 1
                && let Ok(prev) = store.policy_version(version - 1).await
            {
                let compile = |r: &aims_store::PolicyVersionRow| {
                    c.policy
                        .pdp()
                        .compile(&aims_policy::service::stored_document(r))
                };
                if let (Ok(old), Ok(new)) = (compile(&prev), compile(&row)) {
                    let diff = aims_policy::PolicyDiff::between(&old, &new);
                    let mut d = String::new();
                    for (id, _) in &diff.added {
                        d.push_str(&format!("+ {id} (added)\n"));
                    }
                    for (id, _) in &diff.removed {
                        d.push_str(&format!("- {id} (removed)\n"));
                    }
                    for (id, _, _) in &diff.changed {
                        d.push_str(&format!("~ {id} (changed)\n"));
                    }
                    if d.is_empty() {
                        d.push_str("no policy changed");
                    }
                    sections.push((format!("Changes from version {}", version - 1), d));
                }
            }
            sections.push(("Text".into(), row.text));
            Ok(render(&Text {
                intro: Some(format!(
                    "Applied {} by {}; content hash {}.",
                    aims_core::format_unix(row.created_at),
                    row.author,
                    row.hash
                )),
                sections,
            }))
        },
    )
    .await
}
