// The core's port to the cluster: what rules may know about it (namespace labels, installed Istio
// revisions, exceptions). Declared here, implemented by the shell: in a cluster by watch-backed
// caches (src/kube/namespace-cache.ts), offline (check, or serve without kubeconfig) by the static
// view below, from the input manifests and the configuration. Rules read it synchronously: never
// an API call.
import type { MeshguardException } from './exception-model.ts';

/**
 * The namespace labels rules read from the cluster state: the mesh labels (policies/lib/mesh-enrollment.ts)
 * and the per-namespace mode (core/decide.ts). The cluster cache keeps only these, so 50 000
 * cached namespaces cost a name and a shared labels object each; NamespaceInfo's type makes
 * reading any other label a type error (test/unit/namespace-cache.test.ts checks the list).
 */
export const NAMESPACE_LABELS = ['istio-injection', 'istio.io/rev', 'istio.io/dataplane-mode', 'meshguard.dev/mode', 'meshguard.dev/exempt'] as const;
export type NamespaceLabel = (typeof NAMESPACE_LABELS)[number];

/**
 * An infrastructure namespace (a CNI's, a node monitoring agent's) that meshguard leaves alone:
 * the namespace and workload webhooks do not match it (namespaceSelector), so its Pods start while
 * meshguard is down, and the rules skip it. Like every meshguard.dev/ label only meshguard's
 * administrators may set or remove it (control-labels-admin-only, which still sees every
 * namespace write that touches it).
 */
export const EXEMPT_LABEL = 'meshguard.dev/exempt';
export const EXEMPT_VALUE = 'infrastructure';
export type NamespaceLabels = Readonly<Partial<Record<NamespaceLabel, string>>>;

export interface NamespaceInfo {
  readonly name: string;
  readonly labels: NamespaceLabels;
}

/** The labels of NAMESPACE_LABELS that a namespace carries with a string value, in that order. */
export function namespaceLabels(labels: unknown): NamespaceLabels {
  const out: Partial<Record<NamespaceLabel, string>> = {};
  if (typeof labels !== 'object' || labels === null) return out;
  for (const k of NAMESPACE_LABELS) {
    const v = (labels as Record<string, unknown>)[k];
    if (typeof v === 'string') out[k] = v;
  }
  return out;
}

export interface ClusterView {
  /** 'cluster' when backed by the API server; 'offline' when built from input and configuration. */
  readonly source: 'cluster' | 'offline';
  namespace(name: string): NamespaceInfo | undefined;
  /** Revisions and tags known to exist (configuration plus discovery). */
  knownRevisions(): ReadonlySet<string>;
  /** True once every cache has synced (always true offline). */
  synced(): boolean;
  /** Why it is not synced (for /readyz), when it can say. */
  problem?(): string | undefined;
  /** The mesh-wide sidecar injector values (the `values` key of istio-system's
   * istio-sidecar-injector ConfigMap), when the view watches them; undefined: the rules use
   * config.istioInstall.injectorValues. Return the same object until it changes (rules memoise on it). */
  injectorValues?(): Readonly<Record<string, unknown>> | undefined;
  /** The MeshguardExceptions of a namespace (src/kube/exception-store.ts); none when absent. */
  exceptions?(namespace: string): readonly MeshguardException[];
  /** Why the part of the state a request of this kind reads is not current (undefined: it is).
   * A Namespace's decision reads only the Istio revisions; anything else also reads namespace
   * labels. Without it, synced() stands for every kind. */
  staleFor?(kind: { readonly group: string; readonly kind: string }): string | undefined;
}

/** A fixed state: offline check, tests, or a server started without a cluster. */
export class StaticClusterView implements ClusterView {
  readonly source = 'offline' as const;
  readonly #namespaces = new Map<string, NamespaceInfo>();
  readonly #revisions: ReadonlySet<string>;

  constructor(namespaces: Iterable<NamespaceInfo> = [], revisions: Iterable<string> = []) {
    for (const ns of namespaces) this.#namespaces.set(ns.name, ns);
    this.#revisions = new Set(revisions);
  }

  namespace(name: string): NamespaceInfo | undefined {
    return this.#namespaces.get(name);
  }

  knownRevisions(): ReadonlySet<string> {
    return this.#revisions;
  }

  synced(): boolean {
    return true;
  }

  /** Record a namespace (offline check: namespaces in the same input are the cluster state). */
  put(ns: NamespaceInfo): void {
    this.#namespaces.set(ns.name, ns);
  }
}
