// Kyverno's Istio configuration policies (../shared/peer-suites/kyverno-istio): enforce-strict-mtls,
// enforce-tls-hosts-host-subnets and restrict-virtual-service-wildcard. The expectations are read
// from Kyverno's own test files (.kyverno-test/kyverno-test.yaml for the CLI test, the chainsaw
// good/bad files for the live test). Where our rules cover the same ground we give the same
// verdict; where we deliberately differ, the test asserts our verdict and DIFFERENCES says why.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import type { KObject } from '../../src/core/request.ts';
import { failedRules, loadYaml, validate } from '../../test/helpers/review.ts';
import { PEER } from './suites.ts';

/** Deliberate differences from Kyverno (policy, case, Kyverno, meshguard). */
export const DIFFERENCES = [
  ['enforce-strict-mtls', 'spec.portLevelMtls.<port>.mode PERMISSIVE or DISABLE (e.g. STRICT with port 8080 DISABLE)', 'passes (only spec.mtls.mode is checked)', 'denied by peer-authentication-strict: a plaintext port is as much of a hole as a plaintext workload'],
  ['enforce-tls-hosts-host-subnets', 'spec.trafficPolicy.portLevelSettings[].tls.mode DISABLE', 'passes (only the top-level tls is checked)', 'denied by destination-rule-tls'],
  ['enforce-tls-hosts-host-subnets', 'spec.subsets[].trafficPolicy.tls.mode DISABLE, and a subset\'s portLevelSettings', 'passes', 'denied by destination-rule-tls'],
  ['enforce-tls-hosts-host-subnets', 'a tls block without a mode (tls: {sni: ...})', 'passes (mode is absent, not DISABLE)', 'denied: DISABLE is the protobuf default of ClientTLSSettings.mode, so the block turns TLS and auto mTLS off'],
  ['restrict-virtual-service-wildcard', 'VirtualService hosts with a wildcard (badvs *.com, badvs01 *.com, badvs02 *.*)', 'fails / rejected in Enforce', 'admitted: a VirtualService host routes traffic already admitted to the registry and opens no egress; meshguard judges wildcards where they open egress, on ServiceEntry hosts (service-entry-wildcard denies the same hosts there)'],
  ['all three', 'exempt namespaces', 'every namespace not filtered by Kyverno\'s resourceFilters', 'PeerAuthentication and DestinationRule are skipped in meshguard\'s exempt namespaces, except istio-system: there the policy is mesh-wide and is judged'],
  ['all three', 'default action', 'validationFailureAction Audit (chainsaw patches it to Enforce)', 'meshguard enforces by default; mode audit gives Kyverno\'s default behaviour'],
] as const;

interface KyvernoTest {
  readonly resources: readonly string[];
  readonly results: readonly { readonly kind: string; readonly resources: readonly string[]; readonly result: 'pass' | 'fail' }[];
}

/** Kyverno's CLI test for a policy: every resource it lists, with the expected result. */
function kyvernoCases(policy: string): { object: KObject; expected: 'pass' | 'fail' }[] {
  const file = join(PEER, policy, '.kyverno-test', 'kyverno-test.yaml');
  const test = parse(readFileSync(file, 'utf8')) as KyvernoTest;
  const objects = test.resources.flatMap((r) => loadYaml(join(dirname(file), r)));
  const out: { object: KObject; expected: 'pass' | 'fail' }[] = [];
  for (const res of test.results) {
    for (const name of res.resources) {
      const object = objects.find((o) => o.metadata?.name === name && o.kind === res.kind);
      if (object === undefined) throw new Error(`${policy}: ${name} not found in the listed resources`);
      out.push({ object, expected: res.result });
    }
  }
  return out;
}

function nameOf(o: KObject): string {
  return String(o.metadata?.name);
}

function allowed(o: KObject): boolean {
  return validate(o).response.response.allowed;
}

t.test('enforce-strict-mtls: the same verdicts as Kyverno on its own test resources', async (t) => {
  const cases = kyvernoCases('enforce-strict-mtls');
  t.equal(cases.length, 8, 'all eight PeerAuthentications of the Kyverno test');
  for (const { object, expected } of cases) {
    const v = validate(object);
    t.equal(v.response.response.allowed, expected === 'pass', `${nameOf(object)}: Kyverno ${expected}, meshguard ${expected === 'pass' ? 'admits' : 'denies'}`);
    if (expected === 'fail') t.same(failedRules(v), ['peer-authentication-strict'], `${nameOf(object)}: by peer-authentication-strict`);
  }
  for (const [file, ok] of [['pa-good.yaml', true], ['pa-bad.yaml', false]] as const) {
    for (const variant of ['', '_variants/istio-cel']) {
      for (const o of loadYaml(join(PEER, variant, 'enforce-strict-mtls', '.chainsaw-test', file))) {
        t.equal(allowed(o), ok, `chainsaw${variant === '' ? '' : ' (CEL variant)'} ${file}: ${nameOf(o)} is ${ok ? 'admitted' : 'rejected'}`);
      }
    }
  }
});

t.test('enforce-strict-mtls: deliberate differences (stricter)', async (t) => {
  const pa = (spec: unknown): KObject => ({ apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'port-level' }, spec } as KObject);
  t.equal(allowed(pa({ selector: { matchLabels: { app: 'finance' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'DISABLE' } } })), false, 'STRICT with a DISABLE port: Kyverno passes, meshguard denies');
  t.equal(allowed(pa({ selector: { matchLabels: { app: 'finance' } }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } })), false, 'a PERMISSIVE port: Kyverno passes, meshguard denies');
  t.equal(allowed({ ...pa({ mtls: { mode: 'PERMISSIVE' } }), metadata: { name: 'mesh', namespace: 'istio-system' } }), false, 'a mesh-wide PERMISSIVE policy in istio-system is denied even though istio-system is exempt');
});

t.test('enforce-tls-hosts-host-subnets: the same verdicts as Kyverno on its own test resources', async (t) => {
  const cases = kyvernoCases('enforce-tls-hosts-host-subnets');
  t.equal(cases.length, 7, 'all seven DestinationRules of the Kyverno test');
  for (const { object, expected } of cases) {
    const v = validate(object);
    t.equal(v.response.response.allowed, expected === 'pass', `${nameOf(object)}: Kyverno ${expected}, meshguard ${expected === 'pass' ? 'admits' : 'denies'}`);
    if (expected === 'fail') t.same(failedRules(v), ['destination-rule-tls'], `${nameOf(object)}: by destination-rule-tls`);
  }
  for (const [file, ok] of [['dr-good.yaml', true], ['dr-bad.yaml', false]] as const) {
    for (const o of loadYaml(join(PEER, 'enforce-tls-hosts-host-subnets', '.chainsaw-test', file))) {
      t.equal(allowed(o), ok, `chainsaw ${file}: ${nameOf(o)} is ${ok ? 'admitted' : 'rejected'}`);
    }
  }
});

t.test('enforce-tls-hosts-host-subnets: deliberate differences (stricter)', async (t) => {
  const base = loadYaml(join(PEER, 'enforce-tls-hosts-host-subnets', 'dr-good.yaml')).find((o) => nameOf(o) === 'good-dr01') as KObject;
  const dr = (spec: Record<string, unknown>): KObject => ({ ...base, spec: { ...(base['spec'] as Record<string, unknown>), ...spec } });
  const cases: [string, KObject][] = [
    ['a port-level DISABLE', dr({ trafficPolicy: { tls: { mode: 'MUTUAL' }, portLevelSettings: [{ port: { number: 8080 }, tls: { mode: 'DISABLE' } }] } })],
    ['a subset with DISABLE', dr({ subsets: [{ name: 'v2', labels: { version: 'v2' }, trafficPolicy: { tls: { mode: 'DISABLE' } } }] })],
    ['a subset with a port-level DISABLE', dr({ subsets: [{ name: 'v3', labels: { version: 'v3' }, trafficPolicy: { portLevelSettings: [{ port: { number: 8080 }, tls: { mode: 'DISABLE' } }] } }] })],
    ['a tls block without a mode', dr({ trafficPolicy: { tls: { sni: 'ratings.prod.svc.cluster.local' } } })],
  ];
  for (const [name, o] of cases) {
    t.same(failedRules(validate(o)), ['destination-rule-tls'], `${name}: Kyverno passes, meshguard denies`);
  }
});

t.test('restrict-virtual-service-wildcard: not covered for VirtualServices; the same hosts are judged on ServiceEntries', async (t) => {
  const kyverno = kyvernoCases('restrict-virtual-service-wildcard');
  t.equal(kyverno.length, 2, 'both VirtualServices of the Kyverno test');
  const chainsaw = [
    ...loadYaml(join(PEER, 'restrict-virtual-service-wildcard', '.chainsaw-test', 'good-vs.yaml')).map((object) => ({ object, expected: 'pass' as const })),
    ...loadYaml(join(PEER, 'restrict-virtual-service-wildcard', '.chainsaw-test', 'bad-vs.yaml')).map((object) => ({ object, expected: 'fail' as const })),
  ];
  for (const { object, expected } of [...kyverno, ...chainsaw]) {
    const v = validate(object);
    t.equal(v.response.response.allowed, true, `${nameOf(object)}: Kyverno ${expected}, meshguard admits${expected === 'fail' ? ' (difference)' : ''}`);
    t.same(failedRules(v), [], `${nameOf(object)}: no finding`);
    const hosts = (object['spec'] as { hosts: string[] }).hosts;
    const asServiceEntry: KObject = {
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'ServiceEntry',
      metadata: { name: nameOf(object) },
      spec: { hosts, location: 'MESH_EXTERNAL', ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], resolution: 'NONE' },
    };
    const se = validate(asServiceEntry);
    t.equal(se.response.response.allowed, expected === 'pass', `the hosts of ${nameOf(object)} (${hosts.join(', ')}) in a ServiceEntry: ${expected === 'pass' ? 'admitted' : 'denied by service-entry-wildcard'}`);
  }
});

t.test('the DIFFERENCES table is complete and well formed', async (t) => {
  for (const row of DIFFERENCES) t.equal(row.length, 4, `${row[0]}: ${row[1]}`);
  for (const p of ['enforce-strict-mtls', 'enforce-tls-hosts-host-subnets', 'restrict-virtual-service-wildcard']) {
    t.ok(DIFFERENCES.some((d) => d[0] === p), `${p} has its differences listed`);
  }
});
