// The MCP conformance suite's client command for AIMS: runs `aims mcp call|tools <url> …`
// (the aims-sdk MCP client) with the flags the scenario's context calls for. The suite passes
// the context in MCP_CONFORMANCE_CONTEXT and the server URL as the last argument; secrets go
// to files of a private temporary directory, never onto a command line. AIMS_BIN names the
// `aims` binary.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.argv.at(-1);
const ctx = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}');
const aims = process.env.AIMS_BIN ?? 'aims';
const dir = mkdtempSync(join(tmpdir(), 'aims-mcp-'));
const file = (name, content) => {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
};

const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
// The core scenarios name their own tool; the authorization scenarios' servers have `test-tool`.
const args =
  scenario === 'tools_call'
    ? ['mcp', 'call', url, 'add_numbers', '--arguments', '{"a":1,"b":2}']
    : scenario.startsWith('auth/')
      ? ['mcp', 'call', url, 'test-tool']
      : ['mcp', 'tools', url];
// A pre-registered client signs a person in; the client credentials scenarios do not.
if (ctx.client_secret && !scenario.startsWith('auth/client-credentials') && !ctx.idp_id_token) {
  args.push('--grant', 'authorization-code');
}
args.push('--browser', new URL('browser.mjs', import.meta.url).pathname);
// The client metadata document URL the suite's authorization servers expect (SEP-991); they
// do not fetch it.
args.push('--client-metadata-url', 'https://conformance-test.local/client-metadata.json');
if (ctx.client_id) args.push('--client-id', ctx.client_id);
if (ctx.private_key_pem) args.push('--private-key-file', file('key.pem', ctx.private_key_pem));
if (ctx.client_secret) args.push('--client-secret-file', file('secret', ctx.client_secret));
if (ctx.valid_jwt) args.push('--assertion-file', file('assertion.jwt', ctx.valid_jwt));
if (ctx.idp_id_token) {
  args.push('--id-token-file', file('id-token.jwt', ctx.idp_id_token));
  args.push('--idp-token-endpoint', ctx.idp_token_endpoint, '--idp-client-id', ctx.idp_client_id);
}
const run = spawnSync(aims, args, { stdio: 'inherit' });
rmSync(dir, { recursive: true, force: true });
if (run.error) console.error(`aims-client: ${run.error.message}`);
process.exit(run.status ?? 1);
