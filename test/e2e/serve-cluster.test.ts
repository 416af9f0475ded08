// `meshguard serve` (the real CLI, in its own process) with what needs the cluster turned on,
// against the real apiserver: the reconciler (Lease-led, degraded readiness while Istio's CRDs are
// missing), the periodic scan and their metrics, the Lease released on SIGTERM, dry-run, and
// self-managed certificates loaded from the Secret serve itself writes. First, without any
// cluster: the refusal to start when one of these is asked for without cluster access.
//
// meshguard is not registered as a webhook except in the last scenario: the reconciler and the
// scan do not depend on admission, and the namespaces planted here (istio-injection=disabled)
// are exactly what meshguard would deny.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { splitPems } from '../../src/jobs/certs/plan.ts';
import { storedFrom } from '../../src/jobs/certs/secret.ts';
import { webhookConfigurations } from '../../src/policies/webhook-config.ts';
import { DEFAULT_EXEMPT_NAMESPACES } from '../../src/config/schema.ts';
import { RULES } from '../../src/policies/registry.ts';
import { runCli, startServe, type ServeProcess } from '../helpers/process.ts';
import { FIXTURES } from '../helpers/review.ts';
import { get, type HttpResult } from '../helpers/server.ts';
import { startCluster } from './helpers/cluster.ts';
import { applyIstioCrds } from './helpers/istio.ts';
import { eventually, sleep } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries
const T0 = performance.now();

// ------------------------------------------------------------------ no cluster at all ---

await t.test('without cluster access, --reconcile, --scan-interval and selfManagedCerts refuse to start (exit 2, naming --kubeconfig and --in-cluster)', async (t) => {
  t.setTimeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'meshguard-serve-nocluster-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const smc = join(dir, 'smc.json');
  writeFileSync(smc, JSON.stringify({ selfManagedCerts: { enabled: true } }));
  const cases: [string[], string][] = [
    [['--reconcile'], 'reconciler.enabled (--reconcile)'],
    [['--scan-interval', '5'], 'scan.intervalSeconds (--scan-interval)'],
    [['--config', smc], 'selfManagedCerts.enabled'],
  ];
  for (const [flags, what] of cases) {
    const t0 = performance.now();
    const r = await runCli(['serve', ...flags, '--port', '0', '--cert-dir', join(dir, 'certs'), '--log-level', 'info']);
    t.equal(r.code, 2, `${flags.join(' ')}: exit 2 (${r.stderr.trim()})`);
    t.match(r.stderr, what, `${flags.join(' ')}: names what needs the cluster`);
    t.match(r.stderr, /needs cluster access: give --kubeconfig FILE or --in-cluster/, `${flags.join(' ')}: names --kubeconfig and --in-cluster`);
    t.notMatch(r.stderr, 'serving on', 'and never served');
    t.comment(`${flags.join(' ')}: exit ${r.code} after ${Math.round(performance.now() - t0)} ms: ${r.stderr.trim()}`);
  }
});

// ---------------------------------------------------------------------- the cluster ---

const cluster = await startCluster();
t.teardown(() => cluster.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n');

const DRAIN_S = 2;
const KINDS = 'sidecars.networking.istio.io,peerauthentications.security.istio.io,authorizationpolicies.security.istio.io,serviceentries.networking.istio.io';
const FOUR = ['AuthorizationPolicy/allow-same-namespace', 'AuthorizationPolicy/default-deny', 'PeerAuthentication/default', 'Sidecar/default'];
const MISSING_CRDS = ['sidecars.networking.istio.io', 'serviceentries.networking.istio.io', 'peerauthentications.security.istio.io', 'authorizationpolicies.security.istio.io'];

interface Serve {
  readonly p: ServeProcess;
  readonly ca: string;
  /** The Lease holder identity this process uses (hostname_pid). */
  readonly identity: string;
}

const running: ServeProcess[] = [];
t.teardown(async () => {
  for (const p of running) await p.stop('SIGKILL');
});

/** `meshguard serve --kubeconfig <admin>` on port 0 with generated certificates in a fresh directory. */
async function serve(name: string, flags: readonly string[], config: Record<string, unknown> = { server: { drainSeconds: DRAIN_S } }): Promise<Serve> {
  const certDir = join(cluster.dir, `${name}-certs`);
  mkdirSync(certDir, { recursive: true });
  const configFile = join(cluster.dir, `${name}-config.json`);
  writeFileSync(configFile, JSON.stringify(config));
  const p = await startServe(['--kubeconfig', cluster.adminKubeconfig, '--config', configFile, '--port', '0', '--cert-dir', certDir, '--log-level', 'info', ...flags], { timeoutMs: 60_000 });
  running.push(p);
  return { p, ca: readFileSync(join(certDir, 'ca.crt'), 'utf8'), identity: `${hostname()}_${p.child.pid}` };
}

const readyz = (s: Serve): Promise<HttpResult> => get({ url: s.p.url, ca: s.ca }, '/readyz');

/** Samples of a metric from the Prometheus text exposition: labels and value. */
async function samples(s: Serve, name: string): Promise<{ labels: Record<string, string>; value: number }[]> {
  const text = (await get({ url: s.p.url, ca: s.ca }, '/metrics')).text;
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the series with exactly these labels, or undefined when it is not exposed. */
async function metric(s: Serve, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const want = JSON.stringify(Object.entries(labels).sort());
  return (await samples(s, name)).find((x) => JSON.stringify(Object.entries(x.labels).sort()) === want)?.value;
}

async function getJson(args: string[]): Promise<any | undefined> {
  const r = await cluster.kubectl(['get', ...args, '-o', 'json']);
  return r.code === 0 ? JSON.parse(r.stdout) : undefined;
}

const holder = async (): Promise<string | undefined> => (await getJson(['lease', 'meshguard-reconciler', '-n', 'meshguard']))?.spec.holderIdentity ?? '';

/** `kind/name` of the Istio objects in a namespace. */
async function objects(ns: string): Promise<string[]> {
  const r = await cluster.kubectl(['get', KINDS, '-n', ns, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  const items = (JSON.parse(r.stdout) as { items: { kind: string; metadata: { name: string } }[] }).items;
  return items.map((i) => `${i.kind}/${i.metadata.name}`).sort();
}

const namespace = (name: string, injection: string): string => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'istio-injection': injection } } });

const exitOf = (p: ServeProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  p.child.exitCode !== null || p.child.signalCode !== null
    ? Promise.resolve({ code: p.child.exitCode, signal: p.child.signalCode })
    : new Promise((r) => p.child.once('exit', (code, signal) => r({ code, signal })));

/** The JSON log lines (stderr) whose msg starts with `prefix`. */
const logged = (p: ServeProcess, prefix: string): string[] =>
  p
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '')
    .filter((m) => m.startsWith(prefix));

let a: Serve;
let b: Serve;

t.test('serve --reconcile --scan-interval 5 without the Istio CRDs: /readyz 200 with degraded.reconciler, the leader gauge at 1, the Lease names this process', async (t) => {
  t.setTimeout(120_000);
  a = await serve('a', ['--reconcile', '--scan-interval', '5']);
  t.match(a.p.stderr(), /serving on https:\/\/127\.0\.0\.1:\d+ in enforce mode \(certificate [^)]*; reconciler on, scan every 5 s\)/, 'the start line says what runs');
  const found = await eventually(async () => (await readyz(a)).json().degraded?.reconciler !== undefined, 20_000);
  t.ok(found, 'the reconciler reports the missing CRDs');
  const r = await readyz(a);
  t.equal(r.status, 200, 'readiness stays 200: admission is unaffected');
  const body = r.json();
  t.equal(body.status, 'ready', 'status ready');
  t.same(Object.keys(body.degraded), ['reconciler'], 'only the reconciler is degraded');
  t.match(body.degraded.reconciler, /^reconciler: Istio CRDs not installed \(.*\); no hardening resources are reconciled$/, 'says the Istio CRDs are not installed');
  for (const crd of MISSING_CRDS) t.match(body.degraded.reconciler, crd, `names ${crd}`);
  t.comment(`/readyz: ${r.text}`);
  t.ok(await eventually(async () => (await metric(a, 'meshguard_reconciler_leader')) === 1, 20_000), 'meshguard_reconciler_leader 1');
  t.equal(await holder(), a.identity, `the Lease meshguard/meshguard-reconciler is held by this process (${a.identity})`);
});

t.test('with the CRDs: the reconciler hardens the meshed namespace, readiness loses the degraded entry, the actions and the scan show in /metrics', async (t) => {
  t.setTimeout(180_000);
  await applyIstioCrds(cluster);
  const est = await cluster.kubectl(['wait', '--for=condition=established', '--timeout=60s', 'crd', '--all']);
  t.equal(est.code, 0, `the CRDs are established ${est.stderr}`);
  const planted = Date.now() / 1000;
  await cluster.applyYaml(`${namespace('meshed-a', 'enabled')}\n---\n${namespace('planted-off', 'disabled')}\n`);

  // The reconciler looks for the CRDs again every 30 s.
  const t0 = performance.now();
  const created = await eventually(async () => (await objects('meshed-a')).length === FOUR.length, 60_000, 500);
  t.ok(created, 'the managed resources appear in the meshed namespace');
  t.comment(`the four resources appeared ${Math.round(performance.now() - t0)} ms after the CRDs and namespaces were applied`);
  t.same(await objects('meshed-a'), FOUR, 'Sidecar default, PeerAuthentication default, AuthorizationPolicy default-deny and allow-same-namespace');
  t.same((await getJson(['sidecar', 'default', '-n', 'meshed-a']))?.spec, { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, 'the Sidecar is REGISTRY_ONLY');
  t.same((await getJson(['peerauthentication', 'default', '-n', 'meshed-a']))?.spec, { mtls: { mode: 'STRICT' } }, 'the PeerAuthentication is STRICT');
  t.same(await objects('planted-off'), [], 'the unmeshed namespace gets nothing');

  const r = await readyz(a);
  t.equal(r.status, 200, '/readyz 200');
  t.same(r.json(), { status: 'ready' }, 'no degraded entry any more');
  t.equal(await metric(a, 'meshguard_reconciler_actions_total', { action: 'create', kind: 'Sidecar', outcome: 'applied' }), 1, 'actions_total{create, Sidecar, applied} 1');
  t.equal(await metric(a, 'meshguard_reconciler_actions_total', { action: 'create', kind: 'PeerAuthentication', outcome: 'applied' }), 1, 'actions_total{create, PeerAuthentication, applied} 1');
  t.equal(await metric(a, 'meshguard_reconciler_actions_total', { action: 'create', kind: 'AuthorizationPolicy', outcome: 'applied' }), 2, 'actions_total{create, AuthorizationPolicy, applied} 2: default-deny and allow-same-namespace');

  const violation = { rule: 'namespace-mesh-enrollment', namespace: 'planted-off' };
  const scanned = await eventually(async () => (await metric(a, 'meshguard_scan_violations', violation)) === 1, 30_000, 500);
  t.ok(scanned, 'meshguard_scan_violations{rule="namespace-mesh-enrollment",namespace="planted-off"} 1');
  const last = (await metric(a, 'meshguard_scan_last_completed_timestamp_seconds')) ?? 0;
  const now = Date.now() / 1000;
  t.ok(last >= planted && last <= now + 1, `the last scan completed after the namespace was planted (${(now - last).toFixed(1)} s ago)`);
  t.same(
    (await samples(a, 'meshguard_scan_violations')).filter((s) => s.labels['namespace'] === 'meshed-a'),
    [],
    'the hardened meshed namespace has no violation series',
  );
  t.ok(logged(a.p, 'scan: completed').length >= 1, 'the scan logs its rounds');
});

t.test('SIGTERM: readiness false while draining, exit 0 within drainSeconds plus a few seconds, the Lease released; a second serve --reconcile takes over at once', async (t) => {
  t.setTimeout(120_000);
  const t0 = performance.now();
  a.p.child.kill('SIGTERM');
  const exit = exitOf(a.p);
  // The signal is handled on the process's next event-loop turn, so a request sent right after
  // kill() may still be answered 200: poll, well within drainSeconds.
  let draining: HttpResult | undefined;
  const notReady = await eventually(async () => (draining = await readyz(a)).status === 503, 1000, 50);
  t.ok(notReady && a.p.child.exitCode === null, `/readyz is 503 within ${Math.round(performance.now() - t0)} ms of SIGTERM, while still serving`);
  t.same(draining?.json().failing, { shutdown: 'shutting down' }, 'failing: shutdown');
  const { code, signal } = await exit;
  const took = performance.now() - t0;
  t.equal(code, 0, `exit 0 (signal ${signal})`);
  t.ok(took >= DRAIN_S * 1000 - 100, `served through drainSeconds (${DRAIN_S} s)`);
  t.ok(took < (DRAIN_S + 5) * 1000, `and exited within drainSeconds + 5 s (${Math.round(took)} ms)`);
  t.comment(`SIGTERM to exit: ${Math.round(took)} ms (drainSeconds ${DRAIN_S})`);
  const lease = await getJson(['lease', 'meshguard-reconciler', '-n', 'meshguard']);
  t.equal(lease?.spec.holderIdentity ?? '', '', 'the Lease has no holder: released');
  t.same(logged(a.p, 'leader election: released the lease').length, 1, 'and the release is logged');

  const t1 = performance.now();
  b = await serve('b', ['--reconcile']);
  const t2 = performance.now();
  const held = await eventually(async () => (await holder()) === b.identity, 15_000, 100);
  const after = performance.now() - t2;
  t.ok(held, `the second process holds the Lease (${b.identity})`);
  // The Lease lasts 15 s (default): taking over sooner means it did not wait out the old holder.
  t.ok(after < 5000, `${Math.round(after)} ms after it started serving, well within the 15 s lease duration`);
  t.comment(`second serve: ${Math.round(t2 - t1)} ms from spawn to serving, Lease held ${Math.round(after)} ms after that`);
  t.ok(await eventually(async () => (await metric(b, 'meshguard_reconciler_leader')) === 1, 10_000), 'its leader gauge is 1');
  t.same(logged(b.p, 'leader election: became the leader'), ['leader election: became the leader'], 'it logs becoming the leader once');
  t.match(b.p.stderr(), '"why":"the lease was released"', 'it took the Lease because it was released');
});

t.test('serve --reconcile --reconcile-dry-run: a new meshed namespace gets nothing; the log says what would be created', async (t) => {
  t.setTimeout(120_000);
  b.p.child.kill('SIGTERM');
  t.equal((await exitOf(b.p)).code, 0, 'the real reconciler stopped cleanly');
  t.equal(await holder(), '', 'and released the Lease');
  const c = await serve('c', ['--reconcile', '--reconcile-dry-run']);
  t.match(c.p.stderr(), 'reconciler on (dry-run)', 'the start line says dry-run');
  t.ok(await eventually(async () => (await holder()) === c.identity, 15_000), 'the dry-run process leads');
  await cluster.applyYaml(namespace('dry-ns', 'enabled'));
  const want = [
    'reconciler (dry-run): would create AuthorizationPolicy dry-ns/allow-same-namespace (built-in:allow-same-namespace)',
    'reconciler (dry-run): would create PeerAuthentication dry-ns/default (built-in:strict-mtls)',
    'reconciler (dry-run): would create Sidecar dry-ns/default (built-in:registry-only-egress)',
    'reconciler (dry-run): would create AuthorizationPolicy dry-ns/default-deny (built-in:default-deny)',
  ];
  const dryLines = (): string[] => logged(c.p, 'reconciler (dry-run): would').filter((l) => l.includes('dry-ns/'));
  const seen = await eventually(async () => dryLines().length >= want.length, 30_000);
  t.ok(seen, 'the plan is logged on stderr');
  t.same(dryLines(), want, 'one line per resource, in apply order');
  t.comment(dryLines().join('\n'));
  await sleep(2000);
  t.same(await objects('dry-ns'), [], 'nothing was created');
  t.equal(await metric(c, 'meshguard_reconciler_actions_total', { action: 'create', kind: 'Sidecar', outcome: 'dry-run' }), 1, 'actions_total{create, Sidecar, dry-run} 1');
  t.equal(await metric(c, 'meshguard_reconciler_actions_total', { action: 'create', kind: 'Sidecar', outcome: 'applied' }), undefined, 'and nothing applied');
  c.p.child.kill('SIGTERM');
  t.equal((await exitOf(c.p)).code, 0, 'the dry-run process exits 0 on SIGTERM');
});

t.test('self-managed certificates through serve: the Secret is created, its certificate is served, the caBundle is patched, the apiserver calls meshguard', async (t) => {
  t.setTimeout(120_000);
  const NS = 'mg-certs';
  const SECRET = 'mg-serving-tls';
  const WEBHOOKS = 'meshguard-smc';
  await cluster.applyYaml(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NS}\n`);
  const port = await freePort();
  // Registered first, as the chart renders them: no caBundle. failurePolicy Fail: nothing passes
  // until the apiserver trusts the certificate meshguard serves.
  const { mutating, validating } = webhookConfigurations({
    name: WEBHOOKS,
    client: { url: `https://127.0.0.1:${port}` },
    failurePolicy: 'Fail',
    timeoutSeconds: 5,
    exemptNamespaces: DEFAULT_EXEMPT_NAMESPACES,
    meshguardNamespace: NS,
    rules: RULES,
  });
  await cluster.applyYaml(`${JSON.stringify(mutating)}\n---\n${JSON.stringify(validating)}\n`);
  t.teardown(() => cluster.kubectl(['delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', WEBHOOKS]));
  const caBundles = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
      for (const w of ((await getJson([kind, WEBHOOKS]))?.webhooks ?? []) as { clientConfig: { caBundle?: string } }[]) out.push(w.clientConfig.caBundle ?? '');
    }
    return out;
  };
  const before = await caBundles();
  t.ok(before.length >= 2 && before.every((b) => b === ''), `${before.length} webhooks registered without a caBundle`);
  t.equal(await getJson(['secret', SECRET, '-n', NS]), undefined, 'no Secret yet');

  const certDir = join(cluster.dir, 'smc-certs');
  const configFile = join(cluster.dir, 'smc-config.json');
  writeFileSync(configFile, JSON.stringify({ meshguardNamespace: NS, selfManagedCerts: { enabled: true, secretName: SECRET, webhookConfigurationName: WEBHOOKS } }));
  const t0 = performance.now();
  const p = await startServe(['--kubeconfig', cluster.adminKubeconfig, '--config', configFile, '--port', String(port), '--cert-dir', certDir, '--log-level', 'info'], { timeoutMs: 60_000 });
  running.push(p);
  t.comment(`serve with self-managed certificates up in ${Math.round(performance.now() - t0)} ms`);
  t.match(p.stderr(), `(certificate ${join(certDir, 'tls.crt')}; self-managed certificates)`, 'serves the file the manager wrote');
  t.notMatch(p.stderr(), 'generated a self-signed CA', 'no locally generated certificate');

  const secret = await getJson(['secret', SECRET, '-n', NS]);
  t.ok(secret !== undefined, `the Secret ${NS}/${SECRET} was created`);
  t.equal(secret?.type, 'kubernetes.io/tls', 'of type kubernetes.io/tls');
  const stored = storedFrom(secret);
  t.ok(stored.cert !== undefined && stored.caCert !== undefined && stored.bundle !== undefined, 'with tls.crt, ca.crt and ca-bundle.crt');
  const ca = new X509Certificate(stored.caCert as string);
  const leaf = new X509Certificate(stored.cert as string);

  const served = await new Promise<X509Certificate>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: stored.caCert, servername: `meshguard.${NS}.svc` }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (c === undefined) reject(new Error('no peer certificate'));
      else resolve(c);
    });
    s.on('error', reject);
  });
  t.ok(served.raw.equals(leaf.raw), `the served certificate is the Secret's tls.crt (${served.fingerprint256})`);
  t.ok(served.checkIssued(ca) && served.verify(ca.publicKey), "signed by the Secret's ca.crt (and trusted with it alone)");
  t.ok(served.checkHost(`meshguard.${NS}.svc`) !== undefined, `covers meshguard.${NS}.svc`);

  const bundles = await caBundles();
  t.same(new Set(bundles), new Set([Buffer.from(stored.bundle as string).toString('base64')]), "every webhook carries the Secret's ca-bundle.crt");
  const pems = splitPems(Buffer.from(bundles[0] ?? '', 'base64').toString('utf8'));
  t.equal(pems.length, 1, 'one CA in the caBundle');
  t.ok(new X509Certificate(pems[0] ?? '').raw.equals(ca.raw), "and it is the Secret's ca.crt");
  t.equal(pems[0]?.trim(), stored.caCert?.replace(/\r\n/g, '\n').trim(), 'the same PEM text (trailing newline aside)');

  // The apiserver now calls meshguard over TLS with that caBundle (failurePolicy Fail).
  const ok = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: namespace('smc-meshed', 'enabled') });
  t.equal(ok.code, 0, `a compliant namespace passes both webhooks: ${ok.stderr}`);
  const denied = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: namespace('smc-off', 'disabled') });
  t.not(denied.code, 0, 'a violating namespace is denied');
  t.match(denied.stderr, 'admission webhook "validate.meshguard.dev" denied the request', 'by meshguard, reached through the patched caBundle');
  t.match(denied.stderr, '[namespace-mesh-enrollment]', 'for namespace-mesh-enrollment');

  p.child.kill('SIGTERM');
  t.equal((await exitOf(p)).code, 0, 'exit 0 on SIGTERM');
  t.comment(`whole file: ${((performance.now() - T0) / 1000).toFixed(1)} s`);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
