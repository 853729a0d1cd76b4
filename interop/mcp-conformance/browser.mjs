#!/usr/bin/env node
// A person's browser for the MCP conformance suite's authorization code scenarios, whose test
// authorization server approves at once: follows the authorization URL (argv[2]) through its
// redirects, back to the client's loopback redirect URI.
const res = await fetch(process.argv[2], { redirect: 'follow' });
process.exit(res.ok ? 0 : 1);
