// Drives the rolecall backend with @aws-sdk/client-sts, for tests/interop/test_backend_js.py.
//
// Input (stdin, JSON): { "endpoint": "http://127.0.0.1:PORT", "region": "us-east-1",
//   "credentials": {"accessKeyId", "secretAccessKey", "sessionToken"?},
//   "calls": [ {"op": "GetCallerIdentity" | "AssumeRole" | ..., "input": {...},
//               "as": "previous"?  // sign with the Credentials of the previous call's result
//             }, ... ] }
// Output (stdout, JSON): one entry per call:
//   { "ok": true, "output": {...}, "requestId": "..." }  or
//   { "ok": false, "name": "...", "code": "...", "message": "...", "status": 403, "requestId": "..." }

import {
  STSClient, GetCallerIdentityCommand, AssumeRoleCommand, GetSessionTokenCommand,
} from "@aws-sdk/client-sts";

const COMMANDS = {
  GetCallerIdentity: GetCallerIdentityCommand,
  AssumeRole: AssumeRoleCommand,
  GetSessionToken: GetSessionTokenCommand,
};

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function client(spec, credentials) {
  return new STSClient({ endpoint: spec.endpoint, region: spec.region, credentials, maxAttempts: 1 });
}

const spec = await readStdin();
const results = [];
let credentials = spec.credentials;
let previous = null;
for (const call of spec.calls) {
  if (call.as === "previous" && previous?.Credentials) {
    const c = previous.Credentials;
    credentials = { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken };
  }
  try {
    const output = await client(spec, credentials).send(new COMMANDS[call.op](call.input ?? {}));
    previous = output;
    const { $metadata, ...rest } = output;
    results.push({ ok: true, output: rest, requestId: $metadata.requestId ?? null });
  } catch (err) {
    results.push({
      ok: false, name: err.name, code: err.Code ?? err.name, message: err.message,
      status: err.$metadata?.httpStatusCode ?? null, requestId: err.$metadata?.requestId ?? null,
    });
  }
}
process.stdout.write(JSON.stringify(results));
