// Kyverno's Istio policies for pods and controllers (../shared/peer-suites/kyverno-istio):
// prevent-disabling-injection-pods (with its CEL variant), service-mesh-disallow-capabilities and
// service-mesh-require-run-as-nonroot. Expectations come from Kyverno's own test files: the CLI
// test (.kyverno-test/kyverno-test.yaml) where there is one, and the chainsaw good/bad files.
//
// Kyverno's resources carry no namespace and Kyverno's pods are not injected (Kyverno runs without
// Istio). Every resource is placed in a meshed namespace, so the namespace check does not
// interfere, and each Pod is judged two ways:
// - as submitted: only the rule that covers the policy's ground is compared (failedRules), since a
//   Pod that Istio did not inject also fails pod-sidecar-present;
// - as injected: with what Istio's injector adds (the sidecar.istio.io/status annotation and an
//   istio-proxy container with Istio's image), the whole verdict is compared.
// Where meshguard deliberately differs, the test asserts meshguard's verdict and DIFFERENCES says why.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import type { KObject } from '../../src/core/request.ts';
import type { Config } from '../../src/config/types.ts';
import { config, failedRules, loadYaml, ns, state, validate } from '../../test/helpers/review.ts';
import { PEER } from './suites.ts';

/** Deliberate differences from Kyverno (policy, case, Kyverno, meshguard), also listed in the README. */
export const DIFFERENCES = [
  ['prevent-disabling-injection-pods', 'label sidecar.istio.io/inject: "false" (the form Istio prefers; the label wins over the annotation)', 'passes (only the annotation is checked)', 'denied by workload-injection-opt-out'],
  ['prevent-disabling-injection-pods', 'values other than "false" and "true" (False, FALSE, 0, no, off, enabled, " true")', 'passes (only the exact string false is refused)', 'denied: any value other than exactly "true" is an opt-out in some Istio release or meaningless'],
  ['prevent-disabling-injection-pods', 'label "true" with a conflicting annotation "false"', 'fails (the annotation is false)', 'denied as well, with a message that the label wins (B4); pin the rule to audit to allow it with a warning'],
  ['prevent-disabling-injection-pods', 'pod label istio.io/dataplane-mode=none (ambient opt-out), or a workload in a namespace that is not meshed', 'not covered', 'denied by workload-injection-opt-out'],
  ['prevent-disabling-injection-pods', 'controllers', 'Pods, plus Kyverno autogen rules for controllers (Deployment and CronJob are tested)', 'Pod and the templates of all eight shapes, on CREATE and on an UPDATE that changes the template; a Pod that arrives without a sidecar in a sidecar namespace is also denied (pod-sidecar-present)'],
  ['service-mesh-disallow-capabilities', 'the istio-init carve-out (good01)', 'admitted when the image matches */istio/proxyv2*, whatever the pod', 'admitted only when the Pod is injected (sidecar.istio.io/status), istio-init is in initContainers and its image matches istioProxyImages; the same Pod submitted without injection is denied (workload-network-privileges, workload-reserved-container-names)'],
  ['service-mesh-disallow-capabilities', 'linkerd-init with NET_ADMIN and NET_RAW (good02)', 'admitted (Linkerd carve-out)', 'denied by workload-network-privileges: meshguard protects an Istio mesh, where a Linkerd init container is just a container that rewrites iptables'],
  ['service-mesh-disallow-capabilities', 'capabilities outside the PSS baseline list that cannot change the network (e.g. SYS_PTRACE, SYS_MODULE)', 'rejected', 'admitted: meshguard checks NET_ADMIN, NET_RAW, SYS_ADMIN and ALL (any case, with or without CAP_); general pod hardening is left to Pod Security Admission'],
  ['service-mesh-disallow-capabilities', 'privileged: true without added capabilities', 'admitted (capabilities only)', 'denied by workload-network-privileges'],
  ['service-mesh-disallow-capabilities', 'ephemeral containers', 'checked in the Pod object, but Kyverno\'s Pod rule does not see the pods/ephemeralcontainers subresource unless registered', 'judged through the pods/ephemeralcontainers subresource (kubectl debug --profile=netadmin is denied)'],
  ['service-mesh-require-run-as-nonroot', 'runAsNonRoot (good01, bad01, bad02)', 'enforced, with a carve-out for *istio/proxyv2* init containers', 'not covered: running as root is left to Pod Security Admission (restricted). bad02 is denied anyway (a proxyv2 container named istio-init in spec.containers adds NET_ADMIN)'],
  ['service-mesh-require-run-as-nonroot', 'an istio-init whose image is docker.io/mymalicious/proxyv2 (bad01)', 'rejected (runs as root, image does not match *istio/proxyv2*)', 'admitted with the default istioProxyImages pattern, which accepts proxyv2 from any registry; denied once istioProxyImages pins the registry (e.g. docker\\.io/istio/proxyv2:.*)'],
  ['all three', 'default action', 'validationFailureAction Audit (chainsaw patches it to Enforce)', 'meshguard enforces by default; mode audit gives Kyverno\'s default behaviour'],
] as const;

const MESH_NS = 'kyverno-peer';
const CLUSTER = state([ns(MESH_NS, { 'istio-injection': 'enabled' })]);
const PROXY_IMAGE = 'docker.io/istio/proxyv2:1.22.0';
const STRICT_IMAGES = config({ istioProxyImages: ['docker\\.io/istio/proxyv2:[^/@]+'] });

type Outcome = ReturnType<typeof validate>;

function inMesh(o: KObject): KObject {
  const c = structuredClone(o);
  c.metadata = { ...c.metadata, namespace: MESH_NS };
  return c;
}

/** istio-init's args as Istio's injection template writes them (full capture). */
const ISTIO_INIT_ARGS = ['istio-iptables', '-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020', '--log_output_level=default:info'];

/**
 * What Istio's injector adds: the status annotation, the istio-proxy container and istio-init
 * with its istio-iptables args. A pod that declares istio-init itself keeps its own fields, as the
 * injector's merge does, and gets the injected args where it declares none.
 */
function asInjected(pod: KObject): KObject {
  const c = inMesh(pod);
  const podSpec = c['spec'] as { initContainers?: Record<string, unknown>[] };
  const declared = podSpec.initContainers ?? [];
  const own = declared.find((i) => i['name'] === 'istio-init');
  if (own === undefined) {
    podSpec.initContainers = [...declared, { name: 'istio-init', image: PROXY_IMAGE, args: ISTIO_INIT_ARGS, securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] }, runAsUser: 0, runAsGroup: 0, runAsNonRoot: false } }];
  } else if (own['args'] === undefined && own['command'] === undefined) {
    own['args'] = ISTIO_INIT_ARGS;
  }
  const inits = podSpec.initContainers ?? [];
  const status = { initContainers: inits.map((i) => String(i['name'])), containers: ['istio-proxy'], volumes: [], imagePullSecrets: null, revision: 'default' };
  c.metadata = { ...c.metadata, annotations: { ...(c.metadata?.annotations ?? {}), 'sidecar.istio.io/status': JSON.stringify(status) } };
  const spec = c['spec'] as { containers?: unknown[] };
  spec.containers = [...(spec.containers ?? []), { name: 'istio-proxy', image: PROXY_IMAGE, args: ['proxy', 'sidecar'], securityContext: { runAsUser: 1337, runAsGroup: 1337, runAsNonRoot: true } }];
  return c;
}

function check(o: KObject, c?: Config): Outcome {
  return validate(o, { state: CLUSTER, ...(c === undefined ? {} : { config: c }) });
}

function nameOf(o: KObject): string {
  return `${String(o.kind)} ${String(o.metadata?.name)}`;
}

function peer(...parts: string[]): KObject[] {
  return loadYaml(join(PEER, ...parts));
}

interface KyvernoTest {
  readonly resources: readonly string[];
  readonly results: readonly { readonly kind: string; readonly resources: readonly string[]; readonly result: 'pass' | 'fail' }[];
}

/** Kyverno's CLI test for a policy: every resource it lists, with the expected result. */
function kyvernoCases(...policyDir: string[]): { object: KObject; expected: 'pass' | 'fail' }[] {
  const file = join(PEER, ...policyDir, '.kyverno-test', 'kyverno-test.yaml');
  const test = parse(readFileSync(file, 'utf8')) as KyvernoTest;
  const objects = test.resources.flatMap((r) => loadYaml(join(dirname(file), r)));
  return test.results.flatMap((res) =>
    res.resources.map((name) => {
      const object = objects.find((o) => o.metadata?.name === name && o.kind === res.kind);
      if (object === undefined) throw new Error(`${policyDir.join('/')}: ${res.kind} ${name} not found in the listed resources`);
      return { object, expected: res.result };
    }),
  );
}

t.test('prevent-disabling-injection-pods: the same verdicts as Kyverno on its own test resources (and the CEL variant)', async (t) => {
  for (const dir of [['prevent-disabling-injection-pods'], ['_variants', 'istio-cel', 'prevent-disabling-injection-pods']]) {
    const cases = kyvernoCases(...dir);
    t.equal(cases.length, 12, `${dir.join('/')}: all twelve resources of the Kyverno test`);
    for (const { object, expected } of cases) {
      const label = `${dir[0] === '_variants' ? 'CEL variant: ' : ''}${nameOf(object)}: Kyverno ${expected}`;
      if (object.kind !== 'Pod') {
        const v = check(inMesh(object));
        t.equal(v.response.response.allowed, expected === 'pass', `${label}, meshguard ${expected === 'pass' ? 'admits' : 'denies'}`);
        t.same(failedRules(v), expected === 'pass' ? [] : ['workload-injection-opt-out'], `${label}: ${expected === 'pass' ? 'no finding' : 'by workload-injection-opt-out'}`);
        continue;
      }
      const submitted = failedRules(check(inMesh(object)));
      t.equal(submitted.includes('workload-injection-opt-out'), expected === 'fail', `${label}: as submitted, workload-injection-opt-out ${expected === 'fail' ? 'fails' : 'passes'}`);
      t.same(submitted.filter((r) => r !== 'workload-injection-opt-out'), ['pod-sidecar-present'], `${label}: as submitted the only other finding is pod-sidecar-present (not injected)`);
      const injected = check(asInjected(object));
      t.equal(injected.response.response.allowed, expected === 'pass', `${label}: as injected, meshguard ${expected === 'pass' ? 'admits' : 'denies'}`);
    }
  }
});

t.test('prevent-disabling-injection-pods: the chainsaw files (good applied, bad rejected)', async (t) => {
  for (const variant of ['', '_variants/istio-cel']) {
    for (const [file, ok] of [['pod-good.yaml', true], ['podcontroller-good.yaml', true], ['pod-bad.yaml', false], ['podcontroller-bad.yaml', false]] as const) {
      for (const o of peer(variant, 'prevent-disabling-injection-pods', '.chainsaw-test', file)) {
        const object = o.kind === 'Pod' ? asInjected(o) : inMesh(o);
        t.equal(check(object).response.response.allowed, ok, `chainsaw${variant === '' ? '' : ' (CEL variant)'} ${file}: ${nameOf(o)} is ${ok ? 'admitted' : 'rejected'}`);
      }
    }
  }
});

t.test('prevent-disabling-injection-pods: deliberate differences (stricter)', async (t) => {
  const base = peer('prevent-disabling-injection-pods', 'pod-good.yaml').find((o) => o.metadata?.name === 'goodpod02') as KObject;
  const pod = (labels: Record<string, string>, annotations: Record<string, string> = {}): KObject => {
    const p = asInjected(base);
    p.metadata = { ...p.metadata, labels: { ...(p.metadata?.labels ?? {}), ...labels }, annotations: { ...(p.metadata?.annotations ?? {}), ...annotations } };
    return p;
  };
  const cases: [string, KObject][] = [
    ['the label sidecar.istio.io/inject: "false"', pod({ 'sidecar.istio.io/inject': 'false' })],
    ...['False', 'FALSE', '0', 'no', 'off', 'enabled', ' true'].map((v): [string, KObject] => [`the annotation ${JSON.stringify(v)}`, pod({}, { 'sidecar.istio.io/inject': v })]),
    ['the pod label istio.io/dataplane-mode=none', pod({ 'istio.io/dataplane-mode': 'none' })],
  ];
  for (const [name, o] of cases) t.same(failedRules(check(o)), ['workload-injection-opt-out'], `${name}: Kyverno passes, meshguard denies`);
  const conflict = check(pod({ 'sidecar.istio.io/inject': 'true' }, { 'sidecar.istio.io/inject': 'false' }));
  t.same(failedRules(conflict), ['workload-injection-opt-out'], 'label "true" + annotation "false": Kyverno fails it, meshguard denies too');
  t.match(conflict.response.response.status?.message, 'Istio honours the label', 'and says the label wins');
  const elsewhere = { ...asInjected(base), metadata: { ...asInjected(base).metadata, namespace: 'not-meshed' } };
  t.same(failedRules(validate(elsewhere, { state: state([ns(MESH_NS, { 'istio-injection': 'enabled' }), ns('not-meshed')]) })), ['workload-injection-opt-out'], 'a clean Pod in a namespace that is not meshed: Kyverno passes, meshguard denies');
  const notInjected = inMesh(base);
  t.same(failedRules(check(notInjected)), ['pod-sidecar-present'], 'goodpod02 without injection: Kyverno passes, meshguard denies (pod-sidecar-present)');
});

t.test('service-mesh-disallow-capabilities: the same verdicts as the chainsaw test on injected Pods', async (t) => {
  const expected: Record<string, boolean> = { good01: true, good02: true, bad01: false, bad02: false, bad03: false, bad04: false };
  const differs = new Set(['good02']);
  for (const [file, ok] of [['good.yaml', true], ['bad.yaml', false]] as const) {
    for (const o of peer('service-mesh-disallow-capabilities', '.chainsaw-test', file)) {
      const name = String(o.metadata?.name);
      t.equal(expected[name], ok, `${name} is in ${file}`);
      const v = check(asInjected(o));
      const want = differs.has(name) ? !ok : ok;
      t.equal(v.response.response.allowed, want, `${name}: Kyverno ${ok ? 'admits' : 'rejects'}, meshguard (as injected) ${want ? 'admits' : 'denies'}${differs.has(name) ? ' (difference)' : ''}`);
      if (!want) t.ok(failedRules(v).includes('workload-network-privileges'), `${name}: by workload-network-privileges (${failedRules(v).join(', ')})`);
    }
  }
  const top = peer('service-mesh-disallow-capabilities', 'good.yaml').concat(peer('service-mesh-disallow-capabilities', 'bad.yaml'));
  t.equal(top.length, 6, 'the top-level copies hold the same six Pods');
});

t.test('service-mesh-disallow-capabilities: the rule that covers it, as submitted', async (t) => {
  const verdicts: Record<string, string[]> = {
    good01: ['workload-network-privileges', 'workload-reserved-container-names'],
    good02: ['workload-network-privileges'],
    bad01: ['workload-network-privileges', 'workload-reserved-container-names'],
    bad02: ['workload-network-privileges', 'workload-reserved-container-names'],
    bad03: ['workload-network-privileges', 'workload-reserved-container-names'],
    bad04: ['workload-network-privileges', 'workload-reserved-container-names'],
  };
  for (const file of ['good.yaml', 'bad.yaml']) {
    for (const o of peer('service-mesh-disallow-capabilities', file)) {
      const name = String(o.metadata?.name);
      const found = failedRules(check(inMesh(o))).filter((r) => r !== 'pod-sidecar-present');
      t.same(found, verdicts[name], `${name} as submitted (not injected, so istio-init is not Istio's own): ${found.join(', ')}`);
    }
  }
});

t.test('service-mesh-disallow-capabilities: deliberate differences', async (t) => {
  const good01 = peer('service-mesh-disallow-capabilities', 'good.yaml').find((o) => o.metadata?.name === 'good01') as KObject;
  const withApp = (securityContext: Record<string, unknown>): KObject => {
    const p = asInjected(good01);
    const containers = (p['spec'] as { containers: Record<string, unknown>[] }).containers;
    (containers[0] as Record<string, unknown>)['securityContext'] = securityContext;
    return p;
  };
  t.ok(check(asInjected(good01)).response.response.allowed, 'good01 as injected: admitted by both');
  t.ok(check(withApp({ capabilities: { add: ['SYS_PTRACE', 'SYS_MODULE'] } })).response.response.allowed, 'an app adding SYS_PTRACE and SYS_MODULE: Kyverno rejects, meshguard admits (left to Pod Security)');
  t.same(failedRules(check(withApp({ privileged: true }))), ['workload-network-privileges'], 'a privileged app without capabilities: Kyverno admits, meshguard denies');
  t.same(failedRules(check(withApp({ capabilities: { add: ['cap_net_admin'] } }))), ['workload-network-privileges'], 'cap_net_admin in lower case with the prefix: meshguard denies');
  const eph = asInjected(good01);
  (eph['spec'] as Record<string, unknown>)['ephemeralContainers'] = [{ name: 'debugger', image: 'busybox', securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } } }];
  const sub = validate(eph, { state: CLUSTER, operation: 'UPDATE', oldObject: asInjected(good01), subResource: 'ephemeralcontainers' });
  t.same(failedRules(sub), ['workload-network-privileges'], 'kubectl debug --profile=netadmin through pods/ephemeralcontainers: meshguard denies');
});

t.test('service-mesh-require-run-as-nonroot: not covered; meshguard\'s verdicts on the same Pods', async (t) => {
  const cases: [string, string, boolean, boolean, string][] = [
    // file, name, Kyverno admits, meshguard (default config) admits, why
    ['good.yaml', 'good01', true, true, 'same verdict: Istio\'s istio-init (proxyv2) with NET_ADMIN and NET_RAW in an injected Pod'],
    ['bad.yaml', 'bad01', false, true, 'difference: root is not meshguard\'s concern, and the default istioProxyImages accepts docker.io/mymalicious/proxyv2'],
    ['bad.yaml', 'bad02', false, false, 'same verdict, another reason: a proxyv2 container named istio-init in spec.containers adds NET_ADMIN'],
  ];
  for (const [file, name, kyverno, ours, why] of cases) {
    const o = peer('service-mesh-require-run-as-nonroot', '.chainsaw-test', file).find((x) => x.metadata?.name === name) as KObject;
    t.equal(check(asInjected(o)).response.response.allowed, ours, `${name}: Kyverno ${kyverno ? 'admits' : 'rejects'}, meshguard ${ours ? 'admits' : 'denies'} (${why})`);
  }
  const bad01 = peer('service-mesh-require-run-as-nonroot', 'bad.yaml').find((x) => x.metadata?.name === 'bad01') as KObject;
  t.same(failedRules(check(asInjected(bad01), STRICT_IMAGES)), ['pod-sidecar-present', 'workload-network-privileges', 'workload-reserved-container-names'], 'bad01 with istioProxyImages pinned to docker.io/istio: meshguard denies the look-alike image (which also does not count as the capture init)');
  const good01 = peer('service-mesh-require-run-as-nonroot', 'good.yaml').find((x) => x.metadata?.name === 'good01') as KObject;
  t.ok(check(asInjected(good01), STRICT_IMAGES).response.response.allowed, 'good01 with the pinned pattern: still admitted');
});

t.test('the DIFFERENCES table is complete and well formed', async (t) => {
  for (const row of DIFFERENCES) t.equal(row.length, 4, `${row[0]}: ${row[1]}`);
  for (const p of ['prevent-disabling-injection-pods', 'service-mesh-disallow-capabilities', 'service-mesh-require-run-as-nonroot']) {
    t.ok(DIFFERENCES.some((d) => d[0] === p), `${p} has its differences listed`);
  }
});
