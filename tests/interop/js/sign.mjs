// Signs HTTP requests with the AWS SDK for JavaScript v3's SigV4 signer
// (@smithy/signature-v4), for tests/interop/test_sigv4_js.py. No network: it
// reads JSON on stdin and writes JSON on stdout.
//
// Input: one spec, or an array of specs:
//   { "method": "POST", "hostname": "127.0.0.1", "port": 8900, "path": "/",
//     "query": [["name", "value"], ...],          // decoded; repeated names allowed
//     "headers": {"content-type": "..."}, "body": "..." | null,
//     "credentials": {"accessKeyId": "...", "secretAccessKey": "...", "sessionToken": "..."?},
//     "region": "us-east-1", "service": "sts",
//     "time": "2026-01-01T00:00:00Z" | null,      // null: sign with the current time
//     "presign": false, "expiresIn": 900 }
// Output (same shape, one or an array): the request as the SDK would send it:
//   { "method", "path", "query": "<wire query string>", "headers": [[name, value], ...], "body" }
// or { "error": "..." } for a spec the signer refused.

import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";

// @smithy/core's escapeUri, as @smithy/querystring-builder uses it for the wire.
const escapeUri = (s) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function queryObject(pairs) {
  const query = {};
  for (const [name, value] of pairs ?? []) {
    if (!(name in query)) query[name] = value;
    else query[name] = [].concat(query[name], value);
  }
  return query;
}

// @smithy/querystring-builder's buildQueryString: keys sorted, arrays in order.
function wireQuery(query) {
  const parts = [];
  for (const key of Object.keys(query).sort()) {
    for (const value of [].concat(query[key])) parts.push(`${escapeUri(key)}=${escapeUri(value)}`);
  }
  return parts.join("&");
}

async function sign(spec) {
  const host = spec.port ? `${spec.hostname}:${spec.port}` : spec.hostname; // the SDK's host-header middleware
  const request = new HttpRequest({
    method: spec.method,
    protocol: "http:",
    hostname: spec.hostname,
    port: spec.port,
    path: spec.path,
    query: queryObject(spec.query),
    headers: { host, ...(spec.headers ?? {}) },
    body: spec.body ?? undefined,
  });
  const signer = new SignatureV4({
    credentials: spec.credentials,
    region: spec.region,
    service: spec.service,
    sha256: Hash.bind(null, "sha256"),
  });
  const signingDate = spec.time ? new Date(spec.time) : new Date();
  const out = spec.presign
    ? await signer.presign(request, { signingDate, expiresIn: spec.expiresIn ?? 900 })
    : await signer.sign(request, { signingDate });
  return {
    method: out.method,
    path: out.path,
    query: wireQuery(out.query),
    headers: Object.entries(out.headers),
    body: out.body ?? "",
  };
}

async function main() {
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  const input = JSON.parse(text);
  const specs = Array.isArray(input) ? input : [input];
  const results = [];
  for (const spec of specs) {
    try {
      results.push(await sign(spec));
    } catch (err) {
      results.push({ error: String(err?.message ?? err) });
    }
  }
  process.stdout.write(JSON.stringify(Array.isArray(input) ? results : results[0]));
}

await main();
