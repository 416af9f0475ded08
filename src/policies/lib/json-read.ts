// Defensive readers over decoded JSON (any field may have any type), and how values and field
// paths are written in violations. Not Istio-specific: the rules read Istio objects, Services,
// NetworkPolicies and pod templates through the same few functions.
import { isRecord } from '../../core/objects.ts';

/** The value at a path of keys, or undefined as soon as a step is not a map. */
export function at(v: unknown, ...keys: readonly string[]): unknown {
  let cur = v;
  for (const k of keys) {
    if (!isRecord(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** The map entries of a list, with their index; anything else is skipped. */
export function mapItems(v: unknown): [number, Record<string, unknown>][] {
  if (!Array.isArray(v)) return [];
  const out: [number, Record<string, unknown>][] = [];
  v.forEach((item: unknown, i) => {
    if (isRecord(item)) out.push([i, item]);
  });
  return out;
}

/** The string entries of a list, with their index; anything else is skipped. */
export function stringItems(v: unknown): [number, string][] {
  if (!Array.isArray(v)) return [];
  const out: [number, string][] = [];
  v.forEach((item: unknown, i) => {
    if (typeof item === 'string') out.push([i, item]);
  });
  return out;
}

/** A string value, or '' for anything else. */
export function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** Absent or null: the field is unset (protobuf JSON treats null as the default). */
export function isUnset(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

/** A value as violation text: strings as they are, anything else as JSON. */
export function show(v: unknown): string {
  return typeof v === 'string' ? v : quote(v);
}

/** A map key as a path segment: spec.portLevelMtls["8080"]. */
export function keyPath(base: string, key: string): string {
  return `${base}[${JSON.stringify(key)}]`;
}

/** A value for a message: strings quoted (so " true" and "" read as what they are), anything else as JSON. */
export function quote(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
