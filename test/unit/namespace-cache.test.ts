// The namespace cache keeps each namespace's name and only the labels rules read
// (NAMESPACE_LABELS), sharing one frozen labels object per combination. These tests hold it to
// that contract: the list is the labels rules read, and every verdict over the rule fixtures and a
// grid of namespace labels is the same whether a rule sees the full labels or the cached ones.
import t from 'tap';
import type { KObject } from '../../src/core/request.ts';
import { SharedLabels } from '../../src/kube/namespace-cache.ts';
import { EXEMPT_LABEL, NAMESPACE_LABELS, StaticClusterView, type NamespaceInfo } from '../../src/core/cluster-view.ts';
import { MODE_LABEL } from '../../src/core/decide.ts';
import { MESH_LABELS } from '../../src/policies/lib/mesh-enrollment.ts';
import { ADMIN, TENANT, config, mutate, ruleFixtures, validate, type Reviewed } from '../helpers/review.ts';

/** Everything a user or the apiserver sees of an outcome, less what differs per request (uid, time). */
function verdict(o: Reviewed): unknown {
  return JSON.parse(JSON.stringify({ response: o.response, results: o.results, audit: o.audit }, (k, v: unknown) => (k === 'uid' || k === 'time' ? undefined : v)));
}

/** Namespaces with all their labels (as offline checks and tests hold them) and as the cache does. */
function states(namespaces: readonly { name: string; labels: Record<string, string> }[], revisions: readonly string[]): { full: StaticClusterView; cached: StaticClusterView } {
  const shared = new SharedLabels();
  return {
    full: new StaticClusterView(namespaces as readonly NamespaceInfo[], revisions),
    cached: new StaticClusterView(
      namespaces.map((n) => ({ name: n.name, labels: shared.of(n.labels) })),
      revisions,
    ),
  };
}

t.test('the cached labels are exactly the labels rules read from the cluster state: the mesh labels, the mode label and the exemption label', async (t) => {
  t.same([...NAMESPACE_LABELS].sort(), [...MESH_LABELS, MODE_LABEL, EXEMPT_LABEL].sort());
});

t.test('namespaces with the same rule labels share one frozen object; other labels and non-strings are dropped', async (t) => {
  const s = new SharedLabels();
  const a = s.of({ 'istio-injection': 'enabled', team: 'a', 'kubernetes.io/metadata.name': 'a' });
  const b = s.of({ team: 'b', 'istio-injection': 'enabled', 'kubernetes.io/metadata.name': 'b' });
  t.equal(a, b, 'one object for the same combination, whatever the other labels and their order');
  t.same(a, { 'istio-injection': 'enabled' });
  t.ok(Object.isFrozen(a), 'frozen');
  t.same(s.of({ 'istio.io/rev': 7, 'meshguard.dev/mode': 'audit' }), { 'meshguard.dev/mode': 'audit' }, 'a value that is not a string is not a label');
  t.same(s.of(undefined), {}, 'no labels');
  t.same(s.of('nonsense'), {}, 'labels of the wrong shape');
  t.not(s.of({ 'istio.io/rev': 'a' }), s.of({ 'istio.io/rev': 'b' }), 'different values, different objects');
});

t.test('the table of shared objects is bounded; past it a namespace keeps its own labels, still correct', async (t) => {
  const s = new SharedLabels();
  for (let i = 0; i < 1000; i++) s.of({ 'istio.io/rev': `rev-${i}` });
  t.equal(s.size, 256, 'at most 256 combinations are kept');
  const late = s.of({ 'istio.io/rev': 'rev-999' });
  t.same(late, { 'istio.io/rev': 'rev-999' });
  t.ok(Object.isFrozen(late));
  t.equal(s.of({ 'istio.io/rev': 'rev-3' }), s.of({ 'istio.io/rev': 'rev-3' }), 'combinations in the table are still shared');
});

t.test('every rule fixture gets the same verdict with the full labels and with the cached ones', async (t) => {
  const fixtures = ruleFixtures().filter((f) => f.namespaces.length > 0);
  t.ok(fixtures.length >= 10, `${fixtures.length} fixtures with namespaces`);
  for (const f of fixtures) {
    const nss = f.namespaces.map((n) => ({ name: String(n.metadata?.name), labels: (n.metadata?.labels ?? {}) as Record<string, string> }));
    for (const mode of ['enforce', 'audit'] as const) {
      const c = config({ mode });
      const { full, cached } = states(nss, c.revisions);
      for (const obj of f.objects) {
        for (const user of [TENANT, ADMIN]) {
          const opts = { config: c, user };
          t.same(verdict(validate(obj, { ...opts, state: cached })), verdict(validate(obj, { ...opts, state: full })), `${f.rule}/${f.name} (${mode}, ${user.username}): validate`);
          t.same(verdict(mutate(obj, { ...opts, state: cached })), verdict(mutate(obj, { ...opts, state: full })), `${f.rule}/${f.name} (${mode}, ${user.username}): mutate`);
        }
      }
    }
  }
});

t.test('a grid of namespace labels: a Pod, a Deployment and a Namespace update get the same verdict either way', async (t) => {
  const values: Record<string, (string | undefined)[]> = {
    'istio-injection': [undefined, 'enabled', 'disabled'],
    'istio.io/rev': [undefined, 'canary', 'unknown-rev'],
    'istio.io/dataplane-mode': [undefined, 'ambient', 'none'],
    'meshguard.dev/mode': [undefined, 'audit', 'enforce', 'bogus'],
  };
  const combos: Record<string, string>[] = [{}];
  for (const [k, vs] of Object.entries(values)) {
    const next: Record<string, string>[] = [];
    for (const c of combos) for (const v of vs) next.push(v === undefined ? c : { ...c, [k]: v });
    combos.splice(0, combos.length, ...next);
  }
  const nss = combos.map((labels, i) => ({ name: `grid-${i}`, labels: { ...labels, team: `team-${i % 7}`, 'kubernetes.io/metadata.name': `grid-${i}` } }));
  for (const ambient of [false, true]) {
    const c = config({ revisions: ['canary'], ambient: { allowed: ambient } });
    const { full, cached } = states(nss, c.revisions);
    let same = 0;
    for (const n of nss) {
      const pod: KObject = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p', namespace: n.name, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } },
        spec: { containers: [{ name: 'app', image: 'app:1' }, { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.28.0' }] },
      };
      const deploy: KObject = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'd', namespace: n.name },
        spec: { selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'app', image: 'app:1' }] } } },
      };
      const nsObj: KObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: n.name, labels: { ...n.labels, 'istio-injection': 'disabled' } } };
      const cases: [KObject, { operation?: 'UPDATE'; oldObject?: KObject }][] = [
        [pod, {}],
        [deploy, {}],
        [nsObj, { operation: 'UPDATE', oldObject: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: n.name, labels: n.labels } } }],
      ];
      for (const [obj, extra] of cases) {
        for (const user of [TENANT, ADMIN]) {
          const opts = { config: c, user, ...extra };
          const a = verdict(validate(obj, { ...opts, state: cached }));
          const b = verdict(validate(obj, { ...opts, state: full }));
          if (JSON.stringify(a) === JSON.stringify(b)) same++;
          else t.same(a, b, `${obj.kind} in ${JSON.stringify(n.labels)} (${user.username}, ambient allowed: ${ambient})`);
        }
      }
    }
    t.equal(same, nss.length * 3 * 2, `${same} reviews over ${nss.length} label combinations (ambient allowed: ${ambient}) agree`);
  }
});
