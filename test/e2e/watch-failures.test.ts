// Watch failures against a real kube-apiserver (issue 8 item 7; checklist B15): `meshguard serve
// --kubeconfig` with cluster.staleAfterSeconds 3. The apiserver is killed (SIGKILL, as a crash) and
// started again on the same port with the same etcd, so every object persists. Must hold:
// readiness stays true within the bound, turns 503 after it with the cache problem in the body,
// the cache reconnects with growing backoff, readiness returns, and a namespace label changed right
// after the restart is used by the next decision the apiserver asks for.
// test/e2e/helpers/cluster.ts cannot restart the apiserver, so the restart is done here: the
// apiserver's own command line is read from /proc and run again (under setpriv --pdeathsig, like
// the helper does, so it dies with this process).
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from './helpers/cluster.ts';
import { eventually, sleep, startMeshguard } from './helpers/meshguard.ts';
import { get } from '../helpers/server.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
let restarted: ChildProcess | undefined;
const killRestarted = async (): Promise<void> => {
  const p = restarted;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGTERM');
  const gone = await Promise.race([new Promise<boolean>((r) => p.once('exit', () => r(true))), sleep(5000).then(() => false)]);
  if (!gone) p.kill('SIGKILL');
};

await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-w\n  labels:\n    istio-injection: disabled\n');
const mg = await startMeshguard(cluster, { config: { cluster: { staleAfterSeconds: 3 } } });
t.teardown(async () => {
  await mg.stop();
  await killRestarted();
  await cluster.stop();
});
await mg.register('Fail');
const target = { url: mg.url, ca: mg.caPem };

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-w
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
const readyz = async (): Promise<{ status: number; body: string }> => {
  try {
    const r = await get(target, '/readyz');
    return { status: r.status, body: r.text };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
};
const apiserverReady = async (): Promise<boolean> => (await cluster.kubectl(['get', '--raw', '/readyz'])).code === 0;

t.test('the apiserver dies and comes back: staleness in readiness, reconnect with backoff, fresh labels decide', async (t) => {
  t.ok(await eventually(async () => (await readyz()).status === 200, 30_000), 'meshguard is ready (caches synced)');
  const before = await createDeployment();
  t.not(before.code, 0, 'a Deployment in team-w (istio-injection=disabled) is denied through the apiserver');
  t.match(before.stderr, '[workload-injection-opt-out]');

  // Kill the apiserver as a crash would; remember how it was started.
  const pid = cluster.pids.apiserver;
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  t.match(argv[0] ?? '', /kube-apiserver$/, `the apiserver's command line (${argv.length - 1} flags)`);
  process.kill(pid, 'SIGKILL');
  const killedAt = performance.now();
  await sleep(1000);
  const early = await readyz();
  t.equal(early.status, 200, 'one second after the apiserver died meshguard is still ready (the bound is 3 s)');
  t.ok(await eventually(async () => (await readyz()).status === 503, 15_000, 250), 'readiness turns 503 after the bound');
  // Every watch went down with the apiserver; readiness names the first cache (in the order they
  // are registered, namespaces first) that is past the bound, and the Istio revisions watch may
  // cross it a moment before the namespaces watch does: wait for the namespaces one to be named.
  const NAMESPACES_STALE = /"caches":"namespaces: watch down for \d+ s \(bound 3 s\)"/;
  let stale = await readyz();
  await eventually(async () => NAMESPACES_STALE.test((stale = await readyz()).body), 5_000, 100);
  t.match(stale.body, NAMESPACES_STALE, `with the cache problem in the body, ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill: ${stale.body}`);
  t.equal(stale.status, 503, 'still not ready while it is named');

  // Stay down a few seconds more, then start it again: same flags, same port, same etcd.
  await sleep(5000);
  const logPath = join(cluster.dir, 'kube-apiserver-restarted.log');
  const fd = openSync(logPath, 'a');
  const noProxy = [process.env.NO_PROXY ?? process.env.no_proxy, '127.0.0.1', 'localhost'].filter(Boolean).join(',');
  const withPdeath = existsSync('/usr/bin/setpriv');
  restarted = spawn(withPdeath ? '/usr/bin/setpriv' : (argv[0] ?? ''), withPdeath ? ['--pdeathsig', 'KILL', '--', ...argv] : argv.slice(1), {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, NO_PROXY: noProxy, no_proxy: noProxy },
  });
  closeSync(fd);
  const restartAt = performance.now();
  t.ok(await eventually(apiserverReady, 60_000, 250), `the apiserver is back on the same port (${((performance.now() - restartAt) / 1000).toFixed(1)} s)`);

  // Right after the restart, the namespace joins the mesh. While meshguard's caches are stale it
  // answers 503 MG_CACHE_STALE to what reads them (a Namespace reads the revisions), so the write
  // is retried until the caches have relisted, as a client under failurePolicy Fail would.
  let labelErr = '';
  const labelled = await eventually(async () => {
    const r = await cluster.kubectl(['label', 'namespace', 'team-w', 'istio-injection=enabled', '--overwrite']);
    labelErr = r.stderr;
    return r.code === 0;
  }, 60_000, 250);
  t.ok(labelled, `team-w relabelled istio-injection=enabled after the restart ${labelErr}`);
  const labelledAt = performance.now();

  t.ok(await eventually(async () => (await readyz()).status === 200, 60_000, 250), `meshguard's readiness returns (${((performance.now() - labelledAt) / 1000).toFixed(1)} s after the relabel)`);
  let attempts = 0;
  const fresh = await eventually(async () => {
    attempts++;
    return (await createDeployment()).code === 0;
  }, 10_000, 250);
  t.ok(fresh, `the next decision uses the fresh label: the Deployment is allowed (attempt ${attempts} after readiness returned)`);

  const retries = mg.process
    .stderr()
    .split('\n')
    .filter((l) => l.includes('list/watch failed; retrying') && l.includes('"resource":"namespaces"'))
    .map((l) => {
      try {
        return (JSON.parse(l) as { retryInMs: number }).retryInMs;
      } catch {
        return Number.NaN;
      }
    })
    .filter((r) => Number.isFinite(r));
  t.ok(retries.length >= 3, `the namespace cache retried ${retries.length} times while the apiserver was away`);
  t.ok(retries.slice(1).some((r, i) => r > (retries[i] ?? 0)), `with growing backoff: ${retries.join(', ')} ms`);
  t.ok(Math.max(...retries) <= 30_000, 'capped at 30 s');
});
