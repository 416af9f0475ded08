// A very small schema language: enough to validate meshguard's configuration once, fill in the
// defaults, reject unknown keys by name, and emit JSON Schema for the Helm chart.

export type Schema =
  | { readonly type: 'string'; readonly enum?: readonly string[]; readonly pattern?: RegExp; readonly nullable?: boolean; readonly default?: string | null; readonly description: string }
  | { readonly type: 'integer'; readonly min: number; readonly max: number; readonly default?: number; readonly description: string }
  | { readonly type: 'boolean'; readonly default?: boolean; readonly description: string }
  | { readonly type: 'array'; readonly items: Schema; readonly default?: readonly unknown[]; readonly description: string }
  | { readonly type: 'map'; readonly values: Schema; readonly keyPattern?: RegExp; readonly default?: Readonly<Record<string, unknown>>; readonly description: string }
  | { readonly type: 'object'; readonly props: Readonly<Record<string, Schema>>; readonly description: string }
  /** Any JSON map, passed through unchanged (e.g. the spec of a generated Istio resource). */
  | { readonly type: 'json'; readonly default?: Readonly<Record<string, unknown>>; readonly description: string };

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly key: string;
  constructor(key: string, message: string) {
    super(`config ${key}: ${message}`);
    this.key = key;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `"${v}"` : `${typeof v} ${JSON.stringify(v)}`;
}

function defaultOf(s: Schema): unknown {
  if (s.type === 'object') return {};
  return 'default' in s ? structuredClone(s.default) : undefined;
}

/** Validate `value` against `schema`, filling defaults; throws ConfigError naming the key. */
export function applySchema(schema: Schema, value: unknown, key: string): unknown {
  const v = value === undefined ? defaultOf(schema) : value;
  switch (schema.type) {
    case 'string': {
      if (v === null && schema.nullable === true) return null;
      if (typeof v !== 'string') throw new ConfigError(key, `must be a string, got ${describe(v)}`);
      if (schema.enum !== undefined && !schema.enum.includes(v)) {
        throw new ConfigError(key, `must be one of ${schema.enum.join(', ')}, got "${v}"`);
      }
      if (schema.pattern !== undefined && !schema.pattern.test(v)) {
        throw new ConfigError(key, `"${v}" does not match ${schema.pattern.source}`);
      }
      return v;
    }
    case 'integer': {
      const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new ConfigError(key, `must be an integer, got ${describe(v)}`);
      if (n < schema.min || n > schema.max) throw new ConfigError(key, `must be between ${schema.min} and ${schema.max}, got ${n}`);
      return n;
    }
    case 'boolean': {
      if (v === 'true') return true;
      if (v === 'false') return false;
      if (typeof v !== 'boolean') throw new ConfigError(key, `must be true or false, got ${describe(v)}`);
      return v;
    }
    case 'array': {
      if (!Array.isArray(v)) throw new ConfigError(key, `must be a list, got ${describe(v)}`);
      return v.map((item, i) => applySchema(schema.items, item, `${key}[${i}]`));
    }
    case 'map': {
      if (!isRecord(v)) throw new ConfigError(key, `must be a map, got ${describe(v)}`);
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) {
        if (schema.keyPattern !== undefined && !schema.keyPattern.test(k)) {
          throw new ConfigError(`${key}.${k}`, `key does not match ${schema.keyPattern.source}`);
        }
        out[k] = applySchema(schema.values, item, `${key}.${k}`);
      }
      return out;
    }
    case 'json': {
      if (!isRecord(v)) throw new ConfigError(key, `must be a map, got ${describe(v)}`);
      return structuredClone(v);
    }
    case 'object': {
      if (!isRecord(v)) throw new ConfigError(key, `must be a map, got ${describe(v)}`);
      for (const k of Object.keys(v)) {
        if (!Object.hasOwn(schema.props, k)) {
          throw new ConfigError(key === '' ? k : `${key}.${k}`, `unknown key (known: ${Object.keys(schema.props).join(', ')})`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const [k, s] of Object.entries(schema.props)) out[k] = applySchema(s, v[k], key === '' ? k : `${key}.${k}`);
      return out;
    }
  }
}

export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** JSON Schema (draft-07) for the Helm chart's values.schema.json. */
export function toJsonSchema(s: Schema): Record<string, unknown> {
  switch (s.type) {
    case 'string': {
      const out: Record<string, unknown> = { type: s.nullable === true ? ['string', 'null'] : 'string', description: s.description };
      if (s.enum !== undefined) out['enum'] = [...s.enum];
      if (s.pattern !== undefined) out['pattern'] = s.pattern.source;
      return out;
    }
    case 'integer':
      return { type: 'integer', minimum: s.min, maximum: s.max, description: s.description };
    case 'boolean':
      return { type: 'boolean', description: s.description };
    case 'array':
      return { type: 'array', items: toJsonSchema(s.items), description: s.description };
    case 'map': {
      const out: Record<string, unknown> = { type: 'object', additionalProperties: toJsonSchema(s.values), description: s.description };
      if (s.keyPattern !== undefined) out['propertyNames'] = { pattern: s.keyPattern.source };
      return out;
    }
    case 'json':
      return { type: 'object', description: s.description };
    case 'object':
      return {
        type: 'object',
        additionalProperties: false,
        description: s.description,
        properties: Object.fromEntries(Object.entries(s.props).map(([k, v]) => [k, toJsonSchema(v)])),
      };
  }
}
