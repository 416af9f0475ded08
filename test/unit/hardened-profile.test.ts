// The chart's hardened profile (charts/meshguard/profiles/hardened.yaml), rendered by the real
// helm binary: the NetworkPolicy set turned on in meshguard's configuration, and RBAC on
// networkpolicies only with it, update/delete limited to the names the reconciler writes.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR } from '../../tools/sync-chart.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';
import { ensureBinaries } from '../e2e/cluster/build.ts';

t.setTimeout(60 * 60 * 1000);

const { helm } = await ensureBinaries();
const home = mkdtempSync(join(tmpdir(), 'mg-helm-profile-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));
const env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
const PROFILE = join(CHART_DIR, 'profiles/hardened.yaml');

type Obj = Record<string, any>;

function render(args: string[]): Promise<Obj[]> {
  return new Promise((resolve, reject) => {
    execFile(helm, ['template', 'meshguard', CHART_DIR, '-n', 'meshguard', ...args], { env, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`helm template failed: ${stderr}`));
      else resolve(parseAllDocuments(stdout).map((d) => d.toJS() as Obj | null).filter((d): d is Obj => d !== null));
    });
  });
}

function netpolRules(docs: Obj[]): Obj[] {
  // The periodic scan's list-only rule is the scan's, not the reconciler's.
  return docs
    .filter((d) => d.kind === 'ClusterRole')
    .flatMap((d) => d.rules as Obj[])
    .filter((r) => r.apiGroups.includes('networking.k8s.io') && r.resources.includes('networkpolicies') && r.verbs.join() !== 'list');
}

function configOf(docs: Obj[]): Obj {
  const cm = docs.find((d) => d.kind === 'ConfigMap' && d.data?.['config.json'] !== undefined);
  return JSON.parse(cm?.data['config.json'] ?? '{}') as Obj;
}

t.test('default values: no NetworkPolicy reconciliation and no RBAC on networkpolicies', async (t) => {
  const docs = await render([]);
  t.equal(configOf(docs).reconciler?.networkPolicies?.enabled ?? false, false);
  t.same(netpolRules(docs), []);
});

t.test('the hardened profile: on, valid configuration, RBAC by name', async (t) => {
  const docs = await render(['-f', PROFILE, '--set', 'config.reconciler.networkPolicies.extra.allow-db.spec.podSelector.matchLabels.app=orders']);
  const config = configOf(docs);
  t.equal(config.reconciler.networkPolicies.enabled, true, 'the NetworkPolicy set is on');
  t.doesNotThrow(() => loadConfig({ overrides: { ...config, mode: 'enforce' }, ruleIds: RULE_IDS }), 'meshguard accepts the rendered configuration');
  t.same(netpolRules(docs), [
    { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['get', 'list', 'watch', 'create'] },
    {
      apiGroups: ['networking.k8s.io'],
      resources: ['networkpolicies'],
      resourceNames: ['meshguard-default-deny', 'meshguard-allow-ingress', 'meshguard-allow-egress', 'meshguard-allow-ambient', 'allow-db'],
      verbs: ['update', 'delete'],
    },
  ], 'create anywhere; update and delete only the names the reconciler writes, extras included');
});
