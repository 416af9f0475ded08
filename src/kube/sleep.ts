// The wait between the rounds of a background loop (list-watch backoff, leader election): unref'd,
// so it never keeps the process alive, and cut short when the loop's stop signal aborts.
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal, ref: false }).catch(() => undefined);
}
