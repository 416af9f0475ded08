// List then watch one resource through @kubernetes/client-node, keeping a local copy current:
// paged list (or a streaming list, see streamingList), watch from the list's resourceVersion,
// re-watch after a clean end, relist after an error, a 410 Gone or the resync period, exponential
// backoff between failures. Readiness: synced once the first list completed, and unsynced again
// once nothing has been heard from the apiserver for longer than the staleness bound.
//
// A connection that stops carrying bytes without being reset (a blackholed link, a hung proxy)
// raises no error: a watch on it just looks quiet. So quiet must have a bound: each watch asks the
// server to end it cleanly after half the staleness bound (timeoutSeconds; watch bookmarks carry
// the resourceVersion forward), every event, bookmark and clean end counts as word from the
// apiserver, and a watch that has been silent past the bound is abandoned as stalled and the copy
// relisted. List pages have a timeout too. So a stalled watch or list shows in problem() within
// the bound, however quiet the resource is.
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
  /** One page. `signal` aborts it when the page timed out or the ListWatch stopped. */
  list(page: { limit: number; _continue?: string; signal: AbortSignal }): Promise<Listed<T>>;
  readonly watch: Pick<Watch, 'watch'>;
  readonly watchPath: string;
  readonly watchParams?: Readonly<Record<string, string>>;
  replace(items: readonly T[]): void;
  upsert(item: T): void;
  remove(item: T): void;
  readonly resyncMs: number;
  /** Readiness bound: the copy is stale once nothing was heard for this long (see the header). */
  readonly staleAfterMs: number;
  /** How long one list page may take (default: staleAfterMs, at least 5 s). */
  readonly listTimeoutMs?: number;
  /** timeoutSeconds of each watch (default: half of staleAfterMs, at least 1 s). */
  readonly watchTimeoutSeconds?: number;
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

/** Nothing arrived within the bound: a watch, a streaming list or a list page stalled. */
export class StallError extends Error {
  override readonly name = 'StallError';
}

function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

export class ListWatch<T> {
  readonly #o: ListWatchOptions<T>;
  readonly #now: () => number;
  #stopped = false;
  #hasSynced = false;
  /** When the apiserver was last heard from on this resource (sync, watch start, event, bookmark, clean end). */
  #lastHeard = 0;
  /** Why the last attempt failed, until the apiserver is heard from again. */
  #lastFailure: 'error' | 'stall' | undefined;
  #abort: AbortController | undefined;
  readonly #stopSignal = new AbortController();
  #wake: (() => void) | undefined;
  #done: Promise<void> | undefined;
  /** Counters for tests and metrics: paged lists, streaming lists, watches, failures, stalls. */
  readonly stats = { lists: 0, streams: 0, watches: 0, failures: 0, stalls: 0 };
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
    this.#stopSignal.abort();
    this.#abort?.abort();
    this.#wake?.();
    await this.#done;
  }

  /** undefined when healthy; otherwise why the copy cannot be trusted. */
  problem(): string | undefined {
    if (!this.#hasSynced) return `${this.#o.name}: initial list not completed`;
    const silentMs = this.#now() - this.#lastHeard;
    if (silentMs <= this.#o.staleAfterMs) return undefined;
    const s = Math.round(silentMs / 1000);
    const bound = this.#o.staleAfterMs / 1000;
    return this.#lastFailure === 'error'
      ? `${this.#o.name}: watch down for ${s} s (bound ${bound} s)`
      : `${this.#o.name}: watch stalled: nothing received for ${s} s (bound ${bound} s)`;
  }

  /** The apiserver answered: the copy is current as of now. */
  #heard(): void {
    this.#lastHeard = this.#now();
    this.#lastFailure = undefined;
  }

  /** A list page or streamed object arrived: word from the apiserver, unless the copy is being
   * rebuilt after a failure (then only the completed sync makes it current again). */
  #progress(): void {
    if (this.#lastFailure === undefined && this.#hasSynced) this.#lastHeard = this.#now();
  }

  /** A timer that checks, a few times per staleness bound, whether `since()` is older than it. */
  #watchdog(since: () => number, onStall: (silentMs: number) => void): ReturnType<typeof setInterval> {
    const every = Math.max(100, Math.min(1000, this.#o.staleAfterMs / 4));
    const timer = setInterval(() => {
      const silentMs = this.#now() - since();
      if (silentMs > this.#o.staleAfterMs) onStall(silentMs);
    }, every);
    timer.unref();
    return timer;
  }

  /** One list page, abandoned (and its request aborted) after listTimeoutMs. */
  async #page(limit: number, cont: string | undefined): Promise<Listed<T>> {
    const timeoutMs = this.#o.listTimeoutMs ?? Math.max(this.#o.staleAfterMs, 5000);
    const ac = new AbortController();
    const onStop = (): void => ac.abort();
    this.#stopSignal.signal.addEventListener('abort', onStop, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort();
        reject(new StallError(`list page not answered within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([this.#o.list({ limit, ...(cont !== undefined ? { _continue: cont } : {}), signal: ac.signal }), timedOut]);
    } finally {
      clearTimeout(timer);
      this.#stopSignal.signal.removeEventListener('abort', onStop);
    }
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
      const page = await this.#page(this.#o.pageSize ?? 500, cont);
      this.#progress();
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
      let lastEvent = this.#now();
      const settle = (f: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearInterval(watchdog);
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
      // Silence past the bound: after some objects, the pattern of a server that ignored
      // sendInitialEvents (it sends what exists, then nothing); before any, a stalled connection,
      // retried as a failure with streaming lists still on.
      const watchdog = this.#watchdog(
        () => lastEvent,
        (silentMs) => {
          if (items.length > 0) refuse(`no end of the initial events after ${Math.round(silentMs / 1000)} s of silence`);
          else settle(() => reject(new StallError(`streaming list: nothing received for ${Math.round(silentMs / 1000)} s`)));
        },
      );
      const onEvent = (phase: string, obj: unknown): void => {
        if (settled) return;
        lastEvent = this.#now();
        this.#progress();
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

  /** One watch from rv until it ends: cleanly (the server's timeoutSeconds), at the resync time
   * (resyncInMs from now), on 410 Gone, on stop, or with an error (rejects; a StallError when
   * nothing arrived within the staleness bound). */
  #watch(rv: string, resyncInMs: number): Promise<{ end: WatchEnd; rv: string }> {
    return new Promise((resolve, reject) => {
      let last = rv;
      let settled = false;
      let ac: AbortController | undefined;
      const stopTimers = (): void => {
        settled = true;
        clearTimeout(resync);
        clearInterval(watchdog);
        ac?.abort();
      };
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        stopTimers();
        resolve({ end, rv: last });
      };
      const fail = (err: Error): void => {
        if (settled) return;
        stopTimers();
        reject(err);
      };
      const resync = setTimeout(() => finish('resync'), Math.max(0, resyncInMs));
      resync.unref();
      const watchdog = this.#watchdog(
        () => this.#lastHeard,
        (silentMs) => {
          this.stats.stalls++;
          fail(new StallError(`watch stalled: no event, bookmark or end for ${Math.round(silentMs / 1000)} s`));
        },
      );
      const onEvent = (phase: string, obj: unknown): void => {
        if (settled) return;
        if (phase === 'ERROR') {
          const code = (obj as { code?: unknown } | null)?.code;
          if (code === 410) finish('gone');
          else fail(new Error(`watch error event: ${JSON.stringify(obj)}`));
          return;
        }
        this.#heard();
        last = resourceVersionOf(obj) ?? last;
        if (phase === 'ADDED' || phase === 'MODIFIED') this.#o.upsert(obj as T);
        else if (phase === 'DELETED') this.#o.remove(obj as T);
      };
      const onDone = (err: unknown): void => {
        if (settled) return;
        if (this.#stopped) finish('stopped');
        else if (err === null || err === undefined) {
          // The server ended the watch (timeoutSeconds): word from it, and a re-watch from `last`.
          this.#heard();
          finish('closed');
        } else fail(err instanceof Error ? err : new Error(String(err)));
      };
      const timeoutSeconds = this.#o.watchTimeoutSeconds ?? Math.max(1, Math.floor(this.#o.staleAfterMs / 2000));
      this.#o.watch
        .watch(this.#o.watchPath, { ...this.#o.watchParams, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone)
        .then((c) => {
          ac = c;
          this.#abort = c;
          if (settled || this.#stopped) {
            c.abort();
            return;
          }
          // client-node resolves once the server answered 200: the watch is established.
          this.#heard();
          this.stats.watches++;
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
        this.#heard();
        backoff = this.#o.backoffInitialMs ?? 500;
        const resyncAt = this.#now() + this.#o.resyncMs;
        for (;;) {
          const r = await this.#watch(rv, resyncAt - this.#now());
          if (r.end !== 'closed' || this.#stopped) break; // resync, 410 Gone or stop: relist
          rv = r.rv;
        }
      } catch (err) {
        if (this.#stopped) break;
        this.stats.failures++;
        const stalled = err instanceof StallError;
        // A stall stays a stall while the retries time out too; an error replaces it.
        if (!stalled || this.#lastFailure === undefined) this.#lastFailure = stalled ? 'stall' : 'error';
        this.#abort?.abort();
        this.#o.log.warn({ resource: this.#o.name, err: (err as Error).message, retryInMs: backoff }, 'list/watch failed; retrying');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#o.backoffMaxMs ?? 30_000);
      }
    }
  }
}
