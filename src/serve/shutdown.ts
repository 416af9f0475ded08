// Graceful shutdown. Kubernetes removes a terminating pod from the Service's endpoints while it
// sends SIGTERM, concurrently, so for a while clients still reach the pod. The sequence:
//  1. SIGTERM: readiness turns false (lifecycle.draining) and every request received from then on
//     is answered with `Connection: close`, so each keep-alive connection is closed by the server
//     right after a complete response, never while a request may be on its way.
//  2. After drainSeconds: close the listener (new connections are refused, so clients go to
//     another replica), let in-flight requests finish, close the idle connections
//     (forceCloseConnections: 'idle').
//  3. If a connection is still open after a grace period (a client trickling a body), it is
//     destroyed, so shutdown always ends before terminationGracePeriodSeconds.
import type { FastifyInstance } from 'fastify';
import type { WebhookArming } from '../jobs/arming/loop.ts';
import { ClusterCache } from '../kube/namespace-cache.ts';
import type { MetricsServer } from '../metrics/server.ts';
import type { Served } from './compose.ts';

export interface Lifecycle {
  readonly draining: boolean;
}

/** While draining, every request (including those answered 400 or 503) is answered with
 * `Connection: close`: Node writes the header and ends the connection after the response. Set
 * when the headers are read (an onRequest hook) rather than in onSend, which would put a hook
 * runner on every response. */
export function registerDrainHeaders(app: FastifyInstance, lifecycle: Lifecycle): void {
  app.addHook('onRequest', function meshguardDrainConnectionClose(req, reply, done) {
    if (lifecycle.draining && req.raw.httpVersionMajor === 1) reply.raw.shouldKeepAlive = false;
    done();
  });
}

/**
 * app.close(), but never longer than graceMs: after that every remaining connection is destroyed.
 * Resolves true when everything closed on its own.
 */
export async function closeWithin(app: FastifyInstance, graceMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const forced = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => {
      const server = app.server as { closeAllConnections?: () => void };
      server.closeAllConnections?.();
      resolve(false);
    }, graceMs);
    timer.unref();
  });
  const closed = app.close().then(() => true);
  const clean = await Promise.race([closed, forced]);
  clearTimeout(timer);
  await closed;
  return clean;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms);
  });

export interface DrainOptions {
  readonly lifecycle: { draining: boolean };
  /** Keep serving with readiness false this long (config server.drainSeconds). */
  readonly drainMs: number;
  /** Then allow this long for in-flight requests before connections are destroyed. */
  readonly graceMs: number;
}

/** The whole sequence: readiness false, serve drainMs with Connection: close, close. */
export async function drainAndClose(app: FastifyInstance, options: DrainOptions): Promise<boolean> {
  options.lifecycle.draining = true;
  if (options.drainMs > 0) await sleep(options.drainMs);
  return closeWithin(app, options.graceMs);
}

/**
 * Readiness false and Connection: close at once; keep answering for drainSeconds (the endpoints
 * update reaches every apiserver), then stop accepting, finish what is in flight (at most
 * requestTimeoutMs) and close. Background work stops at once: the Lease is released now, so
 * another replica takes over reconciling while this one still drains. Arming stops first:
 * its last check sets the webhooks to Ignore unless another ready replica answers,
 * while this one still serves for drainSeconds.
 */
export async function shutDown(served: Served, started: { readonly arming: WebhookArming | undefined; readonly metricsServer: MetricsServer | undefined }): Promise<void> {
  const { app, config, lifecycle, log, cluster } = served;
  const background = Promise.allSettled([started.arming?.stop(), served.reconciler?.stop(), served.scan?.stop().then(() => served.reports?.close()), served.managed?.stop()]);
  // Metrics stay scrapeable while draining; the listener closes with the webhook port.
  // Admission keeps its certificate and namespace cache until the listener is closed.
  const released = async (): Promise<void> => {
    await background;
    served.certs.close();
    if (cluster instanceof ClusterCache) await cluster.stop();
    await served.exceptions?.stop();
  };
  lifecycle.draining = true;
  const drained = new Promise<void>((r) => setTimeout(r, config.server.drainSeconds * 1000));
  await Promise.all([drained.then(() => drainAndClose(app, { lifecycle, drainMs: 0, graceMs: config.server.requestTimeoutMs })), drained.then(released)])
    .then(([clean]) => {
      if (!clean) log.warn('shutdown: connections still open after the grace period were closed');
    })
    .catch((err: unknown) => log.error({ err: (err as Error).message }, 'shutdown: error while closing'))
    .then(() => started.metricsServer?.close())
    .then(() => served.audit.close());
}
