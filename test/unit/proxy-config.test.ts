// proxy.istio.io/config judged by meaning (lib/proxy-config.ts) and through workload-capture-bypass:
// YAML and JSON spellings, proto and JSON field names, enums by name or number, the per-field
// allow-lists and their configuration, unknown fields, parse errors, the memo's bound, and the
// traffic annotations the CNI injector stamps from the mesh-wide values.
import t from 'tap';
import type { KObject } from '../../src/core/request.ts';
import { StaticClusterView } from '../../src/core/cluster-view.ts';
import type { Config } from '../../src/config/types.ts';
import { captureValues, narrowingProblems, stampedAnnotations } from '../../src/policies/lib/install-values.ts';
import { fieldTable, PROXY_CONFIG_FIELDS, protoName } from '../../src/policies/lib/proxy-config-fields.ts';
import { judgeProxyConfig, MAX_PROXY_CONFIG_BYTES, parseProxyConfigText, ProxyConfigJudge, type ProxyConfigPolicy } from '../../src/policies/lib/proxy-config.ts';
import { config, failedRules, ns, validate } from '../helpers/review.ts';

const WORKLOAD: ProxyConfigPolicy = { scope: 'workload', allow: {}, unknownFields: 'deny' };
const MESH: ProxyConfigPolicy = { scope: 'mesh', allow: {}, unknownFields: 'deny' };

/** The denied fields of an annotation text, or its parse error prefixed with "error: ". */
function verdict(text: string, policy: ProxyConfigPolicy = WORKLOAD): string[] {
  const parsed = parseProxyConfigText(text);
  if ('error' in parsed) return [`error: ${parsed.error}`];
  const v = judgeProxyConfig(parsed.value, policy);
  return 'error' in v ? [`error: ${v.error}`] : v.findings.map((f) => `${f.field}=${f.value}`);
}

t.test('the ProxyConfig annotation is judged field by field, as Istio reads it', async (t) => {
  const rows: [string, string, string[]][] = [
    ["Istio's documented holdApplicationUntilProxyStarts is allowed in YAML", 'holdApplicationUntilProxyStarts: true', []],
    ['the same setting in JSON is allowed', '{"holdApplicationUntilProxyStarts": true}', []],
    ['the same setting under its proto name is allowed', 'hold_application_until_proxy_starts: true', []],
    ['a YAML 1.1 boolean (yes), which go-yaml v2 reads as true, is allowed', 'holdApplicationUntilProxyStarts: yes', []],
    ['terminationDrainDuration and drainDuration as Go durations are allowed', 'terminationDrainDuration: 30s\ndrainDuration: 1m30s', []],
    ['concurrency as a number or a quoted number is allowed', '{"concurrency": 2}', []],
    ['a quoted concurrency is allowed (jsonpb strips the quotes of integers)', 'concurrency: "4"', []],
    ['tracing sampling and custom tags are allowed', 'tracing:\n  sampling: 10\n  customTags:\n    team: {literal: {value: a}}', []],
    ['proxy stats matchers, proxy headers and connection settings are allowed', 'proxyStatsMatcher: {inclusionPrefixes: [cluster.outbound]}\nproxyHeaders: {server: {disabled: true}}\nconnectionSettings: {profile: EDGE}', []],
    ['the distroless image type is allowed', 'image:\n  imageType: distroless', []],
    ['DNS capture turned on through proxyMetadata is allowed', 'proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: "true"\n  ISTIO_META_DNS_AUTO_ALLOCATE: "true"', []],
    ['interceptionMode TPROXY (full capture) is allowed', 'interceptionMode: TPROXY', []],
    ['interceptionMode REDIRECT given as the number 0 is allowed', 'interceptionMode: 0', []],
    ['an empty annotation sets nothing and is allowed', '', []],
    ['a null annotation sets nothing and is allowed', 'null', []],
    ['a field set to null is unset (jsonpb) and allowed', 'discoveryAddress: null', []],
    ['interceptionMode NONE is denied', 'interceptionMode: NONE', ['interceptionMode=NONE']],
    ['interceptionMode NONE given as the number 2 is denied under its name', 'interceptionMode: 2', ['interceptionMode=NONE']],
    ['interceptionMode NONE under the proto name in JSON is denied', '{"interception_mode": "NONE"}', ['interceptionMode=NONE']],
    ['an enum number Istio does not name is denied', 'interceptionMode: 7', ['interceptionMode=7']],
    ['a discovery address (another control plane) is denied', 'discoveryAddress: rogue.example.com:15012', ['discoveryAddress=rogue.example.com:15012']],
    ['a custom bootstrap file and template are denied', 'customConfigFile: /etc/x.json\nproxyBootstrapTemplatePath: /etc/t.json', ['customConfigFile=/etc/x.json', 'proxyBootstrapTemplatePath=/etc/t.json']],
    ['extra CA certificates are denied', 'caCertificatesPem: ["-----BEGIN CERTIFICATE-----"]', ['caCertificatesPem=["-----BEGIN CERTIFICATE-----"]']],
    ['a tracing collector address of its own choosing is denied', 'tracing:\n  sampling: 100\n  zipkin:\n    address: collector.example.com:9411', ['tracing.zipkin={"address":"collector.example.com:9411"}']],
    ['a statsd address is denied', 'statsdUdpAddress: 203.0.113.9:8125', ['statsdUdpAddress=203.0.113.9:8125']],
    ['a readiness probe (an exec runs as the proxy) is denied', 'readinessProbe: {exec: {command: [sh, -c, "curl x"]}}', ['readinessProbe={"exec":{"command":["sh","-c","curl x"]}}']],
    ['trusting client addresses through gatewayTopology is denied', 'gatewayTopology: {numTrustedProxies: 5}', ['gatewayTopology={"numTrustedProxies":5}']],
    ['an image type Istio does not publish is denied', 'image: {imageType: custom}', ['image.imageType=custom']],
    ['proxyMetadata DRY_RUN (istio-iptables applies nothing) is denied', 'proxyMetadata: {DRY_RUN: "true"}', ['proxyMetadata.DRY_RUN=true']],
    ['proxyMetadata that excludes outbound ports through the iptables environment is denied', 'proxyMetadata:\n  ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE: "443"', ['proxyMetadata.ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE=443']],
    ['DNS capture turned off through proxyMetadata is denied', 'proxyMetadata: {ISTIO_META_DNS_CAPTURE: "false"}', ['proxyMetadata.ISTIO_META_DNS_CAPTURE=false']],
    ['an unknown proxyMetadata key is denied by default', 'proxyMetadata: {MY_FLAG: "1"}', ['proxyMetadata.MY_FLAG=1']],
    ['an unknown field is denied by default', 'futureKnob: 1', ['futureKnob=1']],
    ['runtime values are denied', 'runtimeValues: {"envoy.reloadable_features.x": "false"}', ['runtimeValues={"envoy.reloadable_features.x":"false"}']],
    ['a field given under both names is judged under both', 'interception_mode: NONE\ninterceptionMode: REDIRECT', ['interceptionMode=NONE']],
    ['text that is not YAML is a parse error', '{holdApplicationUntilProxyStarts: true', ['error: not valid YAML or JSON: Flow map must end with a } at line 1, column 39']],
    ['duplicate keys are a parse error (readers disagree on which wins)', 'interceptionMode: REDIRECT\ninterceptionMode: NONE', ['error: not valid YAML or JSON: map keys must be unique; "interceptionMode" is repeated at offset 27']],
    ['keys that JSON reads as the same (1 and "1") are a parse error', 'proxyMetadata: {1: "a", "1": "b"}', ['error: not valid YAML or JSON: map keys must be unique; "1" is repeated at offset 24']],
    ['a mapping as a key is a parse error', '? {a: 1}\n: x', ['error: not valid YAML or JSON: a mapping key is not a plain value']],
    ['YAML 1.1 merge keys are read', 'base: &b {concurrency: 2}\n<<: *b\nholdApplicationUntilProxyStarts: true', ['base={"concurrency":2}']],
    [`a text longer than ${MAX_PROXY_CONFIG_BYTES} characters is not parsed and is denied`, `concurrency: 2${' '.repeat(MAX_PROXY_CONFIG_BYTES)}`, [`error: is ${MAX_PROXY_CONFIG_BYTES + 14} characters long; meshguard reads ProxyConfigs of up to ${MAX_PROXY_CONFIG_BYTES}`]],
    ['several YAML documents are a parse error (Istio reads only the first)', 'concurrency: 2\n---\ninterceptionMode: NONE', ['error: holds several YAML documents; Istio reads only the first']],
    ['a scalar is a parse error', 'NONE', ['error: is not a mapping of ProxyConfig fields']],
    ['an enum name Istio does not know is a parse error', 'interceptionMode: none', ['error: interceptionMode has no value "none" (known: REDIRECT, TPROXY, NONE)']],
    ['a boolean written as a string is a parse error, as in Istio', 'holdApplicationUntilProxyStarts: "true"', ['error: holdApplicationUntilProxyStarts must be true or false, not string "true"']],
    ['an unquoted proxyMetadata boolean is a parse error, as in Istio', 'proxyMetadata: {ISTIO_META_DNS_CAPTURE: true}', ['error: proxyMetadata.ISTIO_META_DNS_CAPTURE must be a string, not boolean true (quote it)']],
    ['a duration that is not a Go duration is a parse error', 'terminationDrainDuration: 30', ['error: terminationDrainDuration must be a duration such as "5s" or "1m30s", not number 30']],
    ['a YAML 1.1 date stays a string, as in go-yaml v2', 'meshId: 2001-12-14', ['meshId=2001-12-14']],
  ];
  for (const [sentence, text, expected] of rows) t.same(verdict(text), expected, sentence);
  // Where the parser's stack runs out depends on the process, so only the start is compared.
  t.match(verdict(`a: ${'['.repeat(3000)}${']'.repeat(3000)}`)[0], /^error: not valid YAML or JSON: Maximum call stack size exceeded/, 'nesting too deep for the parser is a parse error, not a crash');
});

t.test('mesh-wide defaultConfig is judged on capture only', async (t) => {
  const rows: [string, string, string[]][] = [
    ["Istio's own discoveryAddress and proxyMetadata in defaultConfig are allowed mesh-wide", 'discoveryAddress: istiod.istio-system.svc:15012\nproxyMetadata: {}\ntracing: {zipkin: {address: zipkin.istio-system:9411}}', []],
    ['interceptionMode NONE mesh-wide is denied', 'interceptionMode: NONE', ['interceptionMode=NONE']],
    ['interceptionMode NONE mesh-wide as the number 2 is denied', 'interceptionMode: 2', ['interceptionMode=NONE']],
    ['TPROXY mesh-wide is allowed', 'interceptionMode: 1', []],
    ['DNS capture off and dual stack mesh-wide are allowed', 'proxyMetadata: {ISTIO_META_DNS_CAPTURE: "false", ISTIO_DUAL_STACK: "true"}', []],
    ['an iptables exclusion in proxyMetadata mesh-wide is denied', 'proxyMetadata: {ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: "1000"}', ['proxyMetadata.ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE=1000']],
    ['unknown fields mesh-wide are the platform\'s', 'futureKnob: 1\nproxyMetadata: {MY_FLAG: "1"}', []],
  ];
  for (const [sentence, text, expected] of rows) t.same(verdict(text, MESH), expected, sentence);
});

t.test('allow-lists are per field and value, from configuration', async (t) => {
  const rows: [string, ProxyConfigPolicy, string, string[]][] = [
    ['a field allowed by configuration is allowed with that value', { ...WORKLOAD, allow: { statsdUdpAddress: ['statsd.monitoring:8125'] } }, 'statsdUdpAddress: statsd.monitoring:8125', []],
    ['another value of that field is still denied', { ...WORKLOAD, allow: { statsdUdpAddress: ['statsd.monitoring:8125'] } }, 'statsdUdpAddress: 203.0.113.9:8125', ['statsdUdpAddress=203.0.113.9:8125']],
    ['an empty list denies a field allowed by default', { ...WORKLOAD, allow: { concurrency: [] } }, 'concurrency: 2', ['concurrency=2']],
    ['an enum is allowed by name whatever its spelling', { ...WORKLOAD, allow: { interceptionMode: ['REDIRECT'] } }, 'interceptionMode: 1', ['interceptionMode=TPROXY']],
    ['a proxyMetadata key is allowed by its dotted path', { ...WORKLOAD, allow: { 'proxyMetadata.MY_FLAG': ['1'] } }, 'proxyMetadata: {MY_FLAG: "1"}', []],
    ['a nested field is allowed by its dotted path', { ...WORKLOAD, allow: { 'tracing.zipkin': ['*'] } }, 'tracing: {zipkin: {address: z:9411}}', []],
    ['unknownFields allow lets unknown fields through', { ...WORKLOAD, unknownFields: 'allow' }, 'futureKnob: 1\nproxyMetadata: {MY_FLAG: "1"}', []],
    ['unknownFields allow never lets a known capture key through', { ...WORKLOAD, unknownFields: 'allow' }, 'proxyMetadata: {SKIP_RULE_APPLY: "true"}', ['proxyMetadata.SKIP_RULE_APPLY=true']],
  ];
  for (const [sentence, policy, text, expected] of rows) t.same(verdict(text, policy), expected, sentence);
});

t.test('the field table covers every ProxyConfig field of the pinned istio.io/api', async (t) => {
  // The proto's field names (mesh/v1alpha1/proxy.proto, message ProxyConfig), reserved ones excluded.
  const proto = [
    'config_path', 'binary_path', 'service_cluster', 'tracing_service_name', 'drain_duration', 'discovery_address', 'discovery_refresh_delay',
    'zipkin_address', 'statsd_udp_address', 'envoy_metrics_service_address', 'proxy_admin_port', 'availability_zone', 'control_plane_auth_policy',
    'custom_config_file', 'stat_name_length', 'concurrency', 'proxy_bootstrap_template_path', 'interception_mode', 'tracing', 'sds',
    'envoy_access_log_service', 'envoy_metrics_service', 'proxy_metadata', 'runtime_values', 'status_port', 'extra_stat_tags', 'gateway_topology',
    'termination_drain_duration', 'mesh_id', 'readiness_probe', 'proxy_stats_matcher', 'hold_application_until_proxy_starts', 'ca_certificates_pem',
    'image', 'private_key_provider', 'proxy_headers', 'file_flush_interval', 'file_flush_min_size_kb', 'stats_compression', 'connection_settings',
  ];
  t.same(Object.keys(PROXY_CONFIG_FIELDS).map(protoName).sort(), [...proto].sort(), 'one entry per proto field');
  const allowedByDefault = fieldTable().filter(([, , allow]) => allow.length > 0).map(([path]) => path);
  for (const path of ['holdApplicationUntilProxyStarts', 'terminationDrainDuration', 'concurrency', 'interceptionMode', 'image.imageType']) {
    t.ok(allowedByDefault.includes(path), `${path} is allowed by default`);
  }
  for (const path of ['discoveryAddress', 'customConfigFile', 'proxyBootstrapTemplatePath', 'caCertificatesPem', 'runtimeValues', 'tracing.zipkin', 'proxyMetadata.DRY_RUN']) {
    t.notOk(allowedByDefault.includes(path), `${path} is denied by default`);
  }
});

t.test('the judge memoises verdicts per text in a bounded table and follows configuration changes', async (t) => {
  const judge = new ProxyConfigJudge(4);
  const settings = { allow: {}, unknownFields: 'deny' as const };
  for (let i = 0; i < 10; i++) judge.judge(`concurrency: ${i}`, settings);
  t.ok(judge.size <= 4, `at most 4 verdicts are kept (kept ${judge.size})`);
  const first = judge.judge('interceptionMode: NONE', settings);
  t.equal(judge.judge('interceptionMode: NONE', settings), first, 'the same text gets the same verdict object');
  const big = `concurrency: 2\n#${'x'.repeat(4000)}`;
  const before = judge.size;
  judge.judge(big, settings);
  t.ok(judge.size <= before, 'a long text is judged but not kept');
  const loose = { allow: { interceptionMode: ['*'] }, unknownFields: 'deny' as const };
  t.same(judge.judge('interceptionMode: NONE', loose), { findings: [] }, 'new settings are not answered from the old table');
});

const MESHED = 'workloads-meshed';
const CLUSTER = new StaticClusterView([ns(MESHED, { 'istio-injection': 'enabled' })]);

/** A Deployment (a template: judged before injection, so only the annotation rules speak). */
function workload(annotations: Record<string, unknown>): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: MESHED },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' }, annotations }, spec: { containers: [{ name: 'app', image: 'docker.io/library/nginx:1.27' }] } },
    },
  } as KObject;
}

t.test('workload-capture-bypass: the proxy config annotation and the image type', async (t) => {
  const denied = (a: Record<string, unknown>, c?: Config): string[] => failedRules(validate(workload(a), { state: CLUSTER, ...(c === undefined ? {} : { config: c }) }));
  t.same(denied({ 'proxy.istio.io/config': 'holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 30s\n' }), [], "a pod with Istio's documented proxy config is allowed");
  t.same(denied({ 'sidecar.istio.io/proxyImageType': 'distroless' }), [], 'a distroless proxy image type is allowed');
  t.same(denied({ 'sidecar.istio.io/proxyImageType': 'debug' }), [], 'a debug proxy image type is allowed');
  t.same(denied({ 'sidecar.istio.io/proxyImageType': 'x' }), ['workload-capture-bypass'], 'an image type Istio does not publish is denied');
  t.same(denied({ 'sidecar.istio.io/interceptionMode': 'TPROXY' }), [], 'the TPROXY interception annotation is allowed');
  t.same(denied({ 'sidecar.istio.io/interceptionMode': 'NONE' }), ['workload-capture-bypass'], 'the NONE interception annotation is denied');
  const v = validate(workload({ 'proxy.istio.io/config': '{interceptionMode: NONE' }), { state: CLUSTER });
  const msg = v.response.response.status?.message ?? '';
  t.equal(v.response.response.allowed, false, 'a proxy config that does not parse is denied');
  t.match(msg, 'annotation proxy.istio.io/config does not parse as a ProxyConfig: not valid YAML or JSON', 'the denial names the annotation and the parse error');
  t.same(v.results.filter((r) => r.status === 'error'), [], 'and no rule errors');
  const none = validate(workload({ 'proxy.istio.io/config': 'interceptionMode: 2' }), { state: CLUSTER });
  t.match(none.response.response.status?.message ?? '', 'sets interceptionMode NONE, which changes which traffic the mesh captures', 'a numeric NONE is reported by name');
  t.match(none.response.response.status?.message ?? '', 'metadata.annotations["proxy.istio.io/config"] > interceptionMode', 'the path names the field inside the annotation');
  t.same(denied({ 'proxy.istio.io/config': 42 }), ['workload-capture-bypass'], 'a non-string annotation value is denied, not a crash');
  const many = validate(workload({ 'proxy.istio.io/config': `proxyMetadata: {${Array.from({ length: 50 }, (_, i) => `K${i}: "x"`).join(', ')}}` }), { state: CLUSTER });
  t.equal(many.denials.length, 20, 'fifty denied fields make twenty findings');
  t.match(many.denials[19]?.violation?.message ?? '', 'sets 31 more fields that are not on the proxy-config allow-list: proxyMetadata.K19, proxyMetadata.K20', 'the last one counts the rest');
  t.same(denied({ 'proxy.istio.io/config': 'discoveryAddress: x:15012' }, config({ 'proxyConfig.allow': { discoveryAddress: ['x:15012'] } })), [], 'proxyConfig.allow admits a field value');
  t.same(denied({ 'proxy.istio.io/config': 'futureKnob: 1' }, config({ 'proxyConfig.unknownFields': 'allow' })), [], 'proxyConfig.unknownFields allow admits unknown fields');
});

t.test('the traffic annotations the CNI injector stamps from mesh-wide values are not a tenant bypass', async (t) => {
  const meshValues = { global: { proxy: { excludeIPRanges: '10.0.0.0/8', excludeInboundPorts: '9000' } } };
  const withValues = config({ 'istioInstall.injectorValues': meshValues });
  const denied = (a: Record<string, unknown>, c: Config = withValues, state = CLUSTER): string[] => failedRules(validate(workload(a), { state, config: c }));
  t.same(denied({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/8' }), [], 'an excludeOutboundIPRanges equal to the mesh-wide excludeIPRanges is allowed');
  t.same(denied({ 'traffic.sidecar.istio.io/excludeInboundPorts': '9000,15020' }), [], 'excludeInboundPorts as the injector stamps it (mesh value plus the status port) is allowed');
  t.same(denied({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '0.0.0.0/0' }), ['workload-capture-bypass'], 'a wider exclusion than the mesh-wide one is denied');
  t.same(denied({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/8' }, config()), ['workload-capture-bypass'], 'without mesh-wide values the same annotation is a bypass');
  class Discovered extends StaticClusterView {
    injectorValues(): Readonly<Record<string, unknown>> {
      return meshValues;
    }
  }
  const discovered = new Discovered([ns(MESHED, { 'istio-injection': 'enabled' })]);
  t.same(denied({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/8' }, config(), discovered), [], 'values discovered by the cluster view count as mesh-wide');
});

t.test('install values that narrow capture mesh-wide', async (t) => {
  const problems = (values: unknown, allow: Record<string, string[]> = {}): string[] => narrowingProblems(values, allow, (k) => k).map((v) => `${v.path ?? ''}=${v.value ?? ''}`);
  const rows: [string, unknown, Record<string, string[]>, string[]][] = [
    ["Istio's default values narrow nothing", {}, {}, []],
    ['the chart defaults written out narrow nothing', { global: { proxy: { includeIPRanges: '*', excludeIPRanges: '', includeInboundPorts: '*', excludeInboundPorts: '', excludeOutboundPorts: '', includeOutboundPorts: '' } } }, {}, []],
    ['an excluded IP range is denied', { global: { proxy: { excludeIPRanges: '10.0.0.0/8' } } }, {}, ['global.proxy.excludeIPRanges=10.0.0.0/8']],
    ['an excluded IP range the platform allows is accepted', { global: { proxy: { excludeIPRanges: '10.0.0.0/8' } } }, { 'global.proxy.excludeIPRanges': ['10.0.0.0/8'] }, []],
    ['includeIPRanges other than "*" is denied', { global: { proxy: { includeIPRanges: '10.96.0.0/12' } } }, {}, ['global.proxy.includeIPRanges=10.96.0.0/12']],
    ['an empty includeIPRanges (no outbound capture) is denied', { global: { proxy: { includeIPRanges: '' } } }, {}, ['global.proxy.includeIPRanges=']],
    ['excluded ports in and out are denied, numbers too', { global: { proxy: { excludeInboundPorts: 8080, excludeOutboundPorts: '5432' } } }, {}, ['global.proxy.excludeInboundPorts=8080', 'global.proxy.excludeOutboundPorts=5432']],
    ['includeOutboundPorts only adds capture', { global: { proxy: { includeOutboundPorts: '8080' } } }, {}, []],
  ];
  for (const [sentence, values, allow, expected] of rows) t.same(problems(values, allow), expected, sentence);
  t.same(stampedAnnotations(captureValues({})), {
    'traffic.sidecar.istio.io/includeInboundPorts': '*',
    'traffic.sidecar.istio.io/excludeInboundPorts': '15020',
    'traffic.sidecar.istio.io/includeOutboundIPRanges': '*',
  }, "with Istio's defaults the injector stamps the full-capture annotations");
});
