// The ProxyConfig fields (istio.io/api mesh/v1alpha1 proxy.proto, as vendored by the pinned
// istio.io/istio module), each with its type as jsonpb reads it, what setting it changes, and the
// values allowed by default in a workload's proxy.istio.io/config annotation and mesh-wide in the
// mesh config's defaultConfig. docs/ lists the table (fieldTable); lib/proxy-config.ts judges a
// parsed ProxyConfig against it.
import { PROXY_IMAGE_TYPES } from './injector.ts';
import { IPTABLES_ENV_NAMES } from './pilot-agent.ts';

/** What a field changes; everything but 'tuning' is denied unless allow-listed. */
export type FieldClass = 'tuning' | 'capture' | 'control-plane' | 'bootstrap' | 'identity' | 'egress';

export const CLASS_EFFECT: Readonly<Record<FieldClass | 'unknown', string>> = {
  tuning: 'tunes the proxy (lifecycle, threads, timeouts, headers, stats)',
  capture: 'changes which traffic the mesh captures',
  'control-plane': 'changes the control plane the proxy connects to or how it authenticates to it',
  bootstrap: "replaces the proxy's bootstrap, binaries, image, ports or runtime, or runs commands as the proxy",
  identity: "changes the proxy's certificates, keys, mesh identity or which client addresses it trusts",
  egress: 'makes the proxy send data to an address of its own choosing, outside the egress policy',
  unknown: 'is not a ProxyConfig field meshguard knows (Istio ignores fields its ProxyConfig lacks; newer Istio versions may not)',
};

export type Enum = Readonly<Record<string, number>>;
export type FieldType = 'string' | 'bool' | 'int32' | 'uint32' | 'double' | 'duration' | 'strings' | 'stringMap' | 'message' | Enum;

export interface FieldSpec {
  readonly type: FieldType;
  readonly class: FieldClass;
  /** Values allowed by default in a workload's annotation: "*" any, [] none. Enums by name. */
  readonly allow: readonly string[];
  /** Values allowed mesh-wide (defaultConfig), when they differ from `allow`. */
  readonly meshAllow?: readonly string[];
  /** A message judged field by field (tracing, image), or a map judged key by key (proxyMetadata). */
  readonly fields?: Readonly<Record<string, FieldSpec>>;
  /** Keys of a map field that are not in `fields`: their class and default allow-list. */
  readonly otherKeys?: 'unknown';
}

const ANY = ['*'] as const;
export const NONE: readonly string[] = [];
const BOOL = ['true', 'false'] as const;
const f = (type: FieldType, cls: FieldClass, allow: readonly string[], extra: Partial<FieldSpec> = {}): FieldSpec => ({ type, class: cls, allow, ...extra });
const tuning = (type: FieldType): FieldSpec => f(type, 'tuning', ANY);

/** InboundInterceptionMode: REDIRECT and TPROXY capture everything; NONE captures nothing. */
export const INTERCEPTION_MODE: Enum = { REDIRECT: 0, TPROXY: 1, NONE: 2 };

/**
 * istio-iptables reads each of its flags from an environment variable too (pkg/flag BindEnv: the
 * flag name upper-cased, '-' as '_', plus a few extra names), and the injector copies
 * proxyMetadata into the environment of istio-init and istio-proxy: a proxyMetadata entry can turn
 * capture off (DRY_RUN, SKIP_RULE_APPLY, CLEANUP_ONLY) or narrow it (a flag the template does not
 * pass, e.g. ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE or ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE). So every
 * name istio-iptables reads (lib/pilot-agent.ts) is a capture field, and so are ENVOY_PORT (which
 * istio-iptables prints with its configuration) and the CNI's IPTABLES_TRACE_LOGGING. The entries
 * below the spread override a few of them with their own allow-lists.
 */
const IPTABLES_ENV = [...IPTABLES_ENV_NAMES, 'ENVOY_PORT', 'IPTABLES_TRACE_LOGGING'];

const PROXY_METADATA: Readonly<Record<string, FieldSpec>> = {
  ...Object.fromEntries(IPTABLES_ENV.map((k) => [k, f('string', 'capture', NONE)])),
  // DNS capture on is more capture, not less; mesh-wide, off is Istio's default.
  ISTIO_META_DNS_CAPTURE: f('string', 'capture', ['true'], { meshAllow: BOOL }),
  REDIRECT_DNS: f('string', 'capture', ['true'], { meshAllow: BOOL }),
  CAPTURE_ALL_DNS: f('string', 'capture', ['true'], { meshAllow: BOOL }),
  // How the rules are written, not what they capture: the platform's choice, not a tenant's.
  INVALID_DROP: f('string', 'capture', NONE, { meshAllow: BOOL }),
  DROP_INVALID: f('string', 'capture', NONE, { meshAllow: BOOL }),
  DUAL_STACK: f('string', 'capture', NONE, { meshAllow: BOOL }),
  ISTIO_DUAL_STACK: f('string', 'capture', NONE, { meshAllow: BOOL }),
  NATIVE_NFTABLES: f('string', 'capture', NONE, { meshAllow: ANY }),
  FORCE_APPLY: f('string', 'capture', NONE, { meshAllow: ANY }),
  RECONCILE: f('string', 'capture', NONE, { meshAllow: ANY }),
  FORCE_IPTABLES_BINARY: f('string', 'capture', NONE, { meshAllow: ANY }),
  // Documented per-workload tuning (istio.io: jobs that exit, drain timing, DNS auto-allocation).
  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: f('string', 'tuning', BOOL),
  MINIMUM_DRAIN_DURATION: tuning('string'),
  ISTIO_META_DNS_AUTO_ALLOCATE: f('string', 'tuning', BOOL),
};

const TRACING: Readonly<Record<string, FieldSpec>> = {
  zipkin: f('message', 'egress', NONE),
  lightstep: f('message', 'egress', NONE),
  datadog: f('message', 'egress', NONE),
  stackdriver: f('message', 'egress', NONE),
  openCensusAgent: f('message', 'egress', NONE),
  tlsSettings: f('message', 'egress', NONE),
  customTags: tuning('message'),
  maxPathTagLength: tuning('uint32'),
  sampling: tuning('double'),
  enableIstioTags: tuning('bool'),
};

/** Every ProxyConfig field of the pinned istio.io/api, by JSON name. */
export const PROXY_CONFIG_FIELDS: Readonly<Record<string, FieldSpec>> = {
  configPath: f('string', 'bootstrap', NONE),
  binaryPath: f('string', 'bootstrap', NONE),
  serviceCluster: tuning('string'),
  tracingServiceName: tuning({ APP_LABEL_AND_NAMESPACE: 0, CANONICAL_NAME_ONLY: 1, CANONICAL_NAME_AND_NAMESPACE: 2 }),
  drainDuration: tuning('duration'),
  discoveryAddress: f('string', 'control-plane', NONE),
  discoveryRefreshDelay: f('duration', 'control-plane', NONE),
  zipkinAddress: f('string', 'egress', NONE),
  statsdUdpAddress: f('string', 'egress', NONE),
  envoyMetricsServiceAddress: f('string', 'egress', NONE),
  proxyAdminPort: f('int32', 'bootstrap', NONE),
  availabilityZone: f('string', 'control-plane', NONE),
  controlPlaneAuthPolicy: f({ NONE: 0, MUTUAL_TLS: 1, INHERIT: 1000 }, 'control-plane', NONE),
  customConfigFile: f('string', 'bootstrap', NONE),
  statNameLength: tuning('int32'),
  concurrency: tuning('int32'),
  proxyBootstrapTemplatePath: f('string', 'bootstrap', NONE),
  interceptionMode: f(INTERCEPTION_MODE, 'capture', ['REDIRECT', 'TPROXY']),
  tracing: f('message', 'egress', NONE, { fields: TRACING }),
  sds: f('message', 'identity', NONE),
  envoyAccessLogService: f('message', 'egress', NONE),
  envoyMetricsService: f('message', 'egress', NONE),
  proxyMetadata: f('stringMap', 'capture', NONE, { fields: PROXY_METADATA, otherKeys: 'unknown' }),
  runtimeValues: f('stringMap', 'bootstrap', NONE),
  statusPort: f('int32', 'bootstrap', NONE),
  extraStatTags: tuning('strings'),
  gatewayTopology: f('message', 'identity', NONE),
  terminationDrainDuration: tuning('duration'),
  meshId: f('string', 'identity', NONE),
  // An exec probe here is run by the agent, as the proxy's UID, which iptables lets out uncaptured.
  readinessProbe: f('message', 'bootstrap', NONE),
  proxyStatsMatcher: tuning('message'),
  holdApplicationUntilProxyStarts: tuning('bool'),
  caCertificatesPem: f('strings', 'identity', NONE),
  // The image variants Istio publishes (pkg/kube/inject: default, debug, distroless).
  image: f('message', 'bootstrap', NONE, { fields: { imageType: f('string', 'bootstrap', PROXY_IMAGE_TYPES) } }),
  privateKeyProvider: f('message', 'identity', NONE),
  proxyHeaders: tuning('message'),
  fileFlushInterval: tuning('duration'),
  fileFlushMinSizeKb: tuning('uint32'),
  statsCompression: tuning('bool'),
  connectionSettings: tuning('message'),
};

/** JSON name to proto name, as protoc derives it (the reverse: lower_snake_case). */
export function protoName(jsonName: string): string {
  return jsonName.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Per message table, proto name to JSON name: a constant derived from the tables above. */
const PROTO_NAMES = new Map<object, ReadonlyMap<string, string>>();
function indexProtoNames(table: Readonly<Record<string, FieldSpec>>): void {
  PROTO_NAMES.set(table, new Map(Object.keys(table).map((name) => [protoName(name), name])));
  for (const spec of Object.values(table)) if (spec.type === 'message' && spec.fields !== undefined) indexProtoNames(spec.fields);
}
indexProtoNames(PROXY_CONFIG_FIELDS);

/** The proto-name index of a message table of PROXY_CONFIG_FIELDS (undefined for any other object). */
export function protoNamesOf(table: Readonly<Record<string, FieldSpec>>): ReadonlyMap<string, string> | undefined {
  return PROTO_NAMES.get(table);
}

/** The default allow-list by dotted path, for the docs: [path, class, allowed by default, allowed mesh-wide]. */
export function fieldTable(): [string, FieldClass, readonly string[], readonly string[]][] {
  const rows: [string, FieldClass, readonly string[], readonly string[]][] = [];
  const walk = (specs: Readonly<Record<string, FieldSpec>>, prefix: string): void => {
    for (const [name, spec] of Object.entries(specs)) {
      const path = `${prefix}${name}`;
      if (spec.fields !== undefined) walk(spec.fields, `${path}.`);
      else rows.push([path, spec.class, spec.allow, spec.meshAllow ?? spec.allow]);
    }
  };
  walk(PROXY_CONFIG_FIELDS, '');
  return rows;
}
