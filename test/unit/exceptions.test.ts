// MeshguardExceptions: decoding, which findings an exception lets through (after evaluation, before
// decide), what the admission then says (warning, audit annotation, audit record naming the
// exception and its expiry), expiry, and the admin-only rule for writing them.
import t from 'tap';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { applyExceptions, exceptionSubject } from '../../src/core/exceptions.ts';
import { reviewValidate } from '../../src/core/pipeline.ts';
import { decodeException, type MeshguardException } from '../../src/core/exception-model.ts';
import { withExceptions } from '../../src/kube/exception-store.ts';
import { BUILTIN_RULES, RULE_IDS } from '../../src/policies/registry.ts';
import { ADMIN, FIXTURES, TENANT, config, encoded, loadYaml, ns, requestFor, state } from '../helpers/review.ts';

const NOW = Date.parse('2026-06-01T00:00:00Z');
const hostNetDs = loadYaml(join(FIXTURES, 'rules/workload-host-network/bad/a-daemon-set-with-host-network.yaml')).find((d) => d.kind === 'DaemonSet') as KObject;
const meshed = state([ns('workloads-meshed', { 'istio-injection': 'enabled' })]);

function exception(spec: Record<string, unknown>, name = 'node-exporter', namespace = 'workloads-meshed'): Record<string, unknown> {
  return { apiVersion: 'meshguard.dev/v1alpha1', kind: 'MeshguardException', metadata: { name, namespace }, spec };
}
const base = { kinds: ['apps/DaemonSet'], names: ['hostnet-ds'], rules: [{ id: 'workload-host-network' }], reason: 'node-exporter reads the node network', expires: '2026-12-31T00:00:00Z' };

function decoded(obj: unknown): MeshguardException {
  const d = decodeException(obj, RULE_IDS);
  if ('error' in d) throw new Error(d.error);
  return d.exception;
}

t.test('decoding refuses an exception that does not say what, why or until when', async (t) => {
  const rows: [string, Record<string, unknown>, RegExp | undefined][] = [
    ['a named DaemonSet excepted from one rule is well formed', base, undefined],
    ['a selector instead of names is well formed', { ...base, names: undefined, selector: { matchLabels: { app: 'node-exporter' } } }, undefined],
    ['without kinds it is refused', { ...base, kinds: [] }, /spec\.kinds/],
    ['without names or selector it is refused', { ...base, names: [] }, /names or spec\.selector/],
    ['an empty selector (everything) is refused', { ...base, names: [], selector: {} }, /selects everything/],
    ['an unknown rule id is refused', { ...base, rules: [{ id: 'no-such-rule' }] }, /no rule "no-such-rule"/],
    ['an empty values list is refused', { ...base, rules: [{ id: 'workload-host-network', values: [] }] }, /values must be a non-empty list/],
    ['without a reason it is refused', { ...base, reason: ' ' }, /spec\.reason/],
    ['without an expiry it is refused', { ...base, expires: undefined }, /spec\.expires/],
    ['an expiry that is not a time is refused', { ...base, expires: 'next year' }, /spec\.expires/],
  ];
  for (const [name, spec, want] of rows) {
    const d = decodeException(exception(spec), RULE_IDS);
    if (want === undefined) t.ok('exception' in d, name);
    else t.match('error' in d ? d.error : '', want, name);
  }
});

t.test('an exception lets through only the findings it covers, until it expires', async (t) => {
  const req = requestFor(hostNetDs);
  const results = reviewValidate(req, config(), meshed, BUILTIN_RULES).results;
  t.ok(results.some((r) => r.ruleId === 'workload-host-network' && r.status === 'fail'), 'control: the DaemonSet fails workload-host-network');
  const rows: [string, Record<string, unknown>, string, boolean][] = [
    ['the named DaemonSet is excepted', base, 'workloads-meshed', true],
    ['a DaemonSet selected by its labels is excepted', { ...base, names: undefined, selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['hostnet-ds'] }] } }, 'workloads-meshed', true],
    ['an exception for another name is not applied', { ...base, names: ['other'] }, 'workloads-meshed', false],
    ['an exception for another kind is not applied', { ...base, kinds: ['apps/Deployment'] }, 'workloads-meshed', false],
    ['an exception in another namespace is not applied', base, 'elsewhere', false],
    ['an exception for another rule is not applied', { ...base, rules: [{ id: 'workload-network-privileges' }] }, 'workloads-meshed', false],
    ['an exception whose allowed values include the finding\'s value is applied', { ...base, rules: [{ id: 'workload-host-network', values: ['true'] }] }, 'workloads-meshed', true],
    ['an exception whose allowed values do not include it is not applied', { ...base, rules: [{ id: 'workload-host-network', values: ['false'] }] }, 'workloads-meshed', false],
    ['an expired exception is not applied', { ...base, expires: '2026-05-31T23:59:59Z' }, 'workloads-meshed', false],
  ];
  for (const [name, spec, namespace, want] of rows) {
    const e = decoded(exception(spec, 'x', namespace));
    const out = applyExceptions(results, exceptionSubject(req), [e], NOW);
    t.equal(out.excepted.some((x) => x.result.ruleId === 'workload-host-network'), want, name);
    t.equal(out.results.length + out.excepted.length, results.length, `${name}: every result is kept or excepted`);
  }
});

t.test('an excepted admission is allowed and says so: warning, audit annotation and audit record name the exception and its expiry', async (t) => {
  const e = decoded(exception({ ...base, expires: '2099-01-01T00:00:00Z' }));
  const cluster = withExceptions(meshed, { forNamespace: (n) => (n === 'workloads-meshed' ? [e] : []) });
  const out = encoded(reviewValidate(requestFor(hostNetDs), config(), cluster, BUILTIN_RULES));
  t.equal(out.response.response.allowed, true, 'allowed');
  t.same(out.response.response.warnings, ['policy workload-host-network: excepted by MeshguardException workloads-meshed/node-exporter until 2099-01-01T00:00:00Z']);
  t.match(out.response.response.auditAnnotations?.['excepted-workload-host-network'], /^MeshguardException workloads-meshed\/node-exporter \(expires 2099-01-01T00:00:00Z; reason: node-exporter reads the node network\): hostNetwork: true/);
  t.equal(out.audit?.verdict, 'warned');
  t.same(out.audit?.exceptions?.map((x) => [x.rule, x.exception, x.expires]), [['workload-host-network', 'workloads-meshed/node-exporter', '2099-01-01T00:00:00Z']]);
  const expired = decoded(exception({ ...base, expires: '2020-01-01T00:00:00Z' }));
  const late = encoded(reviewValidate(requestFor(hostNetDs), config(), withExceptions(meshed, { forNamespace: () => [expired] }), BUILTIN_RULES));
  t.equal(late.response.response.allowed, false, 'an expired exception stops applying: denied');
  t.match(late.response.response.status?.message, '[workload-host-network]');
});

t.test('only meshguard administrators may create or change a MeshguardException, in every mode', async (t) => {
  const obj = exception(base) as KObject;
  const rows: [string, { user: typeof ADMIN; mode: 'enforce' | 'audit'; object?: KObject }, boolean][] = [
    ['an admin creates one', { user: ADMIN, mode: 'enforce' }, true],
    ['a tenant is refused', { user: TENANT, mode: 'enforce' }, false],
    ['a tenant is refused in audit mode too (an exception outlives the mode)', { user: TENANT, mode: 'audit' }, false],
    ['an admin is refused a malformed one', { user: ADMIN, mode: 'enforce', object: exception({ ...base, reason: '' }) as KObject }, false],
  ];
  for (const [name, o, want] of rows) {
    const out = encoded(reviewValidate(requestFor(o.object ?? obj, { user: o.user }), config({ mode: o.mode }), meshed, BUILTIN_RULES));
    t.equal(out.response.response.allowed, want, name);
    if (!want) t.match(out.response.response.status?.message, '[exception-admin-only]', `${name}: names the rule`);
  }
  const update = encoded(reviewValidate(requestFor(obj, { user: TENANT, operation: 'UPDATE', oldObject: obj }), config(), meshed, BUILTIN_RULES));
  t.match(update.response.response.status?.message, 'only meshguard administrators may change a MeshguardException', 'a tenant cannot change one either');
});
