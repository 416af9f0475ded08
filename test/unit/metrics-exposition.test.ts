// What /metrics exposes from a real app: per-rule results without object names, process and
// runtime series, build info, in-flight and cache gauges, latency buckets up to the webhook
// timeout; the optional plain-HTTP metrics listener; and every metric the chart's alerts and
// dashboard use exists in that output.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { startMetricsServer } from '../../src/metrics/server.ts';
import { VERSION } from '../../src/version.ts';
import { loadYaml, ns, reviewBody, ROOT, state } from '../helpers/review.ts';
import { get, post, startServer } from '../helpers/server.ts';

const fixture = (rel: string) => loadYaml(join(ROOT, 'test/fixtures/rules', rel));
const injected = fixture('pod-sidecar-present/good/an-injected-pod.yaml').find((o) => o.kind === 'Pod');
const uninjected = fixture('pod-sidecar-present/bad/a-pod-that-was-not-injected.yaml').find((o) => o.kind === 'Pod');
const meshed = state([ns('workloads-meshed', { 'istio-injection': 'enabled' }), ns('audited', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'audit' })]);

function httpGet(url: string, method = 'GET'): Promise<{ status: number; text: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Metric family names in an exposition (from # TYPE lines), with histogram and summary suffixes. */
function metricNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name = '', type] = m;
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${name}${s}`);
  }
  return names;
}

async function scrapedApp(t: Test): Promise<{ text: string; server: Awaited<ReturnType<typeof startServer>> }> {
  const server = await startServer({}, { cluster: meshed });
  t.teardown(() => server.close());
  for (const pod of [injected, uninjected]) t.equal((await post(server, '/validate', JSON.stringify(reviewBody(pod ?? null)))).status, 200);
  const audited = { ...uninjected, metadata: { ...uninjected?.metadata, name: 'audited-pod', namespace: 'audited' } };
  t.equal((await post(server, '/validate', JSON.stringify(reviewBody(audited)))).status, 200);
  t.equal((await post(server, '/validate', '{"nope":1}')).status, 400);
  // The background jobs' series, as serve's jobs feed them.
  server.recorder.certReload(true);
  server.recorder.certExpiry('leaf', 2_000_000_000);
  server.recorder.certExpiry('ca', 2_100_000_000);
  server.recorder.scanCompleted([{ rule: 'pod-sidecar-present', namespace: 'workloads-meshed', count: 1 }], 1_800_000_000);
  server.recorder.reconcilerAction('create', 'Sidecar', 'applied');
  server.recorder.reconcilerLeader(true);
  const r = await get(server, '/metrics');
  t.equal(r.status, 200);
  return { text: r.text, server };
}

t.test('per-rule results: one series per rule, result, mode, operation and kind, never an object name', async (t) => {
  const { text } = await scrapedApp(t);
  t.match(text, /^meshguard_rule_results_total\{rule="pod-sidecar-present",result="pass",mode="enforce",operation="CREATE",kind="Pod"\} 1$/m, 'the injected Pod passed in enforce');
  t.match(text, /^meshguard_rule_results_total\{rule="pod-sidecar-present",result="fail",mode="enforce",operation="CREATE",kind="Pod"\} 1$/m, 'the uninjected Pod failed in enforce');
  t.match(text, /^meshguard_rule_results_total\{rule="pod-sidecar-present",result="fail",mode="audit",operation="CREATE",kind="Pod"\} 1$/m, 'in a namespace labelled meshguard.dev/mode=audit it counts under audit');
  const series = text.split('\n').filter((l) => l.startsWith('meshguard_rule_results_total{'));
  t.ok(series.length >= 3, `${series.length} series`);
  for (const l of series) {
    const keys = [...l.matchAll(/([a-z_]+)="/g)].map((m) => m[1]);
    t.same(keys, ['rule', 'result', 'mode', 'operation', 'kind'], `only the bounded labels: ${l}`);
    t.notMatch(l, /sidecar-missing|sidecar-injected|audited-pod|workloads-meshed/, 'no object or namespace name');
    t.notMatch(l, /result="skip"/, 'skips are not counted');
  }
});

t.test('process, runtime and build series; in-flight and cache gauges; buckets up to the webhook timeout', async (t) => {
  const { text } = await scrapedApp(t);
  t.match(text, new RegExp(`^meshguard_build_info\\{version="${VERSION.replace(/\./g, '\\.')}",node_version="${process.version.replace(/\./g, '\\.')}"\\} 1$`, 'm'), 'build info');
  for (const name of ['meshguard_process_resident_memory_bytes', 'meshguard_process_cpu_seconds_total', 'meshguard_nodejs_eventloop_lag_p99_seconds', 'meshguard_nodejs_heap_size_used_bytes', 'meshguard_process_open_fds']) {
    t.match(text, new RegExp(`^${name} \\d`, 'm'), `${name} (prom-client defaults, prefixed)`);
  }
  t.match(text, /^meshguard_admission_in_flight_requests \d+$/m, 'in-flight requests');
  t.match(text, /^meshguard_admission_in_flight_bytes \d+$/m, 'in-flight bytes');
  t.match(text, /^meshguard_cluster_caches_synced 1$/m, 'the static state is synced');
  for (const le of ['1', '2.5', '5', '10']) t.match(text, new RegExp(`^meshguard_admission_duration_seconds_bucket\\{le="${le.replace('.', '\\.')}",endpoint="validate"`, 'm'), `bucket le=${le}`);
  t.equal(VERSION, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version, 'VERSION is package.json\'s version');
});

t.test("every metric the chart's alerts and dashboard use exists in a real /metrics output", async (t) => {
  const { text } = await scrapedApp(t);
  const exposed = metricNames(text);
  const used = (file: string): string[] => [...new Set([...readFileSync(join(ROOT, 'charts/meshguard/files', file), 'utf8').matchAll(/\bmeshguard_[a-z0-9_]+/g)].map((m) => m[0]))].sort();
  const alerts = used('prometheus-rules.yaml');
  const dashboard = used('dashboard.json');
  t.ok(alerts.length >= 8, `the alerts use ${alerts.length} metrics`);
  t.ok(dashboard.length >= 10, `the dashboard uses ${dashboard.length} metrics`);
  for (const name of alerts) t.ok(exposed.has(name), `alerts: ${name} is exposed`);
  for (const name of dashboard) t.ok(exposed.has(name), `dashboard: ${name} is exposed`);
  t.notOk(exposed.has('meshguard_no_such_metric'), 'the check can fail');
});

t.test('the plain-HTTP metrics listener serves GET /metrics and nothing else; the webhook port can stop serving it', async (t) => {
  const server = await startServer({ metricsEnabled: false }, { cluster: meshed });
  t.teardown(() => server.close());
  t.equal((await post(server, '/validate', JSON.stringify(reviewBody(injected ?? null)))).status, 200);
  t.equal((await get(server, '/metrics')).status, 404, 'metricsEnabled false: no /metrics on the webhook port');
  const m = await startMetricsServer({ host: '127.0.0.1', port: 0, recorder: server.recorder });
  t.teardown(() => m.close());
  t.match(m.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const r = await httpGet(`${m.url}/metrics`);
  t.equal(r.status, 200);
  t.match(r.type, /^text\/plain; version=0\.0\.4/);
  t.match(r.text, /meshguard_rule_results_total\{rule="pod-sidecar-present",result="pass"/, 'the same registry as the app');
  t.equal((await httpGet(`${m.url}/validate`)).status, 404, 'no admission routes');
  t.equal((await httpGet(`${m.url}/metrics`, 'POST')).status, 405);
  t.equal((await httpGet(`${m.url}/healthz`)).status, 404);
});

t.test('a rule pinned by config.rules.<id>.mode counts under its own mode; several violations of a rule count once', async (t) => {
  const { PromRecorder } = await import('../../src/metrics/recorder.ts');
  const rec = new PromRecorder({ processMetrics: false });
  const fail = (ruleId: string) => ({ ruleId, status: 'fail' as const, violation: { message: 'x' } });
  const results = [fail('pod-sidecar-present'), fail('pod-sidecar-present'), { ruleId: 'workload-host-network', status: 'pass' as const }, { ruleId: 'workload-proxy-uid', status: 'skip' as const, reason: 'n/a' }];
  const pinned = { 'pod-sidecar-present': { enabled: true, mode: 'audit' as const } };
  rec.observeRuleResults({ kind: 'Pod', operation: 'CREATE', mode: 'enforce' }, results, pinned);
  rec.observeRuleResults({ kind: 'Pod', operation: 'CREATE', mode: 'enforce' }, results, {});
  const text = await rec.render();
  t.match(text, /^meshguard_rule_results_total\{rule="pod-sidecar-present",result="fail",mode="audit",operation="CREATE",kind="Pod"\} 1$/m, 'pinned to audit');
  t.match(text, /^meshguard_rule_results_total\{rule="pod-sidecar-present",result="fail",mode="enforce",operation="CREATE",kind="Pod"\} 1$/m, 'unpinned: the namespace mode');
  t.match(text, /^meshguard_rule_results_total\{rule="workload-host-network",result="pass",mode="enforce",operation="CREATE",kind="Pod"\} 2$/m);
  t.notMatch(text, /workload-proxy-uid/, 'skips are not counted');
  t.notMatch(text, /meshguard_process_/, 'processMetrics false: no process series');
});
