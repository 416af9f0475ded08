// Defensive readers over untrusted Kubernetes JSON.
import type { KObject } from './request.ts';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** labels or annotations as a string map; anything else (absent, wrong type) is empty. */
export function stringMap(v: unknown): Readonly<Record<string, unknown>> {
  return isRecord(v) ? v : {};
}

export function labelsOf(o: KObject | null | undefined): Readonly<Record<string, unknown>> {
  return stringMap(o?.metadata?.labels);
}

export function annotationsOf(o: KObject | null | undefined): Readonly<Record<string, unknown>> {
  return stringMap(o?.metadata?.annotations);
}

export function isTerminating(o: KObject | null | undefined): boolean {
  const ts = o?.metadata?.deletionTimestamp;
  return typeof ts === 'string' && ts !== '';
}
