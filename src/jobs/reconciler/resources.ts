// The resources the reconciler manages (Istio's, and Kubernetes NetworkPolicies when configured),
// the labels that mark them as meshguard's, and the small value types shared by the
// desired-state function, the diff and the shell.
import { isRecord } from '../../core/objects.ts';

export type ManagedKind = 'Sidecar' | 'PeerAuthentication' | 'AuthorizationPolicy' | 'ServiceEntry' | 'NetworkPolicy';

export interface KindInfo {
  readonly kind: ManagedKind;
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

/** The Istio kinds the reconciler writes, with the API they are served under (their CRDs must be installed). */
export const MANAGED_KINDS: readonly KindInfo[] = Object.freeze([
  { kind: 'Sidecar', group: 'networking.istio.io', version: 'v1', plural: 'sidecars' },
  { kind: 'PeerAuthentication', group: 'security.istio.io', version: 'v1', plural: 'peerauthentications' },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' },
  { kind: 'ServiceEntry', group: 'networking.istio.io', version: 'v1', plural: 'serviceentries' },
]);

/** Kubernetes NetworkPolicy: built in (always served), written only when reconciler.networkPolicies.enabled. */
export const NETWORK_POLICY_KIND: KindInfo = Object.freeze({ kind: 'NetworkPolicy', group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies' });

/** Every kind the reconciler may write (RBAC). */
export const ALL_MANAGED_KINDS: readonly KindInfo[] = Object.freeze([...MANAGED_KINDS, NETWORK_POLICY_KIND]);

/** The kinds this configuration reconciles (and watches). */
export function reconciledKinds(networkPolicies: boolean): readonly KindInfo[] {
  return networkPolicies ? ALL_MANAGED_KINDS : MANAGED_KINDS;
}

export function kindInfo(kind: ManagedKind): KindInfo {
  const k = ALL_MANAGED_KINDS.find((m) => m.kind === kind);
  if (k === undefined) throw new Error(`not a managed kind: ${kind}`);
  return k;
}

/** The label the watches select on: an object without it is never touched. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'meshguard';
export const MANAGED_LABEL = 'meshguard.dev/managed';
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
export const MANAGED_LABELS: Readonly<Record<string, string>> = Object.freeze({
  [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
  [MANAGED_LABEL]: 'true',
});

/** Names of the built-in resources. */
export const NAMES = Object.freeze({
  sidecar: 'default',
  peerAuthentication: 'default',
  defaultDeny: 'default-deny',
  allowSameNamespace: 'allow-same-namespace',
  netpolDefaultDeny: 'meshguard-default-deny',
  netpolIngress: 'meshguard-allow-ingress',
  netpolEgress: 'meshguard-allow-egress',
  netpolAmbient: 'meshguard-allow-ambient',
});

/** One object the reconciler wants to exist. */
export interface DesiredObject {
  readonly kind: ManagedKind;
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly spec: Readonly<Record<string, unknown>>;
  /** Where it comes from, for logs: built-in:<what> or config:<key>.<name>. */
  readonly source: string;
}

/** One managed object as the API server has it (selected by the managed label). */
export interface ObservedObject {
  readonly kind: ManagedKind;
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly spec: unknown;
  readonly resourceVersion: string;
  readonly uid: string;
  /** The object exactly as read (an update keeps its other metadata). */
  readonly raw: Readonly<Record<string, unknown>>;
}

export function objectKey(o: { readonly kind: string; readonly namespace: string; readonly name: string }): string {
  return `${o.kind}/${o.namespace}/${o.name}`;
}

/** "Sidecar team-a/default" */
export function describeObject(o: { readonly kind: string; readonly namespace: string; readonly name: string }): string {
  return `${o.kind} ${o.namespace}/${o.name}`;
}

/** The manifest sent to the API server for a desired object. */
export function manifestOf(d: DesiredObject): Record<string, unknown> {
  const k = kindInfo(d.kind);
  return {
    apiVersion: `${k.group}/${k.version}`,
    kind: d.kind,
    metadata: { name: d.name, namespace: d.namespace, labels: { ...d.labels } },
    spec: structuredClone(d.spec) as Record<string, unknown>,
  };
}

/** Read a managed object from the API into an ObservedObject; undefined when it is not usable. */
export function observedFrom(kind: ManagedKind, raw: unknown): ObservedObject | undefined {
  if (!isRecord(raw) || !isRecord(raw['metadata'])) return undefined;
  const m = raw['metadata'];
  const name = m['name'];
  const namespace = m['namespace'];
  if (typeof name !== 'string' || typeof namespace !== 'string') return undefined;
  const labels: Record<string, string> = {};
  if (isRecord(m['labels'])) for (const [k, v] of Object.entries(m['labels'])) if (typeof v === 'string') labels[k] = v;
  return {
    kind,
    namespace,
    name,
    labels,
    spec: raw['spec'],
    resourceVersion: typeof m['resourceVersion'] === 'string' ? m['resourceVersion'] : '',
    uid: typeof m['uid'] === 'string' ? m['uid'] : '',
    raw,
  };
}

export function isManaged(labels: Readonly<Record<string, string>>): boolean {
  return labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}
