// `meshguard scan` (the real CLI) against the real apiserver, seeded with planted violations:
// some created while no webhook was registered (standing for objects that predate meshguard),
// some admitted with warnings by meshguard in audit mode. The scan must find exactly those, and
// nothing among the compliant objects, the exempt namespaces or kube-system. Part of the Istio
// CRDs is left out so that the scan shows its one-line-per-kind answer for a missing CRD.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { runCli } from '../helpers/process.ts';
import { FIXTURES } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { istioCrdsYaml } from './helpers/istio.ts';
import { startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
t.teardown(() => cluster.stop());

const LEFT_OUT = ['wasmplugins.extensions.istio.io', 'istiooperators.install.istio.io'];
const crds = parseAllDocuments(await istioCrdsYaml())
  .map((d) => d.toJS() as { metadata?: { name?: string } } | null)
  .filter((d) => d !== null && !LEFT_OUT.includes(d.metadata?.name ?? ''));
{
  // Server-side: several of Istio's CRDs exceed client-side apply's last-applied annotation.
  const r = await cluster.kubectl(['apply', '--server-side', '-f', '-'], { input: crds.map((d) => JSON.stringify(d)).join('\n---\n') });
  if (r.code !== 0) throw new Error(r.stderr);
}
// meshguard's own CRD (MeshguardException), as the chart installs it.
await cluster.applyYaml(readFileSync(join(FIXTURES, '../../charts/meshguard/crds/meshguard.dev_meshguardexceptions.yaml'), 'utf8'));
const est = await cluster.kubectl(['wait', '--for=condition=established', '--timeout=60s', 'crd', '--all']);
if (est.code !== 0) throw new Error(est.stderr);

const ns = (name: string, labels: Record<string, string>): object => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const deployment = (name: string, namespace: string, annotations: Record<string, string>): object => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace },
  spec: {
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name }, annotations }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1.0' }] } },
  },
});
const pa = (name: string, namespace: string, mode: string): object => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace }, spec: { mtls: { mode } } });

// --- seeded with no webhook registered (before install) ------------------------------------
const MESHED = { 'istio-injection': 'enabled' };
await cluster.applyYaml(
  [
    ns('default', MESHED),
    ns('meshguard', {}),
    ns('istio-system', {}),
    ns('scan-disabled', { 'istio-injection': 'disabled' }), // planted: namespace-mesh-enrollment
    ns('scan-apps', MESHED),
    ns('scan-clean', MESHED),
    pa('default', 'scan-apps', 'PERMISSIVE'), // planted: peer-authentication-strict
    deployment('web', 'scan-apps', { 'sidecar.istio.io/inject': 'false' }), // planted: workload-injection-opt-out
    pa('default', 'scan-clean', 'STRICT'),
    deployment('web', 'scan-clean', {}),
    { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'scan-clean' }, spec: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow-same', namespace: 'scan-clean' }, spec: { rules: [{ from: [{ source: { namespaces: ['scan-clean'] } }] }] } },
    pa('sys', 'kube-system', 'DISABLE'), // never sent to meshguard: not reported
    pa('default', 'istio-system', 'STRICT'), // the mesh-wide policy (mesh-root-strict-mtls reports its absence)
    ns('gw', { 'istio-injection': 'disabled' }), // a gateway namespace (configured below): exempt
  ]
    .map((o) => JSON.stringify(o))
    .join('\n---\n'),
);

// --- admitted with warnings while meshguard ran in audit mode ------------------------------
const mg = await startMeshguard(cluster, { mode: 'audit' });
await mg.register('Fail');
const audited1 = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: JSON.stringify(ns('scan-audit', { 'istio-injection': 'disabled' })) });
const audited2 = await cluster.kubectl(['apply', '-f', '-'], {
  as: 'tenant',
  input: JSON.stringify({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'open', namespace: 'scan-apps' }, spec: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } } }),
});
await mg.stop();
await cluster.kubectl(['delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'meshguard']);

const configFile = join(cluster.dir, 'scan-config.json');
await writeFile(configFile, JSON.stringify({ gatewayNamespaces: ['gw'] }));

const PLANTED = [
  'Deployment scan-apps/web [workload-injection-opt-out]',
  'Namespace scan-audit [namespace-mesh-enrollment]',
  'Namespace scan-disabled [namespace-mesh-enrollment]',
  'PeerAuthentication scan-apps/default [peer-authentication-strict]',
  'Sidecar scan-apps/open [sidecar-outbound-allow-any]',
];

interface Finding {
  kind: string;
  namespace: string;
  name: string;
  rule: string;
  action: string;
}
const label = (f: Finding): string => `${f.kind} ${f.kind === 'Namespace' ? f.name : `${f.namespace}/${f.name}`} [${f.rule}]`;

t.test('the audit-mode objects were admitted with warnings', async (t) => {
  t.equal(audited1.code, 0, audited1.stderr);
  t.match(audited1.stderr, 'Warning: policy namespace-mesh-enrollment');
  t.equal(audited2.code, 0, audited2.stderr);
  t.match(audited2.stderr, 'Warning: policy sidecar-outbound-allow-any');
});

t.test('meshguard scan -o json finds exactly the planted violations', async (t) => {
  const t0 = performance.now();
  const r = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--config', configFile, '--output', 'json', '--page-size', '2']);
  t.comment(`scan took ${Math.round(performance.now() - t0)} ms (process start included)`);
  t.equal(r.code, 1, `exit 1 when violations exist: ${r.stderr}`);
  t.equal(r.stderr, '', 'no progress line when stderr is not a terminal');
  const report = JSON.parse(r.stdout) as { findings: Finding[]; kinds: { resource: string; error?: string; objects: number }[]; violations: number; byNamespace: Record<string, Record<string, number>> };
  t.same(report.findings.map(label).sort(), PLANTED, 'exactly the planted violations, nothing else');
  t.equal(report.violations, report.findings.length);
  t.equal(report.byNamespace['scan-apps']?.['peer-authentication-strict'], 1, 'counts by namespace and rule');
  const missing = report.kinds.filter((k) => k.error !== undefined).map((k) => k.resource).sort();
  t.same(missing, [...LEFT_OUT].sort(), 'the kinds whose CRD is missing get one line each');
  t.match(report.kinds.find((k) => k.resource === 'wasmplugins.extensions.istio.io')?.error, 'its CRD is not installed');
  const audit = await readFile(cluster.auditLogPath, 'utf8');
  const pages = audit.split('\n').filter((l) => /"requestURI":"\/api\/v1\/namespaces\?[^"]*limit=2/.test(l) && l.includes('"user":{"username":"admin"'));
  t.ok(pages.length >= 5, `namespaces were read in pages of 2 (${pages.length} requests)`);
  t.ok(pages.some((l) => /"requestURI":"[^"]*continue=/.test(l)), 'with continue tokens');
});

t.test('meshguard scan (text) groups by namespace and rule and lists the unreadable kinds', async (t) => {
  const r = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--config', configFile]);
  t.equal(r.code, 1);
  t.match(r.stdout, 'Namespace scan-apps\n  [peer-authentication-strict] 1 violation\n    DENY PeerAuthentication scan-apps/default: mTLS mode PERMISSIVE accepts plaintext');
  t.match(r.stdout, 'Namespace scan-disabled\n  [namespace-mesh-enrollment] 1 violation\n    DENY Namespace scan-disabled: istio-injection is "disabled"');
  t.match(r.stdout, 'Not scanned:\n  istiooperators.install.istio.io: not served by the API server (tried v1alpha1): its CRD is not installed\n');
  t.match(r.stdout, /\d+ violations in 3 namespaces \(\d+ rules\); \d+ objects in \d+ kinds scanned, 2 kinds not readable\n$/);
  t.notMatch(r.stdout, 'kube-system', 'kube-system is never judged');
  t.notMatch(r.stdout, 'scan-clean', 'the compliant namespace is not mentioned');
  t.notMatch(r.stdout, 'Namespace gw', 'the gateway namespace is exempt');
  t.comment(`meshguard scan printed:\n${r.stdout}`);
});

t.test('a user with fewer rights: what cannot be read is said, the rest is scanned', async (t) => {
  const r = await runCli(['scan', '--kubeconfig', cluster.tenantKubeconfig, '--config', configFile, '-o', 'json']);
  t.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as { findings: Finding[]; notes: string[] };
  t.match(report.notes, [/^Istio revisions could not be discovered \(HTTP 403: mutatingwebhookconfigurations.admissionregistration.k8s.io is forbidden/]);
  t.ok(report.findings.some((f) => f.rule === 'peer-authentication-strict'), 'the readable kinds are still judged');
});

t.test('--mode audit labels every finding a warning', async (t) => {
  const audit = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--config', configFile, '--mode', 'audit', '-o', 'json']);
  t.equal(audit.code, 1);
  t.ok((JSON.parse(audit.stdout) as { findings: Finding[] }).findings.every((f) => f.action === 'warn'));
});

t.test('once the planted violations are fixed, the scan is clean and exits 0', async (t) => {
  const fixes = [
    ['label', 'namespace', 'scan-disabled', 'scan-audit', 'istio-injection=enabled', '--overwrite'],
    ['patch', 'peerauthentication', 'default', '-n', 'scan-apps', '--type', 'merge', '-p', '{"spec":{"mtls":{"mode":"STRICT"}}}'],
    ['delete', 'sidecar', 'open', '-n', 'scan-apps'],
    ['patch', 'deployment', 'web', '-n', 'scan-apps', '--type', 'json', '-p', '[{"op":"remove","path":"/spec/template/metadata/annotations"}]'],
  ];
  for (const f of fixes) {
    const r = await cluster.kubectl(f);
    t.equal(r.code, 0, `${f.join(' ')}: ${r.stderr}`);
  }
  const clean = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--config', configFile]);
  t.equal(clean.code, 0, 'exit 0 without violations');
  t.match(clean.stdout, /^Not scanned:\n[\s\S]*no violations; \d+ objects in \d+ kinds scanned, 2 kinds not readable\n$/);
  t.comment(`meshguard scan printed:\n${clean.stdout}`);
});

t.test('an unreachable cluster: exit 2 with one clear line', async (t) => {
  const kc = JSON.parse(await readFile(cluster.adminKubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
  for (const c of kc.clusters) c.cluster.server = 'https://127.0.0.1:1';
  const bad = join(cluster.dir, 'unreachable.kubeconfig');
  await writeFile(bad, JSON.stringify(kc));
  const r = await runCli(['scan', '--kubeconfig', bad]);
  t.equal(r.code, 2);
  t.match(r.stderr, /^meshguard: cannot list namespaces: .*\n$/);
  t.equal(r.stdout, '');
});
