// Load shedding: past saturation meshguard answers 503 (MG_OVERLOADED) instead of queueing work
// and growing memory. The apiserver treats a non-200 answer as a failed call and applies the
// webhook's failure policy (Fail in enforce, Ignore in audit), which is the predictable outcome;
// a queue that grows until requests time out is not.
//
// Bounds:
//  - in-flight requests, counted from the headers until the response is finished or the socket
//    closes, so requests still receiving their body count too. Checked in an onRequest hook
//    (after the headers, before the body);
//  - in-flight body bytes, counted as they arrive (never reserved from Content-Length: a
//    connection that declares 6 MB and sends one byte a second holds one byte a second, not
//    6 MB), so the memory held by bodies is bounded by this number whatever their declared size;
//  - a minimum body rate: a body must arrive at server.minBodyBytesPerSecond after a grace of
//    server.bodyRateGraceMs from the headers; a slower one is cut (408 MG_TIMEOUT);
//  - event-loop lag: a timer measures how late it fires; while the last sample is above the bound,
//    new requests are shed. After a stall, the timers phase runs before the queued connections are
//    read, so requests that queued during the stall are the ones shed.
// The count and byte budgets are shared between sources (remote addresses): when a budget is
// full, the request cut to make room is one still receiving its body from the source that holds
// the most (max-min fairness), so one source, however many connections it opens, cannot starve
// another. A source that holds no more than the newcomer's source is never cut for it.
// GET and HEAD (probes, metrics) are never counted or shed: the kubelet must still see liveness,
// and readiness must not flap with load (that would move the load to the other replicas).
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, type ErrorBody } from '../errors.ts';
import type { Recorder } from '../metrics/recorder.ts';

export interface OverloadOptions {
  /** Most requests in flight at once (headers read, response not yet finished). */
  readonly maxInFlight: number;
  /** Most body bytes received and held at once. A single request up to the body limit is always
   * admitted when nothing else is in flight. */
  readonly maxInFlightBytes: number;
  /** Shed while the event loop lags more than this (ms); 0 turns lag shedding off. */
  readonly maxEventLoopDelayMs: number;
  /** Slowest accepted body, bytes per second after the grace; 0 turns the check off. */
  readonly minBodyBytesPerSecond: number;
  /** Time from the headers before the body rate is checked (ms). */
  readonly bodyRateGraceMs: number;
  /** How often the lag is sampled (ms; default 100). */
  readonly sampleIntervalMs?: number;
  readonly recorder?: Recorder;
  /** How long a cut connection may keep sending the rest of its body (read and discarded) after
   * its answer was written, before it is closed (default 5000 ms). */
  readonly lingerMs?: number;
}

export type ShedReason = 'inFlight' | 'bytes' | 'lag' | 'slowBody';

export interface LoadStats {
  readonly inFlight: number;
  readonly inFlightBytes: number;
  /** Highest in-flight count seen. */
  readonly peakInFlight: number;
  /** Requests shed or cut, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
  /** The last lag sample (ms). */
  readonly eventLoopLagMs: number;
  /** Sources with requests in flight. */
  readonly sources: number;
}

/** One admitted request, from its headers until its response is finished or its socket closes. */
export class Ticket {
  readonly source: string;
  /** performance.now() when the headers were read. */
  readonly startedMs: number;
  /** Body bytes received and held. */
  bytes = 0;
  /** Still receiving its body (only such requests can be cut). */
  receiving = true;
  released = false;
  /** Set when the gauge cut the request; the shell answers and closes. */
  cutFor: ShedReason | undefined;
  /** Called by the gauge when the request is cut (installed by the shell). */
  onCut: ((t: Ticket) => void) | undefined;

  constructor(source: string, startedMs: number) {
    this.source = source;
    this.startedMs = startedMs;
  }
}

interface Source {
  n: number;
  bytes: number;
  /** Its tickets still receiving a body, oldest first (insertion order). */
  readonly receiving: Set<Ticket>;
}

/** The admission bookkeeping; pure, no timers (the lag and the clock come from outside). */
export class LoadGauge {
  readonly #o: OverloadOptions;
  #inFlight = 0;
  #bytes = 0;
  #peak = 0;
  #lag = 0;
  readonly #sources = new Map<string, Source>();
  /** Every ticket still receiving a body, oldest first: what the rate sweep walks. */
  readonly #receiving = new Set<Ticket>();
  readonly #shed: Record<ShedReason, number> = { inFlight: 0, bytes: 0, lag: 0, slowBody: 0 };

  constructor(o: OverloadOptions) {
    if (!(o.maxInFlight >= 1)) throw new Error(`maxInFlight must be at least 1, got ${o.maxInFlight}`);
    if (!(o.maxInFlightBytes >= 1)) throw new Error(`maxInFlightBytes must be at least 1, got ${o.maxInFlightBytes}`);
    if (!(o.minBodyBytesPerSecond >= 0)) throw new Error(`minBodyBytesPerSecond must be 0 or more, got ${o.minBodyBytesPerSecond}`);
    this.#o = o;
  }

  #source(key: string): Source {
    let s = this.#sources.get(key);
    if (s === undefined) {
      s = { n: 0, bytes: 0, receiving: new Set() };
      this.#sources.set(key, s);
    }
    return s;
  }

  /** A receiving request of the source holding the most (by `by`): its oldest when counting
   * requests, its largest when counting bytes; undefined when that source holds no more than
   * `than` would with `extra` more (nothing fair to cut). */
  #victim(by: 'n' | 'bytes', than: Source | undefined, extra: number): Ticket | undefined {
    let worst: Source | undefined;
    for (const s of this.#sources.values()) {
      if (s.receiving.size > 0 && (worst === undefined || s[by] > worst[by])) worst = s;
    }
    if (worst === undefined) return undefined;
    if (than !== undefined && worst !== than && worst[by] <= than[by] + extra) return undefined;
    let pick: Ticket | undefined;
    for (const t of worst.receiving) {
      if (by === 'n') return t;
      if (pick === undefined || t.bytes > pick.bytes) pick = t;
    }
    return pick;
  }

  /** A Ticket: admitted (call release once); else why it is shed. `nowMs`: performance.now(). */
  admit(source: string, nowMs: number): Ticket | ShedReason {
    if (this.#o.maxEventLoopDelayMs > 0 && this.#lag > this.#o.maxEventLoopDelayMs) return this.#count('lag');
    if (this.#inFlight >= this.#o.maxInFlight) {
      // Full: make room by cutting the heaviest source's oldest receiving request, when that
      // source holds more requests than the newcomer's would after admission.
      const victim = this.#victim('n', this.#sources.get(source) ?? { n: 0, bytes: 0, receiving: new Set() }, 1);
      if (victim === undefined || victim.source === source) return this.#count('inFlight');
      this.cut(victim, 'inFlight');
    }
    const t = new Ticket(source, nowMs);
    const s = this.#source(source);
    s.n++;
    s.receiving.add(t);
    this.#receiving.add(t);
    this.#inFlight++;
    if (this.#inFlight > this.#peak) this.#peak = this.#inFlight;
    return t;
  }

  #count(reason: ShedReason): ShedReason {
    this.#shed[reason]++;
    return reason;
  }

  /**
   * `n` more body bytes arrived for `t`. Over the byte budget, requests still receiving their
   * body are cut, heaviest source first, until the budget holds again (never the only request
   * in flight). Returns false when `t` itself was cut.
   */
  addBytes(t: Ticket, n: number): boolean {
    if (t.released || t.cutFor !== undefined) return false;
    t.bytes += n;
    this.#bytes += n;
    const s = this.#sources.get(t.source);
    if (s !== undefined) s.bytes += n;
    while (this.#bytes > this.#o.maxInFlightBytes && this.#inFlight > 1) {
      const heaviest = this.#victim('bytes', undefined, 0);
      // Cutting a request that holds nothing frees nothing: then the newcomer's bytes go.
      const victim = heaviest !== undefined && heaviest.bytes > 0 ? heaviest : t;
      this.cut(victim, 'bytes');
      if (victim === t) break;
    }
    return t.cutFor === undefined;
  }

  /** The body is complete: the request is no longer cut for rate or budget. */
  bodyDone(t: Ticket): void {
    if (!t.receiving) return;
    t.receiving = false;
    this.#receiving.delete(t);
    this.#sources.get(t.source)?.receiving.delete(t);
  }

  /** Cut `t` (it stops counting at once) and tell the shell. */
  cut(t: Ticket, reason: ShedReason): void {
    if (t.cutFor !== undefined || t.released) return;
    t.cutFor = reason;
    this.#shed[reason]++;
    this.release(t);
    t.onCut?.(t);
  }

  release(t: Ticket): void {
    if (t.released) return;
    t.released = true;
    this.bodyDone(t);
    this.#inFlight--;
    this.#bytes -= t.bytes;
    const s = this.#sources.get(t.source);
    if (s !== undefined) {
      s.n--;
      s.bytes -= t.bytes;
      if (s.n === 0) this.#sources.delete(t.source);
    }
  }

  /** Cut every request whose body arrives slower than the minimum rate; returns how many. */
  sweepSlow(nowMs: number): number {
    const rate = this.#o.minBodyBytesPerSecond;
    if (rate <= 0) return 0;
    const slow: Ticket[] = [];
    for (const t of this.#receiving) {
      // Oldest first: once one is within its grace, the younger ones are too.
      if (nowMs - t.startedMs <= this.#o.bodyRateGraceMs) break;
      if (nowMs - t.startedMs > this.#o.bodyRateGraceMs + (t.bytes * 1000) / rate) slow.push(t);
    }
    for (const t of slow) this.cut(t, 'slowBody');
    return slow.length;
  }

  set lagMs(ms: number) {
    this.#lag = ms;
  }

  stats(): LoadStats {
    return { inFlight: this.#inFlight, inFlightBytes: this.#bytes, peakInFlight: this.#peak, shed: { ...this.#shed }, eventLoopLagMs: this.#lag, sources: this.#sources.size };
  }
}

const DETAIL: Readonly<Record<ShedReason, string>> = {
  inFlight: 'too many requests in flight',
  bytes: 'too many request bytes in flight',
  lag: 'the event loop is lagging',
  slowBody: 'the body arrived slower than the minimum rate (server.minBodyBytesPerSecond)',
};

function answerFor(reason: ShedReason): ErrorBody {
  return reason === 'slowBody' ? errorBody('TIMEOUT', DETAIL.slowBody) : errorBody('OVERLOADED', DETAIL[reason]);
}

/**
 * Measures event-loop lag: how late an interval timer fires. Unref'd; stop() clears it.
 */
export function startLagSampler(intervalMs: number, onSample: (lagMs: number) => void): { stop(): void } {
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    onSample(Math.max(0, now - last - intervalMs));
    last = now;
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

const TICKET = Symbol('meshguard.ticket');
type Holding = { [TICKET]?: Ticket };

/** The ticket of an admitted request (on its raw request), for the body reader. */
export function ticketOf(raw: IncomingMessage): Ticket | undefined {
  return (raw as Holding)[TICKET];
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 401: 'Unauthorized', 408: 'Request Timeout', 503: 'Service Unavailable' };

export interface Drainer {
  /**
   * Answer a request whose body may still be arriving, without losing the answer to a reset:
   * write the answer (Connection: close) on the socket now, then read and discard the rest of the
   * body, so a client that sends its whole body before it reads gets to read the answer, and end
   * the connection once the body is in (a close with unread bytes makes the kernel send a reset,
   * and the client can lose the answer with it). Nothing of the discarded body is kept. At most
   * `concurrency` connections are drained at once (discarding costs TLS decryption and garbage
   * at the sender's speed), each for at most `lingerMs`; the others wait, unread, for a turn
   * (at most `waitMs`), their answer already on its way to the client.
   */
  answer(raw: IncomingMessage, socket: Socket | null, body: ErrorBody): void;
}

export interface DrainerOptions {
  /** How long a connection may keep sending once its rest is being read (ms). */
  readonly lingerMs: number;
  /** Connections read and discarded at once. */
  readonly concurrency: number;
  /** How long a connection may wait, unread, for its turn (ms; default 6 x lingerMs): its client
   * has the answer to read meanwhile. */
  readonly waitMs?: number;
  /** Most connections waiting for a turn; past it the longest-waiting one is closed (default 4096). */
  readonly maxWaiting?: number;
}

export function createDrainer(o: DrainerOptions): Drainer {
  let active = 0;
  const waitMs = o.waitMs ?? 6 * o.lingerMs;
  const maxWaiting = o.maxWaiting ?? 4096;
  // Insertion-ordered: the first entry has waited longest.
  const waiting = new Set<{ readonly start: () => void; readonly socket: Socket }>();
  const next = (): void => {
    for (const w of waiting) {
      if (active >= o.concurrency) return;
      waiting.delete(w);
      w.start();
    }
  };
  return {
    answer(raw, socket, body) {
      if (socket === null || socket.destroyed) return;
      const payload = JSON.stringify(body);
      const head =
        `HTTP/1.1 ${body.statusCode} ${STATUS_TEXT[body.statusCode] ?? 'Error'}\r\n` +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(payload)}\r\n` +
        (body.statusCode === 503 ? 'retry-after: 1\r\n' : '') +
        'connection: close\r\n\r\n';
      // Whoever else listened for the body (the body reader) stops receiving it.
      raw.removeAllListeners('data');
      socket.pause();
      socket.write(head + payload);
      const finish = (): void => {
        if (!socket.destroyed) socket.end();
      };
      let timer = setTimeout(() => socket.destroy(), raw.complete ? o.lingerMs : waitMs);
      timer.unref();
      if (raw.complete) {
        socket.once('close', () => clearTimeout(timer));
        finish();
        // Read on, so the client's close is seen (nothing more is dispatched on this connection:
        // its current response never finishes).
        socket.resume();
        return;
      }
      let started = false;
      const start = (): void => {
        if (socket.destroyed) return;
        started = true;
        active++;
        clearTimeout(timer);
        timer = setTimeout(() => socket.destroy(), o.lingerMs);
        timer.unref();
        raw.on('data', () => {});
        raw.once('end', finish);
        raw.resume();
        socket.resume();
      };
      const entry = { start, socket };
      socket.once('close', () => {
        clearTimeout(timer);
        if (started) {
          active--;
          next();
        } else {
          waiting.delete(entry);
        }
      });
      if (waiting.size >= maxWaiting) {
        // Full: the connection that has waited longest (and had longest to read its answer) goes.
        for (const oldest of waiting) {
          waiting.delete(oldest);
          oldest.socket.destroy();
          break;
        }
      }
      waiting.add(entry);
      next();
    },
  };
}

/** Install the shedding hook on `app`; returns the gauge (for tests and metrics). */
export function registerOverload(app: FastifyInstance, opts: OverloadOptions): LoadGauge {
  const gauge = new LoadGauge(opts);
  const drainer = createDrainer({ lingerMs: opts.lingerMs ?? 5000, concurrency: 8 });
  // One listener for every response (no closure per request): the ticket rides on the response.
  const release = function (this: Holding): void {
    const t = this[TICKET];
    if (t !== undefined) gauge.release(t);
  };
  const sampler = opts.maxEventLoopDelayMs > 0 ? startLagSampler(opts.sampleIntervalMs ?? 100, (ms) => (gauge.lagMs = ms)) : undefined;
  // The rate sweep: one timer for all requests, a quarter of the grace (at most 1 s) apart.
  let sweeper: NodeJS.Timeout | undefined;
  if (opts.minBodyBytesPerSecond > 0) {
    const every = Math.max(50, Math.min(1000, opts.bodyRateGraceMs / 4));
    let last = performance.now();
    sweeper = setInterval(() => {
      const now = performance.now();
      // A sweep that fires late follows an event-loop stall: bodies that arrived meanwhile may
      // still be unread in kernel buffers (timers run before I/O is polled), so judge them at
      // the next sweep rather than cut a fast sender for the server's own pause.
      const late = now - last > 2 * every;
      last = now;
      if (!late) gauge.sweepSlow(now);
    }, every);
    sweeper.unref();
  }
  app.addHook('onClose', async function meshguardOverloadStop() {
    sampler?.stop();
    if (sweeper !== undefined) clearInterval(sweeper);
  });
  app.addHook('onRequest', function meshguardOverload(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
    if (req.method === 'GET' || req.method === 'HEAD') {
      done();
      return;
    }
    const admitted = gauge.admit(req.socket.remoteAddress ?? '', performance.now());
    if (typeof admitted !== 'string') {
      const raw = req.raw;
      admitted.onCut = (t) => {
        const body = answerFor(t.cutFor ?? 'bytes');
        opts.recorder?.observeRejected(req.url.split('?')[0] ?? '', body.code);
        reply.hijack();
        drainer.answer(raw, raw.socket, body);
      };
      // 'close' fires once the response is finished or the socket is gone: every admitted request
      // is released exactly once, including those whose client went away mid-body.
      (raw as Holding)[TICKET] = admitted;
      (reply.raw as Holding)[TICKET] = admitted;
      reply.raw.on('close', release);
      done();
      return;
    }
    const body = answerFor(admitted);
    opts.recorder?.observeRejected(req.url.split('?')[0] ?? '', body.code);
    if (req.raw.complete) {
      // The whole body is in: an ordinary answer on a connection that stays usable.
      void reply.code(503).header('retry-after', '1').send(body);
      return;
    }
    reply.hijack();
    drainer.answer(req.raw, req.raw.socket, body);
  });
  return gauge;
}
