// The Helm chart against a real kube-apiserver: what `helm template` renders applies with
// `kubectl apply --dry-run=server` for the default values and every ci values file; `helm install`
// and `helm uninstall` leave no webhook configuration behind; the chart's RBAC is what
// `kubectl auth can-i` reports, without wildcards; its pod passes the restricted Pod Security
// level. Then meshguard runs with the chart's configuration outside a pod: self-managed
// certificates patch the caBundle through the API (after which the apiserver's calls succeed), a
// forced renewal and a CA rollover rotate the serving certificate while clients keep sending
// requests (zero failures), and two processes started at once end with one CA.
//
// Until serve runs the certificate manager itself, the manager runs in this test process
// (startSelfManagedCerts, the function serve will call) and `meshguard serve` is spawned with
// --cert-file/--key-file/--ca-file on the directory it writes, so the serving side (file poll,
// setSecureContext) is the real one.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { startSelfManagedCerts, type SelfManagedCerts } from '../../src/jobs/certs/loop.ts';
import { splitPems } from '../../src/jobs/certs/plan.ts';
import { storedFrom } from '../../src/jobs/certs/secret.ts';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';
import { startServe, type ServeProcess } from '../helpers/process.ts';
import { ROOT } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { eventually, sleep } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries; a cached run takes well under 3 minutes

const T0 = performance.now();
const cluster = await startCluster();
t.teardown(() => cluster.stop());
t.comment(`cluster ready in ${((performance.now() - T0) / 1000).toFixed(1)} s`);

const CHART = join(ROOT, 'charts/meshguard');
const CI = join(ROOT, 'charts/ci');
const NS = 'meshguard';
const SA = `system:serviceaccount:${NS}:meshguard`;
type Obj = Record<string, any>;

async function template(args: string[] = []): Promise<string> {
  const r = await cluster.helm(['template', 'meshguard', CHART, '-n', NS, ...args]);
  if (r.code !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
  return r.stdout;
}
const docsOf = (yaml: string): Obj[] => parseAllDocuments(yaml).map((d) => d.toJS() as Obj | null).filter((d): d is Obj => d !== null);
const toYaml = (docs: readonly Obj[]): string => docs.map((d) => JSON.stringify(d)).join('\n---\n');
async function getJson(args: string[]): Promise<Obj | undefined> {
  const r = await cluster.kubectl(['get', ...args, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
}

// cert-manager's CRDs are not installed in this cluster: minimal ones (group, kinds, versions,
// any spec) let the apiserver accept the Issuer and Certificate objects in dry-run; their spec
// is not validated here (the unit test checks what is rendered).
const CERT_MANAGER_CRDS = ['Issuer:issuers', 'Certificate:certificates']
  .map((k) => {
    const [kind, plural] = k.split(':') as [string, string];
    return {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `${plural}.cert-manager.io` },
      spec: {
        group: 'cert-manager.io',
        scope: 'Namespaced',
        names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
  });

// What the later subtests need is awaited before the first subtest: tap ends the root test as soon
// as no subtest is pending, so a top-level await between subtests could find it ended.
const rendered = docsOf(await template());
const chartConfig = JSON.parse((rendered.find((d) => d.kind === 'ConfigMap') as Obj).data['config.json'] as string) as Obj;
const port = await freePort();

t.test('helm install --create-namespace, label the namespace, RBAC as installed, helm uninstall leaves no webhook behind', async (t) => {
  const t1 = performance.now();
  const install = await cluster.helm(['install', 'meshguard', CHART, '-n', NS, '--create-namespace']);
  t.equal(install.code, 0, install.stderr);
  t.comment(`helm install in ${Math.round(performance.now() - t1)} ms`);
  // docs/install.md: the labels --create-namespace cannot add.
  const label = await cluster.kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/enforce-version=latest', 'istio-injection=disabled', '--overwrite']);
  t.equal(label.code, 0, `meshguard's own namespace can be labelled while its webhooks are down (it is excluded): ${label.stderr}`);
  // ADR 0005: rendered failing open; only a ready meshguard arms them (test/e2e/install.test.ts).
  const admitted = await cluster.kubectl(['create', 'namespace', 'while-installed'], { as: 'tenant' });
  t.equal(admitted.code, 0, `with no meshguard pod answering, the rendered Ignore admits namespace creation: ${admitted.stderr}`);

  // E.28: what the ServiceAccount may do, as the apiserver's authorizer sees it.
  const list = await cluster.kubectl(['auth', 'can-i', '--list', `--as=${SA}`, '-n', NS]);
  t.equal(list.code, 0, list.stderr);
  const rows = list.stdout.split('\n').slice(1).filter((l) => l.trim() !== '');
  const resourceRows = rows.filter((l) => !l.trim().startsWith('['));
  const granted = resourceRows.filter((l) => !/^(selfsubject|\s)/.test(l));
  t.comment(`kubectl auth can-i --list --as=${SA}:\n${list.stdout}`);
  t.notOk(granted.some((l) => /(^|\s)\*(\s|$)|\[\*\]/.test(l)), 'no wildcard resource or verb granted to meshguard');
  const can = async (args: string[]): Promise<boolean> => (await cluster.kubectl(['auth', 'can-i', `--as=${SA}`, '-n', NS, ...args])).stdout.trim() === 'yes';
  const checks: [string, string[], boolean][] = [
    ['watch namespaces', ['watch', 'namespaces'], true],
    ['update namespaces', ['update', 'namespaces'], false],
    ['patch its own MutatingWebhookConfiguration', ['patch', 'mutatingwebhookconfigurations/meshguard'], true],
    ['patch its own ValidatingWebhookConfiguration', ['patch', 'validatingwebhookconfigurations/meshguard'], true],
    ["patch someone else's webhook configuration", ['patch', 'mutatingwebhookconfigurations/istio-sidecar-injector'], false],
    ['create webhook configurations', ['create', 'validatingwebhookconfigurations'], false],
    ['read its own Secret', ['get', 'secrets/meshguard-tls'], true],
    ['update its own Secret', ['update', 'secrets/meshguard-tls'], true],
    ['read another Secret in its namespace', ['get', 'secrets/other'], false],
    ['list Secrets', ['list', 'secrets'], false],
    ['read Secrets elsewhere', ['get', 'secrets/meshguard-tls', '-n', 'default'], false],
    ['create pods', ['create', 'pods'], false],
    ['renew its Lease', ['update', 'leases/meshguard-reconciler'], true],
    ['create Events (meshguard writes none)', ['create', 'events'], false],
  ];
  for (const [what, args, want] of checks) t.equal(await can(args), want, `${want ? 'may' : 'may not'} ${what}`);

  const t2 = performance.now();
  const un = await cluster.helm(['uninstall', 'meshguard', '-n', NS, '--wait']);
  t.equal(un.code, 0, un.stderr);
  t.comment(`helm uninstall in ${Math.round(performance.now() - t2)} ms`);
  for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
    const left = await getJson([kind, '-l', 'app.kubernetes.io/instance=meshguard']);
    t.same(left?.items, [], `no ${kind} left behind`);
  }
  t.equal((await cluster.kubectl(['create', 'namespace', 'after-uninstall'])).code, 0, 'namespaces can be created again');
});

t.test('every values file renders manifests the apiserver accepts (kubectl apply --dry-run=server)', async (t) => {
  await cluster.applyYaml(toYaml(CERT_MANAGER_CRDS));
  t.ok(await eventually(async () => (await cluster.kubectl(['get', 'certificates.cert-manager.io', '-n', NS])).code === 0, 15_000), 'minimal cert-manager CRDs served');
  const variants: [string, string[]][] = [
    ['default values', []],
    ['self-managed-values.yaml', ['-f', join(CI, 'self-managed-values.yaml')]],
    ['cert-manager-values.yaml', ['-f', join(CI, 'cert-manager-values.yaml')]],
    ['own-secret-values.yaml', ['-f', join(CI, 'own-secret-values.yaml')]],
  ];
  for (const [name, args] of variants) {
    const yaml = await template(args);
    const docs = docsOf(yaml);
    const r = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: yaml });
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
    const applied = r.stdout.split('\n').filter((l) => / (created|configured|unchanged) \(server dry run\)$/.test(l));
    t.equal(applied.length, docs.length, `${name}: all ${docs.length} objects accepted`);
    t.notMatch(r.stderr, /Warning/, `${name}: no warnings (deprecated APIs, unknown fields, Pod Security)`);
  }
});

t.test("the chart's pod is admitted under the restricted Pod Security level (E.29)", async (t) => {
  const deployment = docsOf(await template()).find((d) => d.kind === 'Deployment') as Obj;
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'meshguard-pss', namespace: NS, labels: deployment.spec.template.metadata.labels }, spec: deployment.spec.template.spec };
  const ok = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(pod) });
  t.equal(ok.code, 0, ok.stderr);
  t.notMatch(ok.stderr, /violate PodSecurity/, 'no Pod Security warning');
  const bad = structuredClone(pod) as Obj;
  bad.spec.containers[0].securityContext.allowPrivilegeEscalation = true;
  const denied = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(bad) });
  t.not(denied.code, 0, 'control: the same pod with privilege escalation is refused in this namespace');
  t.match(denied.stderr, /violates PodSecurity "restricted/);
});

// ----------------------------------------------------------- meshguard with the chart's configuration ---

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

const quiet = { info: () => undefined, warn: (o: object, m: string) => process.stderr.write(`[certs] ${m} ${JSON.stringify(o)}\n`) };
const url = `https://127.0.0.1:${port}`;
const certDir = join(cluster.dir, 'meshguard-certs');
mkdirSync(certDir, { recursive: true });

/** The chart's webhook configurations, pointed at meshguard on loopback (no caBundle, as rendered). */
function loopbackWebhooks(docs: readonly Obj[], name = 'meshguard', extra: (w: Obj) => Obj = (w) => w): Obj[] {
  return docs
    .filter((d) => d.kind === 'MutatingWebhookConfiguration' || d.kind === 'ValidatingWebhookConfiguration')
    .map((d) => ({
      ...d,
      metadata: { ...d.metadata, name },
      webhooks: (d.webhooks as Obj[]).map((w) => extra({ ...w, clientConfig: { url: `${url}${w.clientConfig.service.path as string}` } })),
    }));
}

async function caBundles(name = 'meshguard'): Promise<string[]> {
  const out: string[] = [];
  for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
    for (const w of ((await getJson([kind, name]))?.webhooks ?? []) as Obj[]) out.push((w.clientConfig?.caBundle as string | undefined) ?? '');
  }
  return out;
}

async function secret(name: string, ns = NS): Promise<ReturnType<typeof storedFrom> | undefined> {
  const s = await getJson(['secret', name, '-n', ns]);
  return s === undefined ? undefined : storedFrom(s);
}

/** The certificate meshguard presents on a new TLS connection. */
function servedCert(ca: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, servername: `meshguard.${NS}.svc` }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (c === undefined) reject(new Error('no peer certificate'));
      else resolve(c);
    });
    s.on('error', reject);
  });
}

let manager: SelfManagedCerts | undefined;
let serve: ServeProcess | undefined;
t.teardown(async () => {
  await serve?.stop();
  await manager?.stop();
});

t.test('meshguard with the chart configuration patches the caBundle; then the apiserver calls succeed', async (t) => {
  await cluster.applyYaml(toYaml(loopbackWebhooks(rendered)));
  t.ok((await caBundles()).every((b) => b === ''), 'registered as rendered: no caBundle');
  const before = await cluster.kubectl(['create', 'namespace', 'before-certs'], { as: 'tenant' });
  t.equal(before.code, 0, 'before meshguard runs, the rendered Ignore admits the namespace (ADR 0005)');
  t.equal((await getJson(['namespace', 'before-certs']))?.metadata.labels['istio-injection'], undefined, 'unmutated: no meshguard answered');

  // The chart's configuration, with what differs outside a pod: the kubeconfig instead of the
  // pod's service account, loopback instead of 0.0.0.0, a temp dir instead of /certs.
  const chartFile = join(cluster.dir, 'chart-config.json');
  writeFileSync(chartFile, JSON.stringify(chartConfig));
  const config = loadConfig({
    file: chartFile,
    overrides: { 'cluster.kubeconfig': cluster.adminKubeconfig, 'server.host': '127.0.0.1', 'server.port': port, 'server.certDir': certDir },
    ruleIds: RULE_IDS,
  });
  t.equal(config.selfManagedCerts.enabled, true, 'the chart turns self-managed certificates on');
  const t1 = performance.now();
  manager = await startSelfManagedCerts(config, loadKubeConfig({ kubeconfig: cluster.adminKubeconfig, inCluster: false }), quiet, { caSettleMs: 2000 });
  t.comment(`certificates ready (Secret written, files, caBundle patched) in ${Math.round(performance.now() - t1)} ms`);
  const stored = await secret('meshguard-tls');
  t.ok(stored?.caCert !== undefined && stored.cert !== undefined, 'the Secret meshguard-tls holds the CA and the serving certificate');
  const bundle = Buffer.from(stored?.bundle ?? '').toString('base64');
  t.same(new Set(await caBundles()), new Set([bundle]), 'every webhook carries the stored caBundle');

  // serve with the chart's configuration file; self-management is done by the process above.
  const configFile = join(cluster.dir, 'serve-config.json');
  writeFileSync(configFile, JSON.stringify({ ...chartConfig, selfManagedCerts: { ...chartConfig['selfManagedCerts'], enabled: false } }));
  serve = await startServe([
    '--config', configFile,
    '--kubeconfig', cluster.adminKubeconfig,
    '--host', '127.0.0.1',
    '--port', String(port),
    '--cert-file', manager.paths.certFile,
    '--key-file', manager.paths.keyFile,
    '--ca-file', manager.paths.caFile as string,
    '--log-level', 'warn',
  ]);
  const created = await eventually(async () => (await cluster.kubectl(['create', 'namespace', 'after-certs'], { as: 'tenant' })).code === 0, 15_000, 300);
  t.ok(created, 'kubectl create namespace succeeds through the webhooks');
  const ns = await getJson(['namespace', 'after-certs']);
  t.equal(ns?.metadata.labels['istio-injection'], 'enabled', 'and carries the label meshguard added: the call went through meshguard');
  const denied = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'opt-out', labels: { 'istio-injection': 'disabled' } } }) });
  t.match(denied.stderr, 'admission webhook "validate.meshguard.dev" denied the request', 'and a violation is denied (docs/install.md: verify)');
});

t.test('a forced renewal and a CA rollover rotate the serving certificate while clients keep sending requests: zero failures', async (t) => {
  if (manager === undefined || serve === undefined) return t.fail('meshguard did not start');
  const m = manager;
  const kc = loadKubeConfig({ kubeconfig: cluster.tenantKubeconfig, inCluster: false });
  const core = kc.makeApiClient(CoreV1Api);
  let stop = false;
  const stats = { ok: 0, failed: 0, errors: [] as string[], direct: 0, directFailed: 0 };
  // Through the apiserver: dry-run namespace creates go through both webhooks.
  const viaApiserver = async (id: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      try {
        const r = await core.createNamespace({ body: { metadata: { name: `load-${id}-${i}` } }, dryRun: 'All' });
        if (r.metadata?.labels?.['istio-injection'] !== 'enabled') throw new Error('not mutated');
        stats.ok++;
      } catch (err) {
        stats.failed++;
        if (stats.errors.length < 5) stats.errors.push((err as Error).message.slice(0, 300));
        await sleep(50);
      }
    }
  };
  // Directly, on one kept-alive connection opened before the rotation: it must survive.
  const trusted = splitPems((await secret('meshguard-tls'))?.bundle).join('');
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: trusted });
  let sockets = 0;
  const direct = async (): Promise<void> => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const req = request(`${url}/healthz`, { agent, servername: `meshguard.${NS}.svc` }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) stats.direct++;
            else stats.directFailed++;
            resolve();
          });
        });
        req.on('socket', (s) => {
          if (!(s as { __seen?: boolean }).__seen) {
            (s as { __seen?: boolean }).__seen = true;
            sockets++;
          }
        });
        req.on('error', () => {
          stats.directFailed++;
          resolve();
        });
        req.end();
      });
      await sleep(50);
    }
  };
  const first = await servedCert(trusted);
  const loops = [viaApiserver(1), viaApiserver(2), direct()];
  try {
    await sleep(1500);

    const t1 = performance.now();
    const renewed = await m.renewNow();
    t.ok(renewed.wrote && renewed.filesChanged, `renewal written: ${renewed.reasons.join('; ')}`);
    const rotated = await eventually(async () => (await servedCert(trusted)).fingerprint256 !== first.fingerprint256, 10_000, 100);
    t.ok(rotated, 'new handshakes present the renewed certificate');
    t.comment(`renewed certificate served after ${Math.round(performance.now() - t1)} ms`);
    const second = await servedCert(trusted);
    t.ok(second.checkIssued(new X509Certificate(splitPems(trusted)[0] as string)), 'signed by the same CA (the caBundle did not change)');
    t.equal(Buffer.from((await secret('meshguard-tls'))?.bundle ?? '').toString('base64'), (await caBundles())[0], 'caBundle unchanged by a renewal');
    await sleep(1500);

    // CA rollover: stage the next CA in the bundle, let the apiserver take it, then sign with it.
    const t2 = performance.now();
    const staged = await m.renewNow({ ca: true });
    t.equal(splitPems(staged.bundle).length, 2, 'the next CA is staged: two CAs trusted');
    await sleep(2500); // caSettleMs 2000
    const promoted = await m.reconcile();
    t.match(promoted.reasons.join(';'), /staged CA has been trusted long enough/, 'then promoted');
    const newCa = splitPems(promoted.bundle)[0] as string;
    const rolled = await eventually(async () => (await servedCert(newCa + trusted)).checkIssued(new X509Certificate(newCa)), 10_000, 100);
    t.ok(rolled, 'the served certificate is signed by the new CA');
    t.comment(`CA rollover (stage, settle 2 s, promote, reload) took ${Math.round(performance.now() - t2)} ms`);
    t.ok(splitPems(promoted.bundle).includes(splitPems(trusted)[0] as string), 'the old CA stays trusted until it expires');
    await sleep(1500);
  } finally {
    stop = true;
    await Promise.all(loops);
    agent.destroy();
  }
  t.comment(`through the apiserver: ${stats.ok} requests, ${stats.failed} failed; direct keep-alive: ${stats.direct} requests on ${sockets} connection(s), ${stats.directFailed} failed`);
  t.ok(stats.ok > 50, 'requests kept flowing');
  t.equal(stats.failed, 0, `no failed request through the apiserver ${stats.errors.join(' | ')}`);
  t.equal(stats.directFailed, 0, 'no failed request on the direct connection');
  t.equal(sockets, 1, 'the connection opened before the rotations was never dropped');
  const finalBundle = splitPems((await secret('meshguard-tls'))?.bundle).join('');
  const metrics = await new Promise<string>((resolve, reject) => {
    const req = request(`${url}/metrics`, { ca: finalBundle, servername: `meshguard.${NS}.svc` }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
  const reloads = Number(/meshguard_certificate_reloads_total\{result="success"\} (\d+)/.exec(metrics)?.[1] ?? 0);
  t.ok(reloads >= 3, `serve reloaded the certificate files (${reloads} reloads: renewal, rollover staging, promotion)`);
  t.match(metrics, /meshguard_certificate_reload_failing 0/, 'and the last reload succeeded');
});

// ------------------------------------------------------------------- two processes at once ---

const RUNNER = `
import { startSelfManagedCerts } from ${JSON.stringify(join(ROOT, 'src/jobs/certs/loop.ts'))};
import { loadKubeConfig } from ${JSON.stringify(join(ROOT, 'src/kube/client.ts'))};
import { loadConfig } from ${JSON.stringify(join(ROOT, 'src/config/load.ts'))};
import { RULE_IDS } from ${JSON.stringify(join(ROOT, 'src/policies/registry.ts'))};
import { readFileSync } from 'node:fs';
const lines = [];
const log = { info: (o, m) => lines.push(m), warn: (o, m) => lines.push(m) };
const config = loadConfig({ overrides: JSON.parse(process.env.MG_OVERRIDES), ruleIds: RULE_IDS });
const kc = loadKubeConfig({ kubeconfig: process.env.MG_KUBECONFIG, inCluster: false });
await new Promise((r) => setTimeout(r, Math.max(0, Number(process.env.MG_START_AT) - Date.now())));
const m = await startSelfManagedCerts(config, kc, log);
await m.stop();
process.stdout.write(JSON.stringify({ ca: readFileSync(m.paths.caFile, 'utf8'), cert: readFileSync(m.paths.certFile, 'utf8'), lines }) + '\\n');
`;

function runReplica(dir: string, startAt: number): Promise<{ code: number | null; out: string }> {
  const overrides = {
    meshguardNamespace: 'race',
    'selfManagedCerts.enabled': true,
    'selfManagedCerts.secretName': 'race-tls',
    'selfManagedCerts.webhookConfigurationName': 'meshguard-race',
    'server.certDir': dir,
  };
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', RUNNER], {
    env: { ...process.env, MG_OVERRIDES: JSON.stringify(overrides), MG_KUBECONFIG: cluster.adminKubeconfig, MG_START_AT: String(startAt) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out })));
}

t.test('two meshguard processes started at once end with one CA in the Secret and the same caBundle', async (t) => {
  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: race\n');
  // A copy of the chart's webhooks under another name that no request matches.
  const never = (w: Obj): Obj => ({ ...w, failurePolicy: 'Ignore', namespaceSelector: { matchLabels: { 'meshguard.dev/never': 'true' } } });
  await cluster.applyYaml(toYaml(loopbackWebhooks(rendered, 'meshguard-race', never)));
  const startAt = Date.now() + 1500;
  const t1 = performance.now();
  const [a, b] = await Promise.all([runReplica(join(cluster.dir, 'race-a'), startAt), runReplica(join(cluster.dir, 'race-b'), startAt)]);
  t.comment(`both replicas done ${Math.round(performance.now() - t1)} ms after spawning (start barrier 1.5 s)`);
  t.equal(a.code, 0, a.out);
  t.equal(b.code, 0, b.out);
  const ra = JSON.parse(a.out.trim().split('\n').at(-1) as string) as { ca: string; cert: string; lines: string[] };
  const rb = JSON.parse(b.out.trim().split('\n').at(-1) as string) as { ca: string; cert: string; lines: string[] };
  const stored = await secret('race-tls', 'race');
  t.equal(ra.ca, stored?.caCert, 'replica a serves from the stored CA');
  t.equal(rb.ca, stored?.caCert, 'replica b serves from the stored CA');
  t.equal(ra.cert, rb.cert, 'and the same serving certificate');
  t.equal(splitPems(stored?.bundle).length, 1, 'one CA in the bundle');
  t.same(new Set(await caBundles('meshguard-race')), new Set([Buffer.from(stored?.bundle ?? '').toString('base64')]), 'every webhook carries that one caBundle');
  const adopted = [...ra.lines, ...rb.lines].filter((l) => l.includes('adopting it')).length;
  const written = [...ra.lines, ...rb.lines].filter((l) => l === 'self-managed certificates written').length;
  t.equal(written, 1, 'exactly one replica wrote the Secret');
  t.comment(adopted > 0 ? 'the race happened: one replica lost the create with 409 and adopted the winner\'s Secret' : 'one replica read the Secret after the other had written it');
  t.comment(`whole file: ${((performance.now() - T0) / 1000).toFixed(1)} s`);
});
