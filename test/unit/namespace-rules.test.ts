import t from 'tap';
import fastJsonPatch from 'fast-json-patch';
import type { KObject } from '../../src/core/request.ts';
import { copyJson, runPipeline } from '../../src/core/admission-chain.ts';
import { reviewValidate } from '../../src/core/pipeline.ts';
import { RuleSet } from '../../src/core/rule-set.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import type { ValidatingRule } from '../../src/core/types.ts';
import { ALWAYS_ENFORCED } from '../../src/core/decide.ts';
import { WARNING_MAX } from '../../src/core/render.ts';
import { ADMIN, TENANT, config, decodePatch, encoded, failedRules, mutate, ns, requestFor, ruleFixtures, state, validate } from '../helpers/review.ts';

const NS_RULES = ['namespace-mesh-enrollment', 'control-labels-admin-only'];

function namespace(name: string, labels?: Record<string, string>, annotations?: Record<string, string>): KObject {
  const metadata: Record<string, unknown> = { name };
  if (labels !== undefined) metadata['labels'] = labels;
  if (annotations !== undefined) metadata['annotations'] = annotations;
  return { apiVersion: 'v1', kind: 'Namespace', metadata };
}

function applied(object: KObject, patch: unknown[]): KObject {
  return fastJsonPatch.applyPatch(structuredClone(object), patch as fastJsonPatch.Operation[], true, false).newDocument;
}

t.test('namespace fixtures go through mutate then validate, as the apiserver runs them', async (t) => {
  for (const f of ruleFixtures().filter((f) => NS_RULES.includes(f.rule))) {
    for (const mode of ['enforce', 'audit'] as const) {
      t.test(`${f.name} (${mode} mode)`, async (t) => {
        const c = config({ mode });
        const obj = f.objects[0] as KObject;
        const r = runPipeline(obj, { uid: 'u1', userInfo: TENANT }, c, state([], c.revisions), BUILTIN_RULES);
        const v = encoded(r.validation, 'u1');
        if (f.expect === 'allow') {
          t.equal(v.response.response.allowed, true, 'allowed');
          // The mutation applies in both modes (mutation: apply), so a good fixture has no finding.
          t.same(failedRules(v), [], 'no findings');
          return;
        }
        t.ok(failedRules(v).includes(f.rule), `found by ${f.rule}`);
        if (mode === 'enforce' || ALWAYS_ENFORCED.has(f.rule)) {
          t.equal(v.response.response.allowed, false);
          t.equal(v.response.response.status?.code, 403);
          t.equal(v.response.response.status?.reason, 'Forbidden');
          t.match(v.response.response.status?.message, `[${f.rule}]`);
          t.match(v.response.response.status?.message, 'Fix:');
        } else {
          t.equal(v.response.response.allowed, true);
          t.ok(v.response.response.warnings?.some((w) => w.startsWith(`policy ${f.rule}: `)), 'warning');
          t.ok(v.response.response.auditAnnotations?.[f.rule], 'audit annotation');
          t.equal(v.audit?.verdict, 'warned');
        }
      });
    }
  }
});

t.test('namespace UPDATEs that weaken enrollment are denied (B1, B2)', async (t) => {
  const meshed = namespace('team-a', { 'istio-injection': 'enabled', team: 'a' });
  const cases: [string, KObject, string, boolean][] = [
    ['removing istio-injection is denied', namespace('team-a', { team: 'a' }), '', false],
    ['downgrading istio-injection to disabled is denied', namespace('team-a', { 'istio-injection': 'disabled', team: 'a' }), '', false],
    ['re-casing istio-injection to Enabled is denied', namespace('team-a', { 'istio-injection': 'Enabled', team: 'a' }), '', false],
    ['removing the label through namespaces/status is denied', namespace('team-a', { team: 'a' }), 'status', false],
    ['removing the label through namespaces/finalize is denied', namespace('team-a', { team: 'a' }), 'finalize', false],
    ['changing an unrelated label is allowed', namespace('team-a', { 'istio-injection': 'enabled', team: 'b' }), '', true],
    ['switching to ambient is allowed', namespace('team-a', { 'istio.io/dataplane-mode': 'ambient', team: 'a' }), '', true],
  ];
  for (const [name, next, sub, allowed] of cases) {
    const v = validate(next, { operation: 'UPDATE', oldObject: meshed, subResource: sub });
    t.equal(v.response.response.allowed, allowed, name);
    if (!allowed) t.match(v.response.response.status?.message, 'this update takes the namespace out of the mesh (it was istio-injection=enabled)', `${name}: says what it was`);
  }
  const legacy = namespace('legacy', { team: 'x' });
  t.equal(validate(legacy, { operation: 'UPDATE', oldObject: legacy, subResource: 'status' }).response.response.allowed, true, 'a status write on a never-meshed namespace is allowed (the namespace controller must finalize it)');
  t.equal(validate(legacy, { operation: 'UPDATE', oldObject: legacy }).response.response.allowed, false, 'a main-resource update of a never-meshed namespace is denied');
  const terminating = { ...namespace('gone', {}), metadata: { name: 'gone', deletionTimestamp: '2026-01-01T00:00:00Z' } };
  t.equal(validate(terminating, { operation: 'UPDATE', oldObject: terminating }).response.response.allowed, true, 'a terminating namespace is allowed');
});

t.test('namespace labels: value variants and revisions (B3, B8, B9, B14)', async (t) => {
  for (const v of ['disabled', 'Enabled', 'ENABLED', 'true', 'yes', ' enabled', '']) {
    t.equal(validate(namespace('n', { 'istio-injection': v })).response.response.allowed, false, `istio-injection=${JSON.stringify(v)} is denied`);
  }
  const c = config({ revisions: ['canary', 'stable'] });
  t.equal(validate(namespace('n', { 'istio.io/rev': 'canary' }), { config: c }).response.response.allowed, true, 'a known revision is meshed');
  t.equal(validate(namespace('n', { 'istio.io/rev': 'ghost' }), { config: c }).response.response.allowed, false, 'an unknown revision is denied');
  t.match(validate(namespace('n', { 'istio.io/rev': 'ghost' }), { config: c }).response.response.status?.message, 'known: canary, stable');
  t.equal(validate(namespace('n', { 'istio.io/rev': 'canary' }), { state: state([], ['canary']) }).response.response.allowed, true, 'a discovered revision is meshed');
  t.equal(validate(namespace('n', { 'istio.io/dataplane-mode': 'ambient' }), { config: config({ 'ambient.allowed': false }) }).response.response.allowed, false, 'ambient is denied when not allowed');
  t.same(decodePatch(mutate(namespace('n', { 'istio.io/rev': 'canary' }))), [{ op: 'add', path: '/metadata/annotations', value: { 'meshguard.dev/hardened': 'true' } }], 'the mutation adds no istio-injection next to istio.io/rev (B9)');
});

t.test('the mutation: labels first, never overwrites, escapes keys, idempotent (B19)', async (t) => {
  const cases: [string, KObject, Record<string, unknown>][] = [
    ['a namespace with no labels and no annotations maps gets both maps', namespace('a'), { 'istio-injection': 'enabled' }],
    ['a namespace with other labels keeps them', namespace('b', { foo: 'bar' }), { 'istio-injection': 'enabled', foo: 'bar' }],
    ['keys with / and ~ are escaped', namespace('c', { 'a/b~c': 'x' }, { 'x~/y': 'z' }), { 'istio-injection': 'enabled', 'a/b~c': 'x' }],
    ['an explicit istio-injection=disabled is never overwritten', namespace('d', { 'istio-injection': 'disabled' }), { 'istio-injection': 'disabled' }],
    ['an ambient namespace gets no injection label', namespace('e', { 'istio.io/dataplane-mode': 'ambient' }), { 'istio.io/dataplane-mode': 'ambient' }],
  ];
  for (const [name, obj, labels] of cases) {
    const o = mutate(obj);
    const out = applied(obj, decodePatch(o));
    t.same(out.metadata?.labels, labels, `${name}: labels`);
    t.equal(out.metadata?.annotations?.['meshguard.dev/hardened'], 'true', `${name}: hardening annotation`);
    const first = decodePatch(o)[0] as { path: string; value: unknown };
    if (!('istio-injection' in (obj.metadata?.labels ?? {})) && !('istio.io/dataplane-mode' in (obj.metadata?.labels ?? {}))) {
      const firstKey = first.path === '/metadata/labels' ? Object.keys(first.value as object)[0] : first.path.split('/').pop();
      t.equal(firstKey, 'istio-injection', `${name}: the injection label is the first change`);
    }
    t.same(decodePatch(mutate(out)), [], `${name}: a second pass gives no patch`);
    t.equal(o.response.response.patchType, 'JSONPatch', `${name}: patchType`);
  }
  const escaped = decodePatch(mutate(namespace('f', { 'a/b': '1' }, {})));
  t.ok(escaped.some((op) => (op as { path: string }).path === '/metadata/annotations/meshguard.dev~1hardened'), 'a key with / is escaped as ~1');
  t.same(decodePatch(mutate(namespace('g'), { config: config({ injection: { mode: 'revision', revision: 'canary' } }) }))[0], { op: 'add', path: '/metadata/labels', value: { 'istio.io/rev': 'canary' } }, 'revision mode adds istio.io/rev');
  t.same(decodePatch(mutate(namespace('h'), { config: config({ 'injection.mode': 'ambient' }) }))[0], { op: 'add', path: '/metadata/labels', value: { 'istio.io/dataplane-mode': 'ambient' } }, 'ambient mode adds the dataplane label');
  const hl = config({ hardening: { labels: { 'pod-security.kubernetes.io/enforce': 'restricted' }, annotations: { 'meshguard.dev/hardened': 'true', 'x/y': 'z' } } });
  const withLabels = applied(namespace('i', { 'pod-security.kubernetes.io/enforce': 'baseline' }), decodePatch(mutate(namespace('i', { 'pod-security.kubernetes.io/enforce': 'baseline' }), { config: hl })));
  t.same(withLabels.metadata?.labels, { 'istio-injection': 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' }, 'configured hardening labels never overwrite an explicit value');
  t.equal(withLabels.metadata?.annotations?.['x/y'], 'z', 'configured hardening annotations are added');
  t.same(decodePatch(mutate(namespace('kube-system'))), [], 'an exempt namespace is not mutated');
  const audit = mutate(namespace('j'), { config: config({ mode: 'audit' }) });
  t.same(decodePatch(audit), decodePatch(mutate(namespace('j'))), 'audit mode applies the same patch as enforce (mutation: apply, the default)');
  t.same(audit.response.response.warnings ?? [], [], 'and reports nothing');
  for (const mode of ['enforce', 'audit'] as const) {
    const report = mutate(namespace('j'), { config: config({ mode, mutation: 'report' }) });
    t.equal(report.response.response.patch, undefined, `mutation: report in ${mode} mode applies no patch`);
    t.ok(report.response.response.warnings?.some((w) => w.startsWith('policy namespace-hardening-defaults: would add label istio-injection=enabled')), `mutation: report in ${mode} mode reports the change`);
    t.equal(report.audit?.verdict, 'warned', 'with an audit record');
  }
  t.same(decodePatch(mutate(namespace('k'), { operation: 'UPDATE', oldObject: namespace('k') })), [], 'UPDATE is never mutated');
  t.same(decodePatch(mutate(namespace('l'), { dryRun: true })), decodePatch(mutate(namespace('l'))), 'dry-run gets the same patch');
});

t.test('the mutation edits a copy: the received object is never changed, whatever its metadata holds', async (t) => {
  const cases: [string, KObject][] = [
    ['plain labels and annotations', namespace('m', { foo: 'bar' }, { a: 'b' })],
    ['nested values, arrays and nulls in metadata', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'n', labels: { x: 'y' }, finalizers: ['a', 'b'], ownerReferences: [{ kind: 'X', name: 'x', controller: true }], deletionGracePeriodSeconds: null } } as KObject],
    ['a "__proto__" key, as JSON.parse makes it (an own property)', JSON.parse('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"p","labels":{"__proto__":{"polluted":"yes"},"q":"r"}}}') as KObject],
  ];
  for (const [name, obj] of cases) {
    const before = JSON.stringify(obj);
    const o = mutate(obj);
    t.equal(JSON.stringify(obj), before, `${name}: the request object is unchanged`);
    t.ok(decodePatch(o).length > 0, `${name}: and still patched`);
    t.same(decodePatch(mutate(applied(obj, decodePatch(o)))), [], `${name}: the patched object needs nothing more`);
  }
  const src = JSON.parse('{"a":[1,{"b":null}],"__proto__":{"polluted":"yes"},"c":"d"}') as Record<string, unknown>;
  const copy = copyJson(src);
  t.same(copy, src, 'copyJson: an equal value');
  t.not(copy['a'], src['a'], 'copyJson: arrays are copied, not shared');
  t.ok(Object.hasOwn(copy, '__proto__'), 'copyJson: "__proto__" stays an own key');
  t.equal(Object.getPrototypeOf(copy), Object.prototype, 'copyJson: and never becomes the prototype');
  t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'copyJson: nothing is polluted');
  const when = new Date(0);
  t.not(copyJson({ when })['when'], when, 'copyJson: a value that is not JSON is copied by structuredClone');
});

t.test('a Namespace whose metadata holds a value nested 100 000 levels deep is patched, and only its labels and annotations are copied', async (t) => {
  // The apiserver decodes typed metadata (and meshguard drops managedFields), so this comes from
  // another client; the answer must still be a patch, not a stack overflow.
  const depth = 100_000;
  const obj = JSON.parse(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"deep","labels":{"team":"a"},"extra":${'{"a":'.repeat(depth)}{}${'}'.repeat(depth)}}}`) as KObject;
  const extra = (obj.metadata as Record<string, unknown>)['extra'];
  const o = mutate(obj);
  t.equal(o.verdict, 'patched', 'the review completes with a patch (copying the whole metadata overflowed the stack)');
  t.same(decodePatch(o), [
    { op: 'add', path: '/metadata/labels/istio-injection', value: 'enabled' },
    { op: 'add', path: '/metadata/annotations', value: { 'meshguard.dev/hardened': 'true' } },
  ], 'the patch touches labels and annotations only');
  t.same(obj.metadata?.labels, { team: 'a' }, 'the request object keeps its labels');
  t.equal(obj.metadata?.annotations, undefined, 'and gets no annotations');
  t.equal((obj.metadata as Record<string, unknown>)['extra'], extra, 'the deep value is neither copied nor replaced');
  let level = 0;
  for (let v = extra as Record<string, unknown>; Object.hasOwn(v, 'a'); v = v['a'] as Record<string, unknown>) level++;
  t.equal(level, depth, 'and keeps its whole depth');
  // Labels and annotations are copied one level deep (they map strings to strings): a malformed
  // nested value in them is shared, not walked.
  const nested = `${'{"a":'.repeat(depth)}{}${'}'.repeat(depth)}`;
  for (const where of ['labels', 'annotations']) {
    const bad = JSON.parse(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"deep","${where}":{"team":"a","x":${nested}}}}`) as KObject;
    const inner = ((bad.metadata as Record<string, Record<string, unknown>>)[where] as Record<string, unknown>)['x'];
    const b = mutate(bad);
    t.equal(b.verdict, 'patched', `a value nested ${depth} deep in ${where}: still patched`);
    t.equal(((bad.metadata as Record<string, Record<string, unknown>>)[where] as Record<string, unknown>)['x'], inner, `a value nested ${depth} deep in ${where}: the request object keeps it`);
  }
});

t.test("meshguard's own labels are admin-only", async (t) => {
  const withMode = namespace('team-a', { 'istio-injection': 'disabled', 'meshguard.dev/mode': 'audit' });
  const tenant = validate(withMode, { user: TENANT });
  t.equal(tenant.response.response.allowed, false, 'a tenant cannot create a namespace that switches itself to audit');
  t.same(failedRules(tenant), ['control-labels-admin-only', 'namespace-mesh-enrollment'], 'both rules are enforced (the untrusted label does not downgrade them)');
  const admin = validate(withMode, { user: ADMIN });
  t.equal(admin.response.response.allowed, true, 'an admin-set audit label puts the namespace in audit mode');
  t.ok(admin.response.response.warnings?.[0]?.startsWith('policy namespace-mesh-enrollment: '), 'with a warning');
  const meshed = namespace('team-b', { 'istio-injection': 'enabled' });
  const cases: [string, KObject, KObject, typeof TENANT, boolean][] = [
    ['a tenant adding meshguard.dev/mode is denied', meshed, namespace('team-b', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'enforce' }), TENANT, false],
    ['a tenant removing meshguard.dev/mode is denied', namespace('team-b', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'enforce' }), meshed, TENANT, false],
    ['a tenant removing the hardened annotation is denied', namespace('team-b', { 'istio-injection': 'enabled' }, { 'meshguard.dev/hardened': 'true' }), meshed, TENANT, false],
    ['an admin adding meshguard.dev/mode is allowed', meshed, namespace('team-b', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'audit' }), ADMIN, true],
    ['a tenant keeping the hardened annotation is allowed', namespace('team-b', { 'istio-injection': 'enabled' }, { 'meshguard.dev/hardened': 'true' }), namespace('team-b', { 'istio-injection': 'enabled', x: 'y' }, { 'meshguard.dev/hardened': 'true' }), TENANT, true],
  ];
  for (const [name, old, next, user, allowed] of cases) {
    t.equal(validate(next, { operation: 'UPDATE', oldObject: old, user }).response.response.allowed, allowed, name);
  }
  t.equal(validate(namespace('team-c', { 'istio-injection': 'enabled' }, { 'meshguard.dev/hardened': 'true' }), { user: TENANT }).response.response.allowed, true, 'the hardening annotation added by the mutation is not a tenant change');
  t.equal(validate(namespace('team-c', { 'istio-injection': 'enabled' }, { 'meshguard.dev/hardened': 'false' }), { user: TENANT }).response.response.allowed, false, 'a tenant setting the hardening annotation to another value is denied');
  const stored = namespace('team-d', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'audit' });
  const weakened = namespace('team-d', { 'istio-injection': 'disabled', 'meshguard.dev/mode': 'audit' });
  t.equal(validate(weakened, { operation: 'UPDATE', oldObject: stored, user: TENANT }).response.response.allowed, true, 'a stored admin-set audit label applies to tenant updates');
  const workloadNs = state([ns('team-e', { 'istio-injection': 'enabled', 'meshguard.dev/mode': 'audit' })]);
  t.equal(validate(namespace('team-e', { 'istio-injection': 'disabled' }), { operation: 'CREATE', state: workloadNs }).response.response.allowed, false, 'on CREATE a tenant label is not trusted, whatever the cache says');
});

t.test('verdict plumbing: dry-run, DELETE, unknown kinds, throwing rules', async (t) => {
  const bad = namespace('x', { 'istio-injection': 'disabled' });
  const real = validate(bad);
  const dry = validate(bad, { dryRun: true });
  t.same({ ...dry.response.response, uid: '' }, { ...real.response.response, uid: '' }, 'dry-run gets exactly the verdict of a real request');
  t.equal(dry.audit?.dryRun, true, 'the audit record says dry-run');
  const del = validate(null, { operation: 'DELETE', oldObject: bad });
  t.same(del.response.response.allowed, true, 'DELETE with object null is allowed');
  const cm = validate({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'team-a' } });
  t.equal(cm.response.response.allowed, true, 'a kind no rule covers is allowed');
  t.equal(cm.response.response.warnings, undefined, 'without warnings');

  const thrower: ValidatingRule = {
    id: 'always-throws',
    type: 'validating',
    title: 'test',
    fix: 'none',
    match: { kinds: [{ group: '', kind: 'Namespace' }], operations: ['CREATE'] },
    webhook: [],
    validate() {
      throw new TypeError('boom');
    },
  };
  const rules = new RuleSet({ validating: [thrower], mutating: [], lookup: () => undefined });
  const req = requestFor(namespace('y', { 'istio-injection': 'enabled' }));
  const denied = encoded(reviewValidate(req, config(), state(), rules));
  t.equal(denied.response.response.allowed, false, 'in enforce mode a throwing rule denies (fail closed)');
  t.match(denied.response.response.status?.message, 'rule could not be evaluated (TypeError: boom)');
  t.equal(denied.results[0]?.status, 'error', 'the result is an error value');
  const allowedOnError = encoded(reviewValidate(req, config({ onError: 'allow' }), state(), rules));
  t.equal(allowedOnError.response.response.allowed, true, 'onError allow lets it through');
  t.match(allowedOnError.response.response.warnings?.[0], 'policy always-throws: rule could not be evaluated');
});

t.test('per-rule settings: disable and pin to audit', async (t) => {
  const bad = namespace('x', { 'istio-injection': 'disabled' });
  t.equal(validate(bad, { config: config({ rules: { 'namespace-mesh-enrollment': { enabled: false } } }) }).response.response.allowed, true, 'a disabled rule does not deny');
  const pinned = validate(bad, { config: config({ rules: { 'namespace-mesh-enrollment': { mode: 'audit' } } }) });
  t.equal(pinned.response.response.allowed, true, 'a rule pinned to audit only warns in enforce mode');
  t.equal(pinned.response.response.warnings?.length, 1);
  const enforced = validate(bad, { config: config({ mode: 'audit', rules: { 'namespace-mesh-enrollment': { mode: 'enforce' } } }) });
  t.equal(enforced.response.response.allowed, false, 'a rule pinned to enforce denies in audit mode');
});

t.test('warnings and audit annotations stay within what kubectl and the apiserver accept', async (t) => {
  const o = validate(namespace('x'.repeat(63), { 'istio-injection': 'x'.repeat(300), 'istio.io/rev': 'y'.repeat(60), 'meshguard.dev/mode': 'z' }), { config: config({ mode: 'audit' }) });
  const warnings = o.response.response.warnings ?? [];
  t.ok(warnings.length > 0, 'audit mode warns');
  for (const w of warnings) {
    t.ok(w.length <= WARNING_MAX && WARNING_MAX === 256, `warning of ${w.length} characters`);
    t.match(w, /^policy [a-z0-9-]+: /, 'the warning starts with the rule id');
  }
  const enrollment = warnings.find((w) => w.startsWith('policy namespace-mesh-enrollment:'));
  t.match(enrollment, /\(at metadata\.labels\["istio-injection"\]\) Fix: /, 'a 300-character label value still leaves the field and the fix in the warning');
  for (const k of Object.keys(o.response.response.auditAnnotations ?? {})) t.match(k, /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, `audit key ${k}`);
});
