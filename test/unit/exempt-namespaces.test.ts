// Infrastructure namespaces exempted by label (issue 18 item 5; checklist B17): a CNI's or a node
// agent's namespace labelled meshguard.dev/exempt=infrastructure by an administrator is left out
// of the namespace and workload webhooks (so its Pods start while meshguard is down) and skipped
// by the rules; tenants can neither set nor remove the label, and the webhook that guards it
// still sees every namespace write that could. The real apiserver's side (selectors and CEL
// conditions) is in test/e2e/deletion-path.test.ts.
import t from 'tap';
import type { KObject } from '../../src/core/request.ts';
import { DELETION_PATH_CONDITIONS, NAMESPACE_CONDITIONS, webhookConfigurations } from '../../src/policies/webhook-config.ts';
import { EXEMPT_LABEL, EXEMPT_VALUE } from '../../src/core/cluster-view.ts';
import { RULES } from '../../src/policies/registry.ts';
import { ADMIN, TENANT, failedRules, ns, state, validate } from '../helpers/review.ts';

const EXEMPT = { [EXEMPT_LABEL]: EXEMPT_VALUE };

function namespace(name: string, labels: Record<string, string> = {}): KObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } };
}

/** A node agent: a hostNetwork DaemonSet, as a CNI runs it. */
function nodeAgent(namespace: string): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'calico-node', namespace },
    spec: { selector: { matchLabels: { app: 'calico-node' } }, template: { metadata: { labels: { app: 'calico-node' } }, spec: { hostNetwork: true, containers: [{ name: 'calico-node', image: 'calico/node', securityContext: { privileged: true } }] } } },
  };
}

t.test('the label is admin-only, on every path that can set or remove it', async (t) => {
  const cases: [string, KObject, KObject | null, string, typeof ADMIN, boolean][] = [
    ['an admin creating calico-system labelled exempt (not in the mesh) is allowed', namespace('calico-system', EXEMPT), null, '', ADMIN, true],
    ['an admin exempting an existing calico-system is allowed', namespace('calico-system', EXEMPT), namespace('calico-system'), '', ADMIN, true],
    ['a tenant creating a namespace labelled exempt is denied', namespace('team-x', { 'istio-injection': 'enabled', ...EXEMPT }), null, '', TENANT, false],
    ['a tenant exempting their namespace is denied', namespace('team-x', { 'istio-injection': 'enabled', ...EXEMPT }), namespace('team-x', { 'istio-injection': 'enabled' }), '', TENANT, false],
    ['a tenant exempting their namespace through namespaces/status is denied', namespace('team-x', { 'istio-injection': 'enabled', ...EXEMPT }), namespace('team-x', { 'istio-injection': 'enabled' }), 'status', TENANT, false],
    ['a tenant exempting their namespace through namespaces/finalize is denied', namespace('team-x', { 'istio-injection': 'enabled', ...EXEMPT }), namespace('team-x', { 'istio-injection': 'enabled' }), 'finalize', TENANT, false],
    ['a tenant removing the exemption of calico-system is denied', namespace('calico-system'), namespace('calico-system', EXEMPT), '', TENANT, false],
    ['a tenant setting another value is denied', namespace('team-x', { 'istio-injection': 'enabled', [EXEMPT_LABEL]: 'yes' }), null, '', TENANT, false],
  ];
  for (const [name, object, old, subResource, user, allowed] of cases) {
    const v = validate(object, { operation: old === null ? 'CREATE' : 'UPDATE', oldObject: old, subResource, user });
    t.equal(v.response.response.allowed, allowed, name);
    if (!allowed) t.ok(failedRules(v).includes('control-labels-admin-only'), `${name}: by control-labels-admin-only`);
  }
  const tenant = validate(namespace('team-x', { 'istio-injection': 'disabled', ...EXEMPT }), { user: TENANT });
  t.same(failedRules(tenant), ['control-labels-admin-only', 'namespace-mesh-enrollment'], 'a tenant cannot use the label to skip the mesh rule: both rules deny');
});

t.test('workloads in an exempt namespace are skipped; the same workload elsewhere is denied', async (t) => {
  const cluster = state([ns('calico-system', EXEMPT), ns('monitoring', {}), ns('team-a', { 'istio-injection': 'enabled' })]);
  const exempt = validate(nodeAgent('calico-system'), { state: cluster });
  t.equal(exempt.response.response.allowed, true, 'a hostNetwork, privileged DaemonSet in calico-system (labelled exempt) is allowed');
  t.same(failedRules(exempt), [], 'with no finding');
  t.ok(exempt.results.some((r) => r.status === 'skip' && r.reason === 'namespace calico-system is exempt'), 'the rules say why they skipped');
  t.equal(validate(nodeAgent('monitoring'), { state: cluster }).response.response.allowed, false, 'the same DaemonSet in an unlabelled monitoring namespace is denied');
  t.equal(validate(nodeAgent('team-a'), { state: cluster }).response.response.allowed, false, 'and in a meshed tenant namespace');
  const other = state([ns('calico-system', { [EXEMPT_LABEL]: 'true' })]);
  t.equal(validate(nodeAgent('calico-system'), { state: other }).response.response.allowed, false, 'only the value infrastructure exempts');
});

t.test('webhook configurations: the workload and mutating webhooks leave exempt namespaces out; the namespace webhook does not', async (t) => {
  const { mutating, validating } = webhookConfigurations({ client: { url: 'https://127.0.0.1:8443' }, failurePolicy: 'Fail', exemptNamespaces: ['istio-system'], meshguardNamespace: 'meshguard', rules: RULES });
  type Hook = { name: string; rules: { resources: string[] }[]; namespaceSelector: { matchExpressions: { key: string; operator: string; values: string[] }[] }; matchConditions?: { name: string; expression: string }[] };
  const hooks = [...(mutating['webhooks'] as Hook[]), ...(validating['webhooks'] as Hook[])];
  const byName = (n: string): Hook => hooks.find((h) => h.name === n) as Hook;
  const excludesLabel = (h: Hook): boolean => h.namespaceSelector.matchExpressions.some((e) => e.key === EXEMPT_LABEL && e.operator === 'NotIn' && e.values.includes(EXEMPT_VALUE));
  const resources = (h: Hook): string[] => h.rules.flatMap((r) => r.resources);
  t.ok(excludesLabel(byName('validate-workloads.meshguard.dev')), 'validate-workloads.meshguard.dev (Pods and workloads) does not match exempt namespaces');
  t.ok(excludesLabel(byName('mutate.meshguard.dev')), 'mutate.meshguard.dev never enrols an exempt namespace');
  t.ok(resources(byName('validate-workloads.meshguard.dev')).includes('pods') && !resources(byName('validate-workloads.meshguard.dev')).some((r) => r.startsWith('namespaces')), 'Pods there, namespaces not');
  const nsHook = byName('validate.meshguard.dev');
  t.same(resources(nsHook).sort(), ['namespaces', 'namespaces/finalize', 'namespaces/status'], 'namespaces have their own webhook');
  t.notOk(excludesLabel(nsHook), 'which matches exempt namespaces too: setting the label is always checked');
  t.notOk(excludesLabel(byName('validate-all-namespaces.meshguard.dev')), 'Istio resources are checked in exempt namespaces as before');
  t.same(nsHook.matchConditions?.map((c) => c.name), [...DELETION_PATH_CONDITIONS, ...NAMESPACE_CONDITIONS].map((c) => c.name), 'the namespace webhook carries the deletion-path and namespace conditions');
  for (const n of ['validate-workloads.meshguard.dev', 'validate-all-namespaces.meshguard.dev']) t.same(byName(n).matchConditions, DELETION_PATH_CONDITIONS, `${n} carries the deletion-path condition`);
  for (const h of hooks) t.ok((h.matchConditions ?? []).length <= 64 && (h.matchConditions ?? []).every((c) => /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(c.name)), `${h.name}: condition names are qualified names, at most 64 conditions`);
});
