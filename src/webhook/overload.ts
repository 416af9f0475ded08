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
// GET and HEAD (probes, metrics) are never counted or shed: the kubelet must still see liveness,
// and readiness must not flap with load (that would move the load to the other replicas).
// The bookkeeping (budgets shared fairly between sources) is the pure LoadGauge (load-gauge.ts);
// answering a request whose body is still arriving is the Drainer's (drainer.ts). This file is
// the Fastify shell: the hook that admits, the timers that sample the lag and sweep slow bodies.
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, type ErrorBody } from '../errors.ts';
import type { Recorder } from '../metrics/recorder.ts';
import { createDrainer } from './drainer.ts';
import { LoadGauge, type LoadLimits, type ShedReason, type Ticket } from './load-gauge.ts';

export interface OverloadOptions extends LoadLimits {
  /** How often the lag is sampled (ms; default 100). */
  readonly sampleIntervalMs?: number;
  readonly recorder?: Recorder;
  /** How long a cut connection may keep sending the rest of its body (read and discarded) after
   * its answer was written, before it is closed (default 5000 ms). */
  readonly lingerMs?: number;
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

/** Install the shedding hook on `app`; returns the gauge (for tests and metrics). */
export function registerOverload(app: FastifyInstance, options: OverloadOptions): LoadGauge {
  const gauge = new LoadGauge(options);
  const drainer = createDrainer({ lingerMs: options.lingerMs ?? 5000, concurrency: 8 });
  // One listener for every response (no closure per request): the ticket rides on the response.
  const release = function (this: Holding): void {
    const t = this[TICKET];
    if (t !== undefined) gauge.release(t);
  };
  const sampler = options.maxEventLoopDelayMs > 0 ? startLagSampler(options.sampleIntervalMs ?? 100, (ms) => (gauge.lagMs = ms)) : undefined;
  // The rate sweep: one timer for all requests, a quarter of the grace (at most 1 s) apart.
  let sweeper: NodeJS.Timeout | undefined;
  if (options.minBodyBytesPerSecond > 0) {
    const every = Math.max(50, Math.min(1000, options.bodyRateGraceMs / 4));
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
        options.recorder?.observeRejected(req.url.split('?')[0] ?? '', body.code);
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
    options.recorder?.observeRejected(req.url.split('?')[0] ?? '', body.code);
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
