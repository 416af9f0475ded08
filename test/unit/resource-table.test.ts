// The kind -> resource table offline requests are built from (src/core/resources.ts) holds the
// plurals the apiserver really serves: every kind a rule matches is in it, with the resource the
// rule registers its webhook for, and every Istio and meshguard kind has the plural and scope of
// its CRD (Istio's: the committed copy of the pinned module's crd-all.gen.yaml).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isClusterScoped, kindResource, KIND_RESOURCES } from '../../src/core/resources.ts';
import { syntheticRequest } from '../../src/core/admission-chain.ts';
import { ISTIO_KIND_DECISIONS } from '../../src/policies/lib/istio-kinds.ts';
import { RULES } from '../../src/policies/registry.ts';
import { FIXTURES } from '../helpers/review.ts';

interface CrdDoc {
  kind?: string;
  spec?: { group?: string; scope?: string; names?: { kind?: string; plural?: string } };
}

const ROOT = new URL('../../', import.meta.url).pathname;

function crds(file: string): { group: string; kind: string; plural: string; namespaced: boolean }[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as CrdDoc | null)
    .filter((d): d is CrdDoc => d?.kind === 'CustomResourceDefinition')
    .map((d) => ({ group: d.spec?.group ?? '', kind: d.spec?.names?.kind ?? '', plural: d.spec?.names?.plural ?? '', namespaced: d.spec?.scope === 'Namespaced' }));
}

const ISTIO_CRDS = crds(join(FIXTURES, 'istio/crds/crd-all.gen.yaml'));
const MESHGUARD_CRDS = crds(join(ROOT, 'charts/meshguard/crds/meshguard.dev_meshguardexceptions.yaml'));

t.test('every kind a rule matches has its resource in the table, as the rule registers it', async (t) => {
  let checked = 0;
  for (const rule of RULES) {
    for (const k of rule.match.kinds) {
      const entry = kindResource(k.group, k.kind);
      if (!t.ok(entry, `${rule.id}: ${k.kind}.${k.group || 'core'} is in the table`) || entry === undefined) continue;
      const registered = rule.webhook.filter((w) => w.apiGroup === k.group).flatMap((w) => w.resources);
      t.ok(registered.includes(entry.resource), `${rule.id}: its webhook registers ${entry.resource} for ${k.kind} (${registered.join(', ')})`);
      checked++;
    }
  }
  t.ok(checked > 20, `${checked} rule kinds checked`);
});

t.test('every Istio and meshguard kind in the table has the plural and scope of its CRD', async (t) => {
  t.ok(ISTIO_CRDS.length >= 15, `${ISTIO_CRDS.length} Istio CRDs`);
  t.equal(MESHGUARD_CRDS.length, 1);
  for (const crd of [...ISTIO_CRDS, ...MESHGUARD_CRDS]) {
    const entry = kindResource(crd.group, crd.kind);
    if (!t.ok(entry, `${crd.kind}.${crd.group} is in the table`) || entry === undefined) continue;
    t.equal(entry.resource, crd.plural, `${crd.kind}: served as ${crd.plural}`);
    t.equal(entry.namespaced, crd.namespaced, `${crd.kind}: ${crd.namespaced ? 'namespaced' : 'cluster-scoped'}`);
  }
  for (const entry of KIND_RESOURCES.filter((k) => k.group.endsWith('.istio.io'))) {
    const decided = ISTIO_KIND_DECISIONS.find((d) => d.kind.group === entry.group && d.kind.kind === entry.kind);
    t.ok(decided, `${entry.kind}: an Istio kind meshguard has a decision for`);
    if (decided?.crd === false) continue;
    t.ok(ISTIO_CRDS.some((c) => c.group === entry.group && c.kind === entry.kind), `${entry.kind}: a CRD of the Istio install`);
  }
});

t.test('the table has one entry per group and kind', async (t) => {
  const keys = KIND_RESOURCES.map((k) => `${k.kind}.${k.group}`);
  t.same([...new Set(keys)], keys);
});

t.test('an offline request names the served resource, and none for a kind it does not know', async (t) => {
  const rows: [string, string, string, string][] = [
    ['a ServiceEntry is served as serviceentries', 'networking.istio.io/v1', 'ServiceEntry', 'serviceentries'],
    ['an AuthorizationPolicy is served as authorizationpolicies', 'security.istio.io/v1', 'AuthorizationPolicy', 'authorizationpolicies'],
    ['a NetworkPolicy is served as networkpolicies', 'networking.k8s.io/v1', 'NetworkPolicy', 'networkpolicies'],
    ['a Deployment is served as deployments', 'apps/v1', 'Deployment', 'deployments'],
    ['a kind outside the table gets an empty resource, not a guessed plural', 'example.com/v1', 'Widget', ''],
    ['a known kind in another group is not taken for it', 'example.com/v1', 'Deployment', ''],
  ];
  for (const [sentence, apiVersion, kind, resource] of rows) {
    const req = syntheticRequest({ apiVersion, kind, metadata: { name: 'x', namespace: 'team-a' } }, { uid: 'u' });
    t.equal(req.resource.resource, resource, sentence);
  }
});

t.test('cluster-scoped kinds get no namespace; the rest get the default one', async (t) => {
  t.ok(isClusterScoped('Namespace'));
  t.ok(isClusterScoped('ClusterRole'));
  t.notOk(isClusterScoped('Pod'));
  t.notOk(isClusterScoped('Widget'));
  t.equal(syntheticRequest({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } }, { uid: 'u' }).namespace, '');
  t.equal(syntheticRequest({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }, { uid: 'u' }).namespace, 'default');
});
