// Desired state, as a pure function: the namespaces and the configuration in, the objects that
// should exist out. No API call, no clock, no randomness: the same input gives the same output.
import type { Config, GeneratedResource } from '../../config/types.ts';
import { isExempt } from '../../core/match.ts';
import { LABEL_DATAPLANE, meshStatus } from '../../policies/lib/mesh-enrollment.ts';
import { ambientSpec, defaultDenySpec, egressSpec, ingressSpec, withServerDefaults } from './network-policies.ts';
import { MANAGED_LABELS, NAMES, objectKey, type DesiredObject, type ManagedKind } from './resources.ts';

/** What the reconciler needs to know about a namespace. */
export interface NamespaceSnapshot {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** deletionTimestamp is set: nothing may be created in it any more. */
  readonly terminating: boolean;
}

/** Why a namespace gets (or does not get) managed resources. */
export type NamespaceStatus = 'managed' | 'exempt' | 'not in the mesh' | 'terminating';

export interface DesiredState {
  /** Sorted by kind, namespace and name. */
  readonly objects: readonly DesiredObject[];
  readonly namespaces: ReadonlyMap<string, NamespaceStatus>;
}

/**
 * A namespace is managed when it is not exempt, not being deleted, and some dataplane serves it
 * (sidecar injection with a known revision, or ambient when allowed). A namespace whose labels
 * also have a problem (say istio-injection=enabled plus istio.io/rev) still has its workloads in
 * the mesh; stripping their hardening would make things worse, so it stays managed.
 */
export function namespaceStatus(ns: NamespaceSnapshot, config: Config, knownRevisions: ReadonlySet<string>): NamespaceStatus {
  if (isExempt(config, ns.name)) return 'exempt';
  if (ns.terminating) return 'terminating';
  return meshStatus(ns.labels, config, knownRevisions).dataplane === 'none' ? 'not in the mesh' : 'managed';
}

function object(kind: ManagedKind, namespace: string, name: string, spec: Record<string, unknown>, source: string): DesiredObject {
  return { kind, namespace, name, labels: MANAGED_LABELS, spec, source };
}

/** The built-in hardening of one namespace. */
export function builtinObjects(namespace: string, config: Config): DesiredObject[] {
  const out = [
    object('Sidecar', namespace, NAMES.sidecar, { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, 'built-in:registry-only-egress'),
    object('PeerAuthentication', namespace, NAMES.peerAuthentication, { mtls: { mode: 'STRICT' } }, 'built-in:strict-mtls'),
    object('AuthorizationPolicy', namespace, NAMES.defaultDeny, {}, 'built-in:default-deny'),
  ];
  if (config.reconciler.allowSameNamespace) {
    // Source namespaces come from the peer's mTLS identity, which STRICT mode guarantees.
    const spec = { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: [namespace] } }] }] };
    out.push(object('AuthorizationPolicy', namespace, NAMES.allowSameNamespace, spec, 'built-in:allow-same-namespace'));
  }
  return out;
}

/**
 * The NetworkPolicy set of a managed namespace (reconciler.networkPolicies.enabled): default-deny,
 * ingress from the namespace itself, the gateway and monitoring namespaces, egress inside the
 * cluster only, and in ambient namespaces HBONE and the probe address. See network-policies.ts.
 */
export function networkPolicyObjects(namespace: string, ambient: boolean, config: Config): DesiredObject[] {
  const out = [
    object('NetworkPolicy', namespace, NAMES.netpolDefaultDeny, defaultDenySpec(), 'built-in:network-default-deny'),
    object('NetworkPolicy', namespace, NAMES.netpolIngress, ingressSpec(namespace, config), 'built-in:network-ingress-from-sources'),
    object('NetworkPolicy', namespace, NAMES.netpolEgress, egressSpec(), 'built-in:network-egress-in-cluster'),
  ];
  if (ambient) out.push(object('NetworkPolicy', namespace, NAMES.netpolAmbient, ambientSpec(namespace, config), 'built-in:network-ambient'));
  return out;
}

function configured(
  kind: ManagedKind,
  key: string,
  entries: Readonly<Record<string, GeneratedResource>>,
  managed: ReadonlySet<string>,
  ordered: readonly string[],
  normalize: (spec: Readonly<Record<string, unknown>>) => Record<string, unknown> = (spec) => structuredClone(spec) as Record<string, unknown>,
): DesiredObject[] {
  const out: DesiredObject[] = [];
  for (const [name, entry] of Object.entries(entries)) {
    // Empty list: every managed namespace. Otherwise only the listed ones that are managed.
    const targets = entry.namespaces.length === 0 ? ordered : entry.namespaces.filter((n) => managed.has(n));
    for (const ns of targets) out.push(object(kind, ns, name, normalize(entry.spec), `config:${key}.${name}`));
  }
  return out;
}

/**
 * Everything that should exist. A configured AuthorizationPolicy with the name of a built-in one
 * (default-deny, allow-same-namespace) replaces it: that is how the built-in policy is tuned. The
 * same holds for a configured NetworkPolicy with the name of a built-in one.
 */
export function desiredState(input: Iterable<NamespaceSnapshot>, config: Config, knownRevisions: ReadonlySet<string>): DesiredState {
  const namespaces = [...input];
  const statuses = new Map<string, NamespaceStatus>();
  for (const ns of namespaces) statuses.set(ns.name, namespaceStatus(ns, config, knownRevisions));
  const ordered = [...statuses].filter(([, s]) => s === 'managed').map(([n]) => n).sort();
  const managed = new Set(ordered);
  const byKey = new Map<string, DesiredObject>();
  const add = (d: DesiredObject): void => void byKey.set(objectKey(d), d);
  for (const ns of ordered) for (const d of builtinObjects(ns, config)) add(d);
  for (const d of configured('ServiceEntry', 'reconciler.serviceEntries', config.reconciler.serviceEntries, managed, ordered)) add(d);
  for (const d of configured('AuthorizationPolicy', 'reconciler.authorizationPolicies', config.reconciler.authorizationPolicies, managed, ordered)) add(d);
  const netpol = config.reconciler.networkPolicies;
  if (netpol.enabled) {
    const byName = new Map([...namespaces].map((n) => [n.name, n]));
    for (const ns of ordered) {
      // Ambient pods receive mesh traffic on HBONE; a namespace labelled for both dataplanes may run both kinds of pods.
      const ambient = config.ambient.allowed && byName.get(ns)?.labels[LABEL_DATAPLANE] === 'ambient';
      for (const d of networkPolicyObjects(ns, ambient, config)) add(d);
    }
    for (const d of configured('NetworkPolicy', 'reconciler.networkPolicies.extra', netpol.extra, managed, ordered, withServerDefaults)) add(d);
  }
  const objects = [...byKey.values()].sort((a, b) => objectKey(a).localeCompare(objectKey(b)));
  return { objects, namespaces: statuses };
}
