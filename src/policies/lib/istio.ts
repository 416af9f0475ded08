// What the Istio configuration rules share: the kinds with every API version the apiserver
// serves them in (a rule matches group+kind, so each version gets the same verdict), the root
// namespace, and small defensive readers that also build field paths.
import type { AdmissionRequest } from '../../admission/types.ts';
import type { Config } from '../../config/types.ts';
import { isExempt } from '../../engine/match.ts';
import type { KindRef, WebhookResource } from '../../engine/types.ts';
import { isRecord } from './objects.ts';

/**
 * Istio's root namespace (meshConfig.rootNamespace, default istio-system): configuration there
 * applies to the whole mesh (a selector-less Sidecar, PeerAuthentication or AuthorizationPolicy,
 * and DestinationRules and ServiceEntries exported everywhere).
 */
export const ROOT_NAMESPACE = 'istio-system';

export interface IstioKind extends KindRef {
  readonly resource: string;
  readonly versions: readonly string[];
}

const NETWORKING = ['v1', 'v1beta1', 'v1alpha3'] as const;
const SECURITY = ['v1', 'v1beta1'] as const;

export const SIDECAR: IstioKind = { group: 'networking.istio.io', kind: 'Sidecar', resource: 'sidecars', versions: NETWORKING };
export const SERVICE_ENTRY: IstioKind = { group: 'networking.istio.io', kind: 'ServiceEntry', resource: 'serviceentries', versions: NETWORKING };
export const DESTINATION_RULE: IstioKind = { group: 'networking.istio.io', kind: 'DestinationRule', resource: 'destinationrules', versions: NETWORKING };
export const ENVOY_FILTER: IstioKind = { group: 'networking.istio.io', kind: 'EnvoyFilter', resource: 'envoyfilters', versions: ['v1alpha3'] };
export const PROXY_CONFIG: IstioKind = { group: 'networking.istio.io', kind: 'ProxyConfig', resource: 'proxyconfigs', versions: ['v1beta1'] };
export const PEER_AUTHENTICATION: IstioKind = { group: 'security.istio.io', kind: 'PeerAuthentication', resource: 'peerauthentications', versions: SECURITY };
export const AUTHORIZATION_POLICY: IstioKind = { group: 'security.istio.io', kind: 'AuthorizationPolicy', resource: 'authorizationpolicies', versions: SECURITY };
export const WASM_PLUGIN: IstioKind = { group: 'extensions.istio.io', kind: 'WasmPlugin', resource: 'wasmplugins', versions: ['v1alpha1'] };
export const ISTIO_OPERATOR: IstioKind = { group: 'install.istio.io', kind: 'IstioOperator', resource: 'istiooperators', versions: ['v1alpha1'] };

/** Every Istio kind a rule reads, with its served versions (tests iterate over this). */
export const ISTIO_KINDS: readonly IstioKind[] = [SIDECAR, SERVICE_ENTRY, DESTINATION_RULE, ENVOY_FILTER, PROXY_CONFIG, PEER_AUTHENTICATION, AUTHORIZATION_POLICY, WASM_PLUGIN, ISTIO_OPERATOR];

export function kindRef(k: IstioKind): KindRef {
  return { group: k.group, kind: k.kind };
}

/** Istio configuration is read in every namespace but the control plane's own (see ROOT_NAMESPACE). */
export function webhookFor(k: IstioKind): WebhookResource {
  return { placement: 'all-namespaces', apiGroup: k.group, apiVersions: k.versions, resources: [k.resource] };
}

/**
 * For rules that see every namespace (exemptions 'none'): the exempt namespaces stay exempt,
 * except the root namespace, where a weakening applies mesh-wide. undefined when the rule applies.
 */
export function exemptOutsideRoot(req: AdmissionRequest, config: Config): string | undefined {
  if (req.namespace === ROOT_NAMESPACE || !isExempt(config, req.namespace)) return undefined;
  return `namespace ${req.namespace} is exempt`;
}

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

/** Absent or null: the field is unset (protobuf JSON treats null as the default). */
export function isUnset(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

/** A value as violation text: strings as they are, anything else as JSON. */
export function show(v: unknown): string {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** A map key as a path segment: spec.portLevelMtls["8080"]. */
export function keyPath(base: string, key: string): string {
  return `${base}[${JSON.stringify(key)}]`;
}
