// The reconciler against the real apiserver with minimal Istio CRDs: missing CRDs, new meshed
// namespaces, hand deletes and edits, conflicts with unmanaged objects, leaving the mesh, deleted
// namespaces, leader election across processes (clean stop and crash), meshguard's own webhook
// admitting what the reconciler writes, and dry-run.
//
// Most scenarios run WITHOUT meshguard's webhooks registered: taking a namespace out of the mesh
// is exactly what the namespace rules deny (even to admins, see namespaces.test.ts), and these
// tests are about the reconciler, not admission. A namespace relabelled without the webhook
// stands for one changed in audit mode or before meshguard was installed. One scenario then
// registers the webhooks in enforce mode to show that the reconciler's objects pass meshguard's
// own Istio rules.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';
import { startReconciler, type ReconcilerHandle } from '../../src/jobs/reconciler/index.ts';
import { FIXTURES, ROOT } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { applyIstioCrds } from './helpers/istio.ts';
import { eventually, startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
t.teardown(() => cluster.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n');

const LEASE_S = 4;
const RENEW_S = 1;
const BOUND_MS = 15_000;
const GOOGLE = {
  namespaces: [],
  spec: { hosts: ['google.com'], ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], location: 'MESH_EXTERNAL', resolution: 'DNS' },
};
const OVERRIDES = {
  'reconciler.enabled': true,
  'reconciler.leaseDurationSeconds': LEASE_S,
  'reconciler.renewSeconds': RENEW_S,
  'reconciler.resyncSeconds': 30,
  'reconciler.serviceEntries': { 'allow-google': GOOGLE },
};
const MANAGED = 'app.kubernetes.io/managed-by=meshguard';
const KINDS = 'sidecars.networking.istio.io,peerauthentications.security.istio.io,authorizationpolicies.security.istio.io,serviceentries.networking.istio.io';

interface Logged {
  lines: string[];
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
}
function logger(): Logged {
  const lines: string[] = [];
  return { lines, log: { info: (_o, m) => void lines.push(m), warn: (_o, m) => void lines.push(m) } };
}

function inProcess(identity: string, extra: Record<string, unknown> = {}): { handle: ReconcilerHandle; lines: string[] } {
  const { lines, log } = logger();
  const config = loadConfig({ overrides: { ...OVERRIDES, ...extra }, ruleIds: RULE_IDS });
  // Pages of 2 objects: the relists after each resync must read every page.
  const handle = startReconciler({ config, kc: loadKubeConfig({ kubeconfig: cluster.adminKubeconfig, inCluster: false }), log, identity, crdRecheckMs: 500, pageSize: 2 });
  return { handle, lines };
}

/** `kind/name` of the objects in a namespace, with or without the managed label. */
async function objects(ns: string, selector?: string): Promise<string[]> {
  const r = await cluster.kubectl(['get', KINDS, '-n', ns, ...(selector !== undefined ? ['-l', selector] : []), '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  const items = (JSON.parse(r.stdout) as { items: { kind: string; metadata: { name: string } }[] }).items;
  return items.map((i) => `${i.kind}/${i.metadata.name}`).sort();
}

async function getJson(args: string[]): Promise<any | undefined> {
  const r = await cluster.kubectl(['get', ...args, '-o', 'json']);
  return r.code === 0 ? JSON.parse(r.stdout) : undefined;
}

const FIVE = ['AuthorizationPolicy/allow-same-namespace', 'AuthorizationPolicy/default-deny', 'PeerAuthentication/default', 'ServiceEntry/allow-google', 'Sidecar/default'];

async function waitFor(what: () => Promise<boolean>): Promise<{ ok: boolean; ms: number }> {
  const t0 = performance.now();
  const ok = await eventually(what, BOUND_MS, 100);
  return { ok, ms: Math.round(performance.now() - t0) };
}

const a = inProcess('replica-a');

t.test('without the Istio CRDs: a readiness problem and a log line; with them, reconciling starts', async (t) => {
  const found = await eventually(async () => a.handle.problem() !== undefined, BOUND_MS, 50);
  t.ok(found, 'a problem is reported');
  t.match(a.handle.problem(), /^reconciler: Istio CRDs not installed \(sidecars\.networking\.istio\.io, .*\); no hardening resources are reconciled$/);
  t.ok(a.lines.some((l) => l.startsWith('reconciler: Istio CRDs not installed')), 'and logged');
  t.comment(`problem: ${a.handle.problem()}`);
  await applyIstioCrds(cluster);
  const est = await cluster.kubectl(['wait', '--for=condition=established', '--timeout=60s', 'crd', '--all']);
  t.equal(est.code, 0, est.stderr);
  const cleared = await waitFor(async () => a.handle.problem() === undefined);
  t.ok(cleared.ok, 'the problem clears once the CRDs are served');
  t.ok(a.handle.isLeader(), 'the only replica leads');
});

t.test('a new meshed namespace gets its managed resources within a bounded time', async (t) => {
  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels:\n    istio-injection: enabled\n');
  const w = await waitFor(async () => (await objects('team-a', MANAGED)).length === FIVE.length);
  t.ok(w.ok, `created within ${BOUND_MS / 1000} s`);
  t.comment(`the five managed resources appeared after ${w.ms} ms`);
  t.same(await objects('team-a', MANAGED), FIVE);
  t.same((await getJson(['sidecar', 'default', '-n', 'team-a']))?.spec, { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } });
  t.same((await getJson(['peerauthentication', 'default', '-n', 'team-a']))?.spec, { mtls: { mode: 'STRICT' } });
  const deny = await getJson(['authorizationpolicy', 'default-deny', '-n', 'team-a']);
  t.same(deny?.spec ?? {}, {}, 'default-deny has an empty spec');
  t.same(deny?.metadata.labels, { 'app.kubernetes.io/managed-by': 'meshguard', 'meshguard.dev/managed': 'true' });
  t.same((await getJson(['serviceentry', 'allow-google', '-n', 'team-a']))?.spec, GOOGLE.spec);
  const plain = await cluster.kubectl(['create', 'namespace', 'plain']);
  t.equal(plain.code, 0);
  t.same(await objects('default'), [], 'the unmeshed default namespace gets nothing');
});

t.test('a managed resource deleted by hand comes back', async (t) => {
  const before = (await getJson(['peerauthentication', 'default', '-n', 'team-a']))?.metadata.uid;
  t.equal((await cluster.kubectl(['delete', 'peerauthentication', 'default', '-n', 'team-a'])).code, 0);
  const w = await waitFor(async () => {
    const uid = (await getJson(['peerauthentication', 'default', '-n', 'team-a']))?.metadata.uid;
    return uid !== undefined && uid !== before;
  });
  t.ok(w.ok, 'recreated');
  t.comment(`recreated after ${w.ms} ms`);
});

t.test('a managed resource edited by hand is restored, and the change is logged', async (t) => {
  const p = await cluster.kubectl(['patch', 'sidecar', 'default', '-n', 'team-a', '--type', 'merge', '-p', '{"spec":{"outboundTrafficPolicy":{"mode":"ALLOW_ANY"}}}']);
  t.equal(p.code, 0, p.stderr);
  const w = await waitFor(async () => (await getJson(['sidecar', 'default', '-n', 'team-a']))?.spec.outboundTrafficPolicy.mode === 'REGISTRY_ONLY');
  t.ok(w.ok, 'restored');
  t.comment(`restored after ${w.ms} ms`);
  const line = a.lines.find((l) => l.startsWith('reconciler: restored Sidecar team-a/default'));
  t.equal(line, 'reconciler: restored Sidecar team-a/default, which was changed by hand: spec.outboundTrafficPolicy.mode: "ALLOW_ANY" -> "REGISTRY_ONLY"');
});

t.test('an unmanaged resource with a managed name is left alone and reported', async (t) => {
  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n');
  const mine = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'default-deny', namespace: 'team-b', labels: { team: 'b' } },
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }] }] },
  };
  await cluster.applyYaml(JSON.stringify(mine));
  const before = await getJson(['authorizationpolicy', 'default-deny', '-n', 'team-b']);
  t.equal((await cluster.kubectl(['label', 'namespace', 'team-b', 'istio-injection=enabled'])).code, 0);
  const w = await waitFor(async () => (await objects('team-b', MANAGED)).length === FIVE.length - 1);
  t.ok(w.ok, 'the other managed resources are created');
  t.same(await objects('team-b', MANAGED), FIVE.filter((k) => k !== 'AuthorizationPolicy/default-deny'));
  const after = await getJson(['authorizationpolicy', 'default-deny', '-n', 'team-b']);
  t.equal(after?.metadata.resourceVersion, before?.metadata.resourceVersion, 'the unmanaged policy was not written');
  t.same(after?.spec, mine.spec);
  const reported = await eventually(async () => a.lines.some((l) => l.includes('conflict: leave AuthorizationPolicy team-b/default-deny alone')), 5000);
  t.ok(reported, 'the conflict is logged');
});

t.test('a namespace that leaves the mesh loses its managed resources; unmanaged ones stay', async (t) => {
  await cluster.applyYaml(
    JSON.stringify({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'mine', namespace: 'team-a' }, spec: { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] } }),
  );
  t.equal((await cluster.kubectl(['label', 'namespace', 'team-a', 'istio-injection-'])).code, 0);
  const w = await waitFor(async () => (await objects('team-a', MANAGED)).length === 0);
  t.ok(w.ok, 'managed resources removed');
  t.comment(`removed after ${w.ms} ms`);
  t.same(await objects('team-a'), ['AuthorizationPolicy/mine'], 'only the unmanaged policy remains');
});

t.test('a deleted namespace leaves no managed resource behind', async (t) => {
  // No controller-manager runs here: the namespace stays Terminating, as it does in a real
  // cluster until its contents are gone. The reconciler removes its own objects right away.
  t.equal((await cluster.kubectl(['delete', 'namespace', 'team-b', '--wait=false'])).code, 0);
  const w = await waitFor(async () => (await objects('team-b', MANAGED)).length === 0);
  t.ok(w.ok, 'managed resources removed from the terminating namespace');
  t.same(await objects('team-b'), ['AuthorizationPolicy/default-deny'], 'the unmanaged policy is left to the namespace controller');
});

// ------------------------------------------------------------------- leader election ---

const RUNNER = `
import { startReconciler } from ${JSON.stringify(join(ROOT, 'src/jobs/reconciler/index.ts'))};
import { loadKubeConfig } from ${JSON.stringify(join(ROOT, 'src/kube/client.ts'))};
import { loadConfig } from ${JSON.stringify(join(ROOT, 'src/config/load.ts'))};
import { RULE_IDS } from ${JSON.stringify(join(ROOT, 'src/policies/registry.ts'))};
const line = (level, o, msg) => process.stdout.write(JSON.stringify({ level, ...o, msg }) + '\\n');
const log = { info: (o, m) => line('info', o, m), warn: (o, m) => line('warn', o, m) };
const config = loadConfig({ overrides: JSON.parse(process.env.MG_OVERRIDES), ruleIds: RULE_IDS });
const kc = loadKubeConfig({ kubeconfig: process.env.MG_KUBECONFIG, inCluster: false });
const h = startReconciler({ config, kc, log, identity: process.env.MG_IDENTITY });
// serve's HTTPS server keeps the process alive; here a timer does (the reconciler's are unref'd).
const alive = setInterval(() => {}, 60_000);
process.once('SIGTERM', async () => { await h.stop(); clearInterval(alive); process.exit(0); });
`;

interface Proc {
  readonly child: ChildProcess;
  out(): string;
}

function spawnReplica(identity: string): Proc {
  const child = spawn(process.execPath, ['--input-type=module', '-e', RUNNER], {
    env: { ...process.env, MG_OVERRIDES: JSON.stringify(OVERRIDES), MG_KUBECONFIG: cluster.adminKubeconfig, MG_IDENTITY: identity },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, out: () => out };
}

const exited = (p: Proc): Promise<void> => (p.child.exitCode !== null || p.child.signalCode !== null ? Promise.resolve() : new Promise((r) => p.child.once('exit', () => r())));
let replicaC: Proc | undefined;
t.teardown(() => void replicaC?.child.kill('SIGKILL'));
const holder = async (): Promise<string> => (await getJson(['lease', 'meshguard-reconciler', '-n', 'meshguard']))?.spec.holderIdentity ?? '';

t.test('replicas elect one leader; a follower takes over after a clean stop and after a crash', async (t) => {
  const b = spawnReplica('replica-b');
  t.teardown(() => void b.child.kill('SIGKILL'));
  const following = await eventually(async () => b.out().includes('"leader election: following"'), BOUND_MS);
  t.ok(following, 'the second replica follows');
  t.equal(await holder(), 'replica-a', 'the Lease names the first replica');
  t.notOk(b.out().includes('became the leader'), 'only one leader');

  // Clean stop: the leader clears the holder, the follower takes the Lease at its next round.
  const t0 = performance.now();
  await a.handle.stop();
  const clean = await waitFor(async () => (await holder()) === 'replica-b');
  t.ok(clean.ok, 'replica-b leads after replica-a stopped');
  if (!clean.ok) t.comment(`replica-b printed:\n${b.out()}`);
  t.ok(performance.now() - t0 < (LEASE_S + RENEW_S) * 1000 + 2000, 'within the lease period');
  t.comment(`clean stop: replica-b took over after ${Math.round(performance.now() - t0)} ms (lease ${LEASE_S} s, renew ${RENEW_S} s)`);
  t.ok(a.lines.includes('leader election: released the lease'));

  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-c\n  labels:\n    istio-injection: enabled\n');
  const served = await waitFor(async () => (await objects('team-c', MANAGED)).length === FIVE.length);
  t.ok(served.ok, 'the new leader reconciles');

  // Crash: SIGKILL, no release. The follower waits out the lease, then takes over.
  const c = spawnReplica('replica-c');
  replicaC = c;
  t.ok(await eventually(async () => c.out().includes('"leader election: following"'), BOUND_MS), 'a third replica follows');
  b.child.kill('SIGKILL');
  await exited(b);
  const t1 = performance.now();
  const crash = await waitFor(async () => (await holder()) === 'replica-c');
  t.ok(crash.ok, 'replica-c leads after replica-b was killed');
  const took = performance.now() - t1;
  t.ok(took < (LEASE_S + RENEW_S) * 1000 + 2000, 'within the lease period plus one retry');
  t.comment(`crash: replica-c took over after ${Math.round(took)} ms (lease ${LEASE_S} s, renew ${RENEW_S} s)`);
  const lease = await getJson(['lease', 'meshguard-reconciler', '-n', 'meshguard']);
  t.equal(lease?.spec.leaseTransitions, 2, 'two transitions: b took over from a, c from b');

  t.equal((await cluster.kubectl(['delete', 'sidecar', 'default', '-n', 'team-c'])).code, 0);
  t.ok((await waitFor(async () => (await objects('team-c', MANAGED)).includes('Sidecar/default'))).ok, 'and the new leader reconciles');
});

t.test("meshguard's own webhook (enforce mode) admits everything the reconciler writes", async (t) => {
  const mg = await startMeshguard(cluster);
  t.teardown(() => mg.stop());
  await mg.register('Fail');
  const r = await cluster.kubectl(['create', 'namespace', 'via-webhook'], { as: 'tenant' });
  t.equal(r.code, 0, r.stderr);
  const w = await waitFor(async () => (await objects('via-webhook', MANAGED)).length === FIVE.length);
  t.ok(w.ok, 'the mutated (meshed) namespace gets its five resources through the webhook');
  const hand = await cluster.kubectl(['patch', 'peerauthentication', 'default', '-n', 'via-webhook', '--type', 'merge', '-p', '{"spec":{"mtls":{"mode":"PERMISSIVE"}}}'], { as: 'tenant' });
  t.not(hand.code, 0, 'a tenant cannot weaken it through the webhook in the first place');
  t.match(hand.stderr, '[peer-authentication-strict]');
  await cluster.kubectl(['delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'meshguard']);
});

t.test('dry-run logs what it would do and creates nothing', async (t) => {
  // Stop the real leader first (SIGTERM: a clean stop releases the Lease), so that nothing but
  // the dry-run replica could create anything.
  replicaC?.child.kill('SIGTERM');
  if (replicaC !== undefined) await exited(replicaC);
  t.equal(await holder(), '', 'the last real replica released the Lease');
  const dry = inProcess('dry-a', { 'reconciler.dryRun': true, 'reconciler.leaseName': 'meshguard-dry-run' });
  t.teardown(() => dry.handle.stop());
  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dry-ns\n  labels:\n    istio-injection: enabled\n');
  const logged = await eventually(async () => dry.lines.some((l) => l.includes('would create AuthorizationPolicy dry-ns/default-deny')), BOUND_MS);
  t.ok(logged, 'the plan is logged');
  t.same(
    dry.lines.filter((l) => l.includes('dry-ns')),
    [
      'reconciler (dry-run): would create ServiceEntry dry-ns/allow-google (config:reconciler.serviceEntries.allow-google)',
      'reconciler (dry-run): would create AuthorizationPolicy dry-ns/allow-same-namespace (built-in:allow-same-namespace)',
      'reconciler (dry-run): would create PeerAuthentication dry-ns/default (built-in:strict-mtls)',
      'reconciler (dry-run): would create Sidecar dry-ns/default (built-in:registry-only-egress)',
      'reconciler (dry-run): would create AuthorizationPolicy dry-ns/default-deny (built-in:default-deny)',
    ],
    'in apply order',
  );
  t.comment(dry.lines.filter((l) => l.includes('dry-ns')).join('\n'));
  t.same(await objects('dry-ns'), [], 'nothing was created');
  t.ok(dry.handle.isLeader(), 'the dry-run replica did lead (it had its own Lease)');
});
