// List then watch one resource through @kubernetes/client-node, keeping a local copy current:
// paged list (or a streaming list, see streamingList), watch from the list's resourceVersion,
// re-watch after a clean end, relist after an error, a 410 Gone or the resync period, exponential
// backoff between failures. Readiness: synced once the first list completed, and unsynced again
// while the watch has been down longer than the staleness bound.
import type { Watch } from '@kubernetes/client-node';

export interface Listed<T> {
  readonly items: T[];
  readonly metadata?: { readonly resourceVersion?: string | undefined; readonly _continue?: string | undefined } | undefined;
}

export interface ListWatchLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ListWatchOptions<T> {
  readonly name: string;
  list(page: { limit: number; _continue?: string }): Promise<Listed<T>>;
  readonly watch: Pick<Watch, 'watch'>;
  readonly watchPath: string;
  readonly watchParams?: Readonly<Record<string, string>>;
  replace(items: readonly T[]): void;
  upsert(item: T): void;
  remove(item: T): void;
  readonly resyncMs: number;
  readonly staleAfterMs: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly pageSize?: number;
  /** What the sync keeps of each listed or streamed object (default: all of it): applied as each
   * page or event arrives, so a large collection is never held in full. */
  readonly compact?: (item: T) => T;
  /**
   * Sync by a streaming list when the server supports it (Kubernetes' WatchList: a watch with
   * sendInitialEvents=true, on by default in kube-apiserver 1.34 and later): the objects arrive one
   * event at a time instead of in pages of hundreds of full objects, so the initial sync of a large
   * collection holds much less memory. When the server refuses it (an older apiserver, or the
   * feature gate off: 400 or 422), or does not end the initial events within
   * `initialEventsTimeoutMs` (default 60 s), this and every later sync use paged lists.
   */
  readonly streamingList?: boolean;
  readonly initialEventsTimeoutMs?: number;
  readonly log: ListWatchLog;
  readonly now?: () => number;
}

type WatchEnd = 'closed' | 'resync' | 'gone' | 'stopped';

function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

export class ListWatch<T> {
  readonly #o: ListWatchOptions<T>;
  readonly #now: () => number;
  #stopped = false;
  #hasSynced = false;
  #downSince: number | null = null;
  #abort: AbortController | undefined;
  #wake: (() => void) | undefined;
  #done: Promise<void> | undefined;
  /** Counters for tests and metrics: paged lists, streaming lists, watches, failures. */
  readonly stats = { lists: 0, streams: 0, watches: 0, failures: 0 };
  /** Set once the server refused a streaming list: paged lists from then on. */
  #streamingOff = false;

  constructor(o: ListWatchOptions<T>) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  start(): void {
    this.#done ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
    await this.#done;
  }

  /** undefined when healthy; otherwise why the copy cannot be trusted. */
  problem(): string | undefined {
    if (!this.#hasSynced) return `${this.#o.name}: initial list not completed`;
    if (this.#downSince !== null && this.#now() - this.#downSince > this.#o.staleAfterMs) {
      return `${this.#o.name}: watch down for ${Math.round((this.#now() - this.#downSince) / 1000)} s (bound ${this.#o.staleAfterMs / 1000} s)`;
    }
    return undefined;
  }

  synced(): boolean {
    return this.problem() === undefined;
  }

  async #listAll(): Promise<string> {
    const items: T[] = [];
    const compact = this.#o.compact;
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.#o.list({ limit: this.#o.pageSize ?? 500, ...(cont !== undefined ? { _continue: cont } : {}) });
      for (const item of page.items) items.push(compact === undefined ? item : compact(item));
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?._continue === '' ? undefined : page.metadata?._continue;
    } while (cont !== undefined);
    this.#o.replace(items);
    this.stats.lists++;
    return rv;
  }

  /** The initial sync: a streaming list when configured and not refused, else a paged list. */
  async #sync(): Promise<string> {
    if (this.#o.streamingList !== true || this.#streamingOff) return this.#listAll();
    const streamed = await this.#streamList();
    if (streamed !== undefined) return streamed;
    return this.#listAll();
  }

  /**
   * A watch with sendInitialEvents=true: ADDED events for every existing object, then a bookmark
   * annotated k8s.io/initial-events-end, whose resourceVersion the regular watch continues from
   * (this watch is closed there; #watch opens the next one). Resolves the resourceVersion, or
   * undefined when the server refused streaming lists (paged lists from then on); rejects on any
   * other failure (the caller backs off and retries).
   */
  #streamList(): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const items: T[] = [];
      let settled = false;
      let ac: AbortController | undefined;
      const settle = (f: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ac?.abort();
        f();
      };
      const refuse = (why: string): void =>
        settle(() => {
          this.#streamingOff = true;
          this.#o.log.info({ resource: this.#o.name, reason: why }, 'streaming list not available; using paged lists');
          resolve(undefined);
        });
      const timeoutMs = this.#o.initialEventsTimeoutMs ?? 60_000;
      const compact = this.#o.compact;
      const timer = setTimeout(() => refuse(`no end of the initial events within ${timeoutMs / 1000} s`), timeoutMs);
      timer.unref();
      const onEvent = (phase: string, obj: unknown): void => {
        if (settled) return;
        if (phase === 'ADDED') items.push(compact === undefined ? (obj as T) : compact(obj as T));
        else if (phase === 'BOOKMARK') {
          const annotations = (obj as { metadata?: { annotations?: Record<string, unknown> } } | null)?.metadata?.annotations;
          if (annotations?.['k8s.io/initial-events-end'] !== 'true') return;
          settle(() => {
            this.#o.replace(items);
            this.stats.streams++;
            resolve(resourceVersionOf(obj) ?? '');
          });
        } else if (phase === 'ERROR') {
          const code = (obj as { code?: unknown } | null)?.code;
          if (code === 400 || code === 422) refuse(`the server answered ${String(code)}`);
          else settle(() => reject(new Error(`streaming list error event: ${JSON.stringify(obj)}`)));
        }
      };
      const onDone = (err: unknown): void => {
        const status = (err as { statusCode?: unknown } | null)?.statusCode;
        if (status === 400 || status === 422) refuse(`the server answered ${String(status)}`);
        else settle(() => reject(err instanceof Error ? err : new Error(this.#stopped ? 'stopped' : 'streaming list ended before the initial events did')));
      };
      this.#o.watch
        .watch(this.#o.watchPath, { ...this.#o.watchParams, sendInitialEvents: true, resourceVersionMatch: 'NotOlderThan', allowWatchBookmarks: true }, onEvent, onDone)
        .then((c) => {
          ac = c;
          this.#abort = c;
          if (settled || this.#stopped) c.abort();
        })
        .catch((err: unknown) => onDone(err ?? new Error('streaming list failed')));
    });
  }

  #watch(rv: string): Promise<{ end: WatchEnd; rv: string }> {
    return new Promise((resolve, reject) => {
      let last = rv;
      let settled = false;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        clearTimeout(resync);
        this.#abort?.abort();
        resolve({ end, rv: last });
      };
      const resync = setTimeout(() => finish('resync'), this.#o.resyncMs);
      resync.unref();
      const onEvent = (phase: string, obj: unknown): void => {
        if (phase === 'ERROR') {
          const code = (obj as { code?: unknown } | null)?.code;
          if (code === 410) finish('gone');
          else {
            settled = true;
            clearTimeout(resync);
            this.#abort?.abort();
            reject(new Error(`watch error event: ${JSON.stringify(obj)}`));
          }
          return;
        }
        last = resourceVersionOf(obj) ?? last;
        if (phase === 'ADDED' || phase === 'MODIFIED') this.#o.upsert(obj as T);
        else if (phase === 'DELETED') this.#o.remove(obj as T);
      };
      const onDone = (err: unknown): void => {
        if (settled) return;
        if (err === null || err === undefined || this.#stopped) finish(this.#stopped ? 'stopped' : 'closed');
        else {
          settled = true;
          clearTimeout(resync);
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      };
      this.#o.watch
        .watch(this.#o.watchPath, { ...this.#o.watchParams, resourceVersion: rv, allowWatchBookmarks: true }, onEvent, onDone)
        .then((ac) => {
          this.#abort = ac;
          this.#downSince = null;
          this.stats.watches++;
          if (settled || this.#stopped) ac.abort();
        })
        .catch((err: unknown) => onDone(err ?? new Error('watch failed')));
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref();
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  async #run(): Promise<void> {
    let backoff = this.#o.backoffInitialMs ?? 500;
    while (!this.#stopped) {
      try {
        let rv = await this.#sync();
        this.#hasSynced = true;
        this.#downSince = null;
        backoff = this.#o.backoffInitialMs ?? 500;
        for (;;) {
          const r = await this.#watch(rv);
          if (r.end !== 'closed' || this.#stopped) break; // resync, 410 Gone or stop: relist
          rv = r.rv;
        }
      } catch (err) {
        if (this.#stopped) break;
        this.stats.failures++;
        this.#downSince ??= this.#now();
        this.#o.log.warn({ resource: this.#o.name, err: (err as Error).message, retryInMs: backoff }, 'list/watch failed; retrying');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#o.backoffMaxMs ?? 30_000);
      }
    }
  }
}
