// The real apiserver in front of meshguard: namespace enforcement and mutation as kubectl users
// see them, dry-run, audit mode, admin-only labels, and fail-closed safety.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { startCluster } from './helpers/cluster.ts';
import { eventually, startMeshguard, sleep } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
t.teardown(() => cluster.stop());
let mg = await startMeshguard(cluster);
t.teardown(() => mg.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n');
await mg.register('Fail');

const DENIED = 'admission webhook "validate.meshguard.dev" denied the request:';
const nsYaml = (name: string, labels: Record<string, string> = {}): string =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels: ${JSON.stringify(labels)}\n`;

async function getNs(name: string): Promise<any | undefined> {
  const r = await cluster.kubectl(['get', 'namespace', name, '-o', 'json']);
  return r.code === 0 ? JSON.parse(r.stdout) : undefined;
}

t.test('kubectl create namespace stores the injection label and the hardening annotation', async (t) => {
  const r = await cluster.kubectl(['create', 'namespace', 'plain-ns'], { as: 'tenant' });
  t.equal(r.code, 0, r.stderr);
  const ns = await getNs('plain-ns');
  t.equal(ns.metadata.labels['istio-injection'], 'enabled', 'labelled istio-injection=enabled');
  t.equal(ns.metadata.annotations['meshguard.dev/hardened'], 'true', 'annotated meshguard.dev/hardened');
  const prefixed = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: nsYaml('prefixed-ns', { 'example.com/team': 'a', 'app.kubernetes.io/part-of': 'x' }) });
  t.equal(prefixed.code, 0, `label keys with / are patched without a 500: ${prefixed.stderr}`);
  t.same(Object.keys((await getNs('prefixed-ns')).metadata.labels).sort(), ['app.kubernetes.io/part-of', 'example.com/team', 'istio-injection', 'kubernetes.io/metadata.name']);
  const annotated = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: annotated-ns\n  annotations:\n    example.com/owner: team-a\n' });
  t.equal(annotated.code, 0, annotated.stderr);
  t.equal((await getNs('annotated-ns')).metadata.annotations['example.com/owner'], 'team-a', 'existing annotations are kept');
});

t.test('a disabled namespace and a label removal are denied with the rule and the fix', async (t) => {
  const r = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: nsYaml('disabled-ns', { 'istio-injection': 'disabled' }) });
  t.not(r.code, 0, 'kubectl exits non-zero');
  t.match(r.stderr, DENIED);
  t.match(r.stderr, '[namespace-mesh-enrollment]');
  t.match(r.stderr, 'Fix: ');
  t.comment(`kubectl printed: ${r.stderr.trim()}`);
  t.equal(await getNs('disabled-ns'), undefined, 'nothing was stored');

  t.equal((await cluster.kubectl(['create', 'namespace', 'meshed-ns'], { as: 'tenant' })).code, 0);
  const before = await getNs('meshed-ns');
  const unlabel = await cluster.kubectl(['label', 'namespace', 'meshed-ns', 'istio-injection-'], { as: 'tenant' });
  t.not(unlabel.code, 0, 'removing the label is denied');
  t.match(unlabel.stderr, DENIED);
  t.match(unlabel.stderr, 'this update takes the namespace out of the mesh');
  const downgrade = await cluster.kubectl(['label', 'namespace', 'meshed-ns', 'istio-injection=disabled', '--overwrite'], { as: 'admin' });
  t.not(downgrade.code, 0, 'an admin downgrading it is denied too');
  const after = await getNs('meshed-ns');
  t.same(after.metadata.labels, before.metadata.labels, 'the stored object is unchanged');
  t.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
});

t.test('--dry-run=server shows the mutation and the real verdict and stores nothing', async (t) => {
  const r = await cluster.kubectl(['create', 'namespace', 'dry-ns', '--dry-run=server', '-o', 'json'], { as: 'tenant' });
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).metadata.labels['istio-injection'], 'enabled', 'the dry-run output carries the mutated label');
  t.equal(await getNs('dry-ns'), undefined, 'nothing was created');
  const bad = await cluster.kubectl(['create', '-f', '-', '--dry-run=server'], { as: 'tenant', input: nsYaml('dry-bad-ns', { 'istio-injection': 'disabled' }) });
  const real = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: nsYaml('dry-bad-ns', { 'istio-injection': 'disabled' }) });
  t.not(bad.code, 0);
  t.equal(bad.stderr, real.stderr, 'the dry-run denial is the same as the real one');
});

t.test('meshguard.dev/mode is admin-only; an admin-set audit label lets the namespace through with warnings', async (t) => {
  const tenant = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: nsYaml('tenant-audit-ns', { 'istio-injection': 'disabled', 'meshguard.dev/mode': 'audit' }) });
  t.not(tenant.code, 0, 'the tenant cannot set meshguard.dev/mode');
  t.match(tenant.stderr, '[control-labels-admin-only] only meshguard administrators may add the label meshguard.dev/mode');
  const admin = await cluster.kubectl(['create', '-f', '-'], { as: 'admin', input: nsYaml('admin-audit-ns', { 'istio-injection': 'disabled', 'meshguard.dev/mode': 'audit' }) });
  t.equal(admin.code, 0, admin.stderr);
  t.match(admin.stderr, 'Warning: policy namespace-mesh-enrollment: istio-injection is "disabled"', 'kubectl prints the warning');
  t.comment(`kubectl printed: ${admin.stderr.trim()}`);
  const relabel = await cluster.kubectl(['label', 'namespace', 'plain-ns', 'meshguard.dev/mode=audit'], { as: 'tenant' });
  t.not(relabel.code, 0, 'the tenant cannot add it later either');
  const byAdmin = await cluster.kubectl(['label', 'namespace', 'plain-ns', 'meshguard.dev/mode=enforce'], { as: 'admin' });
  t.equal(byAdmin.code, 0, byAdmin.stderr);
  const found = await eventually(async () => (await readFile(cluster.auditLogPath, 'utf8')).includes('"validate.meshguard.dev/namespace-mesh-enrollment"'));
  t.ok(found, 'the apiserver audit log holds the audit annotation under the webhook name');
  t.ok(mg.auditRecords().some((r) => r['name'] === 'admin-audit-ns' && r['verdict'] === 'warned'), 'meshguard wrote its audit record');
});

t.test('audit mode by server flag: the bad namespace is created with a warning', async (t) => {
  await mg.stop();
  mg = await startMeshguard(cluster, { mode: 'audit', port: mg.process.port });
  const r = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: nsYaml('audit-flag-ns', { 'istio-injection': 'disabled' }) });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, 'Warning: policy namespace-mesh-enrollment:');
  t.ok(await getNs('audit-flag-ns'), 'created');
  const plain = await cluster.kubectl(['create', 'namespace', 'audit-plain-ns'], { as: 'tenant' });
  t.equal(plain.code, 0, plain.stderr);
  t.equal((await getNs('audit-plain-ns')).metadata.labels['istio-injection'], 'enabled', 'the mutation applies in audit mode too (mutation: apply, ADR 0002)');
  await sleep(200);
  t.ok(mg.auditRecords().some((rec) => rec['name'] === 'audit-flag-ns' && rec['mode'] === 'audit'), 'audit record');
  await mg.stop();
  mg = await startMeshguard(cluster, { port: mg.process.port });
});

t.test('fail-closed: with meshguard down, tenants are refused but the system stays writable', async (t) => {
  await mg.stop();
  const refused = await cluster.kubectl(['create', 'namespace', 'while-down-ns'], { as: 'tenant' });
  t.not(refused.code, 0, 'a tenant namespace cannot be created under failurePolicy Fail');
  t.match(refused.stderr, 'failed calling webhook');
  t.comment(`kubectl printed: ${refused.stderr.trim()}`);
  for (const ns of ['kube-system', 'meshguard']) {
    const r = await cluster.kubectl(['label', 'namespace', ns, 'recovery-drill=yes', '--overwrite'], { as: 'admin' });
    t.equal(r.code, 0, `${ns} stays writable: ${r.stderr}`);
    const cm = await cluster.kubectl(['create', 'configmap', 'drill', '-n', ns, '--from-literal=a=b'], { as: 'admin' });
    t.equal(cm.code, 0, `objects in ${ns} can be created: ${cm.stderr}`);
  }
  await mg.register('Ignore'); // the configs still point at the dead port
  const ignored = await cluster.kubectl(['create', 'namespace', 'while-down-ignore-ns'], { as: 'tenant' });
  t.equal(ignored.code, 0, `with failurePolicy Ignore the create succeeds: ${ignored.stderr}`);
  mg = await startMeshguard(cluster, { port: mg.process.port });
  await mg.register('Fail');
  const back = await cluster.kubectl(['create', 'namespace', 'after-restart-ns'], { as: 'tenant' });
  t.equal(back.code, 0, back.stderr);
  t.equal((await getNs('after-restart-ns')).metadata.labels['istio-injection'], 'enabled', 'enforcement resumes after restart');
});
