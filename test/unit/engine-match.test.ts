// The memoized match plan (core/match.ts matchPlan) must skip exactly what skipReason skips, for
// every rule and request shape, under different configurations, and never let one request's
// namespace or object leak into the plan another request gets.
import t from 'tap';
import type { KObject, Operation } from '../../src/core/request.ts';
import { evaluate, runRule } from '../../src/core/evaluate.ts';
import { matchPlan, skipReason } from '../../src/core/match.ts';
import { memoKey } from '../../src/core/rule-set.ts';
import { results, type Result, type RuleContext } from '../../src/core/types.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import { config, requestFor, state } from '../helpers/review.ts';

const objects: readonly KObject[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } },
  { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team-a' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } },
  { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'kube-system' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } },
  { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'team-a' }, spec: { template: { metadata: {}, spec: { containers: [{ name: 'app', image: 'nginx' }] } } } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: {} },
  { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 's', namespace: 'team-a' }, spec: {} },
  { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'kube-system' }, spec: {} },
  { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w', namespace: 'team-a' } },
];
const operations: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];
const configs = {
  'the default configuration': config(),
  'a configuration with two rules disabled': config({ rules: { 'workload-host-network': { enabled: false }, 'namespace-mesh-enrollment': { enabled: false } } }),
  'a configuration with team-a exempt': config({ exemptNamespaces: ['kube-system', 'team-a'] }),
};

/** evaluate as it was before the plan: skipReason per rule, per request. */
function reference(ctx: RuleContext): Result[] {
  const out: Result[] = [];
  for (const rule of BUILTIN_RULES.validating) {
    const reason = skipReason(rule, ctx.request, ctx.config);
    if (reason === undefined) runRule(rule, ctx, out);
    else out.push(results.skip(rule.id, reason));
  }
  return out;
}

for (const [name, c] of Object.entries(configs)) {
  t.test(`${name}: evaluate gives what per-rule skipReason gave, for every kind, operation and subresource`, async (t) => {
    let compared = 0;
    for (const object of objects) {
      for (const operation of operations) {
        for (const subResource of ['', 'ephemeralcontainers', 'status']) {
          const req = requestFor(operation === 'DELETE' ? null : object, { operation, subResource, oldObject: operation === 'CREATE' ? null : object });
          const ctx = { request: req, config: c, cluster: state(), memo: BUILTIN_RULES.memo };
          t.same(evaluate(BUILTIN_RULES, ctx), reference(ctx), `${object.kind} ${operation} ${JSON.stringify(subResource)}: the same results`);
          compared++;
        }
      }
    }
    t.equal(compared, objects.length * operations.length * 3, `${compared} request shapes compared`);
  });
}

t.test('the plan depends on the shape of a request only: the same object in another namespace gets the same plan, exemptions are judged per request', async (t) => {
  const c = configs['the default configuration'];
  const pod = (namespace: string): KObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
  const a = requestFor(pod('team-a'));
  const b = requestFor(pod('kube-system'));
  t.equal(matchPlan(BUILTIN_RULES, a, c), matchPlan(BUILTIN_RULES, b, c), 'one plan for both');
  const inTeam = evaluate(BUILTIN_RULES, { request: a, config: c, cluster: state(), memo: BUILTIN_RULES.memo });
  const inSystem = evaluate(BUILTIN_RULES, { request: b, config: c, cluster: state(), memo: BUILTIN_RULES.memo });
  t.ok(inTeam.some((r) => r.ruleId === 'workload-host-network' && r.status === 'pass'), 'team-a: the workload rules run');
  t.ok(inSystem.some((r) => r.ruleId === 'workload-host-network' && r.status === 'skip' && r.reason === 'namespace kube-system is exempt'), 'kube-system: the same rule is skipped as exempt');
  t.not(matchPlan(BUILTIN_RULES, a, configs['a configuration with two rules disabled']), matchPlan(BUILTIN_RULES, a, c), 'another configuration gets its own plan');
  t.ok(Object.isFrozen(matchPlan(BUILTIN_RULES, a, c)), 'a shared plan is frozen');
});

t.test('caches belong to a rule set: a subset gets its own plans, and a memoized answer is per request', async (t) => {
  const c = configs['the default configuration'];
  const req = requestFor(objects[1] as KObject);
  const subset = BUILTIN_RULES.withValidating(BUILTIN_RULES.validating.filter((r) => r.id.startsWith('workload-')));
  t.not(matchPlan(subset, req, c), matchPlan(BUILTIN_RULES, req, c), 'the subset does not reuse the built-in set\'s plan');
  t.equal(matchPlan(subset, req, c).length, subset.validating.length, 'its plan covers its own rules');
  t.equal(BUILTIN_RULES.pass('workload-host-network'), BUILTIN_RULES.pass('workload-host-network'), 'one shared pass result per rule');
  t.not(subset.memo, BUILTIN_RULES.memo, 'each set has its own request memo');
  const key = memoKey<number>('test answer');
  let computed = 0;
  const answer = (r: typeof req): number => subset.memo.get(key, { request: r, config: c }, () => ++computed);
  t.equal(answer(req), 1, 'computed for the first request');
  t.equal(answer(req), 1, 'kept for the same request');
  t.equal(answer(requestFor(objects[1] as KObject)), 2, 'computed again for another request');
  t.equal(subset.memo.get(key, { request: req, config: configs['a configuration with team-a exempt'] }, () => ++computed), 3, 'and for another configuration');
});
