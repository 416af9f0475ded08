// A stalled watch against a real kube-apiserver (issue 18 item 2; checklist B15): meshguard reaches
// the apiserver through a TCP proxy in this test, which is switched to blackhole: it keeps every
// connection open and stops forwarding bytes, in both directions, with no reset (what a dead link,
// a stuck NAT entry or a hung proxy does). Meanwhile an admin takes a namespace out of the mesh.
// Must hold, with cluster.staleAfterSeconds 2: readiness fails within the bound (asserted within
// four bounds, a margin for a busy machine: it fails only when the stall goes unnoticed), and a
// Deployment in the relabelled namespace is not admitted on the stale labels; once the link is
// back, the fresh labels decide.
// Only the workload webhook is registered, so the admin's relabel never depends on meshguard.
import t from 'tap';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { webhookConfigurations } from '../../src/policies/webhook-config.ts';
import { DEFAULT_EXEMPT_NAMESPACES } from '../../src/config/schema.ts';
import { WORKLOAD_RULES } from '../../src/policies/workload-rules.ts';
import { startCluster } from './helpers/cluster.ts';
import { eventually, startMeshguard } from './helpers/meshguard.ts';
import { get } from '../helpers/server.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

/** A TCP proxy on 127.0.0.1 that can blackhole: connections stay open, bytes are dropped, closes
 * are not passed on. Connections that lived through a blackhole are cut when it ends (their TLS
 * streams lost bytes). */
class BlackholeProxy {
  readonly #server: Server;
  readonly #target: number;
  readonly #pairs = new Set<{ client: Socket; upstream: Socket; darkened: boolean }>();
  #blackhole = false;
  port = 0;

  constructor(targetPort: number) {
    this.#target = targetPort;
    this.#server = createServer((client) => {
      const upstream = connect(this.#target, '127.0.0.1');
      const pair = { client, upstream, darkened: this.#blackhole };
      this.#pairs.add(pair);
      const drop = (): void => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d: Buffer) => void (this.#blackhole ? undefined : upstream.write(d)));
      upstream.on('data', (d: Buffer) => void (this.#blackhole ? undefined : client.write(d)));
      // The apiserver's side ending is not passed on to meshguard while dark.
      upstream.on('close', () => void (this.#blackhole ? undefined : drop()));
      upstream.on('error', () => {});
      client.on('close', drop);
      client.on('error', drop);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    const a = this.#server.address();
    this.port = typeof a === 'object' && a !== null ? a.port : 0;
  }

  set blackhole(on: boolean) {
    this.#blackhole = on;
    if (on) for (const p of this.#pairs) p.darkened = true;
    else for (const p of [...this.#pairs]) if (p.darkened) (p.client.destroy(), p.upstream.destroy(), this.#pairs.delete(p));
  }

  close(): Promise<void> {
    for (const p of this.#pairs) (p.client.destroy(), p.upstream.destroy());
    return new Promise((r) => this.#server.close(() => r()));
  }
}

const STALE_AFTER_SECONDS = 2;
const cluster = await startCluster();
const proxy = new BlackholeProxy(Number(new URL(cluster.server).port));
await proxy.start();
// meshguard's kubeconfig: the admin's, through the proxy (the apiserver's certificate covers 127.0.0.1).
const viaProxy = join(cluster.dir, 'via-proxy.kubeconfig');
const kc = JSON.parse(readFileSync(cluster.adminKubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
for (const c of kc.clusters) c.cluster.server = `https://127.0.0.1:${proxy.port}`;
writeFileSync(viaProxy, JSON.stringify(kc), { mode: 0o600 });

await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-s\n  labels:\n    istio-injection: enabled\n');
const mg = await startMeshguard(cluster, { kubeconfig: viaProxy, config: { cluster: { staleAfterSeconds: STALE_AFTER_SECONDS } } });
t.teardown(async () => {
  await mg.stop();
  await proxy.close();
  await cluster.stop();
});
const target = { url: mg.url, ca: mg.caPem };
const readyz = async (): Promise<{ status: number; body: string }> => {
  try {
    const r = await get(target, '/readyz');
    return { status: r.status, body: r.text };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
};

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-s
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx
`;
const createDeployment = () => cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { as: 'tenant', input: DEPLOYMENT });

t.test('a blackholed watch: readiness fails within the bound, no admission on stale labels, recovery', async (t) => {
  t.ok(await eventually(async () => (await readyz()).status === 200, 60_000), 'meshguard is ready through the proxy (caches synced)');
  const { validating } = webhookConfigurations({
    client: { url: mg.url },
    caBundle: Buffer.from(mg.caPem).toString('base64'),
    failurePolicy: 'Fail',
    timeoutSeconds: 5,
    exemptNamespaces: DEFAULT_EXEMPT_NAMESPACES,
    meshguardNamespace: 'meshguard',
    rules: WORKLOAD_RULES,
  });
  await cluster.applyYaml(JSON.stringify(validating));
  const before = await createDeployment();
  t.equal(before.code, 0, `a Deployment in team-s (istio-injection=enabled) is admitted ${before.stderr}`);

  // The link goes dark; then an admin takes team-s out of the mesh (straight to the apiserver).
  const darkAt = performance.now();
  proxy.blackhole = true;
  const relabel = await cluster.kubectl(['label', 'namespace', 'team-s', 'istio-injection=disabled', '--overwrite']);
  t.equal(relabel.code, 0, `team-s relabelled istio-injection=disabled ${relabel.stderr}`);

  const bound = 4 * STALE_AFTER_SECONDS * 1000;
  const failed = await eventually(async () => (await readyz()).status === 503, bound, 100);
  const seconds = (performance.now() - darkAt) / 1000;
  t.ok(failed, `readiness fails ${seconds.toFixed(1)} s after the blackhole began (staleAfterSeconds ${STALE_AFTER_SECONDS}; asserted within ${bound / 1000} s)`);
  // Both caches (namespaces, Istio revisions) went dark; readiness names the first past the bound.
  const stale = await readyz();
  t.match(stale.body, /"caches":"(namespaces|istio revisions \(mutatingwebhookconfigurations\)): watch stalled: nothing received for \d+ s \(bound 2 s\)"/, `/readyz names a stalled cache: ${stale.body}`);

  const during = await createDeployment();
  t.not(during.code, 0, 'the Deployment in the relabelled namespace is not admitted on the stale labels');
  t.match(during.stderr, /failed calling webhook "validate-workloads\.meshguard\.dev"/, `it is refused by meshguard's webhook (503 MG_CACHE_STALE: the failure policy Fail applies): ${during.stderr.trim()}`);

  // The link comes back (the connections that went dark are cut): relist, watch, fresh labels.
  proxy.blackhole = false;
  const backAt = performance.now();
  t.ok(await eventually(async () => (await readyz()).status === 200, 60_000, 250), `readiness returns (${((performance.now() - backAt) / 1000).toFixed(1)} s after the link came back)`);
  let after = await createDeployment();
  await eventually(async () => (after = await createDeployment()).code !== 0, 10_000, 250);
  t.not(after.code, 0, 'the fresh labels decide: the Deployment is denied');
  t.match(after.stderr, '[workload-injection-opt-out]', 'by workload-injection-opt-out');
});
