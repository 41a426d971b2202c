// The AWS SDK for JavaScript v3 on a credential_process profile, for tests/interop/test_laptop.py.
//
// Usage: node process_client.mjs PROFILE STS_ENDPOINT
// Output (stdout, JSON): {"arn", "accessKeyId", "expiration"} from fromProcess and GetCallerIdentity.

import { fromProcess } from "@aws-sdk/credential-provider-process";
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";

const [profile, endpoint] = process.argv.slice(2);
const credentials = fromProcess({ profile });
const creds = await credentials();
const client = new STSClient({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
const out = await client.send(new GetCallerIdentityCommand({}));
console.log(JSON.stringify({ arn: out.Arn, accessKeyId: creds.accessKeyId, expiration: creds.expiration?.toISOString() }));
