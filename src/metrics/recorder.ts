// Instrumentation behind an interface with a no-op default; prom-client implements it.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ViolationCount } from '../jobs/scan/report.ts';
import type { Mode, RuleSettings } from '../config/types.ts';
import type { Result } from '../core/types.ts';
import { VERSION } from '../version.ts';
import { ReviewMetrics, RuleMetrics } from './admission-series.ts';

export interface ReviewLabels {
  readonly endpoint: string;
  readonly kind: string;
  readonly operation: string;
  readonly verdict: string;
}

/** What the validating rules found for one request, counted per rule (no object names). */
export interface RuleResultsLabels {
  readonly kind: string;
  readonly operation: string;
  /** The namespace's mode; a rule pinned by config.rules.<id>.mode counts under its own. */
  readonly mode: Mode;
}

/** Live values read at scrape time (no work per request). */
export interface LoadSource {
  stats(): { readonly inFlight: number; readonly inFlightBytes: number };
}

export interface Recorder {
  observeReview(labels: ReviewLabels, seconds: number): void;
  /** Per-rule results of one validation: pass, fail or error once per rule and request (skips
   * are not counted: every rule skips every kind it does not match). */
  observeRuleResults(labels: RuleResultsLabels, results: readonly Result[], pinned: Readonly<Record<string, RuleSettings>>): void;
  /** The in-flight gauges read from the load shedder at scrape time. */
  trackLoad(source: LoadSource): void;
  /** The caches-synced gauge, read at scrape time. */
  trackCaches(synced: () => boolean): void;
  observeRejected(endpoint: string, code: string): void;
  certReload(ok: boolean): void;
  certExpiry(cert: 'leaf' | 'ca', unixSeconds: number): void;
  /** A completed periodic scan: replaces every violation series. */
  scanCompleted(counts: readonly ViolationCount[], completedAtSeconds: number): void;
  reconcilerAction(action: string, kind: string, outcome: string): void;
  reconcilerLeader(leading: boolean): void;
  /** Prometheus text exposition; empty for the no-op recorder. */
  render(): Promise<string>;
  readonly contentType: string;
}

export const noopRecorder: Recorder = {
  observeReview() {},
  observeRuleResults() {},
  trackLoad() {},
  trackCaches() {},
  observeRejected() {},
  certReload() {},
  certExpiry() {},
  scanCompleted() {},
  reconcilerAction() {},
  reconcilerLeader() {},
  render: async () => '',
  contentType: 'text/plain',
};

export interface PromRecorderOptions {
  /** meshguard_build_info's version label (default: VERSION). */
  readonly version?: string;
  /** Collect prom-client's process and Node.js runtime metrics (prefixed meshguard_). Default true. */
  readonly processMetrics?: boolean;
}

export class PromRecorder implements Recorder {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly #reviews = new ReviewMetrics();
  readonly #rules = new RuleMetrics();
  #load: LoadSource | undefined;
  #cachesSynced: (() => boolean) | undefined;
  readonly #rejected: Counter<'endpoint' | 'code'>;
  readonly #reloads: Counter<'result'>;
  readonly #reloadFailing: Gauge;
  readonly #expiry: Gauge<'cert'>;
  readonly #scanViolations: Gauge<'rule' | 'namespace'>;
  /** Created by the first completed scan: a 0 before it (or with the scan off) would look like a
   * scan from 1970 to a "scan too old" alert. */
  #scanCompleted: Gauge | undefined;
  readonly #reconcilerActions: Counter<'action' | 'kind' | 'outcome'>;
  readonly #reconcilerLeader: Gauge;

  constructor(options: PromRecorderOptions = {}) {
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    const reviews = this.#reviews.metrics();
    // Registered in this order so /metrics lists them where the prom-client objects were.
    this.registry.registerMetric(reviews.requests as Parameters<Registry['registerMetric']>[0]);
    this.registry.registerMetric(reviews.latency as Parameters<Registry['registerMetric']>[0]);
    this.registry.registerMetric(this.#rules.metric() as Parameters<Registry['registerMetric']>[0]);
    new Gauge({
      name: 'meshguard_build_info',
      help: 'Always 1; the labels name the meshguard version and the Node.js version',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version: options.version ?? VERSION, node_version: process.version }, 1);
    const load = (): { readonly inFlight: number; readonly inFlightBytes: number } | undefined => this.#load?.stats();
    new Gauge({
      name: 'meshguard_admission_in_flight_requests',
      help: 'Admission requests in flight (headers read, answer not yet finished)',
      registers,
      collect: function (this: Gauge) {
        const s = load();
        if (s !== undefined) this.set(s.inFlight);
      },
    });
    new Gauge({
      name: 'meshguard_admission_in_flight_bytes',
      help: 'Declared request body bytes in flight (what load shedding bounds)',
      registers,
      collect: function (this: Gauge) {
        const s = load();
        if (s !== undefined) this.set(s.inFlightBytes);
      },
    });
    const synced = (): boolean | undefined => this.#cachesSynced?.();
    new Gauge({
      name: 'meshguard_cluster_caches_synced',
      help: '1 while the namespace and revision caches are synced and fresh (0: stale or not yet listed; readiness fails)',
      registers,
      collect: function (this: Gauge) {
        const v = synced();
        if (v !== undefined) this.set(v ? 1 : 0);
      },
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'meshguard_' });
    this.#rejected = new Counter({
      name: 'meshguard_admission_rejected_total',
      help: 'Requests refused before evaluation (bad input, overload), by endpoint and error code',
      labelNames: ['endpoint', 'code'],
      registers,
    });
    this.#reloads = new Counter({
      name: 'meshguard_certificate_reloads_total',
      help: 'Serving certificate reload attempts by result',
      labelNames: ['result'],
      registers,
    });
    this.#reloadFailing = new Gauge({
      name: 'meshguard_certificate_reload_failing',
      help: '1 while the newest certificate files on disk could not be loaded (the previous certificate is still served)',
      registers,
    });
    this.#expiry = new Gauge({
      name: 'meshguard_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the served certificate (leaf) and of its CA, as Unix time',
      labelNames: ['cert'],
      registers,
    });
    this.#scanViolations = new Gauge({
      name: 'meshguard_scan_violations',
      help: 'Existing objects that violate a rule, by rule and namespace, at the last completed scan',
      labelNames: ['rule', 'namespace'],
      registers,
    });
    this.#reconcilerActions = new Counter({
      name: 'meshguard_reconciler_actions_total',
      help: 'Reconciler actions by action (create, update, delete, conflict), kind and outcome (applied, failed, dry-run, skipped)',
      labelNames: ['action', 'kind', 'outcome'],
      registers,
    });
    this.#reconcilerLeader = new Gauge({
      name: 'meshguard_reconciler_leader',
      help: '1 while this replica holds the reconciler Lease',
      registers,
    });
  }

  scanCompleted(counts: readonly ViolationCount[], completedAtSeconds: number): void {
    // A (rule, namespace) pair that is clean now disappears.
    this.#scanViolations.reset();
    for (const c of counts) this.#scanViolations.set({ rule: c.rule, namespace: c.namespace }, c.count);
    this.#scanCompleted ??= new Gauge({
      name: 'meshguard_scan_last_completed_timestamp_seconds',
      help: 'Unix time of the last completed scan',
      registers: [this.registry],
    });
    this.#scanCompleted.set(completedAtSeconds);
  }

  reconcilerAction(action: string, kind: string, outcome: string): void {
    this.#reconcilerActions.inc({ action, kind, outcome });
  }

  reconcilerLeader(leading: boolean): void {
    this.#reconcilerLeader.set(leading ? 1 : 0);
  }

  observeReview(l: ReviewLabels, seconds: number): void {
    this.#reviews.observe(l, seconds);
  }

  observeRuleResults(l: RuleResultsLabels, results: readonly Result[], pinned: Readonly<Record<string, RuleSettings>>): void {
    this.#rules.observe(l, results, pinned);
  }

  trackLoad(source: LoadSource): void {
    this.#load = source;
  }

  trackCaches(synced: () => boolean): void {
    this.#cachesSynced = synced;
  }

  observeRejected(endpoint: string, code: string): void {
    this.#rejected.inc({ endpoint, code });
  }

  certReload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'success' : 'failure' });
    this.#reloadFailing.set(ok ? 0 : 1);
  }

  certExpiry(cert: 'leaf' | 'ca', unixSeconds: number): void {
    this.#expiry.set({ cert }, unixSeconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
