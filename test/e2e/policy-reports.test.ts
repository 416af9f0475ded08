// PolicyReports on the real apiserver: the report CRDs from the chart (charts/meshguard/files/crds)
// are applied, `meshguard scan --policy-reports --open-reports` writes the reports, kubectl reads
// them back; a fixed object's entry and an emptied namespace's report disappear on the next scan;
// `meshguard serve` with the periodic scan writes them too.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/process.ts';
import { ROOT } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { eventually, startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();
t.teardown(() => cluster.stop());

const CRD_DIR = join(ROOT, 'charts/meshguard/files/crds');
await cluster.applyYaml(readdirSync(CRD_DIR).sort().map((f) => readFileSync(join(CRD_DIR, f), 'utf8')).join('\n---\n'));
// Right after creation a CRD may have no status yet, which `kubectl wait` reports as an error: retry.
const established = await eventually(async () => (await cluster.kubectl(['wait', '--for=condition=established', '--timeout=10s', 'crd', '--all'])).code === 0, 60_000, 500);
if (!established) throw new Error('the report CRDs were not established');
// A cluster where the CRDs have been installed for a while: their storage is serving.
await eventually(async () => (await cluster.kubectl(['get', 'policyreports,clusterpolicyreports,reports.openreports.io,clusterreports.openreports.io', '-A'])).code === 0, 60_000, 500);

const ns = (name: string, labels: Record<string, string>): object => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const deployment = (name: string, namespace: string, annotations: Record<string, string>): object => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace },
  spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name }, annotations }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1.0' }] } } },
});
const MESHED = { 'istio-injection': 'enabled' };
await cluster.applyYaml(
  [
    ns('default', MESHED),
    ns('meshguard', {}),
    ns('istio-system', {}),
    ns('rep-off', { 'istio-injection': 'disabled' }), // planted: namespace-mesh-enrollment (cluster report)
    ns('rep-apps', MESHED),
    ns('rep-clean', MESHED),
    deployment('web', 'rep-apps', { 'sidecar.istio.io/inject': 'false' }), // planted: workload-injection-opt-out
    deployment('api', 'rep-apps', {}),
    deployment('ok', 'rep-clean', {}),
  ]
    .map((o) => JSON.stringify(o))
    .join('\n---\n'),
);

async function kubectlJson(args: string[]): Promise<any> {
  const r = await cluster.kubectl([...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

const scan = (extra: string[] = []) => runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '--policy-reports', '--open-reports', '-o', 'json', ...extra]);

t.test('meshguard scan --policy-reports writes reports that kubectl reads back', async (t) => {
  const r = await scan();
  t.equal(r.code, 1, `violations: exit 1 (${r.stderr})`);
  t.match(r.stderr, /meshguard: reports: \d+ created, 0 replaced, 0 deleted/);
  const table = await cluster.kubectl(['get', 'policyreports', '-A']);
  t.comment(`kubectl get policyreports -A\n${table.stdout}`);
  t.match(table.stdout, /rep-apps\s+meshguard\s+\d+\s+1\s+0\s+0\s+0/, 'rep-apps: one fail in the printer columns');
  const cluster1 = await cluster.kubectl(['get', 'clusterpolicyreports']);
  t.comment(`kubectl get clusterpolicyreports\n${cluster1.stdout}`);
  const apps = await kubectlJson(['get', 'policyreport', 'meshguard', '-n', 'rep-apps']);
  const webUid = (await kubectlJson(['get', 'deployment', 'web', '-n', 'rep-apps'])).metadata.uid;
  t.equal(apps.metadata.labels['app.kubernetes.io/managed-by'], 'meshguard');
  t.same(apps.results.map((x: any) => [x.policy, x.rule, x.result, x.severity, x.category, x.resources[0].kind, x.resources[0].name]), [['meshguard', 'workload-injection-opt-out', 'fail', 'high', 'Istio workloads', 'Deployment', 'web']]);
  t.equal(apps.results[0].resources[0].uid, webUid, "the result names the Deployment's uid");
  t.match(apps.results[0].message, /sidecar\.istio\.io\/inject/);
  t.ok(apps.results[0].timestamp.seconds > 1_700_000_000, 'a timestamp');
  t.ok(apps.summary.pass > 0 && apps.summary.fail === 1, `summary ${JSON.stringify(apps.summary)}`);
  t.comment(`kubectl get policyreport meshguard -n rep-apps -o yaml (excerpt)\n${(await cluster.kubectl(['get', 'policyreport', 'meshguard', '-n', 'rep-apps', '-o', 'yaml'])).stdout}`);
  const clean = await kubectlJson(['get', 'policyreport', 'meshguard', '-n', 'rep-clean']);
  t.same(clean.results ?? [], [], 'a clean namespace: a report with no results');
  const cpr = await kubectlJson(['get', 'clusterpolicyreport', 'meshguard']);
  t.ok(cpr.results.some((x: any) => x.rule === 'namespace-mesh-enrollment' && x.resources[0].kind === 'Namespace' && x.resources[0].name === 'rep-off'), 'the disabled namespace is in the ClusterPolicyReport');
  const open = await kubectlJson(['get', 'reports.openreports.io', 'meshguard', '-n', 'rep-apps']);
  t.equal(open.source, 'meshguard');
  t.same(open.results.map((x: any) => x.rule), ['workload-injection-opt-out'], 'the openreports.io Report holds the same result');
  t.equal((await kubectlJson(['get', 'clusterreports.openreports.io', 'meshguard'])).kind, 'ClusterReport');
});

t.test('the next scan replaces the reports: a fixed object and an emptied namespace disappear', async (t) => {
  const fixed = await cluster.kubectl(['patch', '-n', 'rep-apps', 'deployment', 'web', '--type=json', '-p', '[{"op":"remove","path":"/spec/template/metadata/annotations/sidecar.istio.io~1inject"}]']);
  t.equal(fixed.code, 0, fixed.stderr);
  const del = await cluster.kubectl(['delete', '-n', 'rep-clean', 'deployment', 'ok']);
  t.equal(del.code, 0, del.stderr);
  const r = await scan();
  t.equal(r.code, 1, 'rep-off still violates');
  t.match(r.stderr, /meshguard: reports: 0 created, \d+ replaced, 2 deleted/, 'replaced, and the rep-clean reports (both formats) deleted');
  const apps = await kubectlJson(['get', 'policyreport', 'meshguard', '-n', 'rep-apps']);
  t.same(apps.results ?? [], [], 'the fixed Deployment is no longer reported (replaced, not appended)');
  t.equal(apps.summary.fail, 0);
  const gone = await cluster.kubectl(['get', 'policyreport', 'meshguard', '-n', 'rep-clean']);
  t.not(gone.code, 0, 'rep-clean has no scanned objects: its report is deleted');
  t.match(gone.stderr, /NotFound/);
  const all = await kubectlJson(['get', 'policyreports', '-A']);
  t.ok(all.items.every((i: any) => i.metadata.name === 'meshguard'), 'no stale or appended reports');
});

t.test('meshguard serve with the periodic scan writes the reports too', async (t) => {
  t.setTimeout(120_000);
  await cluster.applyYaml(JSON.stringify(deployment('late', 'rep-apps', { 'sidecar.istio.io/inject': 'false' })));
  const mg = await startMeshguard(cluster, { args: ['--scan-interval', '2'], config: { scan: { policyReports: true } } });
  t.teardown(() => mg.stop());
  const written = await eventually(async () => {
    const r = await cluster.kubectl(['get', 'policyreport', 'meshguard', '-n', 'rep-apps', '-o', 'json']);
    return r.code === 0 && (JSON.parse(r.stdout).results ?? []).some((x: any) => x.resources[0].name === 'late');
  }, 60_000, 500);
  t.ok(written, 'the periodic scan reported the new Deployment');
});

t.test('meshguard scan --namespace and --rule narrow the output', async (t) => {
  const r = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '-o', 'json', '--namespace', 'rep-off', '--rule', 'namespace-mesh-enrollment']);
  t.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as { findings: { kind: string; name: string; rule: string }[] };
  t.same(report.findings.map((f) => `${f.kind} ${f.name} [${f.rule}]`), ['Namespace rep-off [namespace-mesh-enrollment]']);
  const none = await runCli(['scan', '--kubeconfig', cluster.adminKubeconfig, '-o', 'json', '--namespace', 'rep-clean']);
  t.equal(none.code, 0, 'a clean namespace alone: exit 0');
});
