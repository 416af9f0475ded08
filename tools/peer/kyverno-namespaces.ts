// Kyverno's istio namespace policies (../shared/peer-suites/kyverno-istio): the same verdicts
// where our rules cover the same ground, and the deliberate differences asserted and listed.
import t from 'tap';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import type { KObject } from '../../src/core/request.ts';
import { config, decodePatch, failedRules, loadYaml, mutate, validate } from '../../test/helpers/review.ts';
import { PEER } from './suites.ts';

/** Deliberate differences from Kyverno, also listed in the README. */
export const DIFFERENCES = [
  ['add-sidecar-injection-namespace', 'istio-test-dis-ns (istio-injection=disabled)', 'Kyverno overwrites it to enabled', 'meshguard never overwrites an explicit value; namespace-mesh-enrollment denies the namespace instead'],
  ['add-ambient-mode-namespace', 'istio-test-dis-ns (dataplane-mode=other)', 'Kyverno overwrites it to ambient', 'meshguard never overwrites; the value is denied by namespace-mesh-enrollment'],
  ['enforce-sidecar-injection-namespace', 'bad-istio-sinj03 (no labels)', 'Kyverno denies', 'meshguard denies at validation only if the mutation did not run: the mutating webhook first adds istio-injection=enabled, so a plain `kubectl create namespace` succeeds enrolled'],
  ['enforce-sidecar-injection-namespace', 'namespaces enrolled by istio.io/rev or ambient', 'Kyverno denies (only istio-injection=enabled passes)', 'meshguard accepts an installed revision and (by default) ambient as meshed'],
] as const;

function docs(...parts: string[]): KObject[] {
  return loadYaml(join(PEER, ...parts));
}

function nameOf(o: KObject): string {
  return String(o.metadata?.name);
}

t.test('enforce-sidecar-injection-namespace: same verdicts on validation', async (t) => {
  for (const [file, allowed] of [['ns-good.yaml', true], ['ns-bad-disabled.yaml', false], ['ns-bad-somelabel.yaml', false], ['ns-bad-nolabel.yaml', false]] as const) {
    for (const ns of docs('enforce-sidecar-injection-namespace', file)) {
      const v = validate(ns);
      t.equal(v.response.response.allowed, allowed, `${nameOf(ns)} from ${file} is ${allowed ? 'admitted' : 'rejected'}`);
      if (!allowed) t.same(failedRules(v), ['namespace-mesh-enrollment']);
    }
  }
});

t.test('enforce-ambient-mode-namespace: same verdicts on validation', async (t) => {
  for (const [file, allowed] of [['ns-good.yaml', true], ['ns-bad-disabled.yaml', false], ['ns-bad-somelabel.yaml', false], ['ns-bad-nolabel.yaml', false]] as const) {
    for (const ns of docs('enforce-ambient-mode-namespace', file)) {
      t.equal(validate(ns).response.response.allowed, allowed, `${nameOf(ns)} from ${file} is ${allowed ? 'admitted' : 'rejected'}`);
    }
  }
});

function mutated(ns: KObject, c = config()): KObject {
  const ops = decodePatch(mutate(ns, { config: c })) as fastJsonPatch.Operation[];
  return fastJsonPatch.applyPatch(structuredClone(ns), ops, true, false).newDocument;
}

t.test('add-sidecar-injection-namespace: same labels after mutation, except an explicit disabled', async (t) => {
  const cases: [string, string][] = [
    ['chainsaw-step-02-apply-1.yaml', 'patched-ns-enabled.yaml'],
    ['chainsaw-step-02-apply-3.yaml', 'patched-ns-none.yaml'],
    ['chainsaw-step-02-apply-4.yaml', 'patched-ns-alt.yaml'],
  ];
  for (const [input, expected] of cases) {
    const ns = docs('add-sidecar-injection-namespace', input)[0] as KObject;
    const want = docs('add-sidecar-injection-namespace', expected)[0] as KObject;
    t.same(mutated(ns).metadata?.labels, want.metadata?.labels, `${nameOf(ns)}: labels as in ${expected}`);
  }
  const disabled = docs('add-sidecar-injection-namespace', 'chainsaw-step-02-apply-2.yaml')[0] as KObject;
  t.same(mutated(disabled).metadata?.labels, { 'istio-injection': 'disabled' }, 'difference: istio-injection=disabled is kept, not overwritten');
  t.same(failedRules(validate(mutated(disabled))), ['namespace-mesh-enrollment'], 'and the namespace is denied instead');
});

t.test('add-ambient-mode-namespace (injection.mode ambient): same labels, except an explicit other value', async (t) => {
  const c = config({ 'injection.mode': 'ambient' });
  for (const [input, expected] of [['chainsaw-step-02-apply-1.yaml', 'patched-ns-enabled.yaml'], ['chainsaw-step-02-apply-3.yaml', 'patched-ns-none.yaml'], ['chainsaw-step-02-apply-4.yaml', 'patched-ns-alt.yaml']]) {
    const ns = docs('add-ambient-mode-namespace', input as string)[0] as KObject;
    const want = docs('add-ambient-mode-namespace', expected as string)[0] as KObject;
    t.same(mutated(ns, c).metadata?.labels, want.metadata?.labels, `${nameOf(ns)}: labels as in ${expected}`);
  }
  const other = docs('add-ambient-mode-namespace', 'chainsaw-step-02-apply-2.yaml')[0] as KObject;
  t.same(mutated(other, c).metadata?.labels, { 'istio.io/dataplane-mode': 'other' }, 'difference: dataplane-mode=other is kept');
  t.equal(validate(mutated(other, c), { config: c }).response.response.allowed, false, 'and denied');
});
