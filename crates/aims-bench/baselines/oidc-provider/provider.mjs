// The token-endpoint baseline of aims-bench: panva oidc-provider (Node) configured for
// client_credentials with private_key_jwt client authentication and ES256 JWT access tokens
// (RFC 9068), the configuration shared/research/perf-baseline.md measured.
//
//   NODE_ENV=production node provider.mjs <port> <client-jwk.json>
//
// The client `bench-pkjwt` authenticates with the ES256 public key in <client-jwk.json>; the
// provider signs access tokens with a P-256 key it makes at start. It prints "listening" when
// ready.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, clientJwkPath] = process.argv.slice(2);
const clientJwk = JSON.parse(readFileSync(clientJwkPath, 'utf8'));
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [signingKey] },
  clients: [{
    client_id: 'bench-pkjwt',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    id_token_signed_response_alg: 'ES256',
    jwks: { keys: [clientJwk] },
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  scopes: ['api:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api:read',
        audience: 'urn:bench:api',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('listening'));
