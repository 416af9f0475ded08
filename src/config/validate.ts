// Applies a configuration schema (TypeBox, so plain JSON Schema) once: coerce the strings that
// flags and environment variables give, fill in the defaults, validate, and say what is wrong by
// key. Validation is ajv's (Fastify validates with it too); the messages are ours, so each one
// names the key and the value as before.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly key: string;
  constructor(key: string, message: string) {
    super(`config ${key}: ${message}`);
    this.key = key;
  }
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `"${v}"` : `${typeof v} ${JSON.stringify(v)}`;
}

/** Flags and environment variables are strings: "8443" is an integer, "true" a boolean, where the schema says so. */
function coerce(schema: Json, v: unknown): unknown {
  if (schema['type'] === 'integer' && typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  if (schema['type'] === 'boolean' && (v === 'true' || v === 'false')) return v === 'true';
  if (Array.isArray(v) && isRecord(schema['items'])) return v.map((item) => coerce(schema['items'] as Json, item));
  if (isRecord(v) && schema['type'] === 'object') {
    const props = isRecord(schema['properties']) ? schema['properties'] : {};
    const rest = schema['additionalProperties'];
    for (const [k, item] of Object.entries(v)) {
      const sub = Object.hasOwn(props, k) ? props[k] : rest;
      if (isRecord(sub)) v[k] = coerce(sub, item);
    }
  }
  return v;
}

// verbose: errors carry the failing value and its schema (for the messages). The schema is fixed in
// the code and compiled once per process, so checking it against the meta-schema and optimizing
// the generated code would only add start-up time (strict mode still refuses unknown keywords).
const ajv = new Ajv({ useDefaults: true, allowUnionTypes: true, verbose: true, validateSchema: false, code: { optimize: false } });
const compiled = new WeakMap<TSchema, ValidateFunction>();

const TYPE_TEXT: Readonly<Record<string, string>> = {
  string: 'a string',
  integer: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map',
};

/** The dotted key of a JSON pointer into `root`: server.port, exemptNamespaces[2]. */
function keyOf(root: unknown, pointer: string): string {
  let key = '';
  let cur = root;
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    key = Array.isArray(cur) ? `${key}[${part}]` : key === '' ? part : `${key}.${part}`;
    cur = isRecord(cur) || Array.isArray(cur) ? (cur as Json)[part] : undefined;
  }
  return key;
}

const join = (key: string, child: string): string => (key === '' ? child : `${key}.${child}`);

/** ajv's first error as a ConfigError that names the key. */
function configError(root: unknown, e: ErrorObject): ConfigError {
  const key = keyOf(root, e.instancePath);
  const parent = (e.parentSchema ?? {}) as Json;
  const params = e.params as Json;
  const got = describe(e.data);
  // An error under propertyNames is about the key itself, not its value.
  if (e.propertyName !== undefined) return new ConfigError(join(key, e.propertyName), `key does not match ${String(params['pattern'])}`);
  switch (e.keyword) {
    case 'type': {
      const type = String(Array.isArray(params['type']) ? params['type'][0] : params['type']).split(',')[0] ?? '';
      return new ConfigError(key, `must be ${TYPE_TEXT[type] ?? type}, got ${got}`);
    }
    case 'enum':
      return new ConfigError(key, `must be one of ${(params['allowedValues'] as unknown[]).join(', ')}, got ${got}`);
    case 'pattern':
      return new ConfigError(key, `${got} does not match ${String(params['pattern'])}`);
    case 'minimum':
    case 'maximum':
      return new ConfigError(key, `must be between ${String(parent['minimum'])} and ${String(parent['maximum'])}, got ${String(e.data)}`);
    case 'additionalProperties': {
      const known = Object.keys(isRecord(parent['properties']) ? parent['properties'] : {}).join(', ');
      return new ConfigError(join(key, String(params['additionalProperty'])), `unknown key (known: ${known})`);
    }
    case 'required':
      return new ConfigError(join(key, String(params['missingProperty'])), 'must be set');
    default:
      return new ConfigError(key, e.message ?? `is not valid (${e.keyword})`);
  }
}

/** Validate `value` against `schema`, filling defaults; throws ConfigError naming the key. The input is not changed. */
export function applySchema(schema: TSchema, value: unknown): unknown {
  let validate = compiled.get(schema);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  const data = coerce(schema, structuredClone(value));
  if (validate(data)) return data;
  const first = validate.errors?.[0];
  throw first === undefined ? new ConfigError('', 'is not valid') : configError(data, first);
}

export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** The order keywords are written in (the chart's file keeps the order it had before TypeBox). */
const KEYWORD_ORDER = ['type', 'minimum', 'maximum', 'items', 'additionalProperties', 'description', 'enum', 'pattern', 'propertyNames', 'properties'];
const rank = (k: string): number => (KEYWORD_ORDER.includes(k) ? KEYWORD_ORDER.indexOf(k) : KEYWORD_ORDER.length);

/**
 * The schema as a values file sees it (the Helm chart's values.schema.json): a key left out takes
 * its default, so nothing is required, and the defaults are documented elsewhere (values.yaml,
 * docs/configuration.md).
 */
export function toJsonSchema(schema: TSchema): Json {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (!isRecord(v)) return v;
    // Object.keys skips TypeBox's symbol-keyed metadata.
    const out: Json = {};
    for (const k of Object.keys(v).sort((a, b) => rank(a) - rank(b))) {
      const x = v[k];
      if (k === 'properties' && isRecord(x)) out[k] = Object.fromEntries(Object.entries(x).map(([name, s]) => [name, strip(s)]));
      else if (k !== 'required' && k !== 'default') out[k] = strip(x);
    }
    return out;
  };
  return strip(schema) as Json;
}
