// Load shedding: past saturation meshguard answers 503 (MG_OVERLOADED) at once, before reading the
// body, instead of queueing work and growing memory. The apiserver treats a non-200 answer as a
// failed call and applies the webhook's failure policy (Fail in enforce, Ignore in audit), which is
// the predictable outcome; a queue that grows until requests time out is not.
//
// Three bounds, checked in an onRequest hook (after the headers, before the body is read; a shed
// request whose body is still arriving is answered at once and its connection is closed after a
// short linger without reading the rest, see lingeringAnswer):
//  - in-flight requests, counted from the headers until the response is finished or the socket
//    closes, so requests still receiving their body count too;
//  - in-flight body bytes, from Content-Length (a chunked body counts as the body limit), so the
//    memory held by bodies is bounded by this number whatever their size;
//  - event-loop lag: a timer measures how late it fires; while the last sample is above the bound,
//    new requests are shed. After a stall, the timers phase runs before the queued connections are
//    read, so requests that queued during the stall are the ones shed.
// GET and HEAD (probes, metrics) are never counted or shed: the kubelet must still see liveness,
// and readiness must not flap with load (that would move the load to the other replicas).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody } from '../errors.ts';
import type { Recorder } from '../metrics/recorder.ts';

export interface OverloadOptions {
  /** Most requests in flight at once (headers read, response not yet finished). */
  readonly maxInFlight: number;
  /** Most declared body bytes in flight at once. A single request up to bodyLimitBytes is always
   * admitted when nothing else is in flight. */
  readonly maxInFlightBytes: number;
  /** The body limit: what a request without Content-Length counts as. */
  readonly bodyLimitBytes: number;
  /** Shed while the event loop lags more than this (ms); 0 turns lag shedding off. */
  readonly maxEventLoopDelayMs: number;
  /** How often the lag is sampled (ms; default 100). */
  readonly sampleIntervalMs?: number;
  readonly recorder?: Recorder;
  /** How long a shed connection whose body is still arriving stays open, unread, after its 503
   * was written, so the client reads the answer before the close (default 5000 ms). */
  readonly lingerMs?: number;
}

export interface LoadStats {
  readonly inFlight: number;
  readonly inFlightBytes: number;
  /** Highest in-flight count seen. */
  readonly peakInFlight: number;
  /** Requests shed, by reason. */
  readonly shed: { readonly inFlight: number; readonly bytes: number; readonly lag: number };
  /** The last lag sample (ms). */
  readonly eventLoopLagMs: number;
}

export type ShedReason = 'inFlight' | 'bytes' | 'lag';

/** The admission counters; pure bookkeeping, no timers (the lag comes from outside). */
export class LoadGauge {
  readonly #o: OverloadOptions;
  #inFlight = 0;
  #bytes = 0;
  #peak = 0;
  #lag = 0;
  readonly #shed = { inFlight: 0, bytes: 0, lag: 0 };

  constructor(o: OverloadOptions) {
    if (!(o.maxInFlight >= 1)) throw new Error(`maxInFlight must be at least 1, got ${o.maxInFlight}`);
    if (!(o.maxInFlightBytes >= 1)) throw new Error(`maxInFlightBytes must be at least 1, got ${o.maxInFlightBytes}`);
    this.#o = o;
  }

  /** Bytes a request holds, from its Content-Length header. */
  bytesOf(contentLength: string | undefined): number {
    const n = contentLength === undefined ? Number.NaN : Number(contentLength);
    return Number.isSafeInteger(n) && n >= 0 ? Math.min(n, this.#o.bodyLimitBytes) : this.#o.bodyLimitBytes;
  }

  /** undefined: admitted (and counted; call release once); else why it is shed. */
  admit(bytes: number): ShedReason | undefined {
    let reason: ShedReason | undefined;
    if (this.#o.maxEventLoopDelayMs > 0 && this.#lag > this.#o.maxEventLoopDelayMs) reason = 'lag';
    else if (this.#inFlight >= this.#o.maxInFlight) reason = 'inFlight';
    else if (this.#inFlight > 0 && this.#bytes + bytes > this.#o.maxInFlightBytes) reason = 'bytes';
    if (reason !== undefined) {
      this.#shed[reason]++;
      return reason;
    }
    this.#inFlight++;
    this.#bytes += bytes;
    if (this.#inFlight > this.#peak) this.#peak = this.#inFlight;
    return undefined;
  }

  release(bytes: number): void {
    this.#inFlight--;
    this.#bytes -= bytes;
  }

  set lagMs(ms: number) {
    this.#lag = ms;
  }

  stats(): LoadStats {
    return { inFlight: this.#inFlight, inFlightBytes: this.#bytes, peakInFlight: this.#peak, shed: { ...this.#shed }, eventLoopLagMs: this.#lag };
  }
}

const DETAIL: Readonly<Record<ShedReason, string>> = {
  inFlight: 'too many requests in flight',
  bytes: 'too many request bytes in flight',
  lag: 'the event loop is lagging',
};

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

const HELD = Symbol('meshguard.heldBytes');
type Holding = { [HELD]?: number };

/** Install the shedding hook on `app`; returns the gauge (for tests and metrics). */
export function registerOverload(app: FastifyInstance, opts: OverloadOptions): LoadGauge {
  const gauge = new LoadGauge(opts);
  // One listener for every response (no closure per request): the bytes ride on the response.
  const release = function (this: Holding): void {
    gauge.release(this[HELD] ?? 0);
  };
  const sampler = opts.maxEventLoopDelayMs > 0 ? startLagSampler(opts.sampleIntervalMs ?? 100, (ms) => (gauge.lagMs = ms)) : undefined;
  app.addHook('onClose', async function meshguardOverloadStop() {
    sampler?.stop();
  });
  app.addHook('onRequest', function meshguardOverload(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
    if (req.method === 'GET' || req.method === 'HEAD') {
      done();
      return;
    }
    const bytes = gauge.bytesOf(req.headers['content-length']);
    const shed = gauge.admit(bytes);
    if (shed === undefined) {
      // 'close' fires once the response is finished or the socket is gone: every admitted request
      // is released exactly once, including those whose client went away mid-body.
      (reply.raw as Holding)[HELD] = bytes;
      reply.raw.on('close', release);
      done();
      return;
    }
    const body = errorBody('OVERLOADED', DETAIL[shed]);
    opts.recorder?.observeRejected(req.url.split('?')[0] ?? '', body.code);
    const raw = req.raw;
    if (raw.complete) {
      // The whole body is in: an ordinary answer on a connection that stays usable.
      void reply.code(503).header('retry-after', '1').send(body);
      return;
    }
    // The body is still arriving. Reading it to the end would cost as much memory churn as the
    // requests being shed; closing at once makes the kernel reset the connection over the unread
    // bytes, and the client may lose the 503 with it. So: answer now on the socket, stop reading
    // it (the rest of the body stays in kernel buffers), and close it after a linger period in
    // which the client reads the answer (a lingering close, as nginx does).
    lingeringAnswer(reply, JSON.stringify(body), opts.lingerMs ?? 5000);
  });
  return gauge;
}

function lingeringAnswer(reply: FastifyReply, payload: string, lingerMs: number): void {
  const socket = reply.raw.socket;
  reply.hijack();
  if (socket === null || socket.destroyed) return;
  socket.pause();
  const head =
    'HTTP/1.1 503 Service Unavailable\r\n' +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(payload)}\r\n` +
    'retry-after: 1\r\n' +
    'connection: close\r\n\r\n';
  socket.write(head + payload);
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
