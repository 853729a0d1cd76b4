#!/usr/bin/env python3
"""Get tokens from the AIMS authorization server with Authlib, an OAuth client library we did
not write, and verify them with jwcrypto against the JWK Set the server publishes.

The SPIFFE JWT-SVID client assertion (draft-ietf-oauth-spiffe-client-auth-02 §3.1) is plugged
into Authlib's client-authentication hook; everything else is Authlib's own code: discovery is
read with requests, the client_credentials and token-exchange requests are Authlib's
`fetch_token`. Prints one JSON object with what it obtained; exit status 0 means every step
worked and every token verified.
"""
import argparse
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.auth import add_params_to_qs
from jwcrypto import jwk, jwt

JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def session_for(assertion):
    """An Authlib session authenticating with a JWT-SVID as client assertion."""

    def spiffe_jwt(client, method, uri, headers, body):
        body = add_params_to_qs(
            body or "",
            [("client_assertion_type", JWT_SPIFFE), ("client_assertion", assertion)],
        )
        return uri, headers, body

    s = OAuth2Session(token_endpoint_auth_method="spiffe_jwt")
    s.register_client_auth_method(("spiffe_jwt", spiffe_jwt))
    return s


def verify(token, keys, issuer, audience):
    t = jwt.JWT(jwt=token, key=keys, expected_type="JWS", algs=["ES256", "ES384", "RS256", "PS256", "EdDSA"])
    header = json.loads(t.token.objects["protected"])
    if header.get("typ") not in ("at+jwt", "application/at+jwt"):
        raise SystemExit(f"typ {header.get('typ')!r} is not at+jwt (RFC 9068)")
    claims = json.loads(t.claims)
    if claims["iss"] != issuer:
        raise SystemExit("wrong iss")
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if audience not in aud:
        raise SystemExit("wrong aud")
    return claims


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--issuer", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--assertion", required=True, help="file with the agent's JWT-SVID")
    p.add_argument("--actor-assertion", required=True, help="file with a second agent's JWT-SVID")
    p.add_argument("--resource", required=True)
    a = p.parse_args()

    meta = requests.get(f"{a.issuer}/.well-known/oauth-authorization-server", verify=a.ca, timeout=10).json()
    assert meta["issuer"] == a.issuer
    assert "spiffe_jwt" in meta["token_endpoint_auth_methods_supported"]
    keys = jwk.JWKSet.from_json(requests.get(meta["jwks_uri"], verify=a.ca, timeout=10).text)

    agent = session_for(open(a.assertion).read().strip())
    tok = agent.fetch_token(
        meta["token_endpoint"],
        grant_type="client_credentials",
        scope="read write",
        resource=a.resource,
        verify=a.ca,
    )
    first = verify(tok["access_token"], keys, a.issuer, a.resource)

    actor = session_for(open(a.actor_assertion).read().strip())
    exchanged = actor.fetch_token(
        meta["token_endpoint"],
        grant_type=TOKEN_EXCHANGE,
        subject_token=tok["access_token"],
        subject_token_type=ACCESS_TOKEN,
        scope="read",
        verify=a.ca,
    )
    second = verify(exchanged["access_token"], keys, a.issuer, a.resource)
    if exchanged.get("issued_token_type") != ACCESS_TOKEN:
        raise SystemExit("issued_token_type missing")
    json.dump({"client_credentials": first, "exchanged": second}, sys.stdout)


if __name__ == "__main__":
    main()
