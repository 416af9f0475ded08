// The pieces of a list-watch sync that stand on their own: the stall watchdog, the error a stall
// raises, and the streaming list (Kubernetes' WatchList, see ListWatchOptions.streamingList).
// ListWatch (list-watch.ts) owns the state and the relist loop; these report back through a
// small context.
import type { ListWatchOptions } from './list-watch.ts';

/** Nothing arrived within the bound: a watch, a streaming list or a list page stalled. */
export class StallError extends Error {
  override readonly name = 'StallError';
}

export function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

/** A timer that checks, a few times per staleness bound, whether `since()` is older than it. */
export function watchdog(now: () => number, staleAfterMs: number, since: () => number, onStall: (silentMs: number) => void): ReturnType<typeof setInterval> {
  const every = Math.max(100, Math.min(1000, staleAfterMs / 4));
  const timer = setInterval(() => {
    const silentMs = now() - since();
    if (silentMs > staleAfterMs) onStall(silentMs);
  }, every);
  timer.unref();
  return timer;
}

/** What the streaming list needs of its ListWatch. */
export interface StreamListContext<T> {
  readonly options: ListWatchOptions<T>;
  readonly now: () => number;
  stopped(): boolean;
  /** An object arrived: word from the apiserver. */
  progress(): void;
  /** The watch request is open: stop() aborts it through this controller. */
  opened(controller: AbortController): void;
}

/**
 * A watch with sendInitialEvents=true: ADDED events for every existing object, then a bookmark
 * annotated k8s.io/initial-events-end, whose resourceVersion the regular watch continues from
 * (this watch is closed there; ListWatch opens the next one). Hands the objects to
 * options.replace and resolves the resourceVersion, or undefined when the server refused
 * streaming lists (the caller uses paged lists from then on); rejects on any other failure (the
 * caller backs off and retries).
 */
export function streamList<T>(ctx: StreamListContext<T>): Promise<string | undefined> {
  const { options, now } = ctx;
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    let settled = false;
    let ac: AbortController | undefined;
    let lastEvent = now();
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(stallTimer);
      ac?.abort();
      f();
    };
    const refuse = (why: string): void =>
      settle(() => {
        options.log.info({ resource: options.name, reason: why }, 'streaming list not available; using paged lists');
        resolve(undefined);
      });
    const timeoutMs = options.initialEventsTimeoutMs ?? 60_000;
    const compact = options.compact;
    const timer = setTimeout(() => refuse(`no end of the initial events within ${timeoutMs / 1000} s`), timeoutMs);
    timer.unref();
    // Silence past the bound: after some objects, the pattern of a server that ignored
    // sendInitialEvents (it sends what exists, then nothing); before any, a stalled connection,
    // retried as a failure with streaming lists still on.
    const stallTimer = watchdog(
      now,
      options.staleAfterMs,
      () => lastEvent,
      (silentMs) => {
        if (items.length > 0) refuse(`no end of the initial events after ${Math.round(silentMs / 1000)} s of silence`);
        else settle(() => reject(new StallError(`streaming list: nothing received for ${Math.round(silentMs / 1000)} s`)));
      },
    );
    const onEvent = (phase: string, obj: unknown): void => {
      if (settled) return;
      lastEvent = now();
      ctx.progress();
      if (phase === 'ADDED') items.push(compact === undefined ? (obj as T) : compact(obj as T));
      else if (phase === 'BOOKMARK') {
        const annotations = (obj as { metadata?: { annotations?: Record<string, unknown> } } | null)?.metadata?.annotations;
        if (annotations?.['k8s.io/initial-events-end'] !== 'true') return;
        settle(() => {
          options.replace(items);
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
      else settle(() => reject(err instanceof Error ? err : new Error(ctx.stopped() ? 'stopped' : 'streaming list ended before the initial events did')));
    };
    options.watch
      .watch(options.watchPath, { ...options.watchParams, sendInitialEvents: true, resourceVersionMatch: 'NotOlderThan', allowWatchBookmarks: true }, onEvent, onDone)
      .then((c) => {
        ac = c;
        ctx.opened(c);
        if (settled || ctx.stopped()) c.abort();
      })
      .catch((err: unknown) => onDone(err ?? new Error('streaming list failed')));
  });
}
