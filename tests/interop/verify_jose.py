#!/usr/bin/env python3
"""Verify an AIMS JWT-SVID or WIT-SVID with independent JOSE libraries.

The trust bundle is fetched over HTTPS from the SPIFFE bundle endpoint (https_web profile,
trusting --ca), exactly as a relying party in another stack would. JWT-SVIDs are checked with
PyJWT, WITs with jwcrypto. Exit status 0 means the token verified; 1 means it was rejected.
"""
import argparse
import json
import ssl
import sys
import urllib.request


def fetch_bundle(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        if resp.headers.get_content_type() != "application/json":
            raise SystemExit(f"bundle endpoint served {resp.headers.get_content_type()}")
        return json.load(resp)


def keys_of(bundle, use):
    """The keys of one SPIFFE `use`. SPIFFE's `use` values (x509-svid, jwt-svid, wit-svid) are
    bundle semantics, not JOSE's sig/enc, so they are dropped once the keys are selected:
    JOSE libraries refuse keys whose `use` they do not know."""
    return [{k: v for k, v in key.items() if k != "use"} for key in bundle["keys"] if key.get("use") == use]


def verify_jwt_svid(args, bundle):
    import jwt  # PyJWT

    token = open(args.token).read().strip()
    header = jwt.get_unverified_header(token)
    if set(header) - {"alg", "kid", "typ"}:
        raise ValueError(f"unexpected header members {sorted(header)}")
    candidates = [k for k in keys_of(bundle, "jwt-svid") if k.get("kid") == header.get("kid")]
    if len(candidates) != 1:
        raise ValueError(f"kid {header.get('kid')!r} not in the jwt-svid keys of the bundle")
    key = jwt.PyJWK.from_dict(candidates[0]).key
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["ES256", "ES384", "RS256", "PS256"],
        audience=args.audience,
        options={"require": ["exp", "sub", "aud"]},
    )
    if claims["sub"] != args.spiffe_id:
        raise ValueError(f"sub {claims['sub']} != {args.spiffe_id}")
    return claims


def verify_wit(args, bundle):
    from jwcrypto import jwk, jwt as jjwt

    token = open(args.token).read().strip()
    keyset = jwk.JWKSet()
    for k in keys_of(bundle, "wit-svid"):
        keyset.add(jwk.JWK(**k))
    tok = jjwt.JWT(
        jwt=token,
        key=keyset,
        check_claims={"exp": None, "sub": args.spiffe_id},
        expected_type="JWS",
    )
    header = json.loads(tok.header)
    if header.get("typ") != "wit+jwt":
        raise ValueError(f"typ {header.get('typ')!r} is not wit+jwt")
    claims = json.loads(tok.claims)
    if "aud" in claims:
        raise ValueError("a WIT-SVID must not carry aud")
    cnf = jwk.JWK(**claims["cnf"]["jwk"])
    if claims["cnf"]["jwk"].get("alg") is None:
        raise ValueError("cnf.jwk.alg is missing")
    if args.key:
        with open(args.key, "rb") as f:
            private = jwk.JWK.from_pem(f.read())
        if private.thumbprint() != cnf.thumbprint():
            raise ValueError("cnf.jwk is not the public half of the key file")
    return claims


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["jwt-svid", "wit"])
    p.add_argument("--bundle-url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--spiffe-id", required=True)
    p.add_argument("--audience")
    p.add_argument("--key", help="private key (PEM) whose public half must be cnf.jwk")
    args = p.parse_args()
    bundle = fetch_bundle(args.bundle_url, args.ca)
    try:
        claims = verify_jwt_svid(args, bundle) if args.kind == "jwt-svid" else verify_wit(args, bundle)
    except Exception as e:  # any failure is a rejection
        print(f"REJECTED: {type(e).__name__}: {e}")
        sys.exit(1)
    print("VERIFIED", json.dumps(claims, sort_keys=True))


if __name__ == "__main__":
    main()
