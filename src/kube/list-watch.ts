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
import { nextContinue, pageParams } from './client.ts';
import { sleep } from './sleep.ts';
import { resourceVersionOf, StallError, streamList, watchdog } from './stream-list.ts';

export interface Listed<T> {
  readonly items: T[];
  readonly metadata?: { readonly resourceVersion?: string | undefined; readonly _continue?: string | undefined } | undefined;
}

/** One list page as ListWatch asks for it. `signal` aborts it when the page timed out or the
 * ListWatch stopped. */
export interface ListPage {
  readonly limit: number;
  readonly _continue?: string;
  readonly signal: AbortSignal;
}

export interface ListWatchLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ListWatchOptions<T> {
  readonly name: string;
  list(page: ListPage): Promise<Listed<T>>;
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

export class ListWatch<T> {
  readonly #options: ListWatchOptions<T>;
  readonly #now: () => number;
  #stopped = false;
  #hasSynced = false;
  /** When the apiserver was last heard from on this resource (sync, watch start, event, bookmark, clean end). */
  #lastHeard = 0;
  /** Why the last attempt failed, until the apiserver is heard from again. */
  #lastFailure: 'error' | 'stall' | undefined;
  #abort: AbortController | undefined;
  readonly #stopSignal = new AbortController();
  #done: Promise<void> | undefined;
  /** Counters for tests and metrics: paged lists, streaming lists, watches, failures, stalls. */
  readonly stats = { lists: 0, streams: 0, watches: 0, failures: 0, stalls: 0 };
  /** Set once the server refused a streaming list: paged lists from then on. */
  #streamingOff = false;

  constructor(options: ListWatchOptions<T>) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    this.#done ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopSignal.abort();
    this.#abort?.abort();
    await this.#done;
  }

  /** undefined when healthy; otherwise why the copy cannot be trusted. */
  problem(): string | undefined {
    if (!this.#hasSynced) return `${this.#options.name}: initial list not completed`;
    const silentMs = this.#now() - this.#lastHeard;
    if (silentMs <= this.#options.staleAfterMs) return undefined;
    const s = Math.round(silentMs / 1000);
    const bound = this.#options.staleAfterMs / 1000;
    return this.#lastFailure === 'error'
      ? `${this.#options.name}: watch down for ${s} s (bound ${bound} s)`
      : `${this.#options.name}: watch stalled: nothing received for ${s} s (bound ${bound} s)`;
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

  /** One list page, abandoned (and its request aborted) after listTimeoutMs. */
  async #page(limit: number, cont: string | undefined): Promise<Listed<T>> {
    const timeoutMs = this.#options.listTimeoutMs ?? Math.max(this.#options.staleAfterMs, 5000);
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
      return await Promise.race([this.#options.list({ ...pageParams(limit, cont), signal: ac.signal }), timedOut]);
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
    const compact = this.#options.compact;
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.#page(this.#options.pageSize ?? 500, cont);
      this.#progress();
      for (const item of page.items) items.push(compact === undefined ? item : compact(item));
      rv = page.metadata?.resourceVersion ?? rv;
      cont = nextContinue(page.metadata?._continue);
    } while (cont !== undefined);
    this.#options.replace(items);
    this.stats.lists++;
    return rv;
  }

  /** The initial sync: a streaming list when configured and not refused, else a paged list. */
  async #sync(): Promise<string> {
    if (this.#options.streamingList !== true || this.#streamingOff) return this.#listAll();
    const streamed = await streamList({
      options: this.#options,
      now: this.#now,
      stopped: () => this.#stopped,
      progress: () => this.#progress(),
      opened: (c) => (this.#abort = c),
    });
    if (streamed !== undefined) {
      this.stats.streams++;
      return streamed;
    }
    this.#streamingOff = true;
    return this.#listAll();
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
        clearInterval(stallTimer);
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
      const stallTimer = watchdog(
        this.#now,
        this.#options.staleAfterMs,
        () => this.#lastHeard,
        (silentMs) => {
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
        if (phase === 'ADDED' || phase === 'MODIFIED') this.#options.upsert(obj as T);
        else if (phase === 'DELETED') this.#options.remove(obj as T);
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
      const timeoutSeconds = this.#options.watchTimeoutSeconds ?? Math.max(1, Math.floor(this.#options.staleAfterMs / 2000));
      this.#options.watch
        .watch(this.#options.watchPath, { ...this.#options.watchParams, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone)
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

  async #run(): Promise<void> {
    let backoff = this.#options.backoffInitialMs ?? 500;
    while (!this.#stopped) {
      try {
        let rv = await this.#sync();
        this.#hasSynced = true;
        this.#heard();
        backoff = this.#options.backoffInitialMs ?? 500;
        const resyncAt = this.#now() + this.#options.resyncMs;
        for (;;) {
          const r = await this.#watch(rv, resyncAt - this.#now());
          if (r.end !== 'closed' || this.#stopped) break; // resync, 410 Gone or stop: relist
          rv = r.rv;
        }
      } catch (err) {
        if (this.#stopped) break;
        this.stats.failures++;
        const stalled = err instanceof StallError;
        if (stalled) this.stats.stalls++;
        // A stall stays a stall while the retries time out too; an error replaces it.
        if (!stalled || this.#lastFailure === undefined) this.#lastFailure = stalled ? 'stall' : 'error';
        this.#abort?.abort();
        this.#options.log.warn({ resource: this.#options.name, err: (err as Error).message, retryInMs: backoff }, 'list/watch failed; retrying');
        await sleep(backoff, this.#stopSignal.signal);
        backoff = Math.min(backoff * 2, this.#options.backoffMaxMs ?? 30_000);
      }
    }
  }
}
