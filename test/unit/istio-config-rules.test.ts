// The Istio configuration rules: every fixture through admission (enforce and audit) and through
// `meshguard check`, the same verdict in every served API version (B18, D.24), per-rule settings,
// and odd shapes that must never make a rule throw.
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { KObject } from '../../src/core/request.ts';
import { checkManifests } from '../../src/cli/check.ts';
import { parseManifests } from '../../src/cli/manifests.ts';
import type { Config } from '../../src/config/types.ts';
import { ISTIO_CONFIG_RULES } from '../../src/policies/istio-config-rules.ts';
import { ISTIO_KINDS, type IstioKind } from '../../src/policies/lib/istio-kinds.ts';
import { isBroadWildcard, isUnboundedAddress } from '../../src/policies/service-entry-wildcard.ts';
import { config, failedRules, ruleFixtures, state, validate, type ReviewOptions } from '../helpers/review.ts';

const IDS = ISTIO_CONFIG_RULES.map((r) => r.id);
const FIXTURES = ruleFixtures().filter((f) => IDS.includes(f.rule));
const TEAM = 'istio-config-team';

type Outcome = ReturnType<typeof validate>;

function errors(o: Outcome): string[] {
  return o.results.filter((r) => r.status === 'error').map((r) => `${r.ruleId}: ${r.reason ?? ''}`);
}

function object(apiVersion: string, kind: string, namespace: string, spec: unknown, metadata: Record<string, unknown> = {}): KObject {
  return { apiVersion, kind, metadata: { name: 'x', namespace, ...metadata }, spec } as KObject;
}

function check(o: KObject, opts: ReviewOptions & { config?: Config } = {}): Outcome {
  return validate(o, opts);
}

t.test('every Istio rule has good and bad fixtures', async (t) => {
  for (const id of IDS) {
    t.ok(FIXTURES.some((f) => f.rule === id && f.expect === 'allow'), `${id} has good fixtures`);
    t.ok(FIXTURES.some((f) => f.rule === id && f.expect === 'deny'), `${id} has bad fixtures`);
  }
});

t.test('fixtures in enforce mode: bad ones are denied by their rule with path and fix, good ones pass', async (t) => {
  for (const f of FIXTURES) {
    t.test(`${f.rule}: ${f.name}`, async (t) => {
      t.ok(f.objects.length > 0, 'the fixture has an object under test');
      for (const o of f.objects) {
        const v = check(o);
        const r = v.response.response;
        t.same(errors(v), [], 'no rule errors');
        if (f.expect === 'allow') {
          t.equal(r.allowed, true, 'allowed');
          t.same(failedRules(v), [], 'no findings');
          continue;
        }
        t.equal(r.allowed, false, 'denied');
        t.same(failedRules(v), [f.rule], `denied by ${f.rule} only`);
        t.equal(r.status?.code, 403);
        t.equal(r.status?.reason, 'Forbidden');
        t.match(r.status?.message, `[${f.rule}]`, 'names the rule');
        t.match(r.status?.message, 'Fix: ', 'says how to fix it');
        for (const d of v.denials) t.match(r.status?.message, `(at ${d.violation?.path ?? '<no path>'}`, `names the field ${d.violation?.path ?? ''}`);
        t.ok(v.denials.every((d) => d.violation?.path !== undefined), 'every finding has a path');
      }
    });
  }
});

t.test('fixtures in audit mode: allowed with a warning, an audit annotation and an audit record', async (t) => {
  const audit = config({ mode: 'audit' });
  for (const f of FIXTURES) {
    t.test(`${f.rule}: ${f.name}`, async (t) => {
      for (const o of f.objects) {
        const v = check(o, { config: audit });
        const r = v.response.response;
        t.equal(r.allowed, true, 'allowed');
        if (f.expect === 'allow') {
          t.equal(r.warnings, undefined, 'no warnings');
          t.equal(v.audit, undefined, 'no audit record');
          continue;
        }
        t.ok(r.warnings?.some((w) => w.startsWith(`policy ${f.rule}: `)), 'warning names the rule');
        t.ok(r.auditAnnotations?.[f.rule], 'audit annotation keyed by the rule id');
        t.equal(v.audit?.verdict, 'warned');
        t.ok(v.audit?.rules.includes(f.rule), 'the audit record names the rule');
      }
    });
  }
});

t.test('fixtures through meshguard check: the same verdicts offline', async (t) => {
  for (const f of FIXTURES) {
    const { manifests, errors: parseErrors } = parseManifests(f.file, readFileSync(f.file, 'utf8'));
    t.same(parseErrors, [], `${f.name}: parses`);
    // Admission's semantics (an uninjected Pod is judged, unknown namespaces are unknown): the
    // offline defaults that differ are tested in check-offline.test.ts.
    const findings = checkManifests(manifests, config(), { uninjectedPods: 'judge', unknownNamespaces: 'deny' });
    if (f.expect === 'allow') {
      t.same(findings, [], `${f.rule}: ${f.name}: no findings`);
    } else {
      t.ok(findings.length > 0 && findings.every((x) => x.rule === f.rule && x.action === 'deny'), `${f.rule}: ${f.name}: denied by ${f.rule}`);
      t.ok(findings.every((x) => x.path !== undefined && x.fix !== ''), `${f.rule}: ${f.name}: path and fix`);
    }
  }
  const audit = checkManifests(parseManifests('x.yaml', readFileSync(FIXTURES.find((f) => f.expect === 'deny')?.file ?? '', 'utf8')).manifests, config({ mode: 'audit' }));
  t.ok(audit.length > 0 && audit.every((x) => x.action === 'warn'), 'check --mode audit labels the findings warn');
});

/** One violating and one compliant object per kind, in a tenant namespace unless noted. */
interface VersionCase {
  readonly rule: string;
  readonly kind: IstioKind;
  readonly namespace: string;
  readonly bad: unknown;
  readonly good: unknown;
}

function kind(name: string): IstioKind {
  const k = ISTIO_KINDS.find((x) => x.kind === name);
  if (k === undefined) throw new Error(`no Istio kind ${name}`);
  return k;
}

const VERSION_CASES: VersionCase[] = [
  { rule: 'sidecar-outbound-allow-any', kind: kind('Sidecar'), namespace: TEAM, bad: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, good: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } },
  { rule: 'sidecar-outbound-allow-any', kind: kind('Sidecar'), namespace: 'istio-system', bad: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, good: {} },
  { rule: 'service-entry-wildcard', kind: kind('ServiceEntry'), namespace: TEAM, bad: { hosts: ['*.com'], resolution: 'NONE' }, good: { hosts: ['api.example.com'], resolution: 'DNS' } },
  { rule: 'virtual-service-destination-subnets', kind: kind('VirtualService'), namespace: TEAM, bad: { hosts: ['db'], tcp: [{ match: [{ destinationSubnets: ['0.0.0.0/0'] }], route: [{ destination: { host: 'db' } }] }] }, good: { hosts: ['db'], tcp: [{ match: [{ destinationSubnets: ['198.51.100.0/24'] }], route: [{ destination: { host: 'db' } }] }] } },
  { rule: 'destination-rule-tls', kind: kind('DestinationRule'), namespace: TEAM, bad: { host: 'a', subsets: [{ name: 'v1', trafficPolicy: { tls: { mode: 'DISABLE' } } }] }, good: { host: 'a', trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } } },
  { rule: 'peer-authentication-strict', kind: kind('PeerAuthentication'), namespace: TEAM, bad: { mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } }, good: { mtls: { mode: 'STRICT' } } },
  { rule: 'authorization-policy-weakening', kind: kind('AuthorizationPolicy'), namespace: TEAM, bad: { rules: [{}] }, good: {} },
  { rule: 'restricted-istio-kinds', kind: kind('EnvoyFilter'), namespace: TEAM, bad: { configPatches: [] }, good: null },
  { rule: 'restricted-istio-kinds', kind: kind('WasmPlugin'), namespace: TEAM, bad: { url: 'oci://x' }, good: null },
  { rule: 'restricted-istio-kinds', kind: kind('TrafficExtension'), namespace: TEAM, bad: { lua: { inlineCode: 'function envoy_on_request(h) end' } }, good: null },
  { rule: 'restricted-istio-kinds', kind: kind('ProxyConfig'), namespace: TEAM, bad: { concurrency: 1 }, good: null },
  { rule: 'mesh-config-outbound-policy', kind: kind('IstioOperator'), namespace: 'istio-system', bad: { meshConfig: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } } }, good: { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } } },
];

t.test('the same object under every served apiVersion gets the same verdict (B18, D.24)', async (t) => {
  for (const c of VERSION_CASES) {
    for (const v of c.kind.versions) {
      const apiVersion = `${c.kind.group}/${v}`;
      const bad = check(object(apiVersion, c.kind.kind, c.namespace, c.bad));
      t.same(failedRules(bad), [c.rule], `a violating ${c.kind.kind} ${apiVersion} in ${c.namespace} is denied by ${c.rule}`);
      if (c.good === null) {
        t.equal(check(object(apiVersion, c.kind.kind, 'istio-system', c.bad)).response.response.allowed, true, `a ${c.kind.kind} ${apiVersion} in istio-system is allowed`);
      } else {
        t.equal(check(object(apiVersion, c.kind.kind, c.namespace, c.good)).response.response.allowed, true, `a compliant ${c.kind.kind} ${apiVersion} in ${c.namespace} is allowed`);
      }
      const update = check(object(apiVersion, c.kind.kind, c.namespace, c.bad), { operation: 'UPDATE', oldObject: object(apiVersion, c.kind.kind, c.namespace, c.bad) });
      t.equal(update.response.response.allowed, false, `UPDATE of that ${c.kind.kind} ${apiVersion} is denied too`);
    }
  }
});

t.test('every rule registers every served version of the kinds it matches', async (t) => {
  for (const rule of ISTIO_CONFIG_RULES) {
    for (const k of rule.match.kinds) {
      const istio = ISTIO_KINDS.find((x) => x.group === k.group && x.kind === k.kind);
      const entry = rule.webhook.find((w) => w.apiGroup === k.group && w.resources.includes(istio?.resource ?? 'configmaps'));
      t.ok(entry, `${rule.id}: a webhook entry for ${k.kind}`);
      t.same([...(entry?.apiVersions ?? [])].sort(), [...(istio?.versions ?? ['v1'])].sort(), `${rule.id}: ${k.kind} in every served version`);
      t.same(rule.match.operations, ['CREATE', 'UPDATE'], `${rule.id}: CREATE and UPDATE`);
    }
  }
  const placement = (id: string): string[] => ISTIO_CONFIG_RULES.find((r) => r.id === id)?.webhook.map((w) => w.placement ?? 'default') ?? [];
  t.same(placement('sidecar-outbound-allow-any'), ['all-namespaces'], 'Sidecars are read in istio-system too');
  t.same(placement('restricted-istio-kinds'), ['all-namespaces', 'all-namespaces', 'all-namespaces', 'all-namespaces']);
  t.same(placement('mesh-config-outbound-policy'), ['mesh-config', 'all-namespaces'], 'the mesh ConfigMap through the narrow mesh-config webhook');
});

t.test('per-rule settings: disabled rules pass, audit-pinned rules warn in enforce mode', async (t) => {
  for (const f of FIXTURES.filter((x) => x.expect === 'deny')) {
    const o = f.objects[0] as KObject;
    const off = check(o, { config: config({ rules: { [f.rule]: { enabled: false } } }) });
    t.equal(off.response.response.allowed, true, `${f.rule} disabled: ${f.name} is allowed`);
    t.same(failedRules(off), [], `${f.rule} disabled: no findings`);
    const audited = check(o, { config: config({ rules: { [f.rule]: { mode: 'audit' } } }) });
    t.equal(audited.response.response.allowed, true, `${f.rule} pinned to audit: ${f.name} is allowed`);
    t.ok(audited.response.response.warnings?.some((w) => w.startsWith(`policy ${f.rule}: `)), `${f.rule} pinned to audit: warned`);
  }
});

t.test('odd shapes never make a rule throw (no error results)', async (t) => {
  const shapes: [string, KObject][] = [
    ['a Sidecar whose spec is a string', object('networking.istio.io/v1', 'Sidecar', TEAM, 'x')],
    ['a Sidecar whose outboundTrafficPolicy is a list', object('networking.istio.io/v1', 'Sidecar', TEAM, { outboundTrafficPolicy: ['ALLOW_ANY'] })],
    ['a PeerAuthentication whose portLevelMtls is a list', object('security.istio.io/v1', 'PeerAuthentication', TEAM, { portLevelMtls: [] })],
    ['a PeerAuthentication whose port settings are strings', object('security.istio.io/v1', 'PeerAuthentication', TEAM, { mtls: 'STRICT', portLevelMtls: { '80': 'DISABLE' } })],
    ['a DestinationRule whose subsets are null', object('networking.istio.io/v1', 'DestinationRule', TEAM, { subsets: null, trafficPolicy: { portLevelSettings: 'x' } })],
    ['a DestinationRule with null and number subsets', object('networking.istio.io/v1', 'DestinationRule', TEAM, { subsets: [null, 3, { trafficPolicy: null }] })],
    ['a ServiceEntry with hosts [1, null]', object('networking.istio.io/v1', 'ServiceEntry', TEAM, { hosts: [1, null], addresses: {} })],
    ['an AuthorizationPolicy whose rules are a map', object('security.istio.io/v1', 'AuthorizationPolicy', TEAM, { rules: { a: {} } }, { annotations: 'x' })],
    ['an EnvoyFilter with no spec', object('networking.istio.io/v1alpha3', 'EnvoyFilter', 'istio-system', undefined)],
    ['an IstioOperator whose meshConfig is a string', object('install.istio.io/v1alpha1', 'IstioOperator', 'istio-system', { meshConfig: 'REGISTRY_ONLY' })],
    ['a mesh ConfigMap whose data.mesh is 42', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 42 } }],
    ['a mesh ConfigMap whose data is a list', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: ['mesh'] }],
    ['a mesh ConfigMap whose mesh is a YAML list', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: '- a\n- b' } }],
    ['a mesh ConfigMap whose mesh holds an alias bomb', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: `a: &a [x, x]\n${Array.from({ length: 12 }, (_, i) => `b${i}: &b${i} [*${i === 0 ? 'a' : `b${i - 1}`}, *${i === 0 ? 'a' : `b${i - 1}`}]`).join('\n')}\n` } }],
    ['an object with no metadata', { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', spec: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } } }],
  ];
  for (const [name, o] of shapes) {
    const v = check(o);
    t.same(errors(v), [], `${name}: no error result`);
  }
  t.equal(check(shapes[10]?.[1] as KObject).response.response.allowed, false, 'a data.mesh that is not a string is denied');
  t.equal(check(shapes[12]?.[1] as KObject).response.response.allowed, false, 'a data.mesh that is a YAML list is denied');
  t.equal(check(shapes[13]?.[1] as KObject).response.response.allowed, false, 'an alias bomb is denied (not expanded)');
});

t.test('sidecar-outbound-allow-any: details', async (t) => {
  const sidecar = (ns: string, spec: unknown): KObject => object('networking.istio.io/v1', 'Sidecar', ns, spec);
  const cases: [string, KObject, boolean][] = [
    ['ALLOW_ANY_DYNAMIC_DNS on a Sidecar is denied', sidecar(TEAM, { outboundTrafficPolicy: { mode: 'ALLOW_ANY_DYNAMIC_DNS' } }), false],
    ['the enum number 1 (ALLOW_ANY) is denied', sidecar(TEAM, { outboundTrafficPolicy: { mode: 1 } }), false],
    ['a lower-case allow_any is denied', sidecar(TEAM, { outboundTrafficPolicy: { mode: 'allow_any' } }), false],
    ['an empty outboundTrafficPolicy is allowed (REGISTRY_ONLY is the enum default)', sidecar(TEAM, { outboundTrafficPolicy: {} }), true],
    ['a null mode is allowed', sidecar(TEAM, { outboundTrafficPolicy: { mode: null } }), true],
    ['ALLOW_ANY in an exempt namespace is denied (the rule has no exemptions)', sidecar('local-path-storage', { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }), false],
  ];
  for (const [name, o, allowed] of cases) t.equal(check(o).response.response.allowed, allowed, name);
  const both = check(sidecar(TEAM, { outboundTrafficPolicy: { mode: 'ALLOW_ANY', egressProxy: { host: 'p' } } }));
  t.equal(both.denials.length, 2, 'ALLOW_ANY with an egressProxy is two findings in one denial');
  const selected = check(sidecar('istio-system', { workloadSelector: { labels: { app: 'a' } }, outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }));
  t.notMatch(selected.response.response.status?.message, 'whole mesh', 'a Sidecar with a selector in istio-system is not called mesh-wide');
  const deleting = { ...sidecar(TEAM, { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }), metadata: { name: 'x', namespace: TEAM, deletionTimestamp: '2026-01-01T00:00:00Z' } };
  t.equal(check(deleting, { operation: 'UPDATE', oldObject: deleting }).response.response.allowed, true, 'an UPDATE of a Sidecar being deleted (finalizer removal) is allowed');
});

t.test('mesh-config-outbound-policy: which ConfigMaps are mesh configs', async (t) => {
  const cm = (name: string, ns: string, data?: Record<string, unknown>): KObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, ...(data === undefined ? {} : { data }) });
  const cases: [string, KObject, ReturnType<typeof state> | undefined, boolean][] = [
    ['istio-<revision> without a mesh key is denied when the revision is known', cm('istio-canary', 'istio-system'), state([], ['canary']), false],
    ['istio-<something> without a mesh key is allowed when it is no known revision', cm('istio-sidecar-injector', 'istio-system', { config: 'x' }), undefined, true],
    ['istio-<something> with a mesh key is judged', cm('istio-1-27', 'istio-system', { mesh: 'outboundTrafficPolicy: {mode: ALLOW_ANY}' }), undefined, false],
    ['an empty mesh key counts as unset (ALLOW_ANY)', cm('istio', 'istio-system', { mesh: '' }), undefined, false],
    ['a mesh in flow style with REGISTRY_ONLY is allowed', cm('istio', 'istio-system', { mesh: '{outboundTrafficPolicy: {mode: REGISTRY_ONLY}}' }), undefined, true],
    ['an integer mode 0 is allowed (REGISTRY_ONLY by number, as istiod reads it)', cm('istio', 'istio-system', { mesh: 'outboundTrafficPolicy: {mode: 0}' }), undefined, true],
    ['an integer mode 1 is denied (ALLOW_ANY by number)', cm('istio', 'istio-system', { mesh: 'outboundTrafficPolicy: {mode: 1}' }), undefined, false],
    ['a quoted "0" is denied (istiod reads a quoted enum by name only)', cm('istio', 'istio-system', { mesh: 'outboundTrafficPolicy: {mode: "0"}' }), undefined, false],
    ['a ConfigMap named istio outside istio-system is skipped', cm('istio', 'default', { mesh: 'x: [' }), undefined, true],
    ['an IstioOperator with interceptionMode NONE is denied', object('install.istio.io/v1alpha1', 'IstioOperator', 'istio-system', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' }, defaultConfig: { interceptionMode: 'NONE' } } }), undefined, false],
    ['an IstioOperator in any namespace is judged', object('install.istio.io/v1alpha1', 'IstioOperator', 'kube-public', {}), undefined, false],
  ];
  for (const [name, o, s, allowed] of cases) t.equal(validate(o, s === undefined ? {} : { state: s }).response.response.allowed, allowed, name);
  const unparsable = check(cm('istio', 'istio-system', { mesh: 'a: 1\na: 2' }));
  t.match(unparsable.response.response.status?.message, 'data.mesh is not valid YAML: Map keys must be unique', 'the denial quotes the parse error');
  t.notMatch(unparsable.response.response.status?.message, '\n^', 'without the parser’s code excerpt');
  const skipped = check(cm('istio-leader', 'istio-system')).results.find((r) => r.ruleId === 'mesh-config-outbound-policy');
  t.equal(skipped?.status, 'skip', 'a leader-election lock is skipped');
});

t.test('service-entry-wildcard: hosts, addresses and the allow-list', async (t) => {
  const broad: [string, boolean][] = [['*', true], ['*.com', true], ['*.*', true], ['*.*.com', true], ['*example.com', true], ['foo.*.com', true], ['*.example.com', false], ['*.co.uk', true], ['*.example.co.uk', false]];
  for (const [host, want] of broad) t.equal(isBroadWildcard(host), want, `${host} is ${want ? '' : 'not '}broad`);
  const addresses: [string, boolean][] = [['0.0.0.0/0', true], ['::/0', true], ['10.0.0.0/0', true], ['0.0.0.0', true], ['::', true], ['0:0::0/128', true], ['10.0.0.0/8', false], ['2001:db8::/32', false], ['192.168.1.1', false]];
  for (const [a, want] of addresses) t.equal(isUnboundedAddress(a), want, `${a} is ${want ? '' : 'not '}unbounded`);
  const se = (spec: unknown): KObject => object('networking.istio.io/v1', 'ServiceEntry', TEAM, spec);
  const allow = config({ 'serviceEntries.allowedWildcardHosts': ['*.googleapis.com', '*'] });
  t.equal(check(se({ hosts: ['*.googleapis.com'], resolution: 'DYNAMIC_DNS' }), { config: allow }).response.response.allowed, true, 'an allow-listed wildcard with DYNAMIC_DNS is allowed');
  t.equal(check(se({ hosts: ['*'] }), { config: allow }).response.response.allowed, true, 'an allow-listed broad wildcard is allowed');
  t.equal(check(se({ hosts: ['*.GoogleAPIs.com.'], resolution: 'DYNAMIC_DNS' }), { config: allow }).response.response.allowed, true, 'allow-list matching ignores case and a trailing dot');
  t.equal(check(se({ hosts: ['*.storage.googleapis.com'], resolution: 'DYNAMIC_DNS' }), { config: allow }).response.response.allowed, false, 'a narrower wildcard is not covered by the allow-list entry');
  t.equal(check(se({ hosts: ['api.example.com'], resolution: 'DYNAMIC_DNS' })).response.response.allowed, true, 'DYNAMIC_DNS with exact hosts is allowed');
  t.equal(check(se({ hosts: ['*.com', '*.*'], addresses: ['0.0.0.0/0'] })).denials.length, 3, 'each offending host and address is its own finding');
  t.equal(check(se({ hosts: ['*.com'], exportTo: ['*'] })).denials.length, 1, 'a missing exportTo: ["."] is not a finding (left for later)');
});

t.test('exempt namespaces: exempt for PeerAuthentication, DestinationRule, ServiceEntry and AuthorizationPolicy, except the root namespace', async (t) => {
  const cases: [string, string, unknown][] = [
    ['security.istio.io/v1', 'PeerAuthentication', { mtls: { mode: 'DISABLE' } }],
    ['networking.istio.io/v1', 'DestinationRule', { trafficPolicy: { tls: { mode: 'DISABLE' } } }],
    ['networking.istio.io/v1', 'ServiceEntry', { hosts: ['*'] }],
    ['security.istio.io/v1', 'AuthorizationPolicy', { rules: [{}] }],
  ];
  for (const [apiVersion, k, spec] of cases) {
    t.equal(check(object(apiVersion, k, 'local-path-storage', spec)).response.response.allowed, true, `a weakening ${k} in an exempt namespace is allowed`);
    t.equal(check(object(apiVersion, k, 'istio-system', spec)).response.response.allowed, false, `a weakening ${k} in istio-system (the root namespace, mesh-wide) is denied`);
    t.equal(check(object(apiVersion, k, 'my-gateways', spec), { config: config({ gatewayNamespaces: ['my-gateways'] }) }).response.response.allowed, true, `a weakening ${k} in a gateway namespace is allowed`);
  }
});

t.test('restricted-istio-kinds: the admin namespaces come from the configuration', async (t) => {
  const c = config({ istioAdminNamespaces: ['mesh-admin'] });
  t.equal(check(object('networking.istio.io/v1alpha3', 'EnvoyFilter', 'mesh-admin', {}), { config: c }).response.response.allowed, true, 'allowed in a configured admin namespace');
  t.equal(check(object('networking.istio.io/v1alpha3', 'EnvoyFilter', 'istio-system', {}), { config: c }).response.response.allowed, false, 'denied in istio-system when it is not an admin namespace');
  t.match(check(object('extensions.istio.io/v1alpha1', 'WasmPlugin', TEAM, {}), { config: c }).response.response.status?.message, 'allowed only in mesh-admin');
});

t.test('peer-authentication-strict and destination-rule-tls: modes', async (t) => {
  const pa = (spec: unknown): KObject => object('security.istio.io/v1beta1', 'PeerAuthentication', TEAM, spec);
  const paCases: [string, unknown, boolean][] = [
    ['an empty spec is allowed', {}, true],
    ['mtls {} is allowed', { mtls: {} }, true],
    ['a null port setting is allowed', { portLevelMtls: { '80': null } }, true],
    ['a lower-case strict is denied', { mtls: { mode: 'strict' } }, false],
    ['two bad ports are two findings', { portLevelMtls: { '80': { mode: 'DISABLE' }, '81': { mode: 'PERMISSIVE' } } }, false],
  ];
  for (const [name, spec, allowed] of paCases) t.equal(check(pa(spec)).response.response.allowed, allowed, `PeerAuthentication: ${name}`);
  t.equal(check(pa({ portLevelMtls: { '80': { mode: 'DISABLE' }, '81': { mode: 'PERMISSIVE' } } })).denials.length, 2, 'PeerAuthentication: one finding per port');
  const dr = (spec: unknown): KObject => object('networking.istio.io/v1', 'DestinationRule', TEAM, spec);
  const drCases: [string, unknown, boolean][] = [
    ['tls null is allowed', { trafficPolicy: { tls: null } }, true],
    ['MUTUAL and SIMPLE are allowed', { trafficPolicy: { tls: { mode: 'MUTUAL' }, portLevelSettings: [{ tls: { mode: 'SIMPLE' } }] } }, true],
    ['a port-level tls without a mode is denied', { trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, tls: {} }] } }, false],
  ];
  for (const [name, spec, allowed] of drCases) t.equal(check(dr(spec)).response.response.allowed, allowed, `DestinationRule: ${name}`);
  const all = check(dr({ trafficPolicy: { tls: { mode: 'DISABLE' }, portLevelSettings: [{ tls: { mode: 'DISABLE' } }] }, subsets: [{ name: 'a', trafficPolicy: { tls: { mode: 'DISABLE' }, portLevelSettings: [{ tls: { mode: 'DISABLE' } }] } }] }));
  t.same(all.denials.map((d) => d.violation?.path), ['spec.trafficPolicy.tls.mode', 'spec.trafficPolicy.portLevelSettings[0].tls.mode', 'spec.subsets[0].trafficPolicy.tls.mode', 'spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.mode'], 'DestinationRule: every level is reported, with its path');
});

t.test('authorization-policy-weakening: dry-run values and actions', async (t) => {
  const ap = (spec: unknown, annotations?: Record<string, string>): KObject => object('security.istio.io/v1', 'AuthorizationPolicy', TEAM, spec, annotations === undefined ? {} : { annotations });
  // istiod reads the annotation with Go's strconv.ParseBool.
  for (const v of ['true', 'True', 'TRUE', 't', 'T', '1']) t.equal(check(ap({}, { 'istio.io/dry-run': v })).response.response.allowed, false, `istio.io/dry-run=${v} is denied`);
  for (const v of ['false', '0', 'F', 'yes', '']) t.equal(check(ap({}, { 'istio.io/dry-run': v })).response.response.allowed, true, `istio.io/dry-run=${JSON.stringify(v)} is allowed (istiod enforces the policy)`);
  const actions: [string, unknown, boolean][] = [
    ['DENY with an empty rule is allowed (deny all)', { action: 'DENY', rules: [{}] }, true],
    ['AUDIT with an empty rule is allowed', { action: 'AUDIT', rules: [{}] }, true],
    ['CUSTOM with an empty rule is allowed', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }, true],
    ['ALLOW with a rule whose lists are empty is denied', { action: 'ALLOW', rules: [{ from: [], to: [], when: [] }] }, false],
    ['ALLOW with no rules is allowed (it denies everything)', { action: 'ALLOW' }, true],
    ['ALLOW with only a when condition is allowed', { rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }, true],
  ];
  for (const [name, spec, allowed] of actions) t.equal(check(ap(spec)).response.response.allowed, allowed, name);
});
