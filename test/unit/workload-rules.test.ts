// The workload rules: every fixture through admission (enforce and audit) and through
// `meshguard check`, then targeted tables for the bypass rows of the reliability checklist (B3 value
// variants, B4 label vs annotation, B7 UPDATEs, B11 ephemeral containers through the subresource,
// B18 request versions), per-rule settings, the capture-bypass allow-list, unknown and exempt
// namespaces, Istio's own containers, and odd shapes that must never make a rule throw.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import type { StaticClusterView } from '../../src/core/cluster-view.ts';
import { checkManifests } from '../../src/cli/check.ts';
import { parseManifests } from '../../src/cli/manifests.ts';
import type { Config } from '../../src/config/types.ts';
import { BYPASS_ANNOTATIONS, TRAFFIC_PREFIX } from '../../src/policies/workload-capture-bypass.ts';
import { normalizeCapability } from '../../src/policies/workload-network-privileges.ts';
import { podTemplate, WORKLOAD_KINDS, workloadKind } from '../../src/policies/lib/pod-template.ts';
import { WORKLOAD_RULES } from '../../src/policies/workload-rules.ts';
import { config, failedRules, FIXTURES as FIXTURE_DIR, loadYaml, ns, ruleFixtures, state, validate, type Fixture, type ReviewOptions } from '../helpers/review.ts';

const IDS = WORKLOAD_RULES.map((r) => r.id);
const FIXTURES = ruleFixtures().filter((f) => IDS.includes(f.rule));
const CONTAINER_RULES = ['workload-proxy-uid', 'workload-reserved-container-names', 'workload-network-privileges'];

const MESHED = 'workloads-meshed';
const AMBIENT = 'workloads-ambient';
const CLUSTER = state(
  [
    ns(MESHED, { 'istio-injection': 'enabled' }),
    ns(AMBIENT, { 'istio.io/dataplane-mode': 'ambient' }),
    ns('workloads-unmeshed', { 'istio-injection': 'disabled' }),
    ns('team-canary', { 'istio.io/rev': 'canary' }),
    ns('team-ghost', { 'istio.io/rev': 'ghost' }),
    ns('kube-system'),
  ],
  ['canary'],
);

type Outcome = ReturnType<typeof validate>;
type Opts = ReviewOptions & { config?: Config; state?: StaticClusterView };

function check(o: KObject, opts: Opts = {}): Outcome {
  return validate(o, { state: CLUSTER, ...opts });
}

function errors(o: Outcome): string[] {
  return o.results.filter((r) => r.status === 'error').map((r) => `${r.ruleId}: ${r.reason ?? ''}`);
}

function allowed(o: Outcome): boolean {
  return o.response.response.allowed;
}

function fixtureState(f: Fixture): StaticClusterView {
  return state(f.namespaces.map((n) => ns(String(n.metadata?.name), (n.metadata?.labels ?? {}) as Record<string, string>)));
}

function fixtureObject(rule: string, verdict: 'good' | 'bad', file: string): KObject {
  const o = loadYaml(join(FIXTURE_DIR, 'rules', rule, verdict, `${file}.yaml`)).find((d) => d.kind !== 'Namespace');
  if (o === undefined) throw new Error(`no object in ${rule}/${verdict}/${file}`);
  return o;
}

/** An injected Pod as Istio leaves it (sidecar template, istio-init and istio-proxy). */
const INJECTED_POD = fixtureObject('pod-sidecar-present', 'good', 'an-injected-pod');

function clone<T>(o: T): T {
  return structuredClone(o);
}

interface TemplateParts {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  spec?: Record<string, unknown>;
}

function deployment(parts: TemplateParts = {}, namespace = MESHED, apiVersion = 'apps/v1'): KObject {
  return {
    apiVersion,
    kind: 'Deployment',
    metadata: { name: 'web', namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web', ...(parts.labels ?? {}) }, ...(parts.annotations === undefined ? {} : { annotations: parts.annotations }) },
        spec: parts.spec ?? { containers: [{ name: 'app', image: 'docker.io/library/nginx:1.27' }] },
      },
    },
  };
}

function withPodMeta(pod: KObject, labels: Record<string, string>, annotations: Record<string, string> = {}): KObject {
  const p = clone(pod);
  p.metadata = { ...p.metadata, labels: { ...(p.metadata?.labels ?? {}), ...labels }, annotations: { ...(p.metadata?.annotations ?? {}), ...annotations } };
  return p;
}

/** The pod template of a fixture object, by its apiVersion group and kind. */
function templateOf(o: KObject): ReturnType<typeof podTemplate> {
  const apiVersion = o.apiVersion ?? '';
  const k = workloadKind(apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '', o.kind ?? '');
  if (k === undefined) throw new Error(`${apiVersion} ${o.kind ?? ''} is not a workload kind`);
  return podTemplate(o, k);
}

function specOf(o: KObject): Record<string, unknown> {
  return o['spec'] as Record<string, unknown>;
}

t.test('every workload rule has good and bad fixtures', async (t) => {
  for (const id of IDS) {
    t.ok(FIXTURES.some((f) => f.rule === id && f.expect === 'allow'), `${id} has good fixtures`);
    t.ok(FIXTURES.some((f) => f.rule === id && f.expect === 'deny'), `${id} has bad fixtures`);
  }
});

t.test('the fixtures cover the eight shapes and every capture-bypass annotation', async (t) => {
  const kinds = new Set(FIXTURES.flatMap((f) => f.objects.map((o) => `${o.apiVersion}/${o.kind}`)));
  for (const k of WORKLOAD_KINDS) {
    const gv = k.group === '' ? 'v1' : `${k.group}/v1`;
    t.ok(kinds.has(`${gv}/${k.kind}`), `a fixture holds a ${k.kind}`);
  }
  const used = new Set(
    FIXTURES.filter((f) => f.rule === 'workload-capture-bypass' && f.expect === 'deny').flatMap((f) =>
      f.objects.flatMap((o) => Object.keys(templateOf(o).annotations)),
    ),
  );
  const traffic = ['includeOutboundIPRanges', 'excludeOutboundIPRanges', 'includeOutboundPorts', 'excludeOutboundPorts', 'includeInboundPorts', 'excludeInboundPorts', 'excludeInterfaces', 'kubevirtInterfaces'];
  for (const key of [...traffic.map((a) => `${TRAFFIC_PREFIX}${a}`), ...Object.keys(BYPASS_ANNOTATIONS)]) {
    t.ok(used.has(key), `a bad capture-bypass fixture sets ${key}`);
  }
});

t.test('fixtures in enforce mode: bad ones are denied by their rule with path, value and fix; good ones pass', async (t) => {
  for (const f of FIXTURES) {
    t.test(`${f.rule}: ${f.name}`, async (t) => {
      t.ok(f.objects.length > 0, 'the fixture has an object under test');
      t.ok(f.namespaces.length > 0, 'the fixture names its namespace');
      for (const o of f.objects) {
        const v = validate(o, { state: fixtureState(f) });
        const r = v.response.response;
        t.same(errors(v), [], 'no rule errors');
        if (f.expect === 'allow') {
          t.equal(r.allowed, true, 'allowed');
          t.same(failedRules(v), [], 'no findings');
          continue;
        }
        t.equal(r.allowed, false, 'denied');
        t.ok(failedRules(v).includes(f.rule), `denied by ${f.rule} (all: ${failedRules(v).join(', ')})`);
        t.equal(r.status?.code, 403);
        t.equal(r.status?.reason, 'Forbidden');
        t.match(r.status?.message, `[${f.rule}]`, 'names the rule');
        t.match(r.status?.message, 'Fix: ', 'says how to fix it');
        for (const d of v.denials) {
          t.ok(d.violation?.path !== undefined, `${d.ruleId}: the finding has a path`);
          t.match(r.status?.message, `(at ${d.violation?.path ?? '<no path>'}`, `names the field ${d.violation?.path ?? ''}`);
        }
        // Every finding names the offending value, except a missing annotation (there is none).
        const valueless = v.denials.filter((d) => d.ruleId === f.rule && d.violation?.value === undefined && !d.violation?.message.includes('has no sidecar.istio.io/status annotation'));
        t.same(valueless, [], `every ${f.rule} finding names the value`);
      }
    });
  }
});

t.test('fixtures in audit mode: allowed with a warning, an audit annotation and an audit record', async (t) => {
  const audit = config({ mode: 'audit' });
  for (const f of FIXTURES) {
    t.test(`${f.rule}: ${f.name}`, async (t) => {
      for (const o of f.objects) {
        const v = validate(o, { state: fixtureState(f), config: audit });
        const r = v.response.response;
        t.equal(r.allowed, true, 'allowed');
        if (f.expect === 'allow') {
          t.equal(r.warnings, undefined, 'no warnings');
          t.equal(v.audit, undefined, 'no audit record');
          continue;
        }
        t.ok(r.warnings?.some((w) => w.startsWith(`policy ${f.rule}: `)), 'a warning names the rule');
        t.ok(r.auditAnnotations?.[f.rule], 'an audit annotation keyed by the rule id');
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
      t.ok(findings.some((x) => x.rule === f.rule && x.action === 'deny'), `${f.rule}: ${f.name}: found by ${f.rule}`);
      t.ok(findings.every((x) => x.path !== undefined && x.fix !== ''), `${f.rule}: ${f.name}: path and fix`);
    }
  }
});

t.test('B3: every sidecar.istio.io/inject value other than exactly "true" is denied, as a label and as an annotation', async (t) => {
  const variants = ['false', 'False', 'FALSE', '0', 'no', 'off', 'enabled', ' true', 'true ', 'True', 'TRUE', 'yes', 'y', 'on', ''];
  const pod = (meta: 'labels' | 'annotations', v: string): KObject => (meta === 'labels' ? withPodMeta(INJECTED_POD, { 'sidecar.istio.io/inject': v }) : withPodMeta(INJECTED_POD, {}, { 'sidecar.istio.io/inject': v }));
  for (const meta of ['labels', 'annotations'] as const) {
    for (const v of variants) {
      const d = check(deployment({ [meta]: { 'sidecar.istio.io/inject': v } }));
      t.same(failedRules(d), ['workload-injection-opt-out'], `a Deployment template ${meta === 'labels' ? 'label' : 'annotation'} ${JSON.stringify(v)} is denied`);
      t.match(d.response.response.status?.message, `spec.template.metadata.${meta}["sidecar.istio.io/inject"]: ${JSON.stringify(v)}`, 'the denial names the path and value');
      t.same(failedRules(check(pod(meta, v))), ['workload-injection-opt-out'], `an injected Pod ${meta === 'labels' ? 'label' : 'annotation'} ${JSON.stringify(v)} is denied`);
      const audited = check(deployment({ [meta]: { 'sidecar.istio.io/inject': v } }), { config: config({ mode: 'audit' }) });
      t.ok(allowed(audited) && audited.response.response.warnings?.some((w) => w.startsWith('policy workload-injection-opt-out: ')), `audit mode: ${JSON.stringify(v)} is warned`);
    }
    t.ok(allowed(check(deployment({ [meta]: { 'sidecar.istio.io/inject': 'true' } }))), `exact "true" as ${meta} is allowed on a Deployment`);
    t.ok(allowed(check(pod(meta, 'true'))), `exact "true" as ${meta} is allowed on an injected Pod`);
  }
});

t.test('B4: label and annotation together (the label wins in Istio)', async (t) => {
  const cases: [string, Record<string, string>, Record<string, string>, boolean, string[]][] = [
    ['label false + annotation true is denied (the pod is not injected)', { 'sidecar.istio.io/inject': 'false' }, { 'sidecar.istio.io/inject': 'true' }, false, ['metadata.labels']],
    ['label true + annotation false is denied as a conflict (documented choice: enforce cannot allow with a warning)', { 'sidecar.istio.io/inject': 'true' }, { 'sidecar.istio.io/inject': 'false' }, false, ['metadata.annotations']],
    ['label false + annotation false gives two findings', { 'sidecar.istio.io/inject': 'false' }, { 'sidecar.istio.io/inject': 'false' }, false, ['metadata.labels', 'metadata.annotations']],
    ['label true + annotation true is allowed', { 'sidecar.istio.io/inject': 'true' }, { 'sidecar.istio.io/inject': 'true' }, true, []],
  ];
  for (const [name, labels, annotations, ok, paths] of cases) {
    const v = check(deployment({ labels, annotations }));
    t.equal(allowed(v), ok, name);
    t.same(v.denials.map((d) => d.violation?.path?.replace(/^spec\.template\./, '').replace(/\[.*$/, '')), paths, `${name}: findings at ${paths.join(', ') || 'none'}`);
  }
  const conflict = check(deployment({ labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'sidecar.istio.io/inject': 'false' } }));
  t.match(conflict.response.response.status?.message, 'conflicts with the label "true"; Istio honours the label', 'the conflict says the label wins');
  const audited = check(deployment({ labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'sidecar.istio.io/inject': 'false' } }), { config: config({ rules: { 'workload-injection-opt-out': { mode: 'audit' } } }) });
  t.ok(allowed(audited) && audited.response.response.warnings?.length === 1, 'with the rule pinned to audit, the conflict is allowed with a warning (B4 as the checklist words it)');
});

t.test('B14 and dataplane-mode: a pod label other than ambient is denied; namespaces decide the rest', async (t) => {
  const ambientPod = (labels: Record<string, string>): KObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: AMBIENT, labels }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
  t.same(failedRules(check(ambientPod({ 'istio.io/dataplane-mode': 'none' }))), ['workload-injection-opt-out'], 'dataplane-mode none in an ambient namespace is denied');
  t.same(failedRules(check(ambientPod({ 'istio.io/dataplane-mode': 'None' }))), ['workload-injection-opt-out'], 'a re-cased None is denied too');
  t.same(failedRules(check(ambientPod({ 'istio.io/dataplane-mode': 'ambient' }))), [], 'dataplane-mode ambient is allowed');
  t.same(failedRules(check(ambientPod({}))), [], 'an ambient pod needs no sidecar');
  t.same(failedRules(check(withPodMeta(INJECTED_POD, { 'istio.io/dataplane-mode': 'none' }))), ['workload-injection-opt-out'], 'dataplane-mode none in a sidecar namespace is denied');
  t.same(failedRules(check(ambientPod({}), { config: config({ 'ambient.allowed': false }) })), ['workload-injection-opt-out'], 'when ambient is not allowed, an ambient namespace is not meshed');
});

t.test('namespaces: meshed, revision, not meshed, unknown, exempt', async (t) => {
  t.ok(allowed(check(deployment({}, 'team-canary'))), 'a namespace whose istio.io/rev names a known revision is meshed');
  const ghost = check(deployment({}, 'team-ghost'));
  t.same(failedRules(ghost), ['workload-injection-opt-out'], 'a namespace whose istio.io/rev names no revision is not meshed');
  t.match(ghost.response.response.status?.message, 'namespace team-ghost is not in the mesh: istio.io/rev "ghost" names no installed Istio revision', 'and says why');
  const unmeshed = check(deployment({}, 'workloads-unmeshed'));
  t.match(unmeshed.response.response.status?.message, '(at metadata.namespace: "workloads-unmeshed")', 'the finding names the namespace');

  const unknown = check(deployment({}, 'nowhere'));
  t.same(failedRules(unknown), ['workload-injection-opt-out'], 'unknownNamespace deny (default): a workload in an unknown namespace is denied');
  t.match(unknown.response.response.status?.message, 'namespace nowhere is unknown to meshguard', 'and the message says the namespace is unknown');
  const allow = config({ unknownNamespace: 'allow' });
  t.ok(allowed(check(deployment({}, 'nowhere'), { config: allow })), 'unknownNamespace allow: a clean Deployment is allowed');
  const pod = { ...clone(INJECTED_POD), metadata: { ...INJECTED_POD.metadata, namespace: 'nowhere' } };
  t.ok(allowed(check(pod, { config: allow })), 'unknownNamespace allow: a Pod is allowed (pod-sidecar-present skips unknown namespaces)');
  t.same(failedRules(check(deployment({ annotations: { 'sidecar.istio.io/inject': 'false' } }, 'nowhere'), { config: allow })), ['workload-injection-opt-out'], 'unknownNamespace allow still judges the opt-out');

  const system = check(deployment({ annotations: { 'sidecar.istio.io/inject': 'false' }, spec: { hostNetwork: true, containers: [{ name: 'app', image: 'x', securityContext: { privileged: true, runAsUser: 1337 } }] } }, 'kube-system'));
  t.ok(allowed(system), 'a violating Deployment in kube-system (exempt) is allowed');
  const matching = system.results.filter((r) => IDS.includes(r.ruleId) && r.reason !== 'kind not matched');
  t.equal(matching.length, IDS.length - 1, 'every workload rule but pod-sidecar-present matches a Deployment');
  t.ok(matching.every((r) => r.status === 'skip' && r.reason === 'namespace kube-system is exempt'), 'and each is skipped as exempt');
});

t.test('B7: UPDATEs of controllers are judged when the pod template changes', async (t) => {
  const good = deployment();
  const bad = deployment({ annotations: { 'sidecar.istio.io/inject': 'false' } });
  const u = (object: KObject, oldObject: KObject): Outcome => check(object, { operation: 'UPDATE', oldObject });
  t.same(failedRules(u(bad, good)), ['workload-injection-opt-out'], 'an UPDATE that adds an opt-out to the template is denied');
  const badImage = clone(bad);
  ((specOf(badImage)['template'] as { spec: { containers: { image: string }[] } }).spec.containers[0] as { image: string }).image = 'nginx:1.28';
  t.same(failedRules(u(badImage, bad)), ['workload-injection-opt-out'], 'an UPDATE that changes the template of a violating Deployment is judged whole (and denied)');
  const scaled = clone(bad);
  specOf(scaled)['replicas'] = 0;
  const s = u(scaled, bad);
  t.ok(allowed(s), 'an UPDATE that leaves the template alone (scaling a grandfathered Deployment) is allowed');
  t.match(s.results.find((r) => r.ruleId === 'workload-injection-opt-out')?.reason, 'the pod template did not change', 'and the rule says why it skipped');
  t.ok(allowed(u(good, bad)), 'an UPDATE that removes the opt-out is allowed');
  const deleting = { ...clone(bad), metadata: { ...bad.metadata, deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [] } };
  t.ok(allowed(u(deleting, bad)), 'an UPDATE of a Deployment being deleted is allowed');

  const cron = fixtureObject('workload-injection-opt-out', 'bad', 'a-cron-job-whose-job-template-sets-the-inject-label-False');
  const cronGood = clone(cron);
  delete ((((specOf(cronGood)['jobTemplate'] as Record<string, unknown>)['spec'] as Record<string, unknown>)['template'] as { metadata: { labels: Record<string, string> } }).metadata.labels['sidecar.istio.io/inject']);
  t.same(failedRules(u(cron, cronGood)), ['workload-injection-opt-out'], 'a CronJob UPDATE that adds an opt-out to spec.jobTemplate.spec.template is denied');
  t.ok(allowed(u({ ...cron, spec: { ...specOf(cron), suspend: true } }, cron)), 'suspending a grandfathered CronJob is allowed');
});

t.test('Pod UPDATEs are judged on what they change; B11 ephemeral containers through the subresource', async (t) => {
  const ephemeral = (container: Record<string, unknown>, base: KObject = INJECTED_POD): KObject => ({ ...clone(base), spec: { ...specOf(base), ephemeralContainers: [{ name: 'debugger', image: 'docker.io/library/busybox:1.37', ...container }] } });
  const sub = (object: KObject, oldObject: KObject = INJECTED_POD): Outcome => check(object, { operation: 'UPDATE', oldObject, subResource: 'ephemeralcontainers' });

  const netadmin = sub(ephemeral({ securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } } }));
  t.same(failedRules(netadmin), ['workload-network-privileges'], 'kubectl debug --profile=netadmin (NET_ADMIN, NET_RAW) is denied');
  t.equal(netadmin.denials.length, 2, 'one finding per capability');
  t.match(netadmin.response.response.status?.message, '(at spec.ephemeralContainers[0].securityContext.capabilities.add[0]: "NET_ADMIN")', 'the denial names the ephemeral container path');
  t.same(failedRules(sub(ephemeral({ securityContext: { privileged: true } }))), ['workload-network-privileges'], 'kubectl debug --profile=sysadmin (privileged) is denied');
  t.same(failedRules(sub(ephemeral({ securityContext: { runAsUser: 1337 } }))), ['workload-proxy-uid'], 'an ephemeral container running as 1337 is denied');
  t.same(failedRules(sub(ephemeral({ name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0' }, fixtureObject('pod-sidecar-present', 'good', 'a-pod-in-an-ambient-namespace-without-a-sidecar')), fixtureObject('pod-sidecar-present', 'good', 'a-pod-in-an-ambient-namespace-without-a-sidecar'))), ['workload-reserved-container-names'], 'an ephemeral container named istio-proxy is never Istio\'s own');
  t.ok(allowed(sub(ephemeral({}))), 'a plain debug container is allowed');
  const legacy = { ...clone(INJECTED_POD), spec: { ...specOf(INJECTED_POD), hostNetwork: true, securityContext: { runAsUser: 1337 } } };
  t.ok(allowed(sub(ephemeral({}, legacy), legacy)), 'a plain debug container on a pod admitted before meshguard (hostNetwork, 1337) is allowed: only the new container is judged');
  const twice = ephemeral({ securityContext: { capabilities: { add: ['NET_ADMIN'] } } }, legacy);
  const second = { ...clone(twice), spec: { ...specOf(twice), ephemeralContainers: [...(specOf(twice)['ephemeralContainers'] as unknown[]), { name: 'second', image: 'busybox' }] } };
  t.ok(allowed(sub(second, twice)), 'an ephemeral container that was already there is not judged again');

  const main = (object: KObject, oldObject: KObject = INJECTED_POD): Outcome => check(object, { operation: 'UPDATE', oldObject });
  const notInjected = fixtureObject('pod-sidecar-present', 'bad', 'a-pod-that-was-not-injected');
  t.ok(allowed(main(withPodMeta(notInjected, { team: 'a' }), notInjected)), 'a label change on a pod admitted before meshguard is allowed');
  const swapped = clone(INJECTED_POD);
  const proxy = (specOf(swapped)['containers'] as Record<string, unknown>[]).find((c) => c['name'] === 'istio-proxy') as Record<string, unknown>;
  proxy['image'] = 'docker.io/library/busybox:1.37';
  t.same(failedRules(main(swapped)), ['workload-proxy-uid', 'workload-reserved-container-names'], 'swapping the istio-proxy image on a running pod is denied (it would run as 1337 uncaptured)');
  t.same(failedRules(main(withPodMeta(INJECTED_POD, { 'istio.io/dataplane-mode': 'none' }))), ['workload-injection-opt-out'], 'labelling a running pod dataplane-mode=none is denied');
  t.same(failedRules(main(withPodMeta(INJECTED_POD, {}, { 'ambient.istio.io/bypass-inbound-capture': 'true' }))), ['workload-capture-bypass'], 'adding a capture-bypass annotation to a running pod is denied');
  const withOptOut = withPodMeta(INJECTED_POD, { 'sidecar.istio.io/inject': 'false' });
  t.ok(allowed(main(withPodMeta(withOptOut, { team: 'b' }), withOptOut)), 'an unchanged opt-out label is not judged again on a Pod UPDATE');
  t.ok(allowed(check(notInjected, { operation: 'UPDATE', oldObject: notInjected })), 'pod-sidecar-present judges a Pod UPDATE only on what it changes (an unchanged uninjected pod is not judged again)');
  t.same(failedRules(check(withPodMeta(INJECTED_POD, {}, { 'ambient.istio.io/redirection': 'enabled' }), { operation: 'UPDATE', oldObject: INJECTED_POD })), ['pod-sidecar-present'], "a Pod UPDATE that adds the ambient CNI's redirection record is denied");
  t.same(failedRules(check(withPodMeta(notInjected, {}, { 'sidecar.istio.io/status': '{}' }), { operation: 'UPDATE', oldObject: notInjected })), ['pod-sidecar-present'], 'a Pod UPDATE that adds a sidecar claim is denied (the ambient CNI would release the pod)');
});

t.test('B18: the verdict does not depend on the version the request names', async (t) => {
  const bad = (apiVersion: string): KObject => deployment({ annotations: { 'sidecar.istio.io/inject': 'false' } }, MESHED, apiVersion);
  for (const v of ['apps/v1', 'apps/v1beta2', 'apps/v1beta1']) {
    t.same(failedRules(check(bad(v))), ['workload-injection-opt-out'], `a Deployment opt-out through ${v} is denied`);
    t.ok(allowed(check(deployment({}, MESHED, v))), `a clean Deployment through ${v} is allowed`);
  }
  const cron = fixtureObject('workload-network-privileges', 'bad', 'a-cron-job-whose-container-adds-Net_Admin-in-mixed-case');
  for (const v of ['batch/v1', 'batch/v1beta1']) {
    t.same(failedRules(check({ ...cron, apiVersion: v })), ['workload-network-privileges'], `a CronJob with NET_ADMIN through ${v} is denied`);
  }
  for (const rule of WORKLOAD_RULES) {
    const versions = rule.webhook.flatMap((w) => w.apiVersions);
    t.ok(versions.every((x) => x === 'v1'), `${rule.id} registers the served version v1 (matchPolicy Equivalent converts older requests)`);
  }
});

t.test('webhook resources and matches', async (t) => {
  for (const rule of WORKLOAD_RULES) {
    const resources = rule.webhook.flatMap((w) => w.resources.map((r) => `${w.apiGroup}/${r}`)).sort();
    if (rule.id === 'pod-sidecar-present') {
      t.same(resources, ['/pods'], 'pod-sidecar-present: pods only');
      t.same(rule.match.operations, ['CREATE', 'UPDATE'], 'pod-sidecar-present: CREATE, and UPDATEs of annotations');
      continue;
    }
    const want = WORKLOAD_KINDS.map((k) => `${k.group}/${k.resource}`);
    if (CONTAINER_RULES.includes(rule.id)) want.push('/pods/ephemeralcontainers');
    t.same(resources, want.sort(), `${rule.id}: the eight shapes${CONTAINER_RULES.includes(rule.id) ? ' and pods/ephemeralcontainers' : ''}`);
    t.same(rule.match.operations, ['CREATE', 'UPDATE'], `${rule.id}: CREATE and UPDATE`);
    t.same(rule.match.kinds.length, 8, `${rule.id}: matches the eight kinds`);
    t.equal(rule.match.exemptions ?? 'namespaces', 'namespaces', `${rule.id}: exempt namespaces are skipped`);
  }
});

t.test('per-rule settings: disabled rules pass, audit-pinned rules warn in enforce mode', async (t) => {
  for (const f of FIXTURES.filter((x) => x.expect === 'deny')) {
    const o = f.objects[0] as KObject;
    const s = fixtureState(f);
    const off = validate(o, { state: s, config: config({ rules: { [f.rule]: { enabled: false } } }) });
    t.notOk(failedRules(off).includes(f.rule), `${f.rule} disabled: ${f.name} has no ${f.rule} finding`);
    t.equal(off.results.find((r) => r.ruleId === f.rule)?.reason, 'rule disabled in configuration', `${f.rule} disabled: skipped as disabled`);
    const audited = validate(o, { state: s, config: config({ rules: { [f.rule]: { mode: 'audit' } } }) });
    t.ok(audited.response.response.warnings?.some((w) => w.startsWith(`policy ${f.rule}: `)), `${f.rule} pinned to audit: ${f.name} is warned`);
    t.notOk(audited.denials.some((d) => d.ruleId === f.rule), `${f.rule} pinned to audit: not a denial`);
  }
  const hostNetworkPod = fixtureObject('workload-host-network', 'bad', 'a-daemon-set-with-host-network');
  t.ok(allowed(check(hostNetworkPod, { config: config({ rules: { 'workload-host-network': { enabled: false } } }) })), 'config({rules: {workload-host-network: {enabled: false}}}) admits a hostNetwork DaemonSet');
});

t.test('workload-capture-bypass: the allow-list', async (t) => {
  const port = { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' };
  const allow = (list: Record<string, string[]>): Config => config({ 'captureBypass.allow': list });
  t.same(failedRules(check(deployment({ annotations: port }))), ['workload-capture-bypass'], 'denied by default (empty allow-list)');
  t.ok(allowed(check(deployment({ annotations: port }), { config: allow({ 'traffic.sidecar.istio.io/excludeOutboundPorts': ['5432'] }) })), 'an allow-listed value is allowed');
  t.same(failedRules(check(deployment({ annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432,6379' } }), { config: allow({ 'traffic.sidecar.istio.io/excludeOutboundPorts': ['5432'] }) })), ['workload-capture-bypass'], 'another value of the same annotation is denied');
  t.ok(allowed(check(deployment({ annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': 'anything' } }), { config: allow({ 'traffic.sidecar.istio.io/excludeOutboundPorts': ['*'] }) })), '"*" allows any value');
  t.same(failedRules(check(deployment({ annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '5432' } }), { config: allow({ 'traffic.sidecar.istio.io/excludeOutboundPorts': ['*'] }) })), ['workload-capture-bypass'], 'an allow-list entry covers only its own annotation');
  t.same(failedRules(check(deployment({ annotations: { 'traffic.sidecar.istio.io/someFutureKnob': 'x' } }))), ['workload-capture-bypass'], 'every traffic.sidecar.istio.io/* annotation counts, including future ones');
  const holdProxy = { 'proxy.istio.io/config': '{"holdApplicationUntilProxyStarts": true}' };
  t.ok(allowed(check(deployment({ annotations: holdProxy }))), 'proxy.istio.io/config with only benign fields is allowed (judged by meaning, test/unit/proxy-config.test.ts)');
  const noCapture = { 'proxy.istio.io/config': 'interceptionMode: NONE' };
  t.same(failedRules(check(deployment({ annotations: noCapture }))), ['workload-capture-bypass'], 'proxy.istio.io/config that turns capture off is denied');
  t.ok(allowed(check(deployment({ annotations: noCapture }), { config: allow({ 'proxy.istio.io/config': ['interceptionMode: NONE'] }) })), 'and allowed once its exact value is on captureBypass.allow');
  const fullCapture: [string, string, boolean][] = [
    ['sidecar.istio.io/interceptionMode', 'REDIRECT', true],
    ['sidecar.istio.io/interceptionMode', 'TPROXY', true],
    ['sidecar.istio.io/interceptionMode', 'NONE', false],
    ['traffic.sidecar.istio.io/includeOutboundIPRanges', '*', true],
    ['traffic.sidecar.istio.io/includeOutboundIPRanges', '10.0.0.0/8', false],
    ['traffic.sidecar.istio.io/includeInboundPorts', '*', true],
    ['traffic.sidecar.istio.io/excludeInboundPorts', '15020', true],
    ['traffic.sidecar.istio.io/excludeInboundPorts', '15020,8080', false],
    ['inject.istio.io/templates', 'sidecar', true],
    ['inject.istio.io/templates', 'sidecar,spire', false],
    ['ambient.istio.io/dns-capture', 'true', true],
    ['ambient.istio.io/dns-capture', 'false', false],
    ['sidecar.istio.io/proxyCPU', '500m', true],
  ];
  for (const [key, value, ok] of fullCapture) t.equal(allowed(check(deployment({ annotations: { [key]: value } }))), ok, `${key}: ${JSON.stringify(value)} is ${ok ? 'allowed (full capture, as the CNI injector writes it)' : 'denied'}`);
});

t.test("Istio's own containers: name, list, injection and image", async (t) => {
  const withInit = (init: Record<string, unknown>): KObject => {
    const p = clone(INJECTED_POD);
    specOf(p)['initContainers'] = [init];
    return p;
  };
  const init = (specOf(INJECTED_POD)['initContainers'] as Record<string, unknown>[])[0] as Record<string, unknown>;
  t.ok(allowed(check(withInit(init))), 'the injected istio-init (proxyv2, NET_ADMIN, NET_RAW) is allowed');
  const strict = config({ istioProxyImages: ['docker\\.io/istio/proxyv2:[^/@]+'] });
  t.ok(allowed(check(withInit(init), { config: strict })), 'a stricter istioProxyImages still admits docker.io/istio/proxyv2');
  const lookalike = withInit({ ...init, image: 'docker.io/mymalicious/proxyv2:1.22.0' });
  t.ok(allowed(check(lookalike)), 'the default istioProxyImages pattern accepts any registry\'s proxyv2 (a known weakness: tighten it per cluster)');
  t.same(failedRules(check(lookalike, { config: strict })), ['pod-sidecar-present', 'workload-network-privileges', 'workload-reserved-container-names'], 'with a registry-pinned pattern, a look-alike proxyv2 istio-init is denied (and it does not count as the capture init)');
  t.same(failedRules(check(withInit({ ...init, image: 'docker.io/istio/proxyv2:1.24.0' }), { config: config({ istioProxyImages: ['(unclosed'] }) })).sort(), ['pod-sidecar-present', 'workload-network-privileges', 'workload-proxy-uid', 'workload-reserved-container-names'], 'an invalid istioProxyImages pattern allows nothing (fails closed, no error)');
  const notInjected = clone(INJECTED_POD);
  delete (notInjected.metadata?.annotations ?? {})['sidecar.istio.io/status'];
  t.same(failedRules(check(notInjected)), ['pod-sidecar-present', 'workload-network-privileges', 'workload-proxy-uid', 'workload-reserved-container-names'], 'without sidecar.istio.io/status nothing is Istio\'s own');
  const caps: [string, string[], boolean][] = [
    ['istio-init with NET_ADMIN only', ['NET_ADMIN'], true],
    ['istio-init with CAP_NET_RAW spelled with the prefix', ['CAP_NET_RAW'], true],
    ['istio-init adding SYS_ADMIN', ['NET_ADMIN', 'SYS_ADMIN'], false],
    ['istio-init adding ALL', ['all'], false],
  ];
  for (const [name, add, ok] of caps) t.equal(allowed(check(withInit({ ...init, securityContext: { capabilities: { add } } }))), ok, `${name} is ${ok ? 'allowed' : 'denied'}`);
  t.same(failedRules(check(withInit({ ...init, securityContext: { privileged: true } }))), ['workload-network-privileges'], 'a privileged istio-init is denied (only NET_ADMIN and NET_RAW are carved out)');
  for (const [raw, want] of [['net_admin', 'NET_ADMIN'], [' CAP_SYS_ADMIN ', 'SYS_ADMIN'], ['Net_Raw', 'NET_RAW'], ['chown', 'CHOWN']] as const) t.equal(normalizeCapability(raw), want, `${JSON.stringify(raw)} normalizes to ${want}`);
});

t.test('pod-sidecar-present: details', async (t) => {
  const canaryPod = { ...clone(INJECTED_POD), metadata: { ...INJECTED_POD.metadata, namespace: 'team-canary' } };
  t.ok(allowed(check(canaryPod)), 'an injected Pod in a revision namespace is allowed');
  const noProxy = clone(INJECTED_POD);
  specOf(noProxy)['containers'] = (specOf(noProxy)['containers'] as Record<string, unknown>[]).filter((c) => c['name'] !== 'istio-proxy');
  const v = check(noProxy);
  t.same(failedRules(v), ['pod-sidecar-present'], 'a status annotation without a proxy is denied');
  t.match(v.response.response.status?.message, '(at spec.containers: "app")', 'the finding lists the containers that are there');
  t.match(v.response.response.status?.message, "Fix: check that istiod's sidecar injector is running", 'the fix points at the injector');
  const ambient = fixtureObject('pod-sidecar-present', 'good', 'a-pod-in-an-ambient-namespace-without-a-sidecar');
  t.equal(check(ambient).results.find((r) => r.ruleId === 'pod-sidecar-present')?.reason, 'ambient namespace: ztunnel captures pods that claim no sidecar', 'ambient namespaces are skipped with a reason');
});

t.test('odd shapes never make a rule throw (no error results)', async (t) => {
  const pod = (spec: unknown, metadata: Record<string, unknown> = {}): KObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: MESHED, ...metadata }, spec } as KObject);
  const shapes: [string, KObject, Opts?][] = [
    ['a Pod whose spec is missing', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: MESHED } }],
    ['a Pod whose spec is a string', pod('x')],
    ['a Pod whose containers are a string', pod({ containers: 'x', initContainers: 3, ephemeralContainers: {} })],
    ['a Pod whose containers hold null, a number and odd fields', pod({ containers: [null, 3, { name: 7, image: [], securityContext: [] }] })],
    ['a Pod whose securityContext is a list', pod({ securityContext: [], containers: [{ name: 'a', image: 'b', securityContext: 'x' }] })],
    ['a Pod whose supplementalGroups is a string', pod({ securityContext: { supplementalGroups: '1337', runAsUser: '1337' }, containers: [] })],
    ['a Pod whose capabilities.add is a string or holds non-strings', pod({ containers: [{ name: 'a', securityContext: { capabilities: { add: 'NET_ADMIN' } } }, { name: 'b', securityContext: { capabilities: { add: [null, 1, 'NET_ADMIN'] } } }] })],
    ['a Pod whose annotations are null and labels a string', pod({ containers: [] }, { annotations: null, labels: 'x' })],
    ['a Pod whose annotation values are numbers and maps', pod({ containers: [] }, { annotations: { 'sidecar.istio.io/inject': false, 'traffic.sidecar.istio.io/excludeOutboundPorts': 5432, 'proxy.istio.io/config': { interceptionMode: 'NONE' } } })],
    ['a Pod with no metadata', { apiVersion: 'v1', kind: 'Pod', spec: { hostNetwork: true } } as KObject],
    ['a Deployment with no spec', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: MESHED } }],
    ['a Deployment whose template is a string', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: MESHED }, spec: { template: 'x' } } as KObject],
    ['a CronJob whose jobTemplate is a list', { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c', namespace: MESHED }, spec: { jobTemplate: [] } } as KObject],
    ['a Job whose template metadata is a number', { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', namespace: MESHED }, spec: { template: { metadata: 5, spec: null } } } as KObject],
    ['a Pod UPDATE whose oldObject is garbage', pod({ containers: [{ name: 'a', image: 'b' }] }), { operation: 'UPDATE', oldObject: { spec: 'x', metadata: [] } as unknown as KObject }],
    ['an ephemeralcontainers UPDATE without an oldObject', pod({ ephemeralContainers: [{ name: 'd', securityContext: { capabilities: { add: ['NET_ADMIN'] } } }] }), { operation: 'UPDATE', subResource: 'ephemeralcontainers' }],
    ['a Deployment UPDATE whose oldObject has no spec', deployment(), { operation: 'UPDATE', oldObject: { apiVersion: 'apps/v1', kind: 'Deployment' } }],
  ];
  for (const [name, o, opts] of shapes) t.same(errors(check(o, opts ?? {})), [], `${name}: no error result`);
  t.same(failedRules(check(shapes[6]?.[1] as KObject)), ['pod-sidecar-present', 'workload-network-privileges'], 'a string capabilities.add is ignored, the NET_ADMIN entry of a mixed list is found');
  t.same(failedRules(check(shapes[8]?.[1] as KObject)), ['pod-sidecar-present', 'workload-capture-bypass', 'workload-injection-opt-out'], 'non-string annotation values are judged, not trusted');
  t.same(failedRules(check(shapes[15]?.[1] as KObject, shapes[15]?.[2])), ['workload-network-privileges'], 'the ephemeral container is still judged');
});

t.test('pod templates: paths for the eight shapes', async (t) => {
  const paths: Record<string, string> = { Pod: '', Deployment: 'spec.template', StatefulSet: 'spec.template', DaemonSet: 'spec.template', ReplicaSet: 'spec.template', ReplicationController: 'spec.template', Job: 'spec.template', CronJob: 'spec.jobTemplate.spec.template' };
  for (const k of WORKLOAD_KINDS) {
    const spec = { containers: [{ name: 'app', image: 'x' }], initContainers: [{ name: 'init', image: 'y' }], ephemeralContainers: [{ name: 'dbg', image: 'z' }] };
    const inner = { metadata: { labels: { a: '1' }, annotations: { b: '2' } }, spec };
    let object: Record<string, unknown> = inner;
    for (const key of [...k.template].reverse()) object = { [key]: object };
    const tmpl = podTemplate(object, k);
    t.equal(tmpl.basePath, paths[k.kind], `${k.kind}: base path ${JSON.stringify(paths[k.kind])}`);
    const prefix = tmpl.basePath === '' ? 'spec' : `${tmpl.basePath}.spec`;
    t.same(tmpl.containers.map((c) => c.path), [`${prefix}.initContainers[0]`, `${prefix}.containers[0]`, `${prefix}.ephemeralContainers[0]`], `${k.kind}: container paths`);
    t.same([tmpl.labels, tmpl.annotations], [{ a: '1' }, { b: '2' }], `${k.kind}: pod metadata`);
  }
});
