// A ProxyConfig (istio.io/api mesh/v1alpha1 proxy.proto) judged by what it sets, field by field.
// Two sources: the `proxy.istio.io/config` pod annotation (YAML or JSON text) and the mesh
// config's `defaultConfig` (already parsed). Istio reads the annotation with
// protomarshal.ApplyYAML (pkg/config/mesh MergeProxyConfig): sigs.k8s.io/yaml turns YAML 1.1
// (go-yaml v2: yes/on are booleans, 0755 is octal) into JSON, then golang/protobuf jsonpb fills the
// message: a field is found by its proto name or its JSON name (the JSON name wins when both are
// given), `null` leaves a field unset, an enum is a quoted name or a bare number (any int32),
// integers may be quoted, durations are Go durations, and unknown fields are ignored (a strict
// pass fails, then a lenient one succeeds). Reading differently from Istio would be a bypass, so
// what Istio would reject is reported as a parse error here, and anything ambiguous (duplicate
// keys, several YAML documents) too.
import { isMap, isScalar, parseAllDocuments, visit, type Document, type Tags } from 'yaml';
import { isRecord } from '../../core/objects.ts';

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

type Enum = Readonly<Record<string, number>>;
type FieldType = 'string' | 'bool' | 'int32' | 'uint32' | 'double' | 'duration' | 'strings' | 'stringMap' | 'message' | Enum;

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
const NONE: readonly string[] = [];
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
 * pass, e.g. ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE or ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE).
 */
const IPTABLES_ENV = [
  'DRY_RUN', 'SKIP_RULE_APPLY', 'CLEANUP_ONLY', 'RUN_VALIDATION', 'ENVOY_PORT', 'INBOUND_CAPTURE_PORT', 'INBOUND_TUNNEL_PORT',
  'PROXY_UID', 'PROXY_GID', 'ENVOY_USER', 'ISTIO_INBOUND_INTERCEPTION_MODE', 'INBOUND_INTERCEPTION_MODE', 'ISTIO_INBOUND_PORTS',
  'ISTIO_LOCAL_EXCLUDE_PORTS', 'ISTIO_EXCLUDE_INTERFACES', 'ISTIO_SERVICE_CIDR', 'ISTIO_SERVICE_EXCLUDE_CIDR', 'ISTIO_OUTBOUND_PORTS',
  'ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE', 'KUBE_VIRT_INTERFACES', 'ISTIO_INBOUND_TPROXY_MARK', 'INBOUND_TPROXY_MARK',
  'ISTIO_INBOUND_TPROXY_ROUTE_TABLE', 'IPTABLES_PROBE_PORT', 'PROBE_TIMEOUT', 'NETWORK_NAMESPACE', 'CNI_MODE',
  'ISTIO_OUTBOUND_OWNER_GROUPS', 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', 'IPTABLES_TRACE_LOGGING',
] as const;

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
  image: f('message', 'bootstrap', NONE, { fields: { imageType: f('string', 'bootstrap', ['default', 'debug', 'distroless']) } }),
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

/** One field set, with what it changes and why it is denied. */
export interface ProxyConfigFinding {
  /** Dotted JSON path, e.g. interceptionMode, tracing.zipkin, proxyMetadata.DRY_RUN. */
  readonly field: string;
  /** The value as meshguard read it: enums by name, booleans and numbers as text, messages as JSON. */
  readonly value: string;
  readonly class: FieldClass | 'unknown';
}

export type ProxyConfigVerdict = { readonly error: string } | { readonly findings: readonly ProxyConfigFinding[] };

export interface ProxyConfigPolicy {
  /** 'workload': every field is judged; 'mesh': only capture fields (the rest is the platform's). */
  readonly scope: 'workload' | 'mesh';
  /** Allow-list overrides by dotted field path (replacing the built-in list of that path). */
  readonly allow: Readonly<Record<string, readonly string[]>>;
  /** Fields (and proxyMetadata keys) meshguard does not know. */
  readonly unknownFields: 'deny' | 'allow';
}

// go-yaml v2 (what Istio's YAMLToJSON uses) has no timestamps, binary, sets or sexagesimal
// numbers: those read as strings there, so they must not become Dates or numbers here.
const GO_YAML_V2_EXTRAS = new Set(['timestamp', 'binary', 'omap', 'pairs', 'set', 'intTime', 'floatTime'].flatMap((n) => [n, `tag:yaml.org,2002:${n}`]));
const goYamlTags = (tags: Tags): Tags =>
  tags.filter((t) => (typeof t === 'string' ? !GO_YAML_V2_EXTRAS.has(t) : !(GO_YAML_V2_EXTRAS.has(t.tag) || ('format' in t && t.format === 'TIME'))));

/** The first line of a parser message, without the code excerpt that follows it. */
export function firstLine(message: string): string {
  const line = (message.split('\n')[0] ?? '').replace(/:$/, '');
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

/**
 * The first key that a mapping repeats (as JSON sees keys: 1 and "1" are the same), or a key
 * that is not a scalar; one pass with a set per mapping (the parser's own uniqueKeys check
 * compares every pair of keys). Readers disagree on which duplicate wins, so it is an error.
 */
function duplicateKey(doc: Document): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Map(_key, map) {
      if (!isMap(map)) return undefined;
      const seen = new Set<string>();
      for (const pair of map.items) {
        const k = pair.key;
        if (!isScalar(k)) {
          found = 'a mapping key is not a plain value';
          return visit.BREAK;
        }
        const name = String(k.value);
        if (name === '<<') continue; // YAML 1.1 merge keys
        if (seen.has(name)) {
          found = `map keys must be unique; ${JSON.stringify(name)} is repeated${k.range === undefined || k.range === null ? '' : ` at offset ${k.range[0]}`}`;
          return visit.BREAK;
        }
        seen.add(name);
      }
      return undefined;
    },
  });
  return found;
}

/**
 * YAML or JSON text as go-yaml v2 reads it (Istio's protomarshal.ApplyYAML and the injector's
 * values), as a mapping, or why it does not parse. Empty and `null` are an empty mapping (Istio
 * treats a top-level null as no change).
 */
export function parseGoYamlMapping(text: string): { readonly value: Readonly<Record<string, unknown>> } | { readonly error: string } {
  let docs;
  try {
    docs = parseAllDocuments(text, { version: '1.1', customTags: goYamlTags, uniqueKeys: false, merge: true });
  } catch (err) {
    return { error: `not valid YAML or JSON: ${firstLine(err instanceof Error ? err.message : String(err))}` };
  }
  if (!Array.isArray(docs)) return { value: {} };
  if (docs.length > 1) return { error: 'holds several YAML documents; Istio reads only the first' };
  const doc = docs[0];
  if (doc === undefined) return { value: {} };
  const problem = doc.errors[0];
  if (problem !== undefined) return { error: `not valid YAML or JSON: ${firstLine(problem.message)}` };
  const duplicate = duplicateKey(doc);
  if (duplicate !== undefined) return { error: `not valid YAML or JSON: ${duplicate}` };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { error: `not valid YAML or JSON: ${firstLine(err instanceof Error ? err.message : String(err))}` };
  }
  if (value === null || value === undefined) return { value: {} };
  if (!isRecord(value)) return { error: 'is not a mapping' };
  return { value };
}

/**
 * The longest annotation text meshguard parses. Istio's documented ProxyConfigs are a few hundred
 * bytes, and YAML parsing is slow enough (milliseconds per thousand keys) that an unbounded text
 * would let one Pod CREATE hold the event loop for seconds.
 */
export const MAX_PROXY_CONFIG_BYTES = 8 * 1024;

/** The annotation text as a ProxyConfig object, or why it does not parse. */
export function parseProxyConfigText(text: string): { readonly value: Readonly<Record<string, unknown>> } | { readonly error: string } {
  if (text.length > MAX_PROXY_CONFIG_BYTES) return { error: `is ${text.length} characters long; meshguard reads ProxyConfigs of up to ${MAX_PROXY_CONFIG_BYTES}` };
  const parsed = parseGoYamlMapping(text);
  return 'error' in parsed && parsed.error === 'is not a mapping' ? { error: 'is not a mapping of ProxyConfig fields' } : parsed;
}

// A Go duration (time.ParseDuration): optional sign, then one or more number+unit pairs, or "0".
const GO_DURATION = /^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$/;
const INT32 = [-2147483648, 2147483647] as const;
const UINT32 = [0, 4294967295] as const;

class TypeProblem extends Error {}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isRecord(v)) return 'a mapping';
  return `${typeof v} ${JSON.stringify(v) ?? String(v)}`;
}

function integer(v: unknown, [min, max]: readonly [number, number], path: string): string {
  // jsonpb strips the quotes of a quoted integer before reading it.
  const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new TypeProblem(`${path} must be an integer from ${min} to ${max}, not ${describe(v)}`);
  return String(n);
}

function enumName(e: Enum, v: unknown, path: string): string {
  if (typeof v === 'string') {
    if (Object.hasOwn(e, v)) return v;
    throw new TypeProblem(`${path} has no value ${JSON.stringify(v)} (known: ${Object.keys(e).join(', ')})`);
  }
  const n = integer(v, INT32, path);
  const name = Object.keys(e).find((k) => String(e[k]) === n);
  return name ?? n; // an unknown number parses in Istio and is allowed by no list
}

/** The value as text for allow-lists and messages; throws TypeProblem where jsonpb would fail. */
function normalize(type: FieldType, v: unknown, path: string): string {
  if (typeof type === 'object') return enumName(type, v, path);
  switch (type) {
    case 'string':
      if (typeof v !== 'string') throw new TypeProblem(`${path} must be a string, not ${describe(v)} (quote it)`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw new TypeProblem(`${path} must be true or false, not ${describe(v)}`);
      return String(v);
    case 'int32':
      return integer(v, INT32, path);
    case 'uint32':
      return integer(v, UINT32, path);
    case 'double': {
      const n = typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isFinite(n)) throw new TypeProblem(`${path} must be a number, not ${describe(v)}`);
      return String(n);
    }
    case 'duration':
      if (typeof v !== 'string' || !GO_DURATION.test(v)) throw new TypeProblem(`${path} must be a duration such as "5s" or "1m30s", not ${describe(v)}`);
      return v;
    case 'strings':
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' || s === null)) throw new TypeProblem(`${path} must be a list of strings, not ${describe(v)}`);
      return JSON.stringify(v);
    case 'stringMap':
      if (!isRecord(v)) throw new TypeProblem(`${path} must be a mapping of strings, not ${describe(v)}`);
      for (const [k, s] of Object.entries(v)) if (typeof s !== 'string') throw new TypeProblem(`${path}.${k} must be a string, not ${describe(s)} (quote it)`);
      return JSON.stringify(v);
    case 'message':
      if (!isRecord(v)) throw new TypeProblem(`${path} must be a mapping, not ${describe(v)}`);
      return JSON.stringify(v);
  }
}

/** The fields of a mapping by spec: each set field with its value, proto name first, JSON name last (it wins in Istio). */
function present(obj: Readonly<Record<string, unknown>>, specs: Readonly<Record<string, FieldSpec>>): { known: [string, FieldSpec, unknown][]; unknown: [string, unknown][] } {
  const known: [string, FieldSpec, unknown][] = [];
  const unknown: [string, unknown][] = [];
  const byProto = PROTO_NAMES.get(specs);
  for (const key of Object.keys(obj)) {
    const v = obj[key];
    if (v === null || v === undefined) continue; // jsonpb leaves a null field unset
    const name = Object.hasOwn(specs, key) ? key : byProto?.get(key);
    const spec = name === undefined ? undefined : specs[name];
    if (name === undefined || spec === undefined) unknown.push([key, v]);
    else known.push([name, spec, v]);
  }
  return { known, unknown };
}

function allowed(list: readonly string[], value: string): boolean {
  return list.includes('*') || list.includes(value);
}

function listFor(spec: FieldSpec, path: string, policy: ProxyConfigPolicy): readonly string[] {
  if (Object.hasOwn(policy.allow, path)) return policy.allow[path] ?? NONE;
  return policy.scope === 'mesh' ? (spec.meshAllow ?? spec.allow) : spec.allow;
}

function judgeFields(obj: Readonly<Record<string, unknown>>, specs: Readonly<Record<string, FieldSpec>>, prefix: string, policy: ProxyConfigPolicy, out: ProxyConfigFinding[]): void {
  const { known, unknown } = present(obj, specs);
  if (policy.scope === 'workload' && policy.unknownFields === 'deny') {
    for (const [key, v] of unknown) out.push({ field: `${prefix}${key}`, value: JSON.stringify(v) ?? String(v), class: 'unknown' });
  }
  for (const [name, spec, v] of known) judgeField(name, spec, v, prefix, policy, out);
}

function judgeField(name: string, spec: FieldSpec, v: unknown, prefix: string, policy: ProxyConfigPolicy, out: ProxyConfigFinding[]): void {
  const path = `${prefix}${name}`;
  const value = normalize(spec.type, v, path);
  const list = listFor(spec, path, policy);
  if (allowed(list, value)) return;
  if (spec.fields !== undefined && isRecord(v)) {
    if (spec.type === 'stringMap') judgeMap(v, spec, path, policy, out);
    else judgeFields(v, spec.fields, `${path}.`, policy, out);
    return;
  }
  if (policy.scope === 'mesh' && spec.class !== 'capture') return;
  out.push({ field: path, value, class: spec.class });
}

/** A map judged key by key (proxyMetadata): known keys by their spec, others as unknown fields. */
function judgeMap(map: Readonly<Record<string, unknown>>, spec: FieldSpec, path: string, policy: ProxyConfigPolicy, out: ProxyConfigFinding[]): void {
  const keys = spec.fields ?? {};
  for (const key of Object.keys(map)) {
    const value = map[key] as string; // checked by normalize('stringMap')
    const keyPath = `${path}.${key}`;
    const keySpec = Object.hasOwn(keys, key) ? keys[key] : undefined;
    if (keySpec === undefined) {
      if (Object.hasOwn(policy.allow, keyPath) && allowed(policy.allow[keyPath] ?? NONE, value)) continue;
      if (policy.scope === 'workload' && policy.unknownFields === 'deny') out.push({ field: keyPath, value, class: 'unknown' });
      continue;
    }
    if (allowed(listFor(keySpec, keyPath, policy), value)) continue;
    if (policy.scope === 'mesh' && keySpec.class !== 'capture') continue;
    out.push({ field: keyPath, value, class: keySpec.class });
  }
}

/** Judge a parsed ProxyConfig: the fields it sets that the policy does not allow, or a type error. */
export function judgeProxyConfig(pc: Readonly<Record<string, unknown>>, policy: ProxyConfigPolicy): ProxyConfigVerdict {
  const findings: ProxyConfigFinding[] = [];
  try {
    judgeFields(pc, PROXY_CONFIG_FIELDS, '', policy, findings);
  } catch (err) {
    if (err instanceof TypeProblem) return { error: err.message };
    throw err;
  }
  return { findings };
}

const MEMO_TEXT = 2048;

/**
 * Verdicts for annotation texts under one policy, memoised: the same few texts come in every
 * request. Owned by whoever holds it (a rule); bounded, and rebuilt when the policy changes.
 */
export class ProxyConfigJudge {
  readonly #limit: number;
  #settings: Omit<ProxyConfigPolicy, 'scope'> | undefined;
  #policy: ProxyConfigPolicy | undefined;
  readonly #verdicts = new Map<string, ProxyConfigVerdict>();

  constructor(limit = 512) {
    this.#limit = limit;
  }

  /** The verdict on an annotation text under a workload's settings (config.proxyConfig). */
  judge(text: string, settings: Omit<ProxyConfigPolicy, 'scope'>): ProxyConfigVerdict {
    if (settings !== this.#settings || this.#policy === undefined) {
      this.#settings = settings;
      this.#policy = { scope: 'workload', allow: settings.allow, unknownFields: settings.unknownFields };
      this.#verdicts.clear();
    }
    const policy = this.#policy;
    let v = this.#verdicts.get(text);
    if (v === undefined) {
      const parsed = parseProxyConfigText(text);
      v = 'error' in parsed ? parsed : judgeProxyConfig(parsed.value, policy);
      // Only texts of ordinary size are kept, so the table holds at most limit x MEMO_TEXT characters.
      if (text.length <= MEMO_TEXT) {
        if (this.#verdicts.size >= this.#limit) this.#verdicts.clear();
        this.#verdicts.set(text, v);
      }
    }
    return v;
  }

  get size(): number {
    return this.#verdicts.size;
  }
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
