// The reconciler's view of the API server, behind a small interface (the shell is tested with a
// fake): watch namespaces, watch the managed Istio objects (label selector), write them, and
// discover whether Istio's CRDs are served. The Kubernetes implementation uses client-node and
// the generic ListWatch (paged list, watch, relist, backoff).
import { CoreV1Api, CustomObjectsApi, Watch, type KubeConfig, type V1Namespace } from '@kubernetes/client-node';
import { abortOn, customObjectLister, pageParams } from '../../kube/client.ts';
import { ListWatch, type Listed, type ListPage, type ListWatchLog } from '../../kube/list-watch.ts';
import type { NamespaceSnapshot } from './desired.ts';
import { MANAGED_KINDS, MANAGED_SELECTOR, observedFrom, type KindInfo, type ManagedKind, type ObservedObject } from './resources.ts';
import { statusCode } from '../../kube/errors.ts';

export interface WatchHandlers<T> {
  replace(items: readonly T[]): void;
  upsert(item: T): void;
  remove(item: T): void;
}

export interface Watcher {
  start(): void;
  stop(): Promise<void>;
  /** The first list completed and the watch is not stale. */
  synced(): boolean;
  problem(): string | undefined;
}

export interface ReconcilerClient {
  /** The managed kinds the API server does not serve (their CRD is not installed). */
  missingKinds(): Promise<ManagedKind[]>;
  watchNamespaces(h: WatchHandlers<NamespaceSnapshot>): Watcher;
  watchManaged(kind: KindInfo, h: WatchHandlers<ObservedObject>): Watcher;
  /** Each write returns the object as stored (undefined when the server returned nothing usable). */
  create(kind: KindInfo, namespace: string, body: Record<string, unknown>): Promise<ObservedObject | undefined>;
  replace(kind: KindInfo, namespace: string, name: string, body: Record<string, unknown>): Promise<ObservedObject | undefined>;
  /** Delete exactly this object (uid precondition). */
  delete(kind: KindInfo, object: ObservedObject): Promise<void>;
  /** Read any object of the kind, managed or not; undefined when absent. */
  get(kind: KindInfo, namespace: string, name: string): Promise<ObservedObject | undefined>;
}

export function namespaceSnapshot(ns: V1Namespace | Record<string, unknown>): NamespaceSnapshot | undefined {
  const n = ns as V1Namespace;
  const name = n.metadata?.name;
  if (typeof name !== 'string' || name === '') return undefined;
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(n.metadata?.labels ?? {})) if (typeof v === 'string') labels[k] = v;
  const deleting = n.metadata?.deletionTimestamp;
  const terminating = (deleting !== undefined && deleting !== null && String(deleting) !== '') || n.status?.phase === 'Terminating';
  return { name, labels, terminating };
}

/** One page of managed objects of a kind, for ListWatch (the managed-by label selects them). */
export function managedLister(custom: Pick<CustomObjectsApi, 'listClusterCustomObject'>, kind: KindInfo): (page: ListPage) => Promise<Listed<unknown>> {
  return customObjectLister<unknown>(custom, { group: kind.group, version: kind.version, plural: kind.plural, labelSelector: MANAGED_SELECTOR });
}

export interface KubeReconcilerClientOptions {
  readonly resyncMs: number;
  readonly staleAfterMs: number;
  readonly log: ListWatchLog;
  readonly pageSize?: number;
}

export function kubeReconcilerClient(kc: KubeConfig, options: KubeReconcilerClientOptions): ReconcilerClient {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const watch = new Watch(kc);
  const common = { watch, resyncMs: options.resyncMs, staleAfterMs: options.staleAfterMs, log: options.log, ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}) };
  const observed = (kind: KindInfo, raw: unknown): ObservedObject | undefined => observedFrom(kind.kind, raw);
  return {
    async missingKinds() {
      const missing: ManagedKind[] = [];
      const versions = new Map<string, KindInfo[]>();
      for (const k of MANAGED_KINDS) versions.set(`${k.group}/${k.version}`, [...(versions.get(`${k.group}/${k.version}`) ?? []), k]);
      for (const kinds of versions.values()) {
        const first = kinds[0] as KindInfo;
        let served: Set<string>;
        try {
          const list = await custom.getAPIResources({ group: first.group, version: first.version });
          served = new Set(list.resources.map((r) => r.name));
        } catch (err) {
          if (statusCode(err) !== 404) throw err;
          served = new Set();
        }
        for (const k of kinds) if (!served.has(k.plural)) missing.push(k.kind);
      }
      return missing;
    },
    watchNamespaces(h) {
      const snap = (items: readonly V1Namespace[]): NamespaceSnapshot[] => items.map(namespaceSnapshot).filter((n): n is NamespaceSnapshot => n !== undefined);
      return new ListWatch<V1Namespace>({
        ...common,
        name: 'reconciler namespaces',
        list: (p) => core.listNamespace(pageParams(p.limit, p._continue), abortOn(p.signal)),
        watchPath: '/api/v1/namespaces',
        replace: (items) => h.replace(snap(items)),
        upsert: (ns) => snap([ns]).forEach((n) => h.upsert(n)),
        remove: (ns) => snap([ns]).forEach((n) => h.remove(n)),
      });
    },
    watchManaged(kind, h) {
      const conv = (items: readonly unknown[]): ObservedObject[] => items.map((i) => observed(kind, i)).filter((x): x is ObservedObject => x !== undefined);
      return new ListWatch<unknown>({
        ...common,
        name: `managed ${kind.plural}.${kind.group}`,
        list: managedLister(custom, kind),
        watchPath: `/apis/${kind.group}/${kind.version}/${kind.plural}`,
        watchParams: { labelSelector: MANAGED_SELECTOR },
        replace: (items) => h.replace(conv(items)),
        upsert: (i) => conv([i]).forEach((x) => h.upsert(x)),
        remove: (i) => conv([i]).forEach((x) => h.remove(x)),
      });
    },
    async create(kind, namespace, body) {
      return observed(kind, await custom.createNamespacedCustomObject({ group: kind.group, version: kind.version, plural: kind.plural, namespace, body, fieldManager: 'meshguard' }));
    },
    async replace(kind, namespace, name, body) {
      return observed(kind, await custom.replaceNamespacedCustomObject({ group: kind.group, version: kind.version, plural: kind.plural, namespace, name, body, fieldManager: 'meshguard' }));
    },
    async delete(kind, object) {
      await custom.deleteNamespacedCustomObject({
        group: kind.group,
        version: kind.version,
        plural: kind.plural,
        namespace: object.namespace,
        name: object.name,
        ...(object.uid !== '' ? { body: { preconditions: { uid: object.uid } } } : {}),
      });
    },
    async get(kind, namespace, name) {
      try {
        return observed(kind, await custom.getNamespacedCustomObject({ group: kind.group, version: kind.version, plural: kind.plural, namespace, name }));
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
  };
}
