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
// keys, several YAML documents) too. The text is read by lib/go-yaml.ts; the fields, their types
// and allow-lists are in lib/proxy-config-fields.ts.
import { isRecord } from '../../core/objects.ts';
import { parseGoYamlMapping } from './go-yaml.ts';
import { NONE, PROXY_CONFIG_FIELDS, protoNamesOf, type Enum, type FieldClass, type FieldSpec, type FieldType } from './proxy-config-fields.ts';

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
  const byProto = protoNamesOf(specs);
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

