// mesh-config-outbound-policy on mesh-wide settings: enums by name or number, defaultConfig judged
// as a ProxyConfig on capture, an IstioOperator's two meshConfig places merged as istioctl merges
// them (spec.meshConfig over spec.values.meshConfig, field by field: istioctl manifest generate), and install values that narrow capture for every pod (IstioOperator spec.values and the
// istio-sidecar-injector ConfigMap's values).
import t from 'tap';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { StaticClusterView } from '../../src/core/cluster-view.ts';
import type { Config } from '../../src/config/types.ts';
import { meshConfigProblems, outboundMode } from '../../src/policies/lib/mesh-config.ts';
import { config, FIXTURES, failedRules, loadYaml, ns, validate } from '../helpers/review.ts';

const RULE = 'mesh-config-outbound-policy';

function problems(mesh: Record<string, unknown>, allow: Record<string, string[]> = {}): string[] {
  return meshConfigProblems(mesh, (f) => f, allow).map((v) => `${v.path ?? ''}=${v.value ?? ''}`);
}

t.test('outboundTrafficPolicy.mode is read by name or number, as istiod reads it', async (t) => {
  const rows: [string, unknown, string][] = [
    ['REGISTRY_ONLY by name', { mode: 'REGISTRY_ONLY' }, 'REGISTRY_ONLY'],
    ['REGISTRY_ONLY as the number 0', { mode: 0 }, 'REGISTRY_ONLY'],
    ['ALLOW_ANY as the number 1', { mode: 1 }, 'ALLOW_ANY'],
    ['ALLOW_ANY_DYNAMIC_DNS as the number 3', { mode: 3 }, 'ALLOW_ANY_DYNAMIC_DNS'],
    ['a number with no name stays a number', { mode: 2 }, '2'],
    ['a present policy without a mode is the enum default REGISTRY_ONLY', {}, 'REGISTRY_ONLY'],
    ['a null mode is the enum default REGISTRY_ONLY', { mode: null }, 'REGISTRY_ONLY'],
    ["an absent policy is unset (Istio's default ALLOW_ANY applies)", undefined, 'unset'],
    ['a quoted number is invalid (jsonpb reads quoted enums by name)', { mode: '0' }, 'invalid'],
    ['a lower-case name is invalid', { mode: 'registry_only' }, 'invalid'],
    ['a policy that is not a mapping is invalid', 'REGISTRY_ONLY', 'invalid'],
  ];
  for (const [sentence, policy, mode] of rows) t.equal(outboundMode(policy), mode, sentence);
});

t.test('the mesh config: egress mode and defaultConfig', async (t) => {
  const registry = { outboundTrafficPolicy: { mode: 0 } };
  const rows: [string, Record<string, unknown>, Record<string, string[]>, string[]][] = [
    ['REGISTRY_ONLY by number with no defaultConfig is accepted', registry, {}, []],
    ['ALLOW_ANY by number is denied', { outboundTrafficPolicy: { mode: 1 } }, {}, ['outboundTrafficPolicy.mode=1']],
    ["Istio's own defaultConfig (discoveryAddress, tracing, proxyMetadata) is accepted", { ...registry, defaultConfig: { discoveryAddress: 'istiod.istio-system.svc:15012', tracing: { zipkin: { address: 'zipkin.istio-system:9411' } }, proxyMetadata: {} } }, {}, []],
    ['defaultConfig.interceptionMode NONE by number is denied', { ...registry, defaultConfig: { interceptionMode: 2 } }, {}, ['defaultConfig.interceptionMode=NONE']],
    ['defaultConfig.interceptionMode TPROXY is accepted', { ...registry, defaultConfig: { interceptionMode: 'TPROXY' } }, {}, []],
    ['an istio-iptables exclusion in defaultConfig.proxyMetadata is denied', { ...registry, defaultConfig: { proxyMetadata: { ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE: '443' } } }, {}, ['defaultConfig.proxyMetadata.ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE=443']],
    ['the same exclusion allowed by istioInstall.allow is accepted', { ...registry, defaultConfig: { proxyMetadata: { ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE: '443' } } }, { 'meshConfig.defaultConfig.proxyMetadata.ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE': ['443'] }, []],
    ['a defaultConfig that is not a ProxyConfig is denied', { ...registry, defaultConfig: { interceptionMode: 'OFF' } }, {}, ['defaultConfig=']],
  ];
  for (const [sentence, mesh, allow, expected] of rows) t.same(problems(mesh, allow), expected, sentence);
});

function operator(spec: Record<string, unknown>, namespace = 'istio-system'): KObject {
  return { apiVersion: 'install.istio.io/v1alpha1', kind: 'IstioOperator', metadata: { name: 'installed-state', namespace }, spec } as KObject;
}

function injectorConfigMap(values: unknown, name = 'istio-sidecar-injector', namespace = 'istio-system'): KObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { config: 'policy: enabled', ...(values === undefined ? {} : { values }) } } as KObject;
}

function denied(o: KObject, c?: Config): string[] {
  const v = validate(o, c === undefined ? {} : { config: c });
  t.same(v.results.filter((r) => r.status === 'error'), [], 'no rule errors');
  return v.denials.filter((d) => d.ruleId === RULE).map((d) => d.violation?.path ?? '');
}

t.test('an IstioOperator: spec.meshConfig and spec.values.meshConfig merged as istioctl does', async (t) => {
  const rows: [string, Record<string, unknown>, string[]][] = [
    ['REGISTRY_ONLY only under values.meshConfig is accepted', { values: { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } } }, []],
    ['REGISTRY_ONLY under values.meshConfig with other settings in spec.meshConfig is accepted', { meshConfig: { accessLogFile: '/dev/stdout' }, values: { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } } }, []],
    ['REGISTRY_ONLY in spec.meshConfig is accepted', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } }, []],
    ['ALLOW_ANY in spec.meshConfig overrides REGISTRY_ONLY under values.meshConfig and is denied', { meshConfig: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, values: { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } } }, ['spec.meshConfig.outboundTrafficPolicy.mode']],
    ['REGISTRY_ONLY in spec.meshConfig overrides ALLOW_ANY under values.meshConfig and is accepted', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { meshConfig: { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } } } }, []],
    ['no mode anywhere is denied as not set', { meshConfig: { accessLogFile: '/dev/stdout' } }, ['spec.meshConfig.outboundTrafficPolicy.mode']],
    ['interceptionMode NONE by number under values.meshConfig.defaultConfig is denied', { meshConfig: { outboundTrafficPolicy: { mode: 0 } }, values: { meshConfig: { defaultConfig: { interceptionMode: 2 } } } }, ['spec.values.meshConfig.defaultConfig.interceptionMode']],
    ['a mesh-wide excluded IP range in spec.values is denied', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { global: { proxy: { excludeIPRanges: '10.0.0.0/8' } } } }, ['spec.values.global.proxy.excludeIPRanges']],
    ['a mesh-wide includeIPRanges other than "*" is denied', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { global: { proxy: { includeIPRanges: '10.96.0.0/12' } } } }, ['spec.values.global.proxy.includeIPRanges']],
    ['mesh-wide excluded ports are denied', { meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { global: { proxy: { excludeInboundPorts: '9000', excludeOutboundPorts: '5432' } } } }, ['spec.values.global.proxy.excludeInboundPorts', 'spec.values.global.proxy.excludeOutboundPorts']],
  ];
  for (const [sentence, spec, expected] of rows) t.same(denied(operator(spec)), expected, sentence);
  const allowed = config({ 'istioInstall.allow': { 'global.proxy.excludeIPRanges': ['10.0.0.0/8'] } });
  t.same(denied(operator({ meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { global: { proxy: { excludeIPRanges: '10.0.0.0/8' } } } }), allowed), [], 'an excluded range the platform allows (istioInstall.allow) is accepted');
  t.same(denied(operator({ meshConfig: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, values: { global: { proxy: { excludeIPRanges: '0.0.0.0/0' } } } }), allowed), ['spec.values.global.proxy.excludeIPRanges'], 'another range is still denied');
});

t.test('the istio-sidecar-injector ConfigMap: its values must not narrow capture', async (t) => {
  const values = (proxy: Record<string, unknown>): string => JSON.stringify({ global: { proxy: { includeIPRanges: '*', excludeIPRanges: '', ...proxy } }, revision: '' }, null, 2);
  const rows: [string, KObject, string[]][] = [
    ["the injector ConfigMap with Istio's default values is accepted", injectorConfigMap(values({})), []],
    ['the injector ConfigMap without values is accepted', injectorConfigMap(undefined), []],
    ['an excluded IP range in the injector values is denied', injectorConfigMap(values({ excludeIPRanges: '10.0.0.0/8' })), ['data.values > global.proxy.excludeIPRanges']],
    ["a revision's injector ConfigMap is judged too", injectorConfigMap(values({ includeIPRanges: '10.0.0.0/8' }), 'istio-sidecar-injector-canary'), ['data.values > global.proxy.includeIPRanges']],
    ['injector values that do not parse are denied', injectorConfigMap('{"global": '), ['data.values']],
    ['a ConfigMap of that name outside istio-system is not judged', injectorConfigMap(values({ excludeIPRanges: '10.0.0.0/8' }), 'istio-sidecar-injector', 'team-a'), []],
  ];
  for (const [sentence, o, expected] of rows) t.same(denied(o), expected, sentence);
  const v = validate(injectorConfigMap(values({ excludeIPRanges: '10.0.0.0/8' })));
  t.match(v.response.response.status?.message ?? '', 'values.global.proxy.excludeIPRanges "10.0.0.0/8" lets outbound traffic to these ranges leave uncaptured, for every pod in the mesh', 'the denial says what the setting does');
  t.match(v.response.response.status?.message ?? '', 'istioInstall.allow["global.proxy.excludeIPRanges"]', 'and how the platform can allow it');
});

t.test('a CNI-injected pod carrying the mesh-wide excluded range (real istioctl output)', async (t) => {
  const [injector] = loadYaml(join(FIXTURES, 'rules', RULE, 'bad', 'the-injector-configmap-istioctl-writes-for-a-mesh-wide-excluded-ip-range.yaml'));
  const values = JSON.parse(String((injector?.['data'] as Record<string, unknown> | undefined)?.['values'])) as Record<string, unknown>;
  const pod = loadYaml(join(FIXTURES, 'install-values', 'a-cni-injected-pod-with-the-mesh-wide-excluded-ip-range.yaml')).find((d) => d.kind === 'Pod');
  if (pod === undefined) throw new Error('no Pod in the fixture');
  const cluster = new StaticClusterView([ns('workloads-meshed', { 'istio-injection': 'enabled' })]);
  t.equal(pod.metadata?.annotations?.['traffic.sidecar.istio.io/excludeOutboundIPRanges'], '10.0.0.0/8', 'the injector stamped the mesh-wide range on the pod');
  t.same(failedRules(validate(pod, { state: cluster, config: config({ 'istioInstall.injectorValues': values }) })), [], 'with the injector values it was made with, the pod is admitted');
  t.same(failedRules(validate(pod, { state: cluster })), ['workload-capture-bypass'], "without them (Istio's defaults assumed), the range is reported");
});
