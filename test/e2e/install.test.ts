// Installing meshguard on a real kube-apiserver without locking anyone out (docs/adr/0005): after
// `helm install` and before any meshguard is ready, every webhook fails open and a tenant can
// create a namespace; Helm re-applies the rendered Ignore on upgrade; `meshguard serve` with the
// chart's configuration arms the webhooks once it is ready and trusted (then the denials work and
// `meshguard verify`, what `helm test` runs, passes), and disarms them when it drains;
// `helm uninstall` leaves no webhook configuration. In between, with the chart's meshguard armed:
// the MeshguardException lifecycle (admin creates, tenant refused by RBAC and by meshguard,
// excepted admission recorded, expiry) and the legacy-namespace rollout path (mark-legacy, scan,
// enrol).
//
// This cluster runs no pods: the installed webhooks are pointed at meshguard on loopback (the
// Service the chart renders would route to its pods), and serve runs as a process.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
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
});

// ------------------------------------------------------------------ exceptions ---

const hostNetDs = (name: string): string =>
  JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: 'monitoring', labels: { app: 'node-exporter' } },
    spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { hostNetwork: true, containers: [{ name: 'ne', image: 'quay.io/prometheus/node-exporter:v1.9.1' }] } } },
  });
const exceptionYaml = (expires: string): string =>
  JSON.stringify({
    apiVersion: 'meshguard.dev/v1alpha1',
    kind: 'MeshguardException',
    metadata: { name: 'node-exporter', namespace: 'monitoring' },
    spec: { kinds: ['apps/DaemonSet'], selector: { matchLabels: { app: 'node-exporter' } }, rules: [{ id: 'workload-host-network' }], reason: 'node-exporter reads the node network statistics', expires },
  });

t.test('exception lifecycle: an admin creates one, a tenant is refused, an excepted admission is recorded, expiry ends it', async (t) => {
  if (serve === undefined) return t.fail('meshguard did not start');
  t.equal((await cluster.kubectl(['create', 'namespace', 'monitoring'])).code, 0);
  const before = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: hostNetDs('ne-1') });
  log('kubectl create daemonset ne-1 (hostNetwork, as tenant, no exception)', before);
  t.match(before.stderr, '[workload-host-network]', 'control: denied without an exception');

  const rbac = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: exceptionYaml('2099-01-01T00:00:00Z') });
  log('kubectl create meshguardexception (as tenant, chart RBAC)', rbac);
  t.match(rbac.stderr, /forbidden/, 'RBAC: a tenant may not create one');
  // A tenant whose role is broader (a wildcard role, a mistake): meshguard refuses it itself.
  await cluster.applyYaml(
    [
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'too-broad' }, rules: [{ apiGroups: ['meshguard.dev'], resources: ['*'], verbs: ['*'] }] },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'too-broad' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'too-broad' }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'tenants' }] },
    ].map((d) => JSON.stringify(d)).join('\n---\n'),
  );
  const self = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: exceptionYaml('2099-01-01T00:00:00Z') });
  log('kubectl create meshguardexception (as tenant with a wildcard role)', self);
  t.match(self.stderr, 'admission webhook "validate-all-namespaces.meshguard.dev" denied the request', 'meshguard denies a tenant\'s exception itself');
  t.match(self.stderr, '[exception-admin-only]');

  const expires = new Date(Date.now() + 25_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const created = await cluster.kubectl(['create', '-f', '-'], { input: exceptionYaml(expires) });
  log(`kubectl create meshguardexception node-exporter (as admin, expires ${expires})`, created);
  t.equal(created.code, 0, 'an admin creates it');
  t.comment((await cluster.kubectl(['get', 'mgex', '-n', 'monitoring'])).stdout);

  let excepted = { code: 1, stdout: '', stderr: '' };
  const ok = await eventually(async () => {
    excepted = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: hostNetDs('ne-2') });
    return excepted.code === 0;
  }, 15_000, 300);
  log('kubectl create daemonset ne-2 (as tenant, excepted)', excepted);
  t.ok(ok, 'the excepted DaemonSet is admitted');
  t.match(excepted.stderr, `Warning: policy workload-host-network: excepted by MeshguardException monitoring/node-exporter until ${expires}`, 'the warning names the exception and its expiry');
  const inAuditLog = await eventually(async () => (await readFile(cluster.auditLogPath, 'utf8')).includes('"validate-workloads.meshguard.dev/excepted-workload-host-network"'));
  t.ok(inAuditLog, 'the apiserver audit log holds the excepted-<rule> annotation');
  const line = (await readFile(cluster.auditLogPath, 'utf8')).split('\n').find((l) => l.includes('"validate-workloads.meshguard.dev/excepted-workload-host-network"') && l.includes('ne-2'));
  t.match(line, 'MeshguardException monitoring/node-exporter (expires', 'naming the exception and its expiry');
  const record = serve.stdout().split('\n').filter((l) => l.includes('"audit":true') && l.includes('"ne-2"')).map((l) => JSON.parse(l) as Obj)[0];
  t.same(record?.['exceptions']?.map((x: Obj) => [x.rule, x.exception, x.expires]), [['workload-host-network', 'monitoring/node-exporter', expires]], "meshguard's audit record lists the exception");

  const denied = await eventually(async () => (await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: hostNetDs('ne-3') })).stderr.includes('[workload-host-network]'), 60_000, 1000);
  t.ok(denied, 'after the expiry the same kind of DaemonSet is denied again');
  t.comment(`denied again at ${new Date().toISOString()} (expiry ${expires})`);
  const scan = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig]);
  log('meshguard scan (after the expiry)', { ...scan, stdout: scan.stdout.split('\n').filter((l) => /MeshguardException|ACTIVE|EXPIRED|If enforced|would be denied|violations? in/.test(l)).join('\n') + '\n' });
  t.match(scan.stdout, 'MeshguardExceptions: 0 active, 1 expired');
  t.match(scan.stdout, `EXPIRED monitoring/node-exporter: apps/DaemonSet (selector) from workload-host-network; expired ${expires}`);
});

// ------------------------------------------------------------------ legacy rollout ---

const deployment = (namespace: string, name: string): string =>
  JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: 'docker.io/library/nginx:1.27' }] } } },
  });

t.test('legacy rollout: a namespace that predates meshguard is marked audit, reported by scan, then enrolled', async (t) => {
  if (serve === undefined) return t.fail('meshguard did not start');
  // before-ready was created while no meshguard answered: not in the mesh, like any namespace
  // that predates meshguard.
  const blocked = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: deployment('before-ready', 'web-1') });
  log('kubectl create deployment web-1 -n before-ready (as tenant, enforce)', blocked);
  t.match(blocked.stderr, 'admission webhook "validate-workloads.meshguard.dev" denied the request', 'enforce denies deploys into the legacy namespace');
  const dry = await runCli(['mark-legacy', '--kubeconfig', cluster.adminKubeconfig]);
  log('meshguard mark-legacy (dry run)', dry);
  t.match(dry.stdout, 'would mark before-ready meshguard.dev/mode=audit');
  const mark = await runCli(['mark-legacy', '--kubeconfig', cluster.adminKubeconfig, '--apply']);
  log('meshguard mark-legacy --apply (as admin)', mark);
  t.equal(mark.code, 0);
  t.equal((await getJson(['namespace', 'before-ready']))?.metadata.labels['meshguard.dev/mode'], 'audit', 'marked');
  const byTenant = await cluster.kubectl(['label', 'namespace', 'before-ready', 'meshguard.dev/mode-'], { as: 'tenant' });
  t.match(byTenant.stderr, '[control-labels-admin-only]', 'a tenant cannot remove the marking');
  const allowed = await eventually(async () => (await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: deployment('before-ready', 'web-2') })).code === 0, 10_000, 300);
  t.ok(allowed, 'marked: the deploy is admitted (audit)');
  const scan = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig]);
  log('meshguard scan (legacy namespace marked)', { ...scan, stdout: scan.stdout.split('\n').filter((l) => /^Namespace before-ready|If enforced|would be denied|violations? in/.test(l)).join('\n') + '\n' });
  t.match(scan.stdout, /  before-ready: 2 objects would be denied \(\d+ violations?; all admitted today \(audit\)\)/, 'scan says what enforce would block there (the namespace itself and web-2)');
  const enrol = await cluster.kubectl(['label', 'namespace', 'before-ready', 'istio-injection=enabled', 'meshguard.dev/mode-']);
  log('kubectl label namespace before-ready istio-injection=enabled meshguard.dev/mode- (as admin)', enrol);
  t.equal(enrol.code, 0, 'an admin enrols it');
  const meshed = await eventually(async () => {
    const r = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: deployment('before-ready', 'web-3') });
    return r.code === 0 && !r.stderr.includes('Warning');
  }, 10_000, 300);
  t.ok(meshed, 'enrolled and meshed: deploys are admitted without a warning, now under enforce');
  const optOut = await cluster.kubectl(['label', 'namespace', 'before-ready', 'istio-injection=disabled', '--overwrite'], { as: 'tenant' });
  t.match(optOut.stderr, 'denied the request', 'and leaving the mesh is denied (enforced)');
});

t.test('the last replica draining disarms the webhooks', async (t) => {
  if (serve === undefined) return t.fail('meshguard did not start');
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
