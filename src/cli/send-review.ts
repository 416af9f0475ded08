// meshguard review: send one AdmissionReview to a running server and print the answer. Without
// -f it sends a built-in sample (a Namespace labelled istio-injection=disabled).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { parseArgs } from 'node:util';
import type { KObject } from '../core/request.ts';
import { syntheticRequest } from '../core/admission-chain.ts';
import { EXIT, UsageError, type Io } from './args.ts';
import { parseManifests } from './manifests.ts';

export const REVIEW_HELP = `Usage: meshguard review [flags]

Sends an AdmissionReview to a running meshguard and prints the answer (exit 1 when denied).

Flags:
  --url URL           server (default https://127.0.0.1:8443)
  --endpoint NAME     validate (default) or mutate
  --ca FILE           CA to trust (default certs/ca.crt)
  -f, --filename FILE an AdmissionReview, or a manifest to wrap in a CREATE review
                      (default: a Namespace labelled istio-injection=disabled)
  --user NAME         request.userInfo.username (default kubernetes-admin)
  --group NAME        request.userInfo.groups (repeatable; default system:authenticated)
  -h, --help          this help
`;

const SAMPLE: KObject = {
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name: 'team-a', labels: { 'istio-injection': 'disabled' } },
};

function reviewBody(file: string | undefined, user: string, groups: readonly string[]): unknown {
  let object = SAMPLE;
  if (file !== undefined) {
    const text = readFileSync(file, 'utf8');
    const { manifests, errors } = parseManifests(file, text);
    if (errors.length > 0 || manifests[0] === undefined) throw new UsageError(`${file}: ${errors[0]?.message ?? 'no manifest found'}`);
    object = manifests[0].object;
    if (object.kind === 'AdmissionReview') return object;
  }
  const req = syntheticRequest(object, { uid: randomUUID(), userInfo: { username: user, groups } });
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { ...req, dryRun: false } };
}

function post(url: URL, ca: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

export async function runReview(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      url: { type: 'string', default: 'https://127.0.0.1:8443' },
      endpoint: { type: 'string', default: 'validate' },
      ca: { type: 'string', default: 'certs/ca.crt' },
      filename: { type: 'string', short: 'f' },
      user: { type: 'string', default: 'kubernetes-admin' },
      group: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    io.out(REVIEW_HELP);
    return EXIT.OK;
  }
  if (values.endpoint !== 'validate' && values.endpoint !== 'mutate') throw new UsageError('--endpoint must be validate or mutate');
  let ca: string;
  try {
    ca = readFileSync(values.ca, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the CA ${values.ca}: ${(err as Error).message} (is meshguard serve running from this folder?)`);
  }
  const body = JSON.stringify(reviewBody(values.filename, values.user, values.group ?? ['system:authenticated']));
  const url = new URL(`/${values.endpoint}`, values.url);
  let res: { status: number; text: string };
  try {
    res = await post(url, ca, body);
  } catch (err) {
    io.err(`meshguard: cannot reach ${url.href}: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  let pretty = res.text;
  try {
    pretty = JSON.stringify(JSON.parse(res.text), null, 2);
  } catch {
    // not JSON: print as received
  }
  io.out(`${pretty}\n`);
  if (res.status !== 200) return EXIT.USAGE;
  return (JSON.parse(res.text) as { response?: { allowed?: boolean } }).response?.allowed === false ? EXIT.VIOLATIONS : EXIT.OK;
}
