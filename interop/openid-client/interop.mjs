#!/usr/bin/env node
// AIMS interop driver: openid-client v6 (an OpenID Certified relying-party library we did not
// write) runs the flows against an AIMS authorization server. The Rust test drives it:
//
//   node interop.mjs keygen            -> {"event":"jwk","private":{...},"public":{...}}
//   node interop.mjs code              -> PAR + PKCE (S256) authorization code flow: prints the
//                                         authorization URL, reads the redirect URL on stdin,
//                                         redeems the code
//   node interop.mjs ciba              -> CIBA poll flow: prints auth_req_id, polls for tokens
//
// Env: OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_JWK (private P-256 JWK with kid), OIDC_REDIRECT_URI,
// OIDC_SCOPE, OIDC_RESOURCE, CIBA_LOGIN_HINT, CIBA_BINDING_MESSAGE; NODE_EXTRA_CA_CERTS to trust
// the server's local CA. stdout: one JSON object per line.
import * as client from 'openid-client';
import { createInterface } from 'node:readline';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined) throw new Error(`missing env ${name}`);
  return v;
};

async function keygen() {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const priv = await crypto.subtle.exportKey('jwk', pair.privateKey);
  const pub = await crypto.subtle.exportKey('jwk', pair.publicKey);
  const kid = 'interop-' + Date.now();
  out({ event: 'jwk', private: { kty: priv.kty, crv: priv.crv, x: priv.x, y: priv.y, d: priv.d, kid },
        public: { kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y, kid, alg: 'ES256', use: 'sig' } });
}

async function configure() {
  const jwk = JSON.parse(env('OIDC_CLIENT_JWK'));
  const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d },
    { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  // Discovery at {issuer}/.well-known/openid-configuration; private_key_jwt client auth with
  // aud = the issuer (rfc7523bis); the id_token signature is checked against the jwks_uri.
  return client.discovery(new URL(env('OIDC_ISSUER')), env('OIDC_CLIENT_ID'), {},
    client.PrivateKeyJwt({ key, kid: jwk.kid }), { execute: [client.enableNonRepudiationChecks], timeout: 30 });
}

function tokenLine(tokens) {
  return { event: 'tokens', access_token: tokens.access_token, token_type: tokens.token_type,
    expires_in: tokens.expires_in, refresh_token: tokens.refresh_token, scope: tokens.scope,
    id_token_claims: tokens.claims() ?? null };
}

async function readLine() {
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of rl) if (line.trim()) return line.trim();
  } finally {
    rl.close();
  }
  throw new Error('stdin closed before the redirect URL was read');
}

async function codeFlow(config) {
  const code_verifier = client.randomPKCECodeVerifier();
  const code_challenge = await client.calculatePKCECodeChallenge(code_verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: env('OIDC_REDIRECT_URI'), scope: env('OIDC_SCOPE', 'openid'), response_type: 'code',
    code_challenge, code_challenge_method: 'S256', state, nonce, resource: env('OIDC_RESOURCE'),
  });
  out({ event: 'authorization_url', url: url.href });
  const redirected = new URL(await readLine());
  const tokens = await client.authorizationCodeGrant(config, redirected, {
    pkceCodeVerifier: code_verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  out(tokenLine(tokens));
}

async function cibaFlow(config) {
  const bc = await client.initiateBackchannelAuthentication(config, {
    scope: env('OIDC_SCOPE', 'openid'), login_hint: env('CIBA_LOGIN_HINT'),
    binding_message: env('CIBA_BINDING_MESSAGE'), resource: env('OIDC_RESOURCE'),
  });
  out({ event: 'auth_req_id', auth_req_id: bc.auth_req_id, expires_in: bc.expires_in, interval: bc.interval ?? null });
  const tokens = await client.pollBackchannelAuthenticationGrant(config, bc);
  out(tokenLine(tokens));
}

const mode = process.argv[2] ?? 'code';
try {
  if (mode === 'keygen') {
    await keygen();
  } else {
    const config = await configure();
    out({ event: 'discovered', issuer: config.serverMetadata().issuer });
    if (mode === 'code') await codeFlow(config);
    else if (mode === 'ciba') await cibaFlow(config);
    else throw new Error(`unknown mode ${mode}`);
  }
} catch (err) {
  out({ event: 'error', name: err?.name, code: err?.code, message: err?.message, error: err?.error,
    error_description: err?.error_description, status: err?.status,
    cause: err?.cause instanceof Error ? err.cause.message : undefined });
  process.exitCode = 1;
}
