// What the mesh config says: a MeshConfig (istio.io/api mesh/v1alpha1 config.proto), found where
// istiod reads it (the `mesh` key of the istio / istio-<revision> ConfigMaps in the root
// namespace; pkg/config/mesh of the pinned istio.io/istio module) or in an IstioOperator's
// meshConfig, and the mesh-wide settings that keep egress closed and traffic captured.
// Enums are read as istiod reads them (jsonpb): a quoted name, or a bare number. A present
// outboundTrafficPolicy without a mode is mode 0, REGISTRY_ONLY (istiod replaces the whole
// default message, whose ALLOW_ANY applies only when outboundTrafficPolicy is absent).
// defaultConfig is a ProxyConfig judged on its capture fields (lib/proxy-config.ts).
import { parse } from 'yaml';
import type { KObject } from '../../core/request.ts';
import type { Violation } from '../../core/types.ts';
import { at, isUnset, show, str } from './json-read.ts';
import { ISTIO_OPERATOR, ROOT_NAMESPACE } from './istio-kinds.ts';
import { isRecord } from '../../core/objects.ts';
import { firstLine } from './go-yaml.ts';
import { judgeProxyConfig } from './proxy-config.ts';

const MODE_FIX = 'set outboundTrafficPolicy.mode: REGISTRY_ONLY and declare external hosts with ServiceEntries';

/** MeshConfig.OutboundTrafficPolicy.Mode (istio.io/api mesh/v1alpha1 config.proto). */
export const OUTBOUND_MODE: Readonly<Record<string, number>> = { REGISTRY_ONLY: 0, ALLOW_ANY: 1, ALLOW_ANY_DYNAMIC_DNS: 3 };

/** The mode as istiod reads it: its name, 'unset' (Istio's default ALLOW_ANY applies), or 'invalid'. */
export function outboundMode(policy: unknown): string {
  if (isUnset(policy)) return 'unset';
  if (!isRecord(policy)) return 'invalid';
  const mode = policy['mode'];
  if (isUnset(mode)) return 'REGISTRY_ONLY';
  if (typeof mode === 'string') return Object.hasOwn(OUTBOUND_MODE, mode) ? mode : 'invalid';
  if (typeof mode === 'number' && Number.isInteger(mode)) return Object.keys(OUTBOUND_MODE).find((k) => OUTBOUND_MODE[k] === mode) ?? String(mode);
  return 'invalid';
}

function modeMessage(mode: string, raw: unknown): string {
  if (mode === 'unset') return "outboundTrafficPolicy.mode is not set, and Istio's default is ALLOW_ANY: egress to any host is open";
  if (mode === 'invalid') return `outboundTrafficPolicy.mode ${show(raw)} is not a mode istiod reads (REGISTRY_ONLY, ALLOW_ANY or ALLOW_ANY_DYNAMIC_DNS, by name or number); istiod would reject the mesh config`;
  if (mode === 'ALLOW_ANY_DYNAMIC_DNS') return 'outboundTrafficPolicy.mode ALLOW_ANY_DYNAMIC_DNS forwards HTTP to any host, without a ServiceEntry';
  return `outboundTrafficPolicy.mode ${mode}${show(raw) === mode ? '' : ` (${show(raw)})`} lets workloads reach hosts outside the service registry`;
}

/** Mesh-wide overrides of the defaultConfig allow-lists: istioInstall.allow under meshConfig.defaultConfig. */
function defaultConfigAllow(allow: Readonly<Record<string, readonly string[]>>): Record<string, readonly string[]> {
  const prefix = 'meshConfig.defaultConfig.';
  const out: Record<string, readonly string[]> = {};
  for (const [k, v] of Object.entries(allow)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}

function defaultConfigProblems(pc: unknown, allow: Readonly<Record<string, readonly string[]>>, path: (field: string) => string): Violation[] {
  if (isUnset(pc)) return [];
  const fix = 'make defaultConfig a ProxyConfig mapping that keeps capture on (no interceptionMode NONE, no istio-iptables settings in proxyMetadata)';
  if (!isRecord(pc)) return [{ message: `defaultConfig is not a mapping (a ProxyConfig) but ${show(pc)}`, path: path('defaultConfig'), value: show(pc), fix }];
  const verdict = judgeProxyConfig(pc, { scope: 'mesh', allow: defaultConfigAllow(allow), unknownFields: 'allow' });
  if ('error' in verdict) return [{ message: `defaultConfig does not parse as a ProxyConfig: ${verdict.error}`, path: path('defaultConfig'), fix }];
  return verdict.findings.map((f) => ({
    message: `defaultConfig.${f.field} ${f.value} ${f.field === 'interceptionMode' ? 'turns off traffic capture for every injected proxy' : 'changes which traffic the mesh captures, for every injected proxy'}`,
    path: path(`defaultConfig.${f.field}`),
    value: f.value,
    fix:
      f.field === 'interceptionMode'
        ? 'remove defaultConfig.interceptionMode (REDIRECT is the default) or set REDIRECT or TPROXY'
        : `remove defaultConfig.${f.field}, or ask the platform team to allow this value (istioInstall.allow[${JSON.stringify(`meshConfig.defaultConfig.${f.field}`)}])`,
  }));
}

/**
 * What is wrong with a MeshConfig. `path(field)` names a field for the user, e.g.
 * `data.mesh > outboundTrafficPolicy.mode` or `spec.meshConfig.outboundTrafficPolicy.mode`;
 * `allow` is config.istioInstall.allow.
 */
export function meshConfigProblems(mesh: Readonly<Record<string, unknown>>, path: (field: string) => string, allow: Readonly<Record<string, readonly string[]>> = {}): Violation[] {
  const out: Violation[] = [];
  const policy = mesh['outboundTrafficPolicy'];
  const mode = outboundMode(policy);
  if (mode !== 'REGISTRY_ONLY') {
    const raw = at(policy, 'mode');
    const where = mode === 'invalid' && !isRecord(policy) ? 'outboundTrafficPolicy' : 'outboundTrafficPolicy.mode';
    const value = mode === 'invalid' && !isRecord(policy) ? policy : raw;
    out.push({ message: modeMessage(mode, value), path: path(where), ...(isUnset(value) ? {} : { value: show(value) }), fix: MODE_FIX });
  }
  out.push(...defaultConfigProblems(mesh['defaultConfig'], allow, path));
  return out;
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

export interface MeshConfigSource {
  readonly mesh: Readonly<Record<string, unknown>>;
  /** How a field is named for the user: data.mesh > enableAutoMtls, spec.meshConfig.enableAutoMtls. */
  path(field: string): string;
}

/**
 * The mesh config an object carries, or undefined (not a mesh config, or unreadable: the mesh
 * config rule reports that). A ConfigMap counts when it is named istio or istio-* in the root
 * namespace and has a mesh key.
 */
export function meshConfigOf(obj: KObject | null): MeshConfigSource | undefined {
  if (obj === null) return undefined;
  if (obj.kind === 'ConfigMap') {
    const name = str(obj.metadata?.name);
    if (str(obj.metadata?.namespace) !== ROOT_NAMESPACE || !(name === 'istio' || name.startsWith('istio-'))) return undefined;
    const text = at(obj, 'data', 'mesh');
    if (text === undefined) return undefined;
    const parsed = parseMeshData(text);
    return 'problem' in parsed ? undefined : { mesh: parsed.mesh, path: (f) => `data.mesh > ${f}` };
  }
  if (obj.kind === ISTIO_OPERATOR.kind) {
    const top = at(obj, 'spec', 'meshConfig');
    if (isRecord(top)) return { mesh: top, path: (f) => `spec.meshConfig.${f}` };
    const values = at(obj, 'spec', 'values', 'meshConfig');
    if (isRecord(values)) return { mesh: values, path: (f) => `spec.values.meshConfig.${f}` };
    return { mesh: {}, path: (f) => `spec.meshConfig.${f}` };
  }
  return undefined;
}
