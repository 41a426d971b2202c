// Fetches credentials with the AWS SDK for JavaScript v3's own providers, for
// tests/interop/test_imds_js.py. Every endpoint comes from the environment the
// test gives this process (never a default address):
//
//   node imds_client.mjs imds    fromInstanceMetadata (@smithy/credential-provider-imds);
//                                needs AWS_EC2_METADATA_SERVICE_ENDPOINT
//   node imds_client.mjs http    fromHttp (@aws-sdk/credential-provider-http);
//                                needs AWS_CONTAINER_CREDENTIALS_FULL_URI (+ token file)
//   node imds_client.mjs chain   the default Node chain (@aws-sdk/credential-provider-node)
//
// Prints one JSON object: the credentials as the SDK resolved them
//   { "accessKeyId", "secretAccessKey", "sessionToken", "expiration" (ISO), "accountId"? }
// or { "error": "<name>: <message>" }. Exit status 0 either way.

import { fromHttp } from "@aws-sdk/credential-provider-http";
import { fromInstanceMetadata } from "@smithy/credential-provider-imds";

const which = process.argv[2];

async function provider() {
  if (which === "imds") return fromInstanceMetadata({ timeout: 2000, maxRetries: 0 });
  if (which === "http") return fromHttp({ timeout: 2000, maxRetries: 0 });
  if (which === "chain") {
    const { defaultProvider } = await import("@aws-sdk/credential-provider-node");
    return defaultProvider({ timeout: 2000, maxRetries: 0 });
  }
  throw new Error(`unknown provider ${which}`);
}

try {
  const creds = await (await provider())();
  const out = {
    accessKeyId: creds.accessKeyId,
    secretAccessKey: creds.secretAccessKey,
    sessionToken: creds.sessionToken,
    expiration: creds.expiration ? creds.expiration.toISOString() : null,
  };
  if (creds.accountId !== undefined) out.accountId = creds.accountId;
  process.stdout.write(JSON.stringify(out));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: `${err.name}: ${err.message}` }));
}
