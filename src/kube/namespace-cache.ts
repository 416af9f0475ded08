// ClusterView backed by the API server: namespaces and Istio revisions, each a ListWatch.
// Admission reads these maps synchronously; no API call is made per request.
import { AdmissionregistrationV1Api, CoreV1Api, type KubeConfig, type V1MutatingWebhookConfiguration, type V1Namespace } from '@kubernetes/client-node';
import { abortOn, pageParams } from './client.ts';
import { ListWatch, type ListWatchLog } from './list-watch.ts';
import { WatchClient } from './watch-client.ts';
import { namespaceLabels, type ClusterView, type NamespaceInfo, type NamespaceLabels } from '../core/cluster-view.ts';
import { LABEL_REV, REVISION_WEBHOOK_LABELS } from '../policies/lib/mesh-enrollment.ts';

export interface CacheOptions {
  readonly resyncMs: number;
  readonly staleAfterMs: number;
  readonly discoverRevisions: boolean;
  /** Revisions from configuration, always known. */
  readonly configuredRevisions: readonly string[];
  readonly log: ListWatchLog;
}

/**
 * Namespaces with the same mesh labels share one frozen labels object (most clusters have a handful
 * of combinations: injection enabled, a revision or two, ambient, none). The table is bounded: past
 * SHARED_LABELS_MAX distinct combinations a namespace keeps its own object, so namespaces created
 * with ever-new revision values cannot grow it without end.
 */
const SHARED_LABELS_MAX = 256;

export class SharedLabels {
  readonly #table = new Map<string, NamespaceLabels>();

  of(labels: unknown): NamespaceLabels {
    const own = namespaceLabels(labels);
    let key = '';
    for (const [k, v] of Object.entries(own)) key += `${k}\u0000${v}\u0000`;
    const shared = this.#table.get(key);
    if (shared !== undefined) return shared;
    const frozen = Object.freeze(own);
    if (this.#table.size < SHARED_LABELS_MAX) this.#table.set(key, frozen);
    return frozen;
  }

  get size(): number {
    return this.#table.size;
  }
}

/** What the cache needs of a listed namespace: its name and the labels rules read. */
function compactNamespace(ns: V1Namespace): V1Namespace {
  const name = ns.metadata?.name;
  const labels = ns.metadata?.labels;
  return { metadata: { ...(name !== undefined ? { name } : {}), ...(labels !== undefined ? { labels: namespaceLabels(labels) as Record<string, string> } : {}) } };
}

export class ClusterCache implements ClusterView {
  readonly source = 'cluster' as const;
  readonly #namespaces = new Map<string, NamespaceInfo>();
  readonly #labels = new SharedLabels();
  #webhooks = new Map<string, readonly string[]>();
  #revisions: ReadonlySet<string>;
  readonly #configured: readonly string[];
  readonly watchers: ListWatch<unknown>[] = [];
  #revisionWatchers: ListWatch<unknown>[] = [];

  constructor(kc: KubeConfig, options: CacheOptions) {
    this.#configured = options.configuredRevisions;
    this.#revisions = new Set(options.configuredRevisions);
    const core = kc.makeApiClient(CoreV1Api);
    // A watch whose response has not begun within the staleness bound is given up (watch-client.ts).
    const watch = new WatchClient(kc, options.staleAfterMs);
    const common = { watch, resyncMs: options.resyncMs, staleAfterMs: options.staleAfterMs, log: options.log };
    const nsWatch = new ListWatch<V1Namespace>({
      ...common,
      name: 'namespaces',
      list: (p) => core.listNamespace(pageParams(p.limit, p._continue), abortOn(p.signal)),
      watchPath: '/api/v1/namespaces',
      // Each namespace is cut down to its name and the labels rules read as its page or event
      // arrives: client-node's objects (managedFields, timestamps as Dates) are several KiB each,
      // so a sync of 50 000 would otherwise peak at hundreds of MiB. Where the apiserver streams lists, they arrive
      // one at a time and no page of full objects is ever held.
      compact: compactNamespace,
      streamingList: true,
      replace: (items) => {
        this.#namespaces.clear();
        for (const ns of items) this.#upsertNamespace(ns);
      },
      upsert: (ns) => this.#upsertNamespace(ns),
      remove: (ns) => void this.#namespaces.delete(ns.metadata?.name ?? ''),
    });
    this.watchers.push(nsWatch as ListWatch<unknown>);
    if (options.discoverRevisions) {
      const adm = kc.makeApiClient(AdmissionregistrationV1Api);
      const selector = LABEL_REV;
      const mwcWatch = new ListWatch<V1MutatingWebhookConfiguration>({
        ...common,
        name: 'istio revisions (mutatingwebhookconfigurations)',
        list: (p) => adm.listMutatingWebhookConfiguration({ labelSelector: selector, ...pageParams(p.limit, p._continue) }, abortOn(p.signal)),
        watchPath: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
        watchParams: { labelSelector: selector },
        replace: (items) => {
          this.#webhooks = new Map();
          for (const w of items) this.#upsertWebhook(w);
          this.#rebuildRevisions();
        },
        upsert: (w) => {
          this.#upsertWebhook(w);
          this.#rebuildRevisions();
        },
        remove: (w) => {
          this.#webhooks.delete(w.metadata?.name ?? '');
          this.#rebuildRevisions();
        },
      });
      this.watchers.push(mwcWatch as ListWatch<unknown>);
      this.#revisionWatchers = [mwcWatch as ListWatch<unknown>];
    }
  }

  #upsertNamespace(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (name !== undefined) this.#namespaces.set(name, { name, labels: this.#labels.of(ns.metadata?.labels) });
  }

  #upsertWebhook(w: V1MutatingWebhookConfiguration): void {
    const labels = w.metadata?.labels ?? {};
    const revs = REVISION_WEBHOOK_LABELS.map((k) => labels[k]).filter((v): v is string => typeof v === 'string' && v !== '');
    this.#webhooks.set(w.metadata?.name ?? '', revs);
  }

  #rebuildRevisions(): void {
    this.#revisions = new Set([...this.#configured, ...[...this.#webhooks.values()].flat()]);
  }

  start(): void {
    for (const w of this.watchers) w.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.watchers.map((w) => w.stop()));
  }

  namespace(name: string): NamespaceInfo | undefined {
    return this.#namespaces.get(name);
  }

  knownRevisions(): ReadonlySet<string> {
    return this.#revisions;
  }

  synced(): boolean {
    return this.watchers.every((w) => w.synced());
  }

  problem(): string | undefined {
    return this.watchers.map((w) => w.problem()).find((p) => p !== undefined);
  }

  staleFor(kind: { readonly group: string; readonly kind: string }): string | undefined {
    const read = kind.group === '' && kind.kind === 'Namespace' ? this.#revisionWatchers : this.watchers;
    return read.map((w) => w.problem()).find((p) => p !== undefined);
  }

  get size(): number {
    return this.#namespaces.size;
  }
}
