// The mesh-wide settings that keep egress closed and traffic captured, checked on a parsed
// MeshConfig (the `mesh` key of the istio ConfigMap, or an IstioOperator's spec.meshConfig).
import { parse } from 'yaml';
import type { Violation } from '../../engine/types.ts';
import { at, isUnset, show } from './istio.ts';
import { isRecord } from './objects.ts';

const MODE_FIX = 'set outboundTrafficPolicy.mode: REGISTRY_ONLY and declare external hosts with ServiceEntries';

function modeMessage(mode: unknown): string {
  if (isUnset(mode)) return "outboundTrafficPolicy.mode is not set, and Istio's default is ALLOW_ANY: egress to any host is open";
  if (mode === 'ALLOW_ANY_DYNAMIC_DNS') return 'outboundTrafficPolicy.mode ALLOW_ANY_DYNAMIC_DNS forwards HTTP to any host, without a ServiceEntry';
  return `outboundTrafficPolicy.mode ${show(mode)} lets workloads reach hosts outside the service registry`;
}

/**
 * What is wrong with a MeshConfig. `path(field)` names a field for the user, e.g.
 * `data.mesh > outboundTrafficPolicy.mode` or `spec.meshConfig.outboundTrafficPolicy.mode`.
 */
export function meshConfigProblems(mesh: Readonly<Record<string, unknown>>, path: (field: string) => string): Violation[] {
  const out: Violation[] = [];
  const mode = at(mesh, 'outboundTrafficPolicy', 'mode');
  if (mode !== 'REGISTRY_ONLY') {
    out.push({ message: modeMessage(mode), path: path('outboundTrafficPolicy.mode'), ...(isUnset(mode) ? {} : { value: show(mode) }), fix: MODE_FIX });
  }
  const interception = at(mesh, 'defaultConfig', 'interceptionMode');
  if (interception === 'NONE') {
    out.push({
      message: 'defaultConfig.interceptionMode NONE turns off traffic capture for every injected proxy',
      path: path('defaultConfig.interceptionMode'),
      value: 'NONE',
      fix: 'remove defaultConfig.interceptionMode (REDIRECT is the default) or set REDIRECT or TPROXY',
    });
  }
  return out;
}

/** The first line of a parser message, without the code excerpt that follows it. */
function firstLine(message: string): string {
  const line = (message.split('\n')[0] ?? '').replace(/:$/, '');
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

/**
 * The `mesh` key of a mesh ConfigMap as a MeshConfig, or the violation that it is unreadable.
 * Absent and empty both mean "nothing set" (istiod then applies its defaults). Duplicate keys and
 * several documents are errors here: reading them differently from istiod would be a bypass.
 */
export function parseMeshData(text: unknown): { mesh: Readonly<Record<string, unknown>> } | { problem: Violation } {
  if (text === undefined) return { mesh: {} };
  const fix = 'make data.mesh a single YAML mapping (a MeshConfig) with outboundTrafficPolicy.mode: REGISTRY_ONLY';
  if (typeof text !== 'string') return { problem: { message: `data.mesh is not a string but ${show(text)}`, path: 'data.mesh', fix } };
  let value: unknown;
  try {
    value = parse(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (err) {
    const reason = err instanceof Error ? firstLine(err.message) : String(err);
    return { problem: { message: `data.mesh is not valid YAML: ${reason}`, path: 'data.mesh', fix } };
  }
  if (isUnset(value)) return { mesh: {} };
  if (!isRecord(value)) return { problem: { message: 'data.mesh is not a YAML mapping (a MeshConfig)', path: 'data.mesh', fix } };
  return { mesh: value };
}
