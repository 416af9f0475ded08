// Defense in depth on the real apiserver: the reconciled NetworkPolicy set (created in a meshed
// namespace, restored after hand edits and deletes, removed when the namespace leaves the mesh,
// previewed by dry-run), NetworkPolicy admission (widening tenant policies denied, ordinary ones
// admitted, meshguard's own managed policies admitted), and the mesh-wide hardening checks as
// configured (the Istio CNI required: an injected istio-init denied; advisory and audit-default
// findings admitted with warnings; scan reporting the missing mesh-wide pieces).
//
// The reconciler scenarios run without meshguard's webhooks, as in reconciler.test.ts: taking a
// namespace out of the mesh is what the namespace rules deny.
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';
import { desiredState, startReconciler, type ReconcilerHandle } from '../../src/jobs/reconciler/index.ts';
import { runCli } from '../helpers/process.ts';
import { FIXTURES, loadYaml } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { applyIstioCrds } from './helpers/istio.ts';
import { eventually, sleep, startMeshguard, type Meshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
t.teardown(() => cluster.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n');
await applyIstioCrds(cluster);

const BOUND_MS = 15_000;
const MANAGED = 'app.kubernetes.io/managed-by=meshguard';
const DB = { namespaces: ['np-a'], spec: { podSelector: { matchLabels: { app: 'orders' } }, egress: [{ to: [{ ipBlock: { cidr: '52.95.110.1/32' } }], ports: [{ port: 5432 }] }] } };
const OVERRIDES = {
  gatewayNamespaces: ['istio-ingress'],
  'reconciler.enabled': true,
  'reconciler.resyncSeconds': 30,
  'reconciler.networkPolicies': { enabled: true, monitoringNamespaces: ['monitoring'], extra: { 'allow-orders-db': DB } },
};
const SET = ['allow-orders-db', 'meshguard-allow-egress', 'meshguard-allow-ingress', 'meshguard-default-deny'];
const AMBIENT_SET = ['meshguard-allow-ambient', 'meshguard-allow-egress', 'meshguard-allow-ingress', 'meshguard-default-deny'];

function inProcess(identity: string, extra: Record<string, unknown> = {}): { handle: ReconcilerHandle; lines: string[]; config: ReturnType<typeof loadConfig> } {
  const lines: string[] = [];
  const log = { info: (_o: object, m: string) => void lines.push(m), warn: (_o: object, m: string) => void lines.push(m) };
  const config = loadConfig({ overrides: { ...OVERRIDES, ...extra }, ruleIds: RULE_IDS });
  const handle = startReconciler({ config, kc: loadKubeConfig({ kubeconfig: cluster.adminKubeconfig, inCluster: false }), log, identity, crdRecheckMs: 500 });
  return { handle, lines, config };
}

async function policies(ns: string, selector?: string): Promise<Map<string, any>> {
  const r = await cluster.kubectl(['get', 'networkpolicies', '-n', ns, ...(selector !== undefined ? ['-l', selector] : []), '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return new Map((JSON.parse(r.stdout) as { items: any[] }).items.map((i) => [i.metadata.name as string, i]));
}
const names = async (ns: string, selector?: string): Promise<string[]> => [...(await policies(ns, selector)).keys()].sort();

async function waitFor(what: () => Promise<boolean>): Promise<{ ok: boolean; ms: number }> {
  const t0 = performance.now();
  const ok = await eventually(what, BOUND_MS, 100);
  return { ok, ms: Math.round(performance.now() - t0) };
}

const ns = (name: string, labels: Record<string, string>): string => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });

const a = inProcess('np-replica');
t.teardown(() => a.handle.stop());

t.test('a meshed namespace gets the NetworkPolicy set, exactly as planned, and nothing is re-applied', async (t) => {
  await cluster.applyYaml(ns('np-a', { 'istio-injection': 'enabled' }));
  const w = await waitFor(async () => (await names('np-a', MANAGED)).length === SET.length);
  t.ok(w.ok, `created within ${BOUND_MS / 1000} s`);
  t.comment(`the NetworkPolicy set appeared after ${w.ms} ms`);
  t.same(await names('np-a', MANAGED), SET);
  const stored = await policies('np-a');
  const planned = desiredState([{ name: 'np-a', labels: { 'istio-injection': 'enabled' }, terminating: false }], a.config, new Set()).objects.filter((o) => o.kind === 'NetworkPolicy');
  for (const p of planned) t.same(stored.get(p.name)?.spec, p.spec, `${p.name}: the stored spec is the planned one (no server default makes it drift)`);
  t.same(stored.get('meshguard-allow-ingress')?.spec.ingress[0].from[1].namespaceSelector.matchExpressions[0].values, ['istio-ingress', 'monitoring'], 'ingress from the gateway and monitoring namespaces');
  const pass = await a.handle.reconciler.reconcile();
  t.same(pass.actions.map((x) => x.type), [], 'a further pass plans nothing');
  t.same(await names('default'), [], 'the unmeshed default namespace gets nothing');
});

t.test('an ambient namespace also gets HBONE and the probe address', async (t) => {
  await cluster.applyYaml(ns('np-amb', { 'istio.io/dataplane-mode': 'ambient' }));
  t.ok((await waitFor(async () => (await names('np-amb', MANAGED)).length === AMBIENT_SET.length)).ok);
  t.same(await names('np-amb', MANAGED), AMBIENT_SET);
  const amb = (await policies('np-amb')).get('meshguard-allow-ambient');
  t.same(amb?.spec.ingress[0].from, [{ ipBlock: { cidr: '169.254.7.127/32' } }, { ipBlock: { cidr: 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128' } }]);
  t.same(amb?.spec.ingress[1].ports, [{ protocol: 'TCP', port: 15008 }]);
});

t.test('hand edits are restored and hand deletes recreated', async (t) => {
  const edit = await cluster.kubectl(['patch', 'networkpolicy', 'meshguard-allow-egress', '-n', 'np-a', '--type', 'merge', '-p', '{"spec":{"egress":[{}]}}']);
  t.equal(edit.code, 0, edit.stderr);
  const restored = await waitFor(async () => JSON.stringify((await policies('np-a')).get('meshguard-allow-egress')?.spec.egress) !== '[{}]');
  t.ok(restored.ok, 'an egress widened by hand is restored');
  t.comment(`restored after ${restored.ms} ms`);
  t.ok(a.lines.some((l) => l.startsWith('reconciler: restored NetworkPolicy np-a/meshguard-allow-egress, which was changed by hand: spec.egress')), 'and the change is logged');
  const uid = (await policies('np-a')).get('meshguard-default-deny')?.metadata.uid;
  t.equal((await cluster.kubectl(['delete', 'networkpolicy', 'meshguard-default-deny', '-n', 'np-a'])).code, 0);
  const back = await waitFor(async () => {
    const now = (await policies('np-a')).get('meshguard-default-deny')?.metadata.uid;
    return now !== undefined && now !== uid;
  });
  t.ok(back.ok, 'a deleted default-deny comes back');
  t.comment(`recreated after ${back.ms} ms`);
});

t.test('leaving the mesh removes the set; a tenant policy stays', async (t) => {
  await cluster.applyYaml(JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'tenant-own', namespace: 'np-a' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } }));
  const out = await cluster.kubectl(['label', 'namespace', 'np-a', 'istio-injection-']);
  t.equal(out.code, 0, out.stderr);
  const gone = await waitFor(async () => (await names('np-a', MANAGED)).length === 0);
  t.ok(gone.ok, 'every managed NetworkPolicy is deleted');
  t.comment(`removed after ${gone.ms} ms`);
  t.same(await names('np-a'), ['tenant-own'], 'the unmanaged one is left alone');
  t.ok(a.lines.some((l) => l === 'reconciler: deleted NetworkPolicy np-a/meshguard-default-deny (namespace np-a is not in the mesh)'), 'logged with the reason');
});

t.test('dry-run previews the set and creates nothing', async (t) => {
  await a.handle.stop();
  const dry = inProcess('np-dry', { 'reconciler.dryRun': true, 'reconciler.leaseName': 'meshguard-np-dry-run' });
  t.teardown(() => dry.handle.stop());
  await cluster.applyYaml(ns('np-dry', { 'istio-injection': 'enabled' }));
  const logged = await eventually(async () => dry.lines.some((l) => l.includes('would create NetworkPolicy np-dry/meshguard-default-deny')), BOUND_MS);
  t.ok(logged, 'the plan is logged');
  const lines = dry.lines.filter((l) => l.includes('NetworkPolicy np-dry/'));
  t.same(lines, [
    'reconciler (dry-run): would create NetworkPolicy np-dry/meshguard-allow-egress (built-in:network-egress-in-cluster)',
    'reconciler (dry-run): would create NetworkPolicy np-dry/meshguard-allow-ingress (built-in:network-ingress-from-sources)',
    'reconciler (dry-run): would create NetworkPolicy np-dry/meshguard-default-deny (built-in:network-default-deny)',
  ], 'allow policies first, default-deny last');
  t.comment(lines.join('\n'));
  await sleep(500);
  t.same(await names('np-dry'), [], 'nothing was created');
});

// ------------------------------------------------------------------ admission (enforce) ---

const injectedPod = loadYaml(join(FIXTURES, 'rules/pod-sidecar-present/good/an-injected-pod.yaml')).find((o) => o.kind === 'Pod') as KObject;

let mg: Meshguard | undefined;
t.teardown(() => mg?.stop());

t.test('meshguard registered in enforce mode, the Istio CNI required', async (t) => {
  mg = await startMeshguard(cluster, { config: { meshHardening: { requireCni: true }, gatewayNamespaces: ['istio-ingress'] } });
  await cluster.applyYaml([ns('np-team', { 'istio-injection': 'enabled' }), JSON.stringify({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'np-team' } })].join('\n---\n'));
  await mg.register('Fail');
  await sleep(500); // the namespace cache has seen np-team
  t.pass('registered');
});

const netpol = (name: string, spec: object, labels: Record<string, string> = {}): string =>
  JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'np-team', labels }, spec });
const WIDE = netpol('reach-partner', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '52.95.110.1/32' } }] }] }, { 'app.kubernetes.io/managed-by': 'meshguard' });

t.test('NetworkPolicy admission: widening denied, ordinary admitted, meshguard\'s own admitted', async (t) => {
  const open = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: netpol('open', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] }) });
  t.not(open.code, 0, 'an egress rule without "to" is refused');
  t.match(open.stderr, '[network-policy-widening]');
  t.match(open.stderr, 'NetworkPolicies are additive');
  t.comment(open.stderr.trim());
  const ordinary = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: netpol('in-cluster', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: {} }] }] }) });
  t.equal(ordinary.code, 0, `an in-cluster egress policy is admitted: ${ordinary.stderr}`);
  const copied = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: WIDE });
  t.not(copied.code, 0, 'a tenant copying the managed label is refused');
  // meshguard's reconciler runs as a service account of meshguard's namespace.
  const sa = 'system:serviceaccount:meshguard:meshguard';
  await cluster.applyYaml(JSON.stringify({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'np-meshguard-sa' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'meshguard-e2e-tenant' }, subjects: [{ kind: 'ServiceAccount', name: 'meshguard', namespace: 'meshguard' }] }));
  const own = await cluster.kubectl([`--as=${sa}`, 'apply', '-f', '-'], { input: WIDE });
  t.equal(own.code, 0, `the managed policy from meshguard's service account is admitted: ${own.stderr}`);
  const admin = await cluster.kubectl(['apply', '-f', '-'], { input: netpol('admin-open', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] }) });
  t.equal(admin.code, 0, `an administrator may: ${admin.stderr}`);
});

t.test('mesh-wide checks at admission, as configured', async (t) => {
  const pod = structuredClone(injectedPod) as any;
  pod.metadata.namespace = 'np-team';
  const cni = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: JSON.stringify(pod) });
  t.not(cni.code, 0, 'requireCni: an injected pod with istio-init is refused');
  t.match(cni.stderr, '[mesh-istio-cni]');
  t.comment(cni.stderr.trim());
  pod.metadata.name = 'with-cni';
  pod.spec.initContainers = pod.spec.initContainers.filter((c: { name: string }) => c.name !== 'istio-init').concat([{ name: 'istio-validation', image: 'docker.io/istio/proxyv2:1.24.0', args: ['istio-iptables', '--run-validation'] }]);
  const ok = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: JSON.stringify(pod) });
  t.equal(ok.code, 0, `the same pod with istio-validation (the CNI) is admitted: ${ok.stderr}`);
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'np-team' }, spec: { selector: { app: 'web' }, ports: [{ port: 8080, name: 'web' }] } };
  const sniff = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: JSON.stringify(svc) });
  t.equal(sniff.code, 0, `a Service port without a protocol is admitted (mesh-protocol-sniffing defaults to audit): ${sniff.stderr}`);
  t.match(sniff.stderr, 'Warning: policy mesh-protocol-sniffing: port 8080 (web) declares no protocol');
  const raObj = { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'np-team' }, spec: { jwtRules: [{ issuer: 'https://issuer.example' }] } };
  const ra = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: JSON.stringify(raObj) });
  t.equal(ra.code, 0, `a RequestAuthentication is admitted: ${ra.stderr}`);
  t.match(ra.stderr, 'Warning: policy request-authentication-principal: a RequestAuthentication rejects invalid tokens');
});

t.test('scan reports the mesh-wide findings', async (t) => {
  const configFile = join(cluster.dir, 'np-scan-config.json');
  await writeFile(configFile, JSON.stringify({ gatewayNamespaces: ['istio-ingress'] }));
  await cluster.applyYaml(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'enableAutoMtls: false\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n' } }));
  const scan = async (): Promise<string[]> => {
    const r = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--config', configFile, '--output', 'json']);
    const report = JSON.parse(r.stdout) as { findings: { action: string; kind: string; namespace: string; name: string; rule: string }[] };
    const mine = ['mesh-root-strict-mtls', 'mesh-auto-mtls', 'request-authentication-principal'];
    return report.findings.filter((f) => mine.includes(f.rule)).map((f) => `${f.action} ${f.kind} ${f.namespace}/${f.name} [${f.rule}]`).sort();
  };
  const before = await scan();
  t.same(before, [
    'deny PeerAuthentication istio-system/default [mesh-root-strict-mtls]',
    'warn ConfigMap istio-system/istio [mesh-auto-mtls]',
    'warn RequestAuthentication np-team/jwt [request-authentication-principal]',
  ], 'a missing root STRICT policy, auto mTLS off without a root DestinationRule, a RequestAuthentication without a principal requirement');
  t.comment(before.join('\n'));
  await cluster.applyYaml(
    [
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
      { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'default', namespace: 'istio-system' }, spec: { host: '*.local', trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'require-jwt', namespace: 'np-team' }, spec: { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] } },
    ]
      .map((o) => JSON.stringify(o))
      .join('\n---\n'),
  );
  t.same(await scan(), [], 'fixed: none of them is reported');
});
