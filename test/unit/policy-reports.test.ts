// PolicyReports from a scan (the pure plan) and the writer's handling of what the API server
// answers (through an in-memory client; test/e2e/policy-reports.test.ts uses the real one).
import t from 'tap';
import type { Finding, ScanReport } from '../../src/jobs/scan/report.ts';
import type { ReportClient } from '../../src/jobs/reports/adapter.ts';
import { desiredReports, MAX_RESULTS, planReports, REPORT_KINDS, TRUNCATED_ANNOTATION, type ExistingReport, type ReportKind } from '../../src/jobs/reports/plan.ts';
import { writeReports } from '../../src/jobs/reports/loop.ts';

const F = (namespace: string, kind: string, name: string, rule: string, action: 'deny' | 'warn' = 'deny', extra: Partial<Finding> = {}): Finding => ({
  kind,
  apiVersion: kind === 'Namespace' ? 'v1' : kind === 'Deployment' ? 'apps/v1' : 'security.istio.io/v1',
  namespace,
  name,
  uid: `uid-${name}`,
  rule,
  action,
  status: 'fail',
  message: `${name} is wrong`,
  fix: 'fix it',
  ...extra,
});

const scan = (findings: Finding[], scopes: ScanReport['scopes']): ScanReport => ({
  startedAt: '2030-01-01T00:00:00.000Z',
  completedAt: '2030-01-01T00:00:01.250Z',
  objects: 10,
  kinds: [],
  notes: [],
  findings,
  scopes,
});

t.test('one PolicyReport per namespace with scanned objects, Namespaces in the ClusterPolicyReport', async (t) => {
  const s = scan(
    [
      F('team-a', 'Deployment', 'web', 'workload-injection-opt-out', 'deny', { path: 'spec.template.metadata.annotations["sidecar.istio.io/inject"]', value: 'false' }),
      F('team-a', 'PeerAuthentication', 'default', 'peer-authentication-strict', 'warn'),
      F('off', 'Namespace', 'off', 'namespace-mesh-enrollment'),
    ],
    [
      { namespace: '', objects: 3, passed: 5 },
      { namespace: 'team-a', objects: 4, passed: 9 },
      { namespace: 'team-clean', objects: 2, passed: 6 },
    ],
  );
  const reports = desiredReports(s, 'wgpolicyk8s');
  t.same(reports.map((r) => `${r.kind.kind} ${r.namespace}/${r.name}`), ['ClusterPolicyReport /meshguard', 'PolicyReport team-a/meshguard', 'PolicyReport team-clean/meshguard']);
  const a = reports[1]?.body as any;
  t.equal(a.apiVersion, 'wgpolicyk8s.io/v1alpha2');
  t.same(a.metadata, { name: 'meshguard', namespace: 'team-a', labels: { 'app.kubernetes.io/managed-by': 'meshguard' } });
  t.same(a.summary, { pass: 9, fail: 1, warn: 1, error: 0, skip: 0 });
  t.same(a.results[0], {
    source: 'meshguard',
    policy: 'meshguard',
    rule: 'workload-injection-opt-out',
    result: 'fail',
    scored: true,
    severity: 'high',
    category: 'Istio workloads',
    message: 'web is wrong (at spec.template.metadata.annotations["sidecar.istio.io/inject"]: "false")',
    timestamp: { seconds: 1893456001, nanos: 250_000_000 },
    resources: [{ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'team-a', name: 'web', uid: 'uid-web' }],
    properties: { action: 'deny', fix: 'fix it', path: 'spec.template.metadata.annotations["sidecar.istio.io/inject"]' },
  });
  t.equal(a.results[1].result, 'warn', 'audit mode: warn, not scored');
  t.equal(a.results[1].scored, false);
  const cluster = reports[0]?.body as any;
  t.same(cluster.results[0].resources, [{ apiVersion: 'v1', kind: 'Namespace', name: 'off', uid: 'uid-off' }], 'a Namespace has no namespace in its reference');
  t.same((reports[2]?.body as any).results, [], 'a clean namespace gets a report with no results (its passes counted)');
  const open = desiredReports(s, 'openreports');
  t.same(open.map((r) => `${(r.body as any).apiVersion} ${r.kind.kind}`), ['openreports.io/v1alpha1 ClusterReport', 'openreports.io/v1alpha1 Report', 'openreports.io/v1alpha1 Report']);
  t.equal((open[1]?.body as any).source, 'meshguard');
});

t.test('a report holds at most MAX_RESULTS results; the summary counts them all', async (t) => {
  const many = Array.from({ length: MAX_RESULTS + 5 }, (_, i) => F('big', 'Deployment', `d${i}`, 'workload-host-network'));
  const [r] = desiredReports(scan(many, [{ namespace: 'big', objects: many.length, passed: 0 }]), 'wgpolicyk8s');
  t.equal((r?.body as any).results.length, MAX_RESULTS);
  t.equal((r?.body as any).summary.fail, MAX_RESULTS + 5);
  t.equal((r?.body as any).metadata.annotations[TRUNCATED_ANNOTATION], '5');
});

const existing = (kind: ReportKind, namespace: string, managed = true): ExistingReport => ({ kind, namespace, name: 'meshguard', resourceVersion: `rv-${namespace}`, managed });

t.test('the plan: create what is missing, replace what is there, delete what nothing calls for, leave foreign reports alone', async (t) => {
  const k = REPORT_KINDS.wgpolicyk8s;
  const desired = desiredReports(scan([F('team-a', 'Deployment', 'web', 'workload-host-network')], [{ namespace: 'team-a', objects: 1, passed: 0 }, { namespace: 'team-b', objects: 1, passed: 3 }]), 'wgpolicyk8s');
  const plan = planReports(desired, [existing(k.namespaced, 'team-a'), existing(k.namespaced, 'gone'), existing(k.cluster, ''), existing(k.namespaced, 'team-b', false)]);
  t.same(
    plan.map((a) => (a.type === 'delete' ? `delete ${a.existing.namespace || '(cluster)'}` : a.type === 'replace' ? `replace ${a.report.namespace} @${a.resourceVersion}` : `create ${a.report.namespace}`)),
    ['replace team-a @rv-team-a', 'create team-b', 'delete gone', 'delete (cluster)'],
  );
});

/** An in-memory API server for reports: what the writer stores, and errors on demand. */
function memoryClient(o: { missing?: boolean } = {}): ReportClient & { store: Map<string, any> } {
  const store = new Map<string, any>();
  const key = (kind: ReportKind, ns: string, name: string): string => `${kind.kind}/${ns}/${name}`;
  const notFound = Object.assign(new Error('not found'), { code: 404 });
  return {
    store,
    async list(kind) {
      if (o.missing === true) throw notFound;
      return [...store.entries()].filter(([k]) => k.startsWith(`${kind.kind}/`)).map(([, v]) => ({ kind, namespace: v.metadata.namespace ?? '', name: v.metadata.name, resourceVersion: '1', managed: true }));
    },
    async create(kind, ns, body) {
      if (store.has(key(kind, ns, (body as any).metadata.name))) throw Object.assign(new Error('exists'), { code: 409 });
      store.set(key(kind, ns, (body as any).metadata.name), body);
    },
    async replace(kind, ns, name, body) {
      store.set(key(kind, ns, name), body);
    },
    async delete(kind, ns, name) {
      if (!store.delete(key(kind, ns, name))) throw notFound;
    },
  };
}

t.test('the writer replaces reports whole: a fixed object disappears, an emptied namespace loses its report', async (t) => {
  const c = memoryClient();
  const first = scan([F('team-a', 'Deployment', 'web', 'workload-host-network'), F('team-a', 'Deployment', 'api', 'workload-host-network'), F('team-b', 'Deployment', 'x', 'workload-host-network')], [{ namespace: 'team-a', objects: 2, passed: 0 }, { namespace: 'team-b', objects: 1, passed: 0 }]);
  t.same(await writeReports(c, first, ['wgpolicyk8s']), { created: 2, replaced: 0, deleted: 0, errors: [], skipped: [] });
  const second = scan([F('team-a', 'Deployment', 'api', 'workload-host-network')], [{ namespace: 'team-a', objects: 2, passed: 4 }]);
  t.same(await writeReports(c, second, ['wgpolicyk8s']), { created: 0, replaced: 1, deleted: 1, errors: [], skipped: [] });
  const a = c.store.get('PolicyReport/team-a/meshguard');
  t.same(a.results.map((r: any) => r.resources[0].name), ['api'], 'web (fixed) is gone, not appended to');
  t.same(a.summary, { pass: 4, fail: 1, warn: 0, error: 0, skip: 0 });
  t.equal(a.metadata.resourceVersion, '1', 'replaced with the listed resourceVersion');
  t.notOk(c.store.has('PolicyReport/team-b/meshguard'), 'team-b has no scanned objects any more: its report is deleted');
});

t.test('the writer says when the CRDs are not installed, and never throws', async (t) => {
  const r = await writeReports(memoryClient({ missing: true }), scan([], []), ['wgpolicyk8s', 'openreports']);
  t.same(r.skipped, ['wgpolicyk8s.io: the PolicyReport and ClusterPolicyReport CRDs are not installed', 'openreports.io: the Report and ClusterReport CRDs are not installed']);
  const failing = memoryClient();
  failing.create = async () => {
    throw Object.assign(new Error('forbidden'), { code: 403, body: { message: 'policyreports.wgpolicyk8s.io is forbidden' } });
  };
  const f = await writeReports(failing, scan([], [{ namespace: 'a', objects: 1, passed: 1 }]), ['wgpolicyk8s']);
  t.same(f.errors, ['create PolicyReport a/meshguard: HTTP 403: policyreports.wgpolicyk8s.io is forbidden']);
});
