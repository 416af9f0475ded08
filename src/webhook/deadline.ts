// Per-request deadline from the apiserver's `timeout` query parameter (`/validate?timeout=10s`, a
// Go duration). Evaluation itself is synchronous and takes well under a millisecond; what can
// overrun is everything before it: waiting in the event-loop queue behind other requests, and a
// body that arrives slowly. When evaluation would start after `timeout - margin` (measured from
// the moment the request's headers were read), meshguard does not evaluate: it answers the mode's
// deterministic answer at once, so the apiserver gets a decision instead of timing out:
//   enforce: denied (403), the message says meshguard was overloaded and the request can be retried;
//   audit:   allowed, with a warning that the request was not evaluated.
// The mode is the namespace's effective mode (global mode unless a trusted meshguard.dev/mode
// label says otherwise), the same one the rules would have been judged under. Both endpoints
// answer the same way: a mutation that cannot run in time is refused in enforce mode rather than
// silently skipped.
import type { FastifyInstance } from 'fastify';
import { encodeDecision, type AdmissionReviewV1Response } from './encode.ts';
import type { AdmissionRequest } from '../core/request.ts';
import type { ClusterView } from '../core/cluster-view.ts';
import type { Config, Mode } from '../config/types.ts';
import { decideUnevaluated, unevaluated } from '../core/decide.ts';

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign
  'μs': 1e-3, // U+03BC Greek mu
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION = /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h)/;
const PART = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;

/**
 * A Go `time.Duration` string ("10s", "1m30s", "2.5s", "500ms", "0") in milliseconds; undefined
 * when it is not one (or is negative, or absurdly long). The apiserver formats the webhook
 * timeout with Duration.String().
 */
export function parseGoDuration(text: string): number | undefined {
  if (text === '0') return 0;
  if (text.length === 0 || text.length > 64 || !DURATION.test(text)) return undefined;
  let rest = text;
  let total = 0;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (m === null) return undefined;
    const [whole, num, unit] = m;
    total += Number(num) * (UNIT_MS[unit ?? ''] ?? Number.NaN);
    rest = rest.slice(whole.length);
  }
  return Number.isFinite(total) && total <= 24 * 3_600_000 ? total : undefined;
}

export interface RequestDeadline {
  /** performance.now() when the headers were read. */
  readonly receivedAt: number;
  /** The apiserver's timeout for this call, in ms. */
  readonly timeoutMs: number;
  /** Evaluation must start before this performance.now() value. */
  readonly startBy: number;
}

/** The apiserver sends the same `?timeout=` on every call of a webhook: the last text and its
 * value are kept, so a request pays a string comparison instead of the parse. */
let lastTimeoutText: string | undefined;
let lastTimeoutMs: number | undefined;

function timeoutMsOf(text: string): number | undefined {
  if (text !== lastTimeoutText) {
    lastTimeoutMs = parseGoDuration(text);
    lastTimeoutText = text;
  }
  return lastTimeoutMs;
}

/** The deadline for a request received at `receivedAt` with `?timeout=<text>`; undefined without
 * a usable timeout (then nothing is cut short). */
export function deadlineFor(text: string | undefined, receivedAt: number, marginPercent: number): RequestDeadline | undefined {
  const timeoutMs = text === undefined ? undefined : timeoutMsOf(text);
  if (timeoutMs === undefined || timeoutMs <= 0) return undefined;
  return { receivedAt, timeoutMs, startBy: receivedAt + (timeoutMs * (100 - marginPercent)) / 100 };
}

export interface DeadlineOptions {
  /** Share of the apiserver's timeout kept in reserve for sending the answer (0-90). */
  readonly marginPercent: number;
  /** Clock (tests); default performance.now. */
  readonly now?: () => number;
}

interface Tracked {
  readonly deadline: RequestDeadline;
  readonly now: () => number;
}

// Kept on the raw request itself (a symbol-keyed property): a WeakMap entry per request costs the
// garbage collector an ephemeron per request.
const DEADLINE = Symbol('meshguard.deadline');
type WithDeadline = { [DEADLINE]?: Tracked };

/**
 * The first `timeout` value of a request URL's query ("/validate?timeout=10s" -> "10s"), found
 * without parsing the whole query into an object; undefined when there is none.
 */
export function timeoutParam(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  let at = q + 1;
  while (at < url.length) {
    let end = url.indexOf('&', at);
    if (end < 0) end = url.length;
    if (url.startsWith('timeout=', at)) {
      const raw = url.slice(at + 8, end);
      if (!raw.includes('%') && !raw.includes('+')) return raw;
      try {
        return decodeURIComponent(raw.replaceAll('+', ' '));
      } catch {
        return undefined;
      }
    }
    at = end + 1;
  }
  return undefined;
}

/** Record each request's deadline when its headers are read (before the body is received). */
export function registerDeadlines(app: FastifyInstance, opts: DeadlineOptions): void {
  if (!(opts.marginPercent >= 0 && opts.marginPercent <= 90)) throw new Error(`deadline marginPercent must be 0-90, got ${opts.marginPercent}`);
  const now = opts.now ?? (() => performance.now());
  app.addHook('onRequest', function meshguardDeadline(req, _reply, done) {
    const deadline = deadlineFor(timeoutParam(req.url), now(), opts.marginPercent);
    if (deadline !== undefined) (req.raw as WithDeadline)[DEADLINE] = { deadline, now };
    done();
  });
}

export interface OverdueAnswer {
  readonly response: AdmissionReviewV1Response;
  readonly verdict: 'denied' | 'warned';
  readonly mode: Mode;
  /** How late evaluation would have started, in ms. */
  readonly lateByMs: number;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`;
}

function overloaded(timeoutMs: number): string {
  return `meshguard was overloaded and could not evaluate this request within the apiserver's ${seconds(timeoutMs)} timeout`;
}

/** The deterministic answer for a request evaluated too late, in this mode. */
export function overdueResponse(request: AdmissionRequest, mode: Mode, timeoutMs: number): AdmissionReviewV1Response {
  return encodeDecision(request.uid, unevaluated(mode, overloaded(timeoutMs)).decision);
}

/**
 * undefined when evaluation may go ahead (no deadline, or still in time); otherwise the answer
 * the core decides for a request it could not evaluate. Call it after the body was decoded and
 * before evaluating.
 */
export function overdueAnswer(
  raw: object,
  request: AdmissionRequest,
  config: Config,
  cluster: ClusterView,
  at?: number,
): OverdueAnswer | undefined {
  const tracked = (raw as WithDeadline)[DEADLINE];
  if (tracked === undefined) return undefined;
  const d = tracked.deadline;
  const now = at ?? tracked.now();
  if (now < d.startBy) return undefined;
  const answer = decideUnevaluated(config, request, cluster, overloaded(d.timeoutMs));
  return { response: encodeDecision(request.uid, answer.decision), verdict: answer.verdict, mode: answer.mode, lateByMs: now - d.startBy };
}
