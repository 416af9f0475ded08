// buildApp(config, deps): the Fastify app as a plugin-shaped unit. Never listens; main.ts and the
// tests decide how it is served (real HTTPS, or inject()).
import Fastify, {
  LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { ServerOptions as HttpsOptions } from 'node:https';
import type { ClusterState } from './core/cluster-view.ts';
import type { Config } from './config/types.ts';
import type { RuleSet } from './core/pipeline.ts';
import { errorBody, type ErrorName } from './errors.ts';
import { noopRecorder, type Recorder } from './metrics/recorder.ts';
import { nullAuditSink, type AuditSink } from './webhook/audit-sink.ts';
import { registerAdmissionRoutes } from './webhook/routes.ts';
import { parseJsonBody, PoisonedBodyError } from './webhook/json-body.ts';
import { registerHealthRoutes, type ReadinessCheck } from './webhook/health.ts';
import { registerDeadlines } from './webhook/deadline.ts';
import { createDrainer, registerOverload } from './webhook/overload.ts';
import { readBody } from './webhook/body-reader.ts';
import type { TLSSocket } from 'node:tls';
import { registerDrainHeaders } from './serve/shutdown.ts';

export interface AppDeps {
  readonly cluster: ClusterState;
  readonly rules: RuleSet;
  readonly recorder?: Recorder;
  readonly audit?: AuditSink;
  /** Extra readiness checks (certificates loaded, caches synced, ...). */
  readonly readiness?: readonly ReadinessCheck[];
  /** https options when served over TLS; omitted for inject()-only tests. */
  readonly https?: HttpsOptions;
  /** Shared lifecycle flags: main.ts sets draining on SIGTERM so readiness fails first. */
  readonly lifecycle?: { draining: boolean };
  /** meshguard's own log (serve passes a pino logger); silent when omitted, as in most tests. */
  readonly log?: AppLog;
}

/** The log the app writes to: pino's methods, as far as meshguard uses them. */
export interface AppLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const silentLog: AppLog = { info() {}, warn() {}, error() {} };

/** Fastify's own error codes mapped to meshguard's coded errors. */
const FASTIFY_CODES: Readonly<Record<string, ErrorName>> = {
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BODY_MISSING',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'CONTENT_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BODY_NOT_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BODY_NOT_JSON',
  MG_BODY_POISONED: 'BODY_POISONED',
};

function errorName(err: FastifyError): ErrorName {
  const mapped = err.code === undefined ? undefined : FASTIFY_CODES[err.code];
  if (mapped !== undefined) return mapped;
  if (err instanceof SyntaxError || err.statusCode === 400) return 'BODY_NOT_JSON';
  if (err.statusCode === 413) return 'BODY_TOO_LARGE';
  if (err.statusCode === 415) return 'CONTENT_TYPE';
  if (err.statusCode === 408) return 'TIMEOUT';
  return 'INTERNAL';
}

const ADMISSION_PATHS: ReadonlySet<string> = new Set(['/validate', '/mutate']);

function registerClientAuth(app: FastifyInstance, recorder: Recorder): void {
  const drainer = createDrainer({ lingerMs: 5000, concurrency: 8 });
  app.addHook('onRequest', function meshguardClientAuth(req, reply, done) {
    const socket = req.raw.socket as TLSSocket | null;
    const path = req.url.split('?')[0] ?? '';
    if (!ADMISSION_PATHS.has(path) || socket?.authorized === true) {
      done();
      return;
    }
    const body = errorBody('CLIENT_CERT', socket?.authorizationError !== undefined && socket.authorizationError !== null ? String(socket.authorizationError) : 'no client certificate was presented');
    recorder.observeRejected(path, body.code);
    if (req.raw.complete) {
      void reply.code(body.statusCode).send(body);
      return;
    }
    // Answer before reading the body, without losing the answer to a reset.
    reply.hijack();
    drainer.answer(req.raw, socket, body);
  });
}

export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const opts: FastifyServerOptions & { https?: HttpsOptions } = {
    // Fastify gets no logger: meshguard logs through its own (deps.log). With a logger, Fastify
    // does per-request work whether or not anything is logged: a child logger (or a check of a
    // custom child factory), 'finish' and 'error' listeners on every response and two clock
    // reads, for request logs that meshguard turns off (its request logs carry the review's uid,
    // which the apiserver's audit log also has). Measured side by side: 4-7% of a Pod CREATE's CPU.
    logger: false,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.server.bodyLimitBytes,
    requestTimeout: config.server.requestTimeoutMs,
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  };
  if (deps.https !== undefined) {
    opts.https = {
      // A connection that has not finished its TLS handshake within the header timeout is cut
      // (Node's default is 120 s, which lets idle half-open connections pile up).
      handshakeTimeout: config.server.headersTimeoutMs,
      ...deps.https,
      // Node sweeps headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
      // default); check every second so slow clients are cut at their timeout, not up to 30 s late.
      connectionsCheckingInterval: Math.min(1000, config.server.headersTimeoutMs),
    } as HttpsOptions;
  }
  const app = Fastify(opts as FastifyServerOptions);
  if ('headersTimeout' in app.server) app.server.headersTimeout = config.server.headersTimeoutMs;

  const recorder = deps.recorder ?? noopRecorder;
  const log = deps.log ?? silentLog;
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const name = errorName(err);
    if (name === 'INTERNAL') log.error({ err, reqId: req.id, url: req.url }, 'unexpected error');
    recorder.observeRejected(req.url.split('?')[0] ?? '', errorBody(name).code);
    // A coded answer that says what is wrong; never a stack trace.
    void reply.code(errorBody(name).statusCode).send(errorBody(name, name === 'INTERNAL' ? undefined : err.message));
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).send(errorBody('NOT_FOUND'));
  });

  const state = { closing: false, get draining(): boolean { return deps.lifecycle?.draining ?? false; } };
  app.addHook('onClose', async () => {
    state.closing = true;
  });
  // Order matters: Connection: close while draining is decided first (a shed request's 503 carries
  // it too), the deadline clock starts when the headers are read, before the body, and a shed
  // request is answered before its body is read.
  if (deps.lifecycle !== undefined) registerDrainHeaders(app, deps.lifecycle);
  registerDeadlines(app, { marginPercent: config.server.deadlineMarginPercent });
  // Client-certificate authentication of the apiserver (server.clientCaFile): the TLS layer asks
  // every client for a certificate (probes and metrics scrapers need none), and the admission
  // endpoints refuse a connection without one signed by that CA, before its body is read.
  if (config.server.clientCaFile !== null) registerClientAuth(app, recorder);
  const load = registerOverload(app, {
    maxInFlight: config.server.maxInFlight,
    maxInFlightBytes: config.server.maxInFlightBytes,
    maxEventLoopDelayMs: config.server.maxEventLoopDelayMs,
    minBodyBytesPerSecond: config.server.minBodyBytesPerSecond,
    bodyRateGraceMs: config.server.bodyRateGraceMs,
    recorder,
  });
  recorder.trackLoad(load);
  recorder.trackCaches(() => deps.cluster.synced());

  // JSON only: every other media type (Fastify also parses text/plain by default) gets 415. The
  // body is read by readBody, which counts each chunk into the load gauge as it arrives.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', (req, payload, done) => {
    readBody(req.raw, payload, load, config.server.bodyLimitBytes, (err, text) => {
      if (err !== null) {
        done(err as FastifyError, undefined);
        return;
      }
      if (text === '' || text === undefined) {
        done(Object.assign(new Error('the body is empty'), { code: 'FST_ERR_CTP_EMPTY_JSON_BODY', statusCode: 400 }), undefined);
        return;
      }
      try {
        done(null, parseJsonBody(text));
      } catch (err) {
        const poisoned = err instanceof PoisonedBodyError;
        done(Object.assign(err as Error, { code: poisoned ? 'MG_BODY_POISONED' : 'FST_ERR_CTP_INVALID_JSON_BODY', statusCode: 400 }), undefined);
      }
    });
  });

  registerAdmissionRoutes(app, {
    config,
    cluster: deps.cluster,
    rules: deps.rules,
    recorder,
    audit: deps.audit ?? nullAuditSink,
    log,
    state,
  });
  registerHealthRoutes(app, {
    config,
    recorder,
    state,
    checks: [
      { name: 'rules', check: () => (deps.rules.validating.length + deps.rules.mutating.length > 0 ? undefined : 'no rules registered') },
      { name: 'caches', check: () => (deps.cluster.synced() ? undefined : (deps.cluster.problem?.() ?? 'cluster caches not synced')) },
      ...(deps.readiness ?? []),
    ],
  });
  return app;
}
