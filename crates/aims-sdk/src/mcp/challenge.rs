//! What a resource server's `WWW-Authenticate` asks of the client: the scheme (`Bearer`,
//! RFC 6750 §3; `DPoP`, RFC 9449 §7.1), the `error`, the `scope` it needs, and where its
//! protected resource metadata is (`resource_metadata`, RFC 9728 §5.1). The header is read by
//! the `http-auth` parser (RFC 9110 §11.6.1), not by hand.

/// One challenge of a `WWW-Authenticate` header that this client can answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer` or `dpop`).
    pub scheme: String,
    /// `error` (RFC 6750 §3.1: `invalid_token`, `insufficient_scope`; RFC 9449 §9:
    /// `use_dpop_nonce`).
    pub error: Option<String>,
    /// `scope`: the scopes the resource needs (RFC 6750 §3).
    pub scope: Option<String>,
    /// `resource_metadata`: the URL of the protected resource metadata (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
}

impl Challenge {
    /// The `Bearer` or `DPoP` challenges of `header`, in order; other schemes and a header
    /// that does not parse yield none.
    pub fn parse(header: &str) -> Vec<Self> {
        let mut out = Vec::new();
        for challenge in http_auth::parser::ChallengeParser::new(header) {
            let Ok(challenge) = challenge else { break };
            let scheme = challenge.scheme.to_ascii_lowercase();
            if scheme != "bearer" && scheme != "dpop" {
                continue;
            }
            let mut c = Self {
                scheme,
                ..Self::default()
            };
            for (name, value) in &challenge.params {
                let value = Some(value.to_unescaped());
                match name.to_ascii_lowercase().as_str() {
                    "error" => c.error = value,
                    "scope" => c.scope = value,
                    "resource_metadata" => c.resource_metadata = value,
                    _ => {}
                }
            }
            out.push(c);
        }
        out
    }

    /// The first challenge of `header` worth answering: one naming an error or metadata before
    /// a bare one.
    pub fn first(header: &str) -> Option<Self> {
        let all = Self::parse(header);
        all.iter()
            .find(|c| c.error.is_some() || c.resource_metadata.is_some())
            .or(all.first())
            .cloned()
    }

    /// Whether the server asks for a DPoP nonce (RFC 9449 §9).
    pub fn wants_nonce(&self) -> bool {
        self.error.as_deref() == Some("use_dpop_nonce")
    }

    /// Whether the token lacks a scope the request needs (RFC 6750 §3.1).
    pub fn insufficient_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mcp_challenges() {
        let c = Challenge::first(
            r#"Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert!(c.insufficient_scope());
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example/.well-known/oauth-protected-resource/mcp")
        );
        // Several schemes in one header: the DPoP one with its error is the one to answer.
        let c = Challenge::first(
            r#"Basic realm="x", Bearer, DPoP error="use_dpop_nonce", algs="ES256""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "dpop");
        assert!(c.wants_nonce());
        // Escapes inside quoted strings are undone.
        let c = Challenge::first(r#"Bearer scope="a\"b""#).unwrap();
        assert_eq!(c.scope.as_deref(), Some("a\"b"));
    }

    #[test]
    fn hostile_headers_yield_nothing_to_answer() {
        for h in [
            "",
            "Basic realm=\"x\"",
            "Bearer scope=\"unterminated",
            "\u{0}\u{1}",
            ",,,",
        ] {
            assert!(
                Challenge::parse(h).iter().all(|c| c.error.is_none()),
                "{h:?}"
            );
        }
        assert!(Challenge::first("Negotiate abc==").is_none());
    }
}
