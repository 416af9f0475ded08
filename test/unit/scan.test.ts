// The scan: which kinds it reads (from the rules), which objects are in scope, paging, errors per
// kind, grouping, the text and JSON reports, metrics, the progress line and the CLI's usage errors.
import t from 'tap';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { scanCluster, ScanError } from '../../src/jobs/scan/scan.ts';
import { compareVersions, inScope, scanTargets } from '../../src/jobs/scan/targets.ts';
import { groupFindings, scanMetrics, violationCounts, type Finding } from '../../src/jobs/scan/report.ts';
import { listAll, listPath, type ListRequest, type ListResponse, type ScanSource } from '../../src/jobs/scan/adapter.ts';
import { startPeriodicScan } from '../../src/jobs/scan/loop.ts';
import { progressLine, renderScanJson, renderScanText } from '../../src/cli/scan.ts';
import type { ValidatingRule } from '../../src/core/types.ts';
import { main } from '../../src/main.ts';
import { BUILTIN_RULES, RULES } from '../../src/policies/registry.ts';
import { config } from '../helpers/review.ts';

const rule = (id: string, webhook: ValidatingRule['webhook']): ValidatingRule => ({
  id,
  type: 'validating',
  title: id,
  fix: 'fix it',
  match: { kinds: [], operations: ['CREATE'] },
  webhook,
  validate: () => [],
});

t.test('kinds to read come from the rules, not from a list', async (t) => {
  const rules = [
    rule('a', [{ apiGroup: '', apiVersions: ['v1'], resources: ['namespaces', 'namespaces/status'] }]),
    rule('b', [{ placement: 'all-namespaces', apiGroup: 'security.istio.io', apiVersions: ['v1beta1', 'v1'], resources: ['peerauthentications'] }]),
    rule('c', [{ apiGroup: 'security.istio.io', apiVersions: ['v1alpha1'], resources: ['peerauthentications'] }]),
    rule('peer-authentication-strict', [{ apiGroup: 'apps', apiVersions: ['v1'], resources: ['deployments'] }]),
  ];
  t.same(scanTargets(rules, config()), [
    { group: '', resource: 'namespaces', versions: ['v1'], placements: ['default'] },
    { group: 'apps', resource: 'deployments', versions: ['v1'], placements: ['default'] },
    { group: 'security.istio.io', resource: 'peerauthentications', versions: ['v1', 'v1beta1', 'v1alpha1'], placements: ['all-namespaces', 'default'] },
  ], 'namespaces first; subresources skipped; versions merged GA first; placements merged');
  t.same(scanTargets(rules, config({ 'rules.peer-authentication-strict.enabled': false })).map((x) => x.resource).includes('deployments'), false, 'a disabled rule adds no kind');

  const builtin = scanTargets(BUILTIN_RULES.validating, config());
  const registered = new Set(RULES.filter((r) => r.type === 'validating').flatMap((r) => r.webhook.flatMap((w) => w.resources.filter((x) => !x.includes('/')).map((x) => `${w.apiGroup}/${x}`))));
  t.same(new Set(builtin.map((x) => `${x.group}/${x.resource}`)), registered, 'with the built-in rules: exactly the resources their webhooks register');
});

t.test('version preference', async (t) => {
  const sorted = ['v1alpha1', 'v1beta1', 'v2', 'v1', 'v1beta2', 'v3alpha1', 'foo'].sort(compareVersions);
  t.same(sorted, ['v2', 'v1', 'v1beta2', 'v1beta1', 'v3alpha1', 'v1alpha1', 'foo']);
});

t.test('which objects the API server would send to meshguard', async (t) => {
  const c = config({ gatewayNamespaces: ['gw'] });
  const o = (kind: string, namespace: string, name = 'x'): KObject => ({ kind, metadata: kind === 'Namespace' ? { name: namespace } : { name, namespace } });
  const rows: { name: string; placements: ('default' | 'all-namespaces' | 'mesh-config')[]; object: KObject; want: boolean }[] = [
    { name: 'an object in a tenant namespace: default webhook', placements: ['default'], object: o('Deployment', 'team-a'), want: true },
    { name: 'an object in an exempt namespace: not by the default webhook', placements: ['default'], object: o('Deployment', 'istio-system'), want: false },
    { name: 'an object in a gateway namespace: not by the default webhook', placements: ['default'], object: o('Deployment', 'gw'), want: false },
    { name: 'an exempt Namespace itself: not by the default webhook', placements: ['default'], object: o('Namespace', 'kube-public'), want: false },
    { name: 'an Istio object in istio-system: by the all-namespaces webhook', placements: ['all-namespaces'], object: o('Sidecar', 'istio-system'), want: true },
    { name: 'an object in kube-system: never', placements: ['all-namespaces'], object: o('Sidecar', 'kube-system'), want: false },
    { name: "an object in meshguard's namespace: never", placements: ['all-namespaces'], object: o('Sidecar', 'meshguard'), want: false },
    { name: 'the mesh config map istio in istio-system', placements: ['mesh-config'], object: o('ConfigMap', 'istio-system', 'istio'), want: true },
    { name: 'a revision mesh config map istio-canary', placements: ['mesh-config'], object: o('ConfigMap', 'istio-system', 'istio-canary'), want: true },
    { name: 'another config map in istio-system', placements: ['mesh-config'], object: o('ConfigMap', 'istio-system', 'leader-lock'), want: false },
    { name: 'a config map named istio elsewhere', placements: ['mesh-config'], object: o('ConfigMap', 'team-a', 'istio'), want: false },
  ];
  for (const row of rows) t.equal(inScope(row.placements, row.object, c), row.want, row.name);
});

/** A fake API: lists in pages, 404 for unserved group/versions, errors on demand. */
class FakeSource implements ScanSource {
  requests: string[] = [];
  readonly data: Record<string, { kind: string; items: KObject[] }>;
  readonly errors: Record<string, { code: number; body: string }>;
  constructor(data: Record<string, { kind: string; items: KObject[] }>, errors: Record<string, { code: number; body: string }> = {}) {
    this.data = data;
    this.errors = errors;
  }
  async list(req: ListRequest): Promise<ListResponse> {
    const path = listPath(req);
    this.requests.push(`${path}?limit=${req.limit}${req.continue !== undefined ? `&continue=${req.continue}` : ''}${req.labelSelector !== undefined ? `&labelSelector=${req.labelSelector}` : ''}`);
    const e = this.errors[path];
    if (e !== undefined) throw Object.assign(new Error('HTTP error'), e);
    const d = this.data[path];
    if (d === undefined) throw Object.assign(new Error('not found'), { code: 404, body: '{"message":"the server could not find the requested resource"}' });
    const start = Number(req.continue ?? '0');
    const items = d.items.slice(start, start + req.limit);
    const next = start + req.limit < d.items.length ? String(start + req.limit) : '';
    return { apiVersion: req.group === '' ? req.version : `${req.group}/${req.version}`, kind: `${d.kind}List`, items, metadata: { continue: next } };
  }
}

t.test('listing: pages, the list kind on items, version fallback, not served', async (t) => {
  const items = Array.from({ length: 5 }, (_, i): KObject => ({ metadata: { name: `p${i}`, namespace: 'a' } }));
  const src = new FakeSource({ '/apis/security.istio.io/v1beta1/peerauthentications': { kind: 'PeerAuthentication', items } });
  const pages: number[] = [];
  const r = await listAll(src, { group: 'security.istio.io', versions: ['v1', 'v1beta1'], resource: 'peerauthentications' }, { pageSize: 2, onPage: (n) => pages.push(n) });
  t.equal(r.version, 'v1beta1', 'v1 is not served: v1beta1 is used');
  t.equal(r.items.length, 5, 'every page read');
  t.same(pages, [2, 4, 5], 'progress per page');
  t.same(src.requests, [
    '/apis/security.istio.io/v1/peerauthentications?limit=2',
    '/apis/security.istio.io/v1beta1/peerauthentications?limit=2',
    '/apis/security.istio.io/v1beta1/peerauthentications?limit=2&continue=2',
    '/apis/security.istio.io/v1beta1/peerauthentications?limit=2&continue=4',
  ], 'limit and continue on every request');
  t.same([r.items[0]?.kind, r.items[0]?.apiVersion], ['PeerAuthentication', 'security.istio.io/v1beta1'], 'items carry the kind and apiVersion of the list');
  await t.rejects(listAll(src, { group: 'networking.istio.io', versions: ['v1'], resource: 'sidecars' }, { pageSize: 2 }), {
    name: 'NotServed',
    message: 'not served by the API server (tried v1): its CRD is not installed',
  });
});

const NS = (name: string, labels: Record<string, string>): KObject => ({ metadata: { name, labels } });

function seeded(extra: Record<string, { kind: string; items: KObject[] }> = {}, errors: Record<string, { code: number; body: string }> = {}): FakeSource {
  return new FakeSource(
    {
      '/api/v1/namespaces': {
        kind: 'Namespace',
        items: [
          NS('default', { 'istio-injection': 'enabled' }),
          NS('team-a', { 'istio-injection': 'enabled' }),
          NS('off', { 'istio-injection': 'disabled' }),
          NS('plain', {}),
          NS('kube-system', {}),
          NS('audited', { 'istio-injection': 'disabled', 'meshguard.dev/mode': 'audit' }),
        ],
      },
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations': { kind: 'MutatingWebhookConfiguration', items: [] },
      '/apis/security.istio.io/v1/peerauthentications': {
        kind: 'PeerAuthentication',
        items: [
          { metadata: { name: 'default', namespace: 'team-a' }, spec: { mtls: { mode: 'PERMISSIVE' } } },
          { metadata: { name: 'ok', namespace: 'team-a' }, spec: { mtls: { mode: 'STRICT' } } },
          { metadata: { name: 'sys', namespace: 'kube-system' }, spec: { mtls: { mode: 'DISABLE' } } },
          // The mesh-wide STRICT policy (mesh-root-strict-mtls reports its absence).
          { metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
        ],
      },
      ...extra,
    },
    errors,
  );
}

t.test('a scan: findings by the same rules, unreadable kinds listed, the scan goes on', async (t) => {
  const src = seeded({}, { '/apis/networking.istio.io/v1/serviceentries': { code: 403, body: '{"message":"serviceentries.networking.istio.io is forbidden: User \\"x\\" cannot list resource"}' } });
  const report = await scanCluster(src, config(), BUILTIN_RULES, { pageSize: 2, now: () => Date.UTC(2030, 0, 1) });
  const got = report.findings.map((f) => `${f.action} ${f.kind} ${f.namespace}/${f.name} [${f.rule}]`);
  t.same(got, [
    'warn Namespace audited/audited [namespace-mesh-enrollment]',
    'deny Namespace off/off [namespace-mesh-enrollment]',
    'deny Namespace plain/plain [namespace-mesh-enrollment]',
    'deny PeerAuthentication team-a/default [peer-authentication-strict]',
  ], 'exactly the violations: the audited namespace warns, kube-system is never judged');
  const forbidden = report.kinds.find((k) => k.resource === 'serviceentries.networking.istio.io');
  t.match(forbidden?.error, /^cannot list: HTTP 403: serviceentries.networking.istio.io is forbidden/, 'a forbidden kind: one line');
  const sidecars = report.kinds.find((k) => k.resource === 'sidecars.networking.istio.io');
  t.match(sidecars?.error, 'its CRD is not installed', 'a missing CRD: one line');
  t.same(report.kinds.find((k) => k.resource === 'peerauthentications.security.istio.io'), { resource: 'peerauthentications.security.istio.io', version: 'v1', objects: 3 }, 'objects in scope are counted');
  t.equal(report.completedAt, '2030-01-01T00:00:00.000Z');
  t.same(violationCounts(report.findings), [
    { rule: 'namespace-mesh-enrollment', namespace: 'audited', count: 1 },
    { rule: 'namespace-mesh-enrollment', namespace: 'off', count: 1 },
    { rule: 'namespace-mesh-enrollment', namespace: 'plain', count: 1 },
    { rule: 'peer-authentication-strict', namespace: 'team-a', count: 1 },
  ]);
  const m = scanMetrics(report);
  t.equal(m.completedAtSeconds, Date.UTC(2030, 0, 1) / 1000);
  t.ok(m.kindErrors >= 2);

  const audit = await scanCluster(seeded(), config({ mode: 'audit' }), BUILTIN_RULES);
  t.ok(audit.findings.every((f) => f.action === 'warn'), 'in audit mode every finding is a warning');

  const only = await scanCluster(seeded(), config(), BUILTIN_RULES, { namespaces: new Set(['team-a', 'off']) });
  t.same(only.findings.map((f) => `${f.kind} ${f.name}`), ['Namespace off', 'PeerAuthentication default'], 'namespaces: only objects in them (a Namespace by its own name)');
  t.same(only.scopes.map((s) => s.namespace), ['', 'team-a'], 'the scopes follow the filter');
});

t.test('a scan that cannot read namespaces stops with a ScanError; revision discovery failing is a note', async (t) => {
  const src = seeded({}, { '/api/v1/namespaces': { code: 401, body: '{"message":"Unauthorized"}' } });
  await t.rejects(scanCluster(src, config(), BUILTIN_RULES), new ScanError('cannot list namespaces: HTTP 401: Unauthorized'));
  const noRevs = seeded({}, { '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations': { code: 403, body: '{"message":"forbidden"}' } });
  const r = await scanCluster(noRevs, config(), BUILTIN_RULES);
  t.same(r.notes, ['Istio revisions could not be discovered (HTTP 403: forbidden); only configured revisions count']);
  const revs = seeded({
    '/api/v1/namespaces': { kind: 'Namespace', items: [NS('canary-ns', { 'istio.io/rev': 'canary' })] },
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations': { kind: 'MutatingWebhookConfiguration', items: [{ metadata: { name: 'istio-sidecar-injector-canary', labels: { 'istio.io/rev': 'canary' } } }] },
  });
  t.same((await scanCluster(revs, config(), BUILTIN_RULES)).findings.filter((f) => f.kind === 'Namespace'), [], 'a namespace on a discovered revision is meshed');
  t.match(revs.requests, ['/api/v1/namespaces?limit=500', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?limit=500&labelSelector=istio.io/rev']);
});

const F = (namespace: string, rule: string, kind: string, name: string, action: 'deny' | 'warn' = 'deny'): Finding => ({
  kind,
  apiVersion: 'v1',
  namespace,
  name,
  uid: '',
  rule,
  action,
  status: 'fail',
  message: `${kind} ${name} is wrong`,
  fix: 'fix it',
});

t.test('grouping by namespace then rule', async (t) => {
  const groups = groupFindings([F('b', 'r2', 'Pod', 'x'), F('a', 'r2', 'Pod', 'y'), F('b', 'r1', 'Pod', 'z'), F('b', 'r1', 'Deployment', 'w'), F('', 'r3', 'ClusterRole', 'c')]);
  t.same(groups.map((g) => [g.namespace, g.rules.map((r) => `${r.rule}:${r.findings.map((f) => f.name).join(',')}`)]), [
    ['', ['r3:c']],
    ['a', ['r2:y']],
    ['b', ['r1:w,z', 'r2:x']],
  ]);
});

t.test('the text and JSON reports', async (t) => {
  const report = {
    startedAt: '2030-01-01T00:00:00.000Z',
    completedAt: '2030-01-01T00:00:01.000Z',
    objects: 7,
    kinds: [
      { resource: 'namespaces', version: 'v1', objects: 4 },
      { resource: 'peerauthentications.security.istio.io', version: 'v1', objects: 3 },
      { resource: 'sidecars.networking.istio.io', objects: 0, error: 'not served by the API server (tried v1): its CRD is not installed' },
    ],
    notes: [],
    scopes: [],
    findings: [
      { ...F('off', 'namespace-mesh-enrollment', 'Namespace', 'off'), path: 'metadata.labels["istio-injection"]', value: 'disabled' },
      F('team-a', 'peer-authentication-strict', 'PeerAuthentication', 'default', 'warn'),
    ],
  };
  t.equal(
    renderScanText(report),
    [
      'Namespace off',
      '  [namespace-mesh-enrollment] 1 violation',
      '    DENY Namespace off: Namespace off is wrong (at metadata.labels["istio-injection"]: "disabled")',
      '         fix: fix it',
      '',
      'Namespace team-a',
      '  [peer-authentication-strict] 1 violation',
      '    WARN PeerAuthentication team-a/default: PeerAuthentication default is wrong',
      '         fix: fix it',
      '',
      'Not scanned:',
      '  sidecars.networking.istio.io: not served by the API server (tried v1): its CRD is not installed',
      '',
      '2 violations in 2 namespaces (2 rules); 7 objects in 2 kinds scanned, 1 kind not readable',
      '',
    ].join('\n'),
  );
  t.equal(renderScanText({ ...report, findings: [], kinds: report.kinds.slice(0, 2) }), 'no violations; 7 objects in 2 kinds scanned\n', 'a clean cluster');
  const json = JSON.parse(renderScanJson(report));
  t.same(json.byNamespace, { off: { 'namespace-mesh-enrollment': 1 }, 'team-a': { 'peer-authentication-strict': 1 } });
  t.equal(json.violations, 2);
  t.equal(json.findings.length, 2);
  t.equal(json.kinds[2].error, report.kinds[2]?.error);
});

t.test('the progress line: rewritten in place, throttled, cleared', async (t) => {
  const out: string[] = [];
  let now = 1000;
  const p = progressLine((s) => out.push(s), () => now);
  p.update({ kind: 'namespaces', kindIndex: 0, kinds: 3, objects: 500 });
  now += 50;
  p.update({ kind: 'namespaces', kindIndex: 0, kinds: 3, objects: 1000 });
  now += 100;
  p.update({ kind: 'pods', kindIndex: 1, kinds: 3, objects: 0 });
  p.done();
  t.same(out, ['\r\x1b[Kscanning namespaces (kind 1/3): 500 objects', '\r\x1b[Kscanning pods (kind 2/3): 0 objects', '\r\x1b[K']);
  const silent: string[] = [];
  progressLine((s) => silent.push(s)).done();
  t.same(silent, [], 'nothing to clear when nothing was shown');
});

t.test('the periodic scan: off at interval 0; otherwise results for the metrics', async (t) => {
  const quiet = { info() {}, warn() {} };
  t.equal(startPeriodicScan({ config: config(), source: seeded(), rules: BUILTIN_RULES, log: quiet, onResult: () => {} }), undefined, 'off by default');
  const results: number[] = [];
  const p = startPeriodicScan({ config: config({ 'scan.intervalSeconds': 1 }), source: seeded(), rules: BUILTIN_RULES, log: quiet, onResult: (m) => results.push(m.counts.length), initialDelayMs: 1 });
  const deadline = Date.now() + 5000;
  while (results.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await p?.stop();
  t.same(results.slice(0, 1), [4], 'one result with four (rule, namespace) counts');
  t.equal(p?.last()?.counts.length, 4);
  const skipped = startPeriodicScan({ config: config({ 'scan.intervalSeconds': 1 }), source: seeded(), rules: BUILTIN_RULES, log: quiet, onResult: () => t.fail('must not run'), shouldRun: () => false, initialDelayMs: 1 });
  await new Promise((r) => setTimeout(r, 50));
  await skipped?.stop();
});

t.test('meshguard scan: usage and configuration errors exit 2', async (t) => {
  const io = () => {
    const o = { out: '', err: '' };
    return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s), env: {}, stdin: async () => '', progress: false } };
  };
  const dir = mkdtempSync(join(tmpdir(), 'scan-cli-'));
  const empty = join(dir, 'empty.kubeconfig');
  writeFileSync(empty, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
  const rows: { name: string; args: string[]; want: RegExp }[] = [
    { name: 'an unknown output format', args: ['scan', '--output', 'yaml', '--kubeconfig', empty], want: /--output must be text or json/ },
    { name: 'a bad page size', args: ['scan', '--page-size', '0', '--kubeconfig', empty], want: /--page-size must be an integer/ },
    { name: 'a kubeconfig that does not exist', args: ['scan', '--kubeconfig', join(dir, 'missing')], want: /cannot load the kubeconfig/ },
    { name: 'a kubeconfig without a cluster', args: ['scan', '--kubeconfig', empty], want: /no cluster to scan/ },
    { name: 'an unknown flag', args: ['scan', '--bogus'], want: /Unknown option '--bogus'/ },
    { name: 'a bad mode', args: ['scan', '--mode', 'loud', '--kubeconfig', empty], want: /mode/ },
    { name: 'an unknown rule', args: ['scan', '--rule', 'no-such-rule', '--kubeconfig', empty], want: /--rule no-such-rule: no such validating rule/ },
    { name: 'a filter with reports', args: ['scan', '--namespace', 'a', '--policy-reports', '--kubeconfig', empty], want: /reports are written from a full scan/ },
  ];
  for (const row of rows) {
    const { o, io: x } = io();
    t.equal(await main(row.args, x), 2, `${row.name}: exit 2`);
    t.match(o.err, row.want, row.name);
  }
  const { o, io: x } = io();
  t.equal(await main(['scan', '--help'], x), 0);
  t.match(o.out, 'Usage: meshguard scan');
});
