// The Fastify app as a plugin (fastify-plugin: its hooks, body parser, error and not-found
// handlers apply to the instance it is registered on), and buildApp(config, deps), the helper that
// creates an instance with the server options the plugin relies on (timeouts, body limit, TLS) and
// registers the plugin on it. Never listens: serve and the tests decide how it is served (real
// HTTPS, or inject()).
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { fastifyPlugin } from 'fastify-plugin';
import type { ServerOptions as HttpsOptions } from 'node:https';
import type { ClusterView } from './core/cluster-view.ts';
import type { Config } from './config/types.ts';
import type { RuleSet } from './core/rule-set.ts';
import { errorBody } from './errors.ts';
import { noopRecorder, type Recorder } from './metrics/recorder.ts';
import { nullAuditSink, type AuditSink } from './webhook/audit-sink.ts';
import { registerAdmissionRoutes } from './webhook/routes.ts';
import { registerHealthRoutes, type ReadinessCheck } from './webhook/health.ts';
import { registerDeadlines } from './webhook/deadline.ts';
import { registerOverload } from './webhook/overload.ts';
import { errorNameOf, registerEdgeGuards } from './webhook/guards.ts';
import { registerClientAuth } from './webhook/client-auth.ts';
import { registerDrainHeaders } from './serve/shutdown.ts';

export interface AppDeps {
  readonly cluster: ClusterView;
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

/** The plugin's options: the configuration and what the app is given. */
export interface MeshguardOptions extends AppDeps {
  readonly config: Config;
}

function hasMethods(value: unknown, names: readonly string[]): boolean {
  return typeof value === 'object' && value !== null && names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function');
}

/** Checked at registration: a wrong wiring fails at start, not on the first request. */
function checkOptions(options: MeshguardOptions): void {
  const problems = [
    typeof options.config?.server !== 'object' ? 'config (a loaded Config)' : undefined,
    !hasMethods(options.cluster, ['namespace', 'knownRevisions', 'synced']) ? 'cluster (a ClusterView)' : undefined,
    !Array.isArray(options.rules?.validating) || !Array.isArray(options.rules?.mutating) ? 'rules (a RuleSet)' : undefined,
    options.recorder !== undefined && !hasMethods(options.recorder, ['observeRejected', 'trackLoad']) ? 'recorder (a Recorder)' : undefined,
    options.audit !== undefined && !hasMethods(options.audit, ['write']) ? 'audit (an AuditSink)' : undefined,
    options.log !== undefined && !hasMethods(options.log, ['info', 'warn', 'error']) ? 'log (an AppLog)' : undefined,
  ].filter((p) => p !== undefined);
  if (problems.length > 0) throw new TypeError(`meshguard plugin: missing or wrong options: ${problems.join(', ')}`);
}

async function meshguard(app: FastifyInstance, options: MeshguardOptions): Promise<void> {
  checkOptions(options);
  const { config } = options;
  const recorder = options.recorder ?? noopRecorder;
  const log = options.log ?? silentLog;
  app.setErrorHandler(function meshguardErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
    const name = errorNameOf(err);
    if (name === 'INTERNAL') log.error({ err, reqId: req.id, url: req.url }, 'unexpected error');
    recorder.observeRejected(req.url.split('?')[0] ?? '', errorBody(name).code);
    // A coded answer that says what is wrong; never a stack trace.
    void reply.code(errorBody(name).statusCode).send(errorBody(name, name === 'INTERNAL' ? undefined : err.message));
  });
  app.setNotFoundHandler(function meshguardNotFound(_req, reply) {
    void reply.code(404).send(errorBody('NOT_FOUND'));
  });

  const state = { closing: false, get draining(): boolean { return options.lifecycle?.draining ?? false; } };
  app.addHook('onClose', async function meshguardClosing() {
    state.closing = true;
  });
  // Order matters: Connection: close while draining is decided first (a shed request's 503 carries
  // it too), the deadline clock starts when the headers are read, before the body, and a shed
  // request is answered before its body is read. The edge guards (guards.ts) come after all of
  // these (a preParsing hook and the body parser).
  if (options.lifecycle !== undefined) registerDrainHeaders(app, options.lifecycle);
  registerDeadlines(app, { marginPercent: config.server.deadlineMarginPercent });
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
  recorder.trackCaches(() => options.cluster.synced());
  registerEdgeGuards(app, { bodyLimitBytes: config.server.bodyLimitBytes, gauge: load });

  registerAdmissionRoutes(app, {
    config,
    cluster: options.cluster,
    rules: options.rules,
    recorder,
    audit: options.audit ?? nullAuditSink,
    log,
    state,
  });
  registerHealthRoutes(app, {
    config,
    recorder,
    state,
    checks: [
      { name: 'rules', check: () => (options.rules.validating.length + options.rules.mutating.length > 0 ? undefined : 'no rules registered') },
      { name: 'caches', check: () => (options.cluster.synced() ? undefined : (options.cluster.problem?.() ?? 'cluster caches not synced')) },
      ...(options.readiness ?? []),
    ],
  });
}

/** meshguard as a Fastify plugin. */
export const meshguardPlugin = fastifyPlugin<MeshguardOptions>(meshguard, { name: 'meshguard', fastify: '5.x' });

function serverOptions(config: Config, https: HttpsOptions | undefined): FastifyServerOptions {
  const options: FastifyServerOptions & { https?: HttpsOptions } = {
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
  if (https !== undefined) {
    options.https = {
      // A connection that has not finished its TLS handshake within the header timeout is cut
      // (Node's default is 120 s, which lets idle half-open connections pile up).
      handshakeTimeout: config.server.headersTimeoutMs,
      ...https,
      // Node sweeps headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
      // default); check every second so slow clients are cut at their timeout, not up to 30 s late.
      connectionsCheckingInterval: Math.min(1000, config.server.headersTimeoutMs),
    } as HttpsOptions;
  }
  return options;
}

/** A Fastify instance served as meshguard: the server options, and the plugin registered. */
export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify(serverOptions(config, deps.https));
  if ('headersTimeout' in app.server) app.server.headersTimeout = config.server.headersTimeoutMs;
  await app.register(meshguardPlugin, { ...deps, config });
  return app;
}
