// meshguard verify: prove that the installed webhooks answer, through the API server, with server-side
// dry runs (nothing is stored): a Namespace that opts out of the mesh must be denied by
// validate.meshguard.dev (enforce) or admitted (audit), and a plain Namespace must come back with
// the mesh label meshguard's mutation adds. The chart's `helm test` pod runs it.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CoreV1Api, type V1Namespace } from '@kubernetes/client-node';
import { loadKubeConfig } from '../kube/client.ts';
import { LABEL_INJECTION, MESH_LABELS } from '../policies/lib/mesh-enrollment.ts';
import { EXIT, UsageError, type Io } from './args.ts';

export const VERIFY_HELP = `Usage: meshguard verify [flags]

Checks the installed webhooks through the API server with server-side dry runs (nothing is
created): a Namespace labelled istio-injection=disabled is denied by meshguard (--expect deny,
the default; --expect allow in audit mode), and a plain Namespace is given a mesh label by
meshguard's mutation. Needs permission to create namespaces (dry run still checks it).

Flags:
  --kubeconfig FILE    cluster (default: $KUBECONFIG or ~/.kube/config)   [MESHGUARD_KUBECONFIG]
  --in-cluster         use the pod's service account                      [MESHGUARD_IN_CLUSTER]
  --expect WHAT        deny (enforce mode, default) or allow (audit mode)
  -h, --help           this help

Exit codes: 0 meshguard answered as expected, 1 it did not, 2 bad usage or no cluster.
`;

function errorText(err: unknown): { code: number | undefined; message: string } {
  const e = err as { code?: unknown; body?: unknown; message?: unknown };
  let message = typeof e.message === 'string' ? e.message : String(err);
  if (typeof e.body === 'string') {
    try {
      const b = JSON.parse(e.body) as { message?: unknown };
      if (typeof b.message === 'string') message = b.message;
    } catch {
      message = e.body;
    }
  }
  return { code: typeof e.code === 'number' ? e.code : undefined, message };
}

export async function runVerify(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { kubeconfig: { type: 'string' }, 'in-cluster': { type: 'boolean' }, expect: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help === true) {
    io.out(VERIFY_HELP);
    return EXIT.OK;
  }
  const expect = values.expect ?? 'deny';
  if (expect !== 'deny' && expect !== 'allow') throw new UsageError(`--expect must be deny or allow, not "${expect}"`);
  const inCluster = values['in-cluster'] === true || io.env['MESHGUARD_IN_CLUSTER'] === 'true';
  const kc = loadKubeConfig({ kubeconfig: values.kubeconfig ?? io.env['MESHGUARD_KUBECONFIG'] ?? null, inCluster });
  if (kc.getCurrentCluster() === null) throw new UsageError('no cluster: pass --kubeconfig FILE or --in-cluster, or set KUBECONFIG');
  const core = kc.makeApiClient(CoreV1Api);
  const suffix = randomBytes(3).toString('hex');
  let ok = true;

  const optOut: V1Namespace = { metadata: { name: `meshguard-verify-optout-${suffix}`, labels: { [LABEL_INJECTION]: 'disabled' } } };
  try {
    await core.createNamespace({ body: optOut, dryRun: 'All' });
    if (expect === 'deny') {
      ok = false;
      io.out('FAIL a Namespace labelled istio-injection=disabled was admitted: meshguard did not deny it (webhooks not armed, or not answering)\n');
    } else io.out('ok   a Namespace labelled istio-injection=disabled is admitted (audit mode)\n');
  } catch (err) {
    const { code, message } = errorText(err);
    if (expect === 'deny' && code === 403 && message.includes('admission webhook "validate.meshguard.dev" denied the request')) {
      io.out(`ok   a Namespace labelled istio-injection=disabled is denied: ${message.split('\n')[0] ?? ''}\n`);
    } else {
      ok = false;
      io.out(`FAIL the opt-out Namespace dry run: HTTP ${code ?? '?'}: ${message}\n`);
    }
  }

  try {
    const got = await core.createNamespace({ body: { metadata: { name: `meshguard-verify-${suffix}` } }, dryRun: 'All' });
    const labels = got.metadata?.labels ?? {};
    const added = MESH_LABELS.filter((k) => labels[k] !== undefined).map((k) => `${k}=${labels[k] ?? ''}`);
    if (added.length > 0) io.out(`ok   a plain Namespace is mutated: ${added.join(', ')}\n`);
    else {
      ok = false;
      io.out('FAIL a plain Namespace came back without a mesh label: the mutating webhook did not answer\n');
    }
  } catch (err) {
    const { code, message } = errorText(err);
    ok = false;
    io.out(`FAIL the plain Namespace dry run: HTTP ${code ?? '?'}: ${message}\n`);
  }
  return ok ? EXIT.OK : EXIT.VIOLATIONS;
}
