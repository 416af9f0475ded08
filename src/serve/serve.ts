// meshguard serve: load configuration, certificates and rules, listen on HTTPS, reload
// certificates, drain and close on SIGTERM.
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildApp } from '../app.ts';
import { defaultSans } from '../jobs/certs/selfsigned.ts';
import { ensureGenerated, FileCertSource, type FilePaths, type TlsMaterial } from '../jobs/certs/source.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { servingSans } from '../jobs/certs/plan.ts';
import { startSelfManagedCerts, type SelfManagedCerts } from '../jobs/certs/loop.ts';
import { ClusterCache, loadKubeConfig } from '../kube/namespace-cache.ts';
import { kubeScanSource } from '../jobs/scan/adapter.ts';
import { startPeriodicScan, type PeriodicScan } from '../jobs/scan/loop.ts';
import type { ListWatchLog } from '../kube/list-watch.ts';
import { StaticClusterState, type ClusterState } from '../core/cluster-view.ts';
import { ExceptionStore, withExceptions } from '../kube/exception-store.ts';
import { followingWebhooks } from '../jobs/arming/plan.ts';
import { kubeArmingCluster } from '../jobs/arming/adapter.ts';
import { startWebhookArming, type WebhookArming } from '../jobs/arming/loop.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import { PromRecorder } from '../metrics/recorder.ts';
import { BUILTIN_RULES, RULE_IDS } from '../policies/registry.ts';
import { startReconciler, type ReconcilerHandle } from '../jobs/reconciler/index.ts';
import { createAuditSink } from '../webhook/audit-sink.ts';
import type { ReadinessCheck } from '../webhook/health.ts';
import { drainAndClose } from './shutdown.ts';
import { readClientCa, serverTlsOptions } from '../webhook/tls-options.ts';
import type { ServerOptions as HttpsOptions } from 'node:https';
import { createLogger } from '../log.ts';
import { startMetricsServer, type MetricsServer } from '../metrics/server.ts';
import { kubeReportClient } from '../jobs/reports/adapter.ts';
import type { ReportFormat } from '../jobs/reports/plan.ts';
import { startReportWriter } from '../jobs/reports/loop.ts';
import { EXIT, UsageError, type Io } from '../cli/args.ts';

export const SERVE_HELP = `Usage: meshguard serve [flags]

Runs the admission webhook: POST /validate, POST /mutate, GET /healthz, /readyz, /metrics.

Flags (environment variable in brackets; flags win over environment, both over the file):
  --config FILE       YAML or JSON configuration file           [MESHGUARD_CONFIG]
  --mode MODE         enforce | audit (default enforce)          [MESHGUARD_MODE]
  --host ADDR         listen address (default 127.0.0.1)         [MESHGUARD_HOST]
  --port N            listen port (default 8443; 0 = any free)   [MESHGUARD_PORT]
  --cert-file FILE    serving certificate (PEM), reloaded on change [MESHGUARD_CERT_FILE]
  --key-file FILE     private key (PEM) for --cert-file          [MESHGUARD_KEY_FILE]
  --ca-file FILE      CA bundle of --cert-file (expiry metric)   [MESHGUARD_CA_FILE]
  --client-ca-file FILE  require client certificates signed by this CA on
                      /validate and /mutate (the apiserver's)    [MESHGUARD_CLIENT_CA_FILE]
  --cert-dir DIR      where to generate a CA and certificate when no --cert-file
                      is given (default ./certs)                 [MESHGUARD_CERT_DIR]
  --log-level LEVEL   fatal|error|warn|info|debug|trace|silent   [MESHGUARD_LOG_LEVEL]
  --audit-log FILE    audit records (JSON lines); default stdout [MESHGUARD_AUDIT_LOG]
  --kubeconfig FILE   watch namespaces and Istio revisions through this cluster
                                                                 [MESHGUARD_KUBECONFIG]
  --in-cluster        the same with the pod's service account    [MESHGUARD_IN_CLUSTER]
                      (neither: no cluster; namespaces are unknown, see unknownNamespace)
  --reconcile         keep the hardening resources (REGISTRY_ONLY Sidecar, STRICT
                      PeerAuthentication, default-deny AuthorizationPolicy, configured
                      ServiceEntries) in every meshed namespace; one replica leads
                      through a Lease (needs a cluster)          [MESHGUARD_RECONCILE]
  --no-reconcile      turn the reconciler off (wins over the file and the environment)
  --reconcile-dry-run run the reconciler (implies --reconcile) but only log what it
                      would create, change or delete; change nothing
                                                                 [MESHGUARD_RECONCILE_DRY_RUN]
  --scan-interval S   scan existing objects every S seconds and expose the violations
                      as metrics (0: off, the default; needs a cluster); with
                      scan.policyReports / scan.openReports also as PolicyReports
                                                                 [MESHGUARD_SCAN_INTERVAL]
  --metrics-port N    also serve GET /metrics on plain HTTP on this port (-1: off,
                      the default; 0: any free port)             [MESHGUARD_METRICS_PORT]
  --metrics-host ADDR address of that listener (default 127.0.0.1) [MESHGUARD_METRICS_HOST]
  -h, --help          this help
`;

const FLAGS = {
  config: ['MESHGUARD_CONFIG', ''],
  mode: ['MESHGUARD_MODE', 'mode'],
  host: ['MESHGUARD_HOST', 'server.host'],
  port: ['MESHGUARD_PORT', 'server.port'],
  'cert-file': ['MESHGUARD_CERT_FILE', 'server.certFile'],
  'key-file': ['MESHGUARD_KEY_FILE', 'server.keyFile'],
  'ca-file': ['MESHGUARD_CA_FILE', 'server.caFile'],
  'client-ca-file': ['MESHGUARD_CLIENT_CA_FILE', 'server.clientCaFile'],
  'cert-dir': ['MESHGUARD_CERT_DIR', 'server.certDir'],
  'log-level': ['MESHGUARD_LOG_LEVEL', 'logLevel'],
  'audit-log': ['MESHGUARD_AUDIT_LOG', 'auditLogFile'],
  kubeconfig: ['MESHGUARD_KUBECONFIG', 'cluster.kubeconfig'],
  'in-cluster': ['MESHGUARD_IN_CLUSTER', 'cluster.inCluster'],
  reconcile: ['MESHGUARD_RECONCILE', 'reconciler.enabled'],
  'reconcile-dry-run': ['MESHGUARD_RECONCILE_DRY_RUN', 'reconciler.dryRun'],
  'scan-interval': ['MESHGUARD_SCAN_INTERVAL', 'scan.intervalSeconds'],
  'metrics-port': ['MESHGUARD_METRICS_PORT', 'metrics.port'],
  'metrics-host': ['MESHGUARD_METRICS_HOST', 'metrics.host'],
} as const;

const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(['in-cluster', 'reconcile', 'reconcile-dry-run']);

type FlagName = keyof typeof FLAGS;

/** Flags and environment into config overrides (dotted keys). Shared by serve and check. */
export function configFromFlags(values: Partial<Record<string, string | boolean | string[] | undefined>>, env: Io['env'], names: readonly FlagName[]): Config {
  const overrides: Record<string, unknown> = {};
  let file: string | undefined;
  for (const name of names) {
    const [envName, key] = FLAGS[name];
    const raw = values[name] ?? env[envName];
    const v = raw === true ? 'true' : raw;
    if (typeof v !== 'string') continue;
    if (key === '') file = v;
    else overrides[key] = v;
  }
  return loadConfig({ file, overrides, ruleIds: RULE_IDS });
}

async function certPaths(config: Config, io: Io): Promise<FilePaths> {
  const s = config.server;
  if (s.certFile !== null && s.keyFile !== null) return { certFile: s.certFile, keyFile: s.keyFile, caFile: s.caFile };
  const dir = resolve(s.certDir);
  const g = await ensureGenerated(dir, [...defaultSans(config.meshguardNamespace), ...s.certSans]);
  io.err(`meshguard: ${g.generated ? 'generated' : 'reusing'} a self-signed CA and serving certificate in ${dir} (ca.crt, tls.crt, tls.key)\n`);
  return g;
}

function kubeConfigOf(config: Config): KubeConfig | undefined {
  const c = config.cluster;
  if (c.kubeconfig === null && !c.inCluster) return undefined;
  return loadKubeConfig({ kubeconfig: c.kubeconfig, inCluster: c.inCluster });
}

/** What needs the Kubernetes API refuses to start without it, instead of silently doing nothing. */
function requireCluster(config: Config, kc: KubeConfig | undefined): void {
  if (kc !== undefined) return;
  const needs: [boolean, string][] = [
    [config.reconciler.enabled, 'reconciler.enabled (--reconcile)'],
    [config.scan.intervalSeconds > 0, 'scan.intervalSeconds (--scan-interval)'],
    [config.selfManagedCerts.enabled, 'selfManagedCerts.enabled'],
    [config.webhookArming.enabled, 'webhookArming.enabled'],
    [config.exceptions.watch, 'exceptions.watch'],
  ];
  const missing = needs.filter(([on]) => on).map(([, what]) => what);
  if (missing.length > 0) throw new ConfigError('cluster', `${missing.join(', ')} needs cluster access: give --kubeconfig FILE or --in-cluster`);
}

/** The report formats the periodic scan writes; reports without a periodic scan are refused. */
function reportFormats(config: Config): ReportFormat[] {
  const formats: ReportFormat[] = [...(config.scan.policyReports ? (['wgpolicyk8s'] as const) : []), ...(config.scan.openReports ? (['openreports'] as const) : [])];
  if (formats.length > 0 && config.scan.intervalSeconds === 0) throw new ConfigError('scan', 'policyReports and openReports are written by the periodic scan: set scan.intervalSeconds (--scan-interval) too');
  return formats;
}

function clusterState(config: Config, kc: KubeConfig | undefined, log: ListWatchLog): ClusterState {
  const c = config.cluster;
  if (kc === undefined) return new StaticClusterState([], config.revisions);
  return new ClusterCache(kc, {
    resyncMs: c.resyncSeconds * 1000,
    staleAfterMs: c.staleAfterSeconds * 1000,
    discoverRevisions: c.discoverRevisions,
    configuredRevisions: config.revisions,
    log,
  });
}

export async function runServe(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: BOOLEAN_FLAGS.has(k) ? ('boolean' as const) : ('string' as const) }])),
      'no-reconcile': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    io.out(SERVE_HELP);
    return EXIT.OK;
  }
  const flags: Record<string, string | boolean | undefined> = { ...values };
  let env = io.env;
  if (flags['no-reconcile'] === true) {
    if (flags['reconcile'] === true || flags['reconcile-dry-run'] === true) throw new UsageError('--no-reconcile contradicts --reconcile and --reconcile-dry-run');
    env = { ...io.env, MESHGUARD_RECONCILE: 'false' };
  }
  // --reconcile-dry-run runs the reconciler, in dry-run: the flag alone must not be a silent no-op.
  if (flags['reconcile-dry-run'] === true || (flags['reconcile-dry-run'] === undefined && env['MESHGUARD_RECONCILE_DRY_RUN'] === 'true' && env['MESHGUARD_RECONCILE'] === undefined)) {
    flags['reconcile'] = true;
  }
  const config = configFromFlags(flags, env, Object.keys(FLAGS) as FlagName[]);
  // One logger for everything serve runs (src/log.ts).
  const appLog = createLogger(config.logLevel);
  const log: ListWatchLog = appLog;
  const kc = kubeConfigOf(config);
  requireCluster(config, kc);

  // Self-managed certificates: the Secret is the source; serve loads the files it writes.
  let managed: SelfManagedCerts | undefined;
  if (config.selfManagedCerts.enabled) managed = await startSelfManagedCerts(config, kc, log);
  const paths = managed?.paths ?? (await certPaths(config, io));
  // The names the certificate must cover: for files of the operator's, the configured
  // server.certSans (the chart sets the Service's name); for generated or self-managed ones,
  // those they were generated for.
  const names = managed !== undefined ? servingSans(config) : config.server.certFile !== null ? config.server.certSans : [...defaultSans(config.meshguardNamespace), ...config.server.certSans];
  const certs = new FileCertSource(paths, { names });
  const clientCa = (): string | null => (config.server.clientCaFile === null ? null : readClientCa(config.server.clientCaFile));
  const tlsFor = (m: TlsMaterial): HttpsOptions => serverTlsOptions(m, config.server.tlsMinVersion, clientCa());
  const recorder = new PromRecorder();
  const audit = createAuditSink(config.auditLogFile);
  const lifecycle = { draining: false };
  const cluster = clusterState(config, kc, log);
  if (cluster instanceof ClusterCache) cluster.start();
  let exceptions: ExceptionStore | undefined;
  if (config.exceptions.watch && kc !== undefined) {
    exceptions = new ExceptionStore(kc, { ruleIds: RULE_IDS, resyncMs: config.cluster.resyncSeconds * 1000, staleAfterMs: config.cluster.staleAfterSeconds * 1000, log });
    exceptions.start();
  }

  let reconciler: ReconcilerHandle | undefined;
  if (config.reconciler.enabled && kc !== undefined) {
    reconciler = startReconciler({
      config,
      kc,
      log,
      knownRevisions: () => cluster.knownRevisions(),
      onAction: (a, outcome) => recorder.reconcilerAction(a.type, a.type === 'delete' ? a.observed.kind : a.desired.kind, outcome),
      onLeadingChange: (leading) => recorder.reconcilerLeader(leading),
    });
  }
  let scan: PeriodicScan | undefined;
  const formats = reportFormats(config);
  const reports = kc !== undefined && formats.length > 0 ? startReportWriter({ client: kubeReportClient(kc), formats, log }) : undefined;
  if (kc !== undefined) {
    scan = startPeriodicScan({
      config,
      source: kubeScanSource(kc),
      rules: BUILTIN_RULES,
      log,
      onResult: (m, report) => {
        recorder.scanCompleted(m.counts, m.completedAtSeconds);
        reports?.submit(report);
      },
      // With a reconciler, only its leader scans: one replica's numbers, not one per replica.
      ...(reconciler !== undefined ? { shouldRun: () => reconciler.isLeader() } : {}),
    });
  }

  // An expired certificate fails every new handshake: the Service should stop sending traffic here.
  const readiness: ReadinessCheck[] = [{ name: 'certificates', check: () => certs.problem() }];
  // Without Istio's CRDs the reconciler idles; admission is unaffected, so this is reported as
  // degraded and readiness stays 200.
  if (reconciler !== undefined) readiness.push({ name: 'reconciler', check: () => reconciler.problem(), degraded: true });
  // Without the CRD, or before the first list, no exception applies: admission fails closed on
  // what an exception would have let through, so this is reported as degraded, not unready.
  if (exceptions !== undefined) readiness.push({ name: 'exceptions', check: () => exceptions.problem(), degraded: true });
  const app = await buildApp(config, {
    cluster: exceptions !== undefined ? withExceptions(cluster, exceptions) : cluster,
    rules: BUILTIN_RULES,
    recorder,
    audit,
    lifecycle,
    https: tlsFor(certs.material),
    log: appLog,
    readiness,
  });
  const exposeExpiry = (): void => {
    recorder.certExpiry('leaf', certs.info.leafNotAfter.getTime() / 1000);
    if (certs.info.caNotAfter !== null) recorder.certExpiry('ca', certs.info.caNotAfter.getTime() / 1000);
  };
  exposeExpiry();
  const address = await app.listen({ host: config.server.host, port: config.server.port });
  let metricsServer: MetricsServer | undefined;
  if (config.metrics.port >= 0) {
    metricsServer = await startMetricsServer({ host: config.metrics.host, port: config.metrics.port, recorder });
    io.err(`meshguard: metrics on ${metricsServer.url}/metrics\n`);
  }
  const extras = [
    reconciler !== undefined ? `reconciler on${config.reconciler.dryRun ? ' (dry-run)' : ''}` : undefined,
    scan !== undefined ? `scan every ${config.scan.intervalSeconds} s` : undefined,
    managed !== undefined ? 'self-managed certificates' : undefined,
    config.webhookArming.enabled ? `webhook arming (${config.webhookArming.failurePolicy} once ready)` : undefined,
  ].filter((x) => x !== undefined);
  // Webhook arming (docs/adr/0005): only once this process listens can it be the ready meshguard
  // behind a fail-closed webhook.
  let arming: WebhookArming | undefined;
  if (config.webhookArming.enabled && kc !== undefined) {
    const gates = readiness.filter((c) => c.degraded !== true);
    arming = startWebhookArming({
      cluster: kubeArmingCluster(kc, config.webhookArming.webhookConfigurationName),
      armed: config.webhookArming.failurePolicy,
      followers: followingWebhooks([...BUILTIN_RULES.validating, ...BUILTIN_RULES.mutating]),
      pod: hostname(),
      selfReady: () => !lifecycle.draining && cluster.synced() && gates.every((c) => c.check() === undefined),
      servedCert: () => certs.material.cert,
      intervalMs: config.webhookArming.intervalSeconds * 1000,
      log,
    });
  }
  io.err(`meshguard: serving on ${address} in ${config.mode} mode (certificate ${paths.certFile}${extras.length > 0 ? `; ${extras.join(', ')}` : ''})\n`);

  certs.watch(
    {
      onReload(m, info) {
        const server = app.server as unknown as { setSecureContext(o: object): void };
        // The client CA (server.clientCaFile) is part of the context: re-read it with the pair.
        server.setSecureContext(tlsFor(m));
        recorder.certReload(true);
        exposeExpiry();
        appLog.info({ fingerprint: info.fingerprint256, notAfter: info.leafNotAfter }, 'serving certificate reloaded');
      },
      onError(err) {
        recorder.certReload(false);
        appLog.error({ err: err.message, code: (err as { code?: string }).code }, 'new certificate files are not usable; keeping the current certificate');
      },
    },
    1000,
  );

  return await new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      appLog.info({ signal, drainSeconds: config.server.drainSeconds }, 'shutting down: readiness is now false');
      // Readiness false and Connection: close at once; keep answering for drainSeconds (the
      // endpoints update reaches every apiserver), then stop accepting, finish what is in flight
      // (at most requestTimeoutMs) and close. Background work stops at once: the Lease is
      // released now, so another replica takes over reconciling while this one still drains.
      // Arming stops first: its last check sets the webhooks to Ignore unless another ready
      // replica answers, while this one still serves for drainSeconds.
      const background = Promise.allSettled([arming?.stop(), reconciler?.stop(), scan?.stop().then(() => reports?.close()), managed?.stop()]);
      // Metrics stay scrapeable while draining; the listener closes with the webhook port.
      // Admission keeps its certificate and namespace cache until the listener is closed.
      const released = async (): Promise<void> => {
        await background;
        certs.close();
        if (cluster instanceof ClusterCache) await cluster.stop();
        await exceptions?.stop();
      };
      lifecycle.draining = true;
      const drained = new Promise<void>((r) => setTimeout(r, config.server.drainSeconds * 1000));
      void Promise.all([drained.then(() => drainAndClose(app, { lifecycle, drainMs: 0, graceMs: config.server.requestTimeoutMs })), drained.then(released)])
        .then(([clean]) => {
          if (!clean) appLog.warn('shutdown: connections still open after the grace period were closed');
        })
        .catch((err: unknown) => appLog.error({ err: (err as Error).message }, 'shutdown: error while closing'))
        .then(() => metricsServer?.close())
        .then(() => audit.close())
        .then(() => done(EXIT.OK));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
