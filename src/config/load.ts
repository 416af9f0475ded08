// Build the configuration once: file (YAML or JSON), then flag/environment overrides, validated
// against the schema, cross-checked, frozen. Nothing below main.ts reads process.env.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { applySchema, ConfigError, deepFreeze } from './validate.ts';
import { CONFIG_SCHEMA } from './schema.ts';
import type { Config } from './types.ts';

export { ConfigError } from './validate.ts';

export interface LoadOptions {
  /** Path of a YAML or JSON config file. */
  readonly file?: string | undefined;
  /** Dotted keys to values, applied over the file (flags and environment). */
  readonly overrides?: Readonly<Record<string, unknown>>;
  /** Registered rule ids: `rules.<id>` must name one of them. */
  readonly ruleIds: readonly string[];
}

function setDotted(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = target;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = value;
}

function readFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('file', `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError('file', `${file} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('file', `${file} must hold a map of settings`);
  return doc as Record<string, unknown>;
}

function crossCheck(c: Config, ruleIds: readonly string[]): void {
  if ((c.server.certFile === null) !== (c.server.keyFile === null)) {
    throw new ConfigError(c.server.certFile === null ? 'server.certFile' : 'server.keyFile', 'certFile and keyFile go together');
  }
  if (c.selfManagedCerts.enabled && c.server.certFile !== null) {
    throw new ConfigError('selfManagedCerts.enabled', 'cannot be combined with server.certFile: self-managed certificates write their own files into server.certDir');
  }
  if (c.injection.mode === 'revision' && c.injection.revision === '') {
    throw new ConfigError('injection.revision', 'must be set when injection.mode is revision');
  }
  if (c.server.headersTimeoutMs >= c.server.requestTimeoutMs) {
    throw new ConfigError('server.headersTimeoutMs', 'must be lower than server.requestTimeoutMs');
  }
  for (const id of Object.keys(c.rules)) {
    if (!ruleIds.includes(id)) throw new ConfigError(`rules.${id}`, `no such rule (rules: ${ruleIds.join(', ')})`);
  }
}

export function loadConfig(opts: LoadOptions): Config {
  const raw: Record<string, unknown> = opts.file === undefined ? {} : readFile(opts.file);
  for (const [k, v] of Object.entries(opts.overrides ?? {})) if (v !== undefined) setDotted(raw, k, v);
  const config = applySchema(CONFIG_SCHEMA, raw) as Config;
  crossCheck(config, opts.ruleIds);
  return deepFreeze(config);
}
