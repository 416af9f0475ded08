// The image's server: dist/meshguard.mjs as `npm run bundle` builds it, written to a directory with
// no node_modules and no package.json (as /app in the image) and run from there with the
// Dockerfile's runtime settings. Offline, it must print exactly what the sources print over every
// rule fixture; as the real apiserver's webhook, its namespace cache (client-node inside the
// bundle) must sync and decide, and nothing may appear on stderr (no deprecation warning).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundle } from '../../tools/bundle.ts';
import { imageEnv } from '../helpers/image.ts';
import { runCli } from '../helpers/process.ts';
import type { KObject } from '../../src/core/request.ts';
import { FIXTURES, loadYaml } from '../helpers/review.ts';
import { get } from '../helpers/server.ts';
import { startCluster } from './helpers/cluster.ts';
import { eventually, startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const app = mkdtempSync(join(tmpdir(), 'meshguard-bundle-'));
t.teardown(() => rmSync(app, { recursive: true, force: true }));
const built = await bundle(join(app, 'meshguard.mjs'));
const MAIN = built.outfile;

/** The environment the image gives the process (NODE_ENV, NODE_OPTIONS, MALLOC_ARENA_MAX). */
const IMAGE_ENV = imageEnv();

// The cluster and the webhook are started before the first subtest: tap ends the root test as soon
// as no subtest is pending, and its teardown (which removes the bundle's directory) would then run
// while a cold first run is still building the cluster binaries.
const cluster = await startCluster();
t.teardown(() => cluster.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n');
const mg = await startMeshguard(cluster, { name: 'bundle', main: MAIN, env: IMAGE_ENV, config: { revisions: ['canary'] } });
t.teardown(() => mg.stop());
await mg.register('Fail');

t.test('offline: meshguard check over every rule fixture prints exactly what the sources print, in text and JSON', async (t) => {
  t.ok(IMAGE_ENV['NODE_OPTIONS'] !== undefined, `the image's settings: ${JSON.stringify(IMAGE_ENV)}`);
  for (const output of ['text', 'json']) {
    const args = ['check', '-f', join(FIXTURES, 'rules'), '-o', output];
    const fromBundle = await runCli(args, { main: MAIN, cwd: app, env: IMAGE_ENV });
    const fromSources = await runCli(args);
    t.equal(fromBundle.code, 1, `${output}: exit 1 (violations found)`);
    t.equal(fromBundle.code, fromSources.code, `${output}: the same exit code`);
    t.equal(fromBundle.stdout, fromSources.stdout, `${output}: the same ${fromBundle.stdout.length} characters on stdout`);
    t.equal(fromBundle.stderr, '', `${output}: nothing on stderr`);
  }
  const usage = await runCli(['check', 'deploy.yaml'], { main: MAIN, cwd: app, env: IMAGE_ENV });
  t.equal(usage.code, 2, 'a usage error is still exit 2');
  t.equal(usage.stderr, (await runCli(['check', 'deploy.yaml'])).stderr, 'with the same message');
});


const DENIED = 'admission webhook "validate.meshguard.dev" denied the request:';
const server = { url: mg.url, ca: mg.caPem };
/** A Pod as istioctl kube-inject writes it (test/fixtures/istio), or the same app without the sidecar. */
const INJECTED = loadYaml(join(FIXTURES, 'istio/admit/the-curl-sample-pod-injected-with-sidecar-injection.yaml')).find((o) => o.kind === 'Pod') as KObject;
const pod = (name: string, ns: string, sidecar: boolean): string =>
  JSON.stringify(
    sidecar
      ? { ...INJECTED, metadata: { ...INJECTED.metadata, name, namespace: ns } }
      : { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1' }] } },
  );

t.test('as the webhook: namespaces are mutated and denied with the rule and the fix', async (t) => {
  const created = await cluster.kubectl(['create', 'namespace', 'bundle-plain'], { as: 'tenant' });
  t.equal(created.code, 0, created.stderr);
  const ns = JSON.parse((await cluster.kubectl(['get', 'namespace', 'bundle-plain', '-o', 'json'])).stdout) as { metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
  t.equal(ns.metadata.labels['istio-injection'], 'enabled', 'the mutation added istio-injection=enabled');
  t.equal(ns.metadata.annotations['meshguard.dev/hardened'], 'true');
  const disabled = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bundle-off\n  labels: {istio-injection: disabled}\n' });
  t.not(disabled.code, 0, 'a disabled namespace is refused');
  t.match(disabled.stderr, DENIED);
  t.match(disabled.stderr, '[namespace-mesh-enrollment]');
  t.match(disabled.stderr, 'Fix: ');
  const dry = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { as: 'tenant', input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bundle-dry\n  labels: {istio-injection: disabled}\n' });
  t.not(dry.code, 0, '--dry-run=server gets the same verdict');
  t.match(dry.stderr, '[namespace-mesh-enrollment]');
});

t.test("as the webhook: the namespace cache (client-node inside the bundle) knows the apiserver's namespaces", async (t) => {
  t.equal((await cluster.kubectl(['create', 'namespace', 'bundle-meshed'], { as: 'tenant' })).code, 0);
  // Only a rule that found the namespace in the cache names pod-sidecar-present; an unknown
  // namespace would be judged by workload-injection-opt-out instead.
  let last = '';
  t.ok(
    await eventually(async () => {
      const r = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: pod('no-sidecar', 'bundle-meshed', false) });
      last = r.stderr;
      return r.code !== 0 && r.stderr.includes('[pod-sidecar-present]');
    }, 15_000),
    `a Pod without the proxy in the new meshed namespace is denied by pod-sidecar-present: ${last.trim()}`,
  );
  const injected = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: pod('injected', 'bundle-meshed', true) });
  t.equal(injected.code, 0, `an injected Pod there is admitted: ${injected.stderr}`);
  t.equal((await cluster.kubectl(['label', 'namespace', 'bundle-meshed', 'istio.io/rev=canary', 'istio-injection-'], { as: 'admin' })).code, 0, 'the namespace moves to revision canary');
  t.ok(
    await eventually(async () => (await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: pod('after-rev', 'bundle-meshed', true) })).code === 0, 15_000),
    'a label change reaches the cache: an injected Pod in the revision-labelled namespace is admitted',
  );
});

t.test('probes and metrics answer; stderr stays empty; SIGTERM exits 0', async (t) => {
  t.equal((await get(server, '/healthz')).status, 200);
  t.equal((await get(server, '/readyz')).status, 200, 'ready: the caches are synced');
  const metrics = await get(server, '/metrics');
  t.equal(metrics.status, 200);
  t.match(metrics.text, /meshguard_admission_requests_total\{[^}]*\} \d+/, 'review counters');
  t.match(metrics.text, /meshguard_certificate_expiry_timestamp_seconds\{[^}]*\} \d+/, 'certificate metrics');
  const stderr = mg.process.stderr();
  t.match(stderr, /serving on https:/);
  t.notMatch(stderr, /Warning|DEP\d{4}|\(node:\d+\)/, `no warning from Node on stderr (it printed: ${JSON.stringify(stderr.trim().split('\n'))})`);
  t.equal(await mg.process.stop('SIGTERM'), 0, 'exit 0 on SIGTERM');
});
