#!/usr/bin/env python3
"""An AI agent's plumbing in Python with no AIMS-specific client: its identity from the SPIFFE
Workload API through py-spiffe (the standard SPIFFE library), an OAuth token from the AIMS
authorization server with the JWT-SVID as client assertion (draft-ietf-oauth-spiffe-client-auth),
and an MCP tools/call through the AIMS gateway with that token.

    pip install spiffe requests
    python3 agent.py .aims/up.json "hello"

Prints one JSON line: the agent's SPIFFE ID, the token's subject and the tool's answer.
"""
import base64
import json
import sys

import requests
from spiffe import WorkloadApiClient

JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main(up_json, text):
    with open(up_json) as f:
        up = json.load(f)
    issuer = up["server"]["oauth_issuer"]
    ca = up["server"]["web_ca_file"]
    mcp = next(r for r in up["gateway"]["routes"] if r["name"] == "demo-mcp")

    # 1. Identity: a JWT-SVID for the authorization server, from the Workload API.
    with WorkloadApiClient(socket_path="unix://" + up["agent"]["workload_api_socket"]) as client:
        svid = client.fetch_jwt_svid(audience={issuer})

    # 2. A token for the MCP server, the SVID as client authentication (no secret).
    resp = requests.post(
        f"{issuer}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_SPIFFE,
            "client_assertion": svid.token,
            "resource": mcp["resource"],
            "scope": "mcp",
        },
        verify=ca,
        timeout=10,
    )
    resp.raise_for_status()
    token = resp.json()["access_token"]

    # 3. A tool call through the gateway (MCP streamable HTTP, JSON response).
    call = requests.post(
        mcp["url"],
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "echo", "arguments": {"text": text}}},
        headers={
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2025-11-25",
        },
        verify=ca,
        timeout=10,
    )
    call.raise_for_status()
    print(json.dumps({
        "spiffe_id": str(svid.spiffe_id),
        "token_sub": claims(token)["sub"],
        "echo": call.json()["result"]["content"][0]["text"],
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "hello from a Python agent")
