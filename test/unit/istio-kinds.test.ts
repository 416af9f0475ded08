// Every kind of Istio's CRD set has a recorded decision (covered, restricted or allowed), and every
// rule registers each Istio kind in exactly the versions the real CRDs serve. The CRDs are a
// committed copy of the pinned module's manifests/charts/base/files/crd-all.gen.yaml.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { rulesReference } from '../../tools/sync-docs.ts';
import { ISTIO_KIND_DECISIONS, ISTIO_KINDS } from '../../src/policies/lib/istio-kinds.ts';
import { RULES } from '../../src/policies/registry.ts';
import { FIXTURES } from '../helpers/review.ts';

interface Crd {
  readonly group: string;
  readonly kind: string;
  readonly plural: string;
  readonly served: readonly string[];
}

interface CrdDoc {
  kind?: string;
  spec?: { group?: string; names?: { kind?: string; plural?: string }; versions?: { name?: string; served?: boolean }[] };
}

const CRD_FILE = join(FIXTURES, 'istio/crds/crd-all.gen.yaml');
const CRDS: Crd[] = parseAllDocuments(readFileSync(CRD_FILE, 'utf8'))
  .map((d) => d.toJS() as CrdDoc | null)
  .filter((d): d is CrdDoc => d?.kind === 'CustomResourceDefinition')
  .map((d) => ({
    group: d.spec?.group ?? '',
    kind: d.spec?.names?.kind ?? '',
    plural: d.spec?.names?.plural ?? '',
    served: (d.spec?.versions ?? []).filter((v) => v.served === true).map((v) => v.name ?? ''),
  }));

const key = (group: string, kind: string): string => `${kind}.${group}`;
const sorted = (xs: readonly string[]): string[] => [...xs].sort();

t.test('the CRD copy is the whole Istio set', async (t) => {
  t.ok(CRDS.length >= 15, `${CRDS.length} CRDs`);
  for (const g of ['networking.istio.io', 'security.istio.io', 'extensions.istio.io', 'telemetry.istio.io']) t.ok(CRDS.some((c) => c.group === g), `has ${g}`);
  t.ok(CRDS.some((c) => c.kind === 'TrafficExtension'), 'has TrafficExtension');
});

t.test('every Istio CRD kind has exactly one decision, with its served versions and resource', async (t) => {
  for (const crd of CRDS) {
    const ds = ISTIO_KIND_DECISIONS.filter((d) => d.kind.group === crd.group && d.kind.kind === crd.kind);
    t.equal(ds.length, 1, `${key(crd.group, crd.kind)} has one decision`);
    const d = ds[0];
    if (d === undefined) continue;
    t.same(sorted(d.kind.versions), sorted(crd.served), `${crd.kind}: the versions are the served ones (${crd.served.join(', ')})`);
    t.equal(d.kind.resource, crd.plural, `${crd.kind}: resource ${crd.plural}`);
    t.not(d.crd, false, `${crd.kind} is a CRD`);
    t.ok(d.reason.length > 20, `${crd.kind}: the decision says why`);
  }
  for (const d of ISTIO_KIND_DECISIONS) {
    const inCrds = CRDS.some((c) => c.group === d.kind.group && c.kind === d.kind.kind);
    t.equal(inCrds, d.crd !== false, `${d.kind.kind}: ${d.crd === false ? 'marked as no CRD, and none exists' : 'exists in the CRD set'}`);
  }
});

t.test('covered and restricted kinds are matched by their rules in every served version; allowed kinds by none', async (t) => {
  const restricted = RULES.find((r) => r.id === 'restricted-istio-kinds');
  for (const d of ISTIO_KIND_DECISIONS) {
    const name = d.kind.kind;
    const matching = RULES.filter((r) => r.match.kinds.some((k) => k.group === d.kind.group && k.kind === name)).map((r) => r.id);
    if (d.decision === 'allowed') {
      t.same(d.rules, [], `${name}: allowed names no rule`);
      t.same(matching, [], `${name}: no rule matches it`);
      continue;
    }
    t.ok(d.rules.length > 0, `${name}: ${d.decision} names its rules`);
    t.same(sorted(matching), sorted(d.rules), `${name}: exactly the named rules match it`);
    if (d.decision === 'restricted') t.ok(restricted?.match.kinds.some((k) => k.kind === name), `${name}: restricted by restricted-istio-kinds`);
    for (const id of d.rules) {
      const rule = RULES.find((r) => r.id === id);
      const hook = rule?.webhook.find((w) => w.apiGroup === d.kind.group && w.resources.includes(d.kind.resource));
      t.ok(hook, `${id}: a webhook entry for ${d.kind.resource}`);
      t.same(sorted(hook?.apiVersions ?? []), sorted(d.kind.versions), `${id}: ${name} in ${d.kind.versions.join(', ')}`);
    }
  }
  t.ok(ISTIO_KINDS.every((k) => ISTIO_KIND_DECISIONS.some((d) => d.kind === k)), 'every kind a rule reads has a decision');
});

t.test('every rule webhook entry for an Istio group lists exactly the served versions of the real CRD', async (t) => {
  // Distinct CRDs checked (several rules may read one kind).
  const checkedCrds = new Set<string>();
  for (const rule of RULES) {
    for (const w of rule.webhook) {
      if (!w.apiGroup.endsWith('.istio.io')) continue;
      for (const resource of w.resources) {
        const crd = CRDS.find((c) => c.group === w.apiGroup && c.plural === resource);
        if (crd === undefined) {
          t.ok(ISTIO_KIND_DECISIONS.some((d) => d.crd === false && d.kind.resource === resource), `${rule.id}: ${resource}.${w.apiGroup} is a known offline-only kind`);
          continue;
        }
        t.same(sorted(w.apiVersions), sorted(crd.served), `${rule.id}: ${resource}.${w.apiGroup} in ${crd.served.join(', ')}`);
        checkedCrds.add(`${crd.plural}.${crd.group}`);
      }
    }
  }
  const judged = ISTIO_KIND_DECISIONS.filter((d) => d.decision !== 'allowed' && d.crd !== false).length;
  t.equal(checkedCrds.size, judged, `every judged kind's webhook resource (${judged}) checked against the CRDs`);
});

t.test('docs/rules.md lists every decision', async (t) => {
  const page = rulesReference();
  t.match(page, '## Istio kinds');
  for (const d of ISTIO_KIND_DECISIONS) t.match(page, `| ${d.kind.kind} | \`${d.kind.group}\` |`, `${d.kind.kind} has a row`);
});
