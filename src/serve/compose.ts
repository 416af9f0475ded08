// The composition root of meshguard serve: from a loaded Config, the one logger (src/log.ts), the
// metrics recorder, the cluster caches, the background jobs (certificates, reconciler, scan and
// PolicyReports, webhook arming) and the app, wired together. Nothing else constructs these for
// serve; serve.ts listens, reloads certificates and shuts down what is built here.
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { ServerOptions as HttpsOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../app.ts';
import { defaultSans } from '../jobs/certs/selfsigned.ts';
import { ensureGenerated, FileCertSource, type FilePaths, type TlsMaterial } from '../jobs/certs/source.ts';
import { servingSans } from '../jobs/certs/plan.ts';
import { startSelfManagedCerts, type SelfManagedCerts } from '../jobs/certs/loop.ts';
import { loadKubeConfig } from '../kube/client.ts';
import { ClusterCache } from '../kube/namespace-cache.ts';
import { kubeScanSource } from '../jobs/scan/adapter.ts';
import { startPeriodicScan, type PeriodicScan } from '../jobs/scan/loop.ts';
import type { ListWatchLog } from '../kube/list-watch.ts';
import { StaticClusterView, type ClusterView } from '../core/cluster-view.ts';
import { ExceptionStore, withExceptions } from '../kube/exception-store.ts';
import { followingWebhooks } from '../jobs/arming/plan.ts';
import { kubeArmingCluster } from '../jobs/arming/adapter.ts';
import { startWebhookArming, type WebhookArming } from '../jobs/arming/loop.ts';
import { ConfigError } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import { PromRecorder } from '../metrics/recorder.ts';
import { BUILTIN_RULES, RULE_IDS } from '../policies/registry.ts';
import { startReconciler, type ReconcilerHandle } from '../jobs/reconciler/index.ts';
import { createAuditSink, type AuditSink } from '../webhook/audit-sink.ts';
import type { ReadinessCheck } from '../webhook/health.ts';
import { readClientCa, serverTlsOptions } from '../webhook/tls-options.ts';
import { createLogger } from '../log.ts';
import { kubeReportClient } from '../jobs/reports/adapter.ts';
import type { ReportFormat } from '../jobs/reports/plan.ts';
import { startReportWriter } from '../jobs/reports/loop.ts';
import type { Io } from '../cli/args.ts';

/** Everything serve runs, built once. */
export interface Served {
  readonly config: Config;
  readonly log: Logger;
  readonly recorder: PromRecorder;
  readonly audit: AuditSink;
  readonly lifecycle: { draining: boolean };
  readonly kc: KubeConfig | undefined;
  readonly cluster: ClusterView;
  readonly exceptions: ExceptionStore | undefined;
  readonly managed: SelfManagedCerts | undefined;
  readonly certs: FileCertSource;
  readonly paths: FilePaths;
  readonly reconciler: ReconcilerHandle | undefined;
  readonly scan: PeriodicScan | undefined;
  readonly reports: ReturnType<typeof startReportWriter> | undefined;
  readonly readiness: readonly ReadinessCheck[];
  readonly app: FastifyInstance;
  /** The TLS options for a certificate (the client CA is re-read with each). */
  tlsFor(m: TlsMaterial): HttpsOptions;
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

function clusterState(config: Config, kc: KubeConfig | undefined, log: ListWatchLog): ClusterView {
  const c = config.cluster;
  if (kc === undefined) return new StaticClusterView([], config.revisions);
  return new ClusterCache(kc, {
    resyncMs: c.resyncSeconds * 1000,
    staleAfterMs: c.staleAfterSeconds * 1000,
    discoverRevisions: c.discoverRevisions,
    configuredRevisions: config.revisions,
    log,
  });
}

/** Build everything serve runs from `config`; started, not yet listening. */
export async function compose(config: Config, io: Io): Promise<Served> {
  // One logger for everything serve runs (src/log.ts).
  const log = createLogger(config.logLevel);
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
  const jobs = startJobs(config, kc, cluster, recorder, log);

  // An expired certificate fails every new handshake: the Service should stop sending traffic here.
  const readiness: ReadinessCheck[] = [{ name: 'certificates', check: () => certs.problem() }];
  // Without Istio's CRDs the reconciler idles; admission is unaffected, so this is reported as
  // degraded and readiness stays 200.
  const { reconciler } = jobs;
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
    log,
    readiness,
  });
  return { config, log, recorder, audit, lifecycle, kc, cluster, exceptions, managed, certs, paths, ...jobs, readiness, app, tlsFor };
}

/** The reconciler, and the periodic scan with its PolicyReports writer. */
function startJobs(config: Config, kc: KubeConfig | undefined, cluster: ClusterView, recorder: PromRecorder, log: ListWatchLog): Pick<Served, 'reconciler' | 'scan' | 'reports'> {
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
  return { reconciler, scan, reports };
}

/** Webhook arming (docs/adr/0005): started only once serve listens, since only then can this
 * process be the ready meshguard behind a fail-closed webhook. */
export function startArming(served: Served): WebhookArming | undefined {
  const { config, kc, lifecycle, cluster, certs } = served;
  if (!config.webhookArming.enabled || kc === undefined) return undefined;
  const gates = served.readiness.filter((c) => c.degraded !== true);
  return startWebhookArming({
    cluster: kubeArmingCluster(kc, config.webhookArming.webhookConfigurationName),
    armed: config.webhookArming.failurePolicy,
    followers: followingWebhooks([...BUILTIN_RULES.validating, ...BUILTIN_RULES.mutating]),
    pod: hostname(),
    selfReady: () => !lifecycle.draining && cluster.synced() && gates.every((c) => c.check() === undefined),
    servedCert: () => certs.material.cert,
    intervalMs: config.webhookArming.intervalSeconds * 1000,
    log: served.log,
  });
}
