// Smoke test of the e2e control plane: real etcd + kube-apiserver built from
// the pinned Kubernetes release, RBAC for admin and tenant, the audit log, helm.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ensureBinaries } from './cluster/build.ts';
import { startCluster, type Cluster } from './helpers/cluster.ts';

// The first build of the binaries (cold Go caches) can take far longer than
// tap's per-file timeout; cached runs take well under a second.
t.setTimeout(80 * 60 * 1000);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const t0 = performance.now();
const bins = await ensureBinaries();
t.comment(`binaries ready in ${((performance.now() - t0) / 1000).toFixed(2)}s`);

const t1 = performance.now();
const cluster: Cluster = await startCluster();
t.teardown(() => cluster.stop());
t.comment(`cluster started in ${((performance.now() - t1) / 1000).toFixed(2)}s at ${cluster.server}`);

t.test('admin creates and reads a namespace', async (t) => {
  const c = await cluster.kubectl(['create', 'namespace', 'smoke-a']);
  t.equal(c.code, 0, c.stderr);
  const g = await cluster.kubectl(['get', 'ns', 'smoke-a', '-o', 'json']);
  t.equal(g.code, 0, g.stderr);
  const ns = JSON.parse(g.stdout);
  t.equal(ns.kind, 'Namespace');
  t.equal(ns.metadata.name, 'smoke-a');
});

t.test('tenant has ordinary rights only', async (t) => {
  const who = await cluster.kubectl(['auth', 'whoami', '-o', 'json'], { as: 'tenant' });
  t.equal(who.code, 0, who.stderr);
  const info = JSON.parse(who.stdout).status.userInfo;
  t.equal(info.username, 'tenant');
  t.ok(info.groups.includes('tenants'));

  await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: smoke-tenant\n', { as: 'tenant' });
  const cm = await cluster.kubectl(['-n', 'smoke-tenant', 'create', 'configmap', 'c1', '--from-literal=a=b'], { as: 'tenant' });
  t.equal(cm.code, 0, cm.stderr);

  const cr = await cluster.kubectl(['create', 'clusterrole', 'smoke-escalate', '--verb=*', '--resource=*'], { as: 'tenant' });
  t.not(cr.code, 0, 'tenant cannot create a ClusterRole');
  t.match(cr.stderr, /forbidden/i);
});

t.test('audit log records the namespace create', async (t) => {
  const lines = (await readFile(cluster.auditLogPath, 'utf8')).split('\n').filter(Boolean);
  const events = lines.map((l) => JSON.parse(l));
  const create = events.find(
    (e) => e.verb === 'create' && e.objectRef?.resource === 'namespaces' && e.objectRef?.name === 'smoke-a' && e.stage === 'ResponseComplete',
  );
  t.ok(create, 'ResponseComplete event for create namespaces/smoke-a');
  t.equal(create?.user?.username, 'admin');
  t.equal(create?.responseStatus?.code, 201);
});

t.test('helm runs', async (t) => {
  const v = await cluster.helm(['version', '--short']);
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, /^v3\./);
  const ls = await cluster.helm(['list', '-A']);
  t.equal(ls.code, 0, ls.stderr);
  t.ok(bins.helm.length > 0);
});

t.test('network safety: the apiserver routes Service references through Endpoints, never DNS', async (t) => {
  // With --enable-aggregator-routing=true a webhook or APIService that names a Service resolves
  // through its Endpoints (none exist here) instead of the machine's resolver.
  const argv = readFileSync(`/proc/${cluster.pids.apiserver}/cmdline`, 'utf8').split('\0');
  t.ok(argv.includes('--enable-aggregator-routing=true'), 'kube-apiserver runs with --enable-aggregator-routing=true');
});

t.test('stop() kills both processes and removes the dir; idempotent', async (t) => {
  const { etcd, apiserver } = cluster.pids;
  t.ok(alive(etcd) && alive(apiserver), 'both running before stop');
  await cluster.stop();
  await cluster.stop();
  t.notOk(alive(etcd), `etcd pid ${etcd} gone`);
  t.notOk(alive(apiserver), `kube-apiserver pid ${apiserver} gone`);
  t.notOk(existsSync(cluster.dir), 'temp dir removed');
});
