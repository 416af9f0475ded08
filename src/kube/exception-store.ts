// The MeshguardExceptions of the cluster, kept current by a list-watch (src/kube/list-watch.ts)
// and decoded once as they arrive; admission reads them per namespace, synchronously. A malformed
// object (the CRD's schema makes that rare) is kept as an error for `scan` and never applies.
import { CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { ClusterView } from '../core/cluster-view.ts';
import { ListWatch, type ListWatchLog } from './list-watch.ts';
import { customObjectLister } from './client.ts';
import { decodeException, EXCEPTION_GROUP, EXCEPTION_PLURAL, EXCEPTION_VERSION, type Decoded, type MeshguardException } from '../core/exception-model.ts';

interface Stored {
  readonly metadata?: { readonly namespace?: string; readonly name?: string; readonly resourceVersion?: string };
}

export interface ExceptionSource {
  forNamespace(namespace: string): readonly MeshguardException[];
}

export class ExceptionStore implements ExceptionSource {
  readonly #byKey = new Map<string, Decoded>();
  #byNamespace = new Map<string, MeshguardException[]>();
  readonly #watch: ListWatch<Stored>;
  readonly #ruleIds: readonly string[];
  readonly #log: ListWatchLog;

  constructor(kc: KubeConfig, options: { ruleIds: readonly string[]; resyncMs: number; staleAfterMs: number; log: ListWatchLog }) {
    this.#ruleIds = options.ruleIds;
    this.#log = options.log;
    const api = kc.makeApiClient(CustomObjectsApi);
    this.#watch = new ListWatch<Stored>({
      name: 'meshguardexceptions',
      list: customObjectLister<Stored>(api, { group: EXCEPTION_GROUP, version: EXCEPTION_VERSION, plural: EXCEPTION_PLURAL }),
      watch: new Watch(kc),
      watchPath: `/apis/${EXCEPTION_GROUP}/${EXCEPTION_VERSION}/${EXCEPTION_PLURAL}`,
      resyncMs: options.resyncMs,
      staleAfterMs: options.staleAfterMs,
      log: options.log,
      replace: (items) => {
        this.#byKey.clear();
        for (const i of items) this.#put(i);
        this.#index();
      },
      upsert: (i) => {
        this.#put(i);
        this.#index();
      },
      remove: (i) => {
        this.#byKey.delete(keyOf(i));
        this.#index();
      },
    });
  }

  #put(obj: Stored): void {
    const d = decodeException(obj, this.#ruleIds);
    if ('error' in d) this.#log.warn({ exception: keyOf(obj) }, `ignoring a malformed MeshguardException: ${d.error}`);
    this.#byKey.set(keyOf(obj), d);
  }

  #index(): void {
    const m = new Map<string, MeshguardException[]>();
    for (const d of this.#byKey.values()) if ('exception' in d) m.set(d.exception.namespace, [...(m.get(d.exception.namespace) ?? []), d.exception]);
    this.#byNamespace = m;
  }

  start(): void {
    this.#watch.start();
  }

  stop(): Promise<void> {
    return this.#watch.stop();
  }

  synced(): boolean {
    return this.#watch.synced();
  }

  problem(): string | undefined {
    return this.#watch.problem();
  }

  forNamespace(namespace: string): readonly MeshguardException[] {
    return this.#byNamespace.get(namespace) ?? [];
  }
}

function keyOf(o: Stored): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/** The cluster state rules and admission read, with the exceptions of `source` added. */
export function withExceptions(base: ClusterView, source: ExceptionSource): ClusterView {
  return {
    source: base.source,
    namespace: (n) => base.namespace(n),
    knownRevisions: () => base.knownRevisions(),
    synced: () => base.synced(),
    problem: () => base.problem?.(),
    exceptions: (ns) => source.forNamespace(ns),
  };
}
