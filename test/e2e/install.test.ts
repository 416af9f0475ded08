// Installing meshguard on a real kube-apiserver without locking anyone out (docs/adr/0005): after
// `helm install` and before any meshguard is ready, every webhook fails open and a tenant can
// create a namespace; Helm re-applies the rendered Ignore on upgrade; `meshguard serve` with the
// chart's configuration arms the webhooks once it is ready and trusted (then the denials work and
// `meshguard verify`, what `helm test` runs, passes), and disarms them when it drains;
// `helm uninstall` leaves no webhook configuration.
//
// This cluster runs no pods: the installed webhooks are pointed at meshguard on loopback (the
// Service the chart renders would route to its pods), and serve runs as a process.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { runCli, startServe, type ServeProcess } from '../helpers/process.ts';
import { ROOT } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { eventually } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000);

const cluster = await startCluster();
t.teardown(() => cluster.stop());

const CHART = join(ROOT, 'charts/meshguard');
const NS = 'meshguard';
type Obj = Record<string, any>;
const KINDS = ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'] as const;

async function getJson(args: string[]): Promise<Obj | undefined> {
  const r = await cluster.kubectl(['get', ...args, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
}

/** failurePolicy of every installed meshguard webhook, by name. */
async function policies(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const kind of KINDS) for (const w of ((await getJson([kind, 'meshguard']))?.webhooks ?? []) as Obj[]) out[w.name as string] = w.failurePolicy as string;
  return out;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

const port = await freePort();
const log = (title: string, r: { code: number; stdout: string; stderr: string }): void => {
  t.comment(`$ ${title}\n${r.stdout}${r.stderr}(exit ${r.code})`);
};
const namespaceYaml = (name: string, labels: Record<string, string> = {}): string => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
let serve: ServeProcess | undefined;
t.teardown(async () => {
  await serve?.stop();
});

t.test('install, before any replica is ready: nothing fails closed and a tenant can create a namespace', async (t) => {
  const install = await cluster.helm(['install', 'meshguard', CHART, '-n', NS, '--create-namespace']);
  t.equal(install.code, 0, install.stderr);
  t.match(install.stdout, /registered failing open \(failurePolicy Ignore\)/, 'NOTES.txt says so');
  const p = await policies();
  t.comment(`failurePolicy as installed: ${JSON.stringify(p)}`);
  t.ok(Object.keys(p).length >= 2, 'both configurations are installed');
  t.same(Object.values(p).filter((x) => x !== 'Ignore'), [], 'no webhook is fail-closed');
  const created = await cluster.kubectl(['create', 'namespace', 'before-ready'], { as: 'tenant' });
  log('kubectl create namespace before-ready (as tenant)', created);
  t.equal(created.code, 0, 'a tenant creates a namespace while no meshguard answers');
});

t.test('helm upgrade re-applies the rendered Ignore to a webhook that was armed', async (t) => {
  const fail = await cluster.kubectl(['patch', 'validatingwebhookconfiguration', 'meshguard', '--type=json', '-p', '[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]']);
  t.equal(fail.code, 0, fail.stderr);
  const blocked = await cluster.kubectl(['create', 'namespace', 'armed-with-nothing-behind'], { as: 'tenant' });
  t.not(blocked.code, 0, 'control: Fail with nothing answering blocks (what arming must never leave behind)');
  const up = await cluster.helm(['upgrade', 'meshguard', CHART, '-n', NS, '--reuse-values']);
  t.equal(up.code, 0, up.stderr);
  t.equal((await policies())['validate.meshguard.dev'], 'Ignore', 'after helm upgrade: Ignore again');
  t.equal((await cluster.kubectl(['create', 'namespace', 'after-upgrade'], { as: 'tenant' })).code, 0, 'and the tenant is not blocked');
});

t.test('meshguard with the chart configuration arms the webhooks once ready; denials work; verify passes; draining disarms', async (t) => {
  // Point the installed webhooks at loopback (in a cluster the Service routes to the pods).
  for (const kind of KINDS) {
    const c = (await getJson([kind, 'meshguard'])) as Obj;
    const ops = (c.webhooks as Obj[]).map((w, i) => ({ op: 'replace', path: `/webhooks/${i}/clientConfig`, value: { url: `https://127.0.0.1:${port}${w.clientConfig.service.path as string}` } }));
    const r = await cluster.kubectl(['patch', kind.replace(/s$/, ''), 'meshguard', '--type=json', '-p', JSON.stringify(ops)]);
    t.equal(r.code, 0, r.stderr);
  }
  const manifest = await cluster.helm(['get', 'manifest', 'meshguard', '-n', NS]);
  const cm = parseAllDocuments(manifest.stdout).map((d) => d.toJS() as Obj | null).find((d) => d?.kind === 'ConfigMap') as Obj;
  const chartConfig = JSON.parse(cm.data['config.json'] as string) as Obj;
  t.same(chartConfig['webhookArming'], { enabled: true, failurePolicy: 'Fail', webhookConfigurationName: 'meshguard' }, 'the chart turns arming on, with Fail in enforce mode');
  // What differs outside a pod: the kubeconfig, loopback, a temp certificate directory, and a
  // 1-second arming check (5 s in the chart) to keep the test short.
  const certDir = join(cluster.dir, 'install-certs');
  mkdirSync(certDir, { recursive: true });
  const file = join(cluster.dir, 'install-config.json');
  writeFileSync(
    file,
    JSON.stringify({
      ...chartConfig,
      server: { ...chartConfig['server'], host: '127.0.0.1', port, certDir },
      cluster: { ...chartConfig['cluster'], inCluster: false, kubeconfig: cluster.adminKubeconfig },
      webhookArming: { ...chartConfig['webhookArming'], intervalSeconds: 1 },
      logLevel: 'info',
    }),
  );
  const t0 = performance.now();
  serve = await startServe(['--config', file]);
  const armed = await eventually(async () => (await policies())['validate.meshguard.dev'] === 'Fail', 30_000, 250);
  t.ok(armed, 'armed: validate.meshguard.dev is Fail');
  t.comment(`armed ${Math.round(performance.now() - t0)} ms after serve was spawned; failurePolicy now ${JSON.stringify(await policies())}`);
  t.equal((await policies())['validate-mesh-config.meshguard.dev'] ?? 'Ignore', 'Ignore', 'the mesh-config webhook stays Ignore');
  const bundles = (((await getJson(['validatingwebhookconfiguration', 'meshguard']))?.webhooks ?? []) as Obj[]).map((w) => w.clientConfig.caBundle as string | undefined);
  t.ok(bundles.every((b) => typeof b === 'string' && b.length > 0), 'every webhook carries a caBundle (patched by self-managed certificates before arming)');

  const denied = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: namespaceYaml('opt-out', { 'istio-injection': 'disabled' }) });
  log('kubectl create namespace opt-out -l istio-injection=disabled (as tenant)', denied);
  t.match(denied.stderr, 'admission webhook "validate.meshguard.dev" denied the request', 'a violation is denied');
  const ok = await cluster.kubectl(['create', 'namespace', 'after-ready'], { as: 'tenant' });
  t.equal(ok.code, 0, ok.stderr);
  t.equal((await getJson(['namespace', 'after-ready']))?.metadata.labels['istio-injection'], 'enabled', 'and a new namespace is mutated into the mesh');

  const verify = await runCli(['verify', '--kubeconfig', cluster.adminKubeconfig]);
  log('meshguard verify (what helm test runs)', verify);
  t.equal(verify.code, 0, 'meshguard verify passes while armed');

  const stopped = await serve.stop('SIGTERM');
  t.equal(stopped, 0, 'serve exits cleanly');
  t.same(Object.values(await policies()).filter((x) => x !== 'Ignore'), [], 'after the last replica drained: every webhook is Ignore again');
  const after = await cluster.kubectl(['create', 'namespace', 'after-drain'], { as: 'tenant' });
  t.equal(after.code, 0, 'a tenant is not locked out with meshguard gone');
  const verifyDown = await runCli(['verify', '--kubeconfig', cluster.adminKubeconfig]);
  log('meshguard verify with meshguard stopped', verifyDown);
  t.equal(verifyDown.code, 1, 'meshguard verify fails while nothing answers (what helm test reports)');
});

t.test('helm uninstall leaves no webhook configuration', async (t) => {
  const un = await cluster.helm(['uninstall', 'meshguard', '-n', NS, '--wait']);
  t.equal(un.code, 0, un.stderr);
  for (const kind of KINDS) {
    const left = await getJson([kind, '-l', 'app.kubernetes.io/instance=meshguard']);
    t.same(left?.items, [], `no ${kind} left behind`);
  }
  const r = await cluster.kubectl(['get', ...KINDS.join(',').split(' ')]);
  log('kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations', r);
});
