// Instrumentation behind an interface with a no-op default; prom-client implements it.
import { Counter, Gauge, Registry } from 'prom-client';
import type { ViolationCount } from '../cluster/scan.ts';

export interface ReviewLabels {
  readonly endpoint: string;
  readonly kind: string;
  readonly operation: string;
  readonly verdict: string;
}

export interface Recorder {
  observeReview(labels: ReviewLabels, seconds: number): void;
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
  observeRejected() {},
  certReload() {},
  certExpiry() {},
  scanCompleted() {},
  reconcilerAction() {},
  reconcilerLeader() {},
  render: async () => '',
  contentType: 'text/plain',
};

const REVIEW_LABELS = ['endpoint', 'kind', 'operation', 'verdict'] as const;
const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1];

interface ReviewSeries {
  readonly labels: Readonly<Record<(typeof REVIEW_LABELS)[number], string>>;
  /** Per bucket, the observations that fell in it (not cumulative; summed when exposed). */
  readonly inBucket: number[];
  sum: number;
  count: number;
}

interface MetricValue {
  readonly metricName?: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly sharedLabels?: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * The per-request metrics (reviews answered, and their latency) in plain per-series counters: one
 * Map lookup and a few increments per request, where prom-client's Counter and Histogram hash the
 * label object on every call. They are exposed through the same prom-client registry as metric
 * objects of their own, in prom-client's value format, so the exposition is the same as a prom-client
 * Counter and Histogram would give.
 */
class ReviewMetrics {
  /** Every series, in the order first seen (the exposition order). */
  readonly #series: ReviewSeries[] = [];
  /** The series of each kind: a request looks up its kind (no key string is built) and scans the
   * few series of that kind. */
  readonly #byKind = new Map<string, ReviewSeries[]>();

  #find(l: ReviewLabels): ReviewSeries {
    let list = this.#byKind.get(l.kind);
    if (list === undefined) {
      list = [];
      this.#byKind.set(l.kind, list);
    }
    for (let i = 0; i < list.length; i++) {
      const s = list[i] as ReviewSeries;
      if (s.labels.endpoint === l.endpoint && s.labels.operation === l.operation && s.labels.verdict === l.verdict) return s;
    }
    const s: ReviewSeries = { labels: { endpoint: l.endpoint, kind: l.kind, operation: l.operation, verdict: l.verdict }, inBucket: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
    list.push(s);
    this.#series.push(s);
    return s;
  }

  observe(l: ReviewLabels, seconds: number): void {
    const s = this.#find(l);
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] ?? Infinity)) i++;
    if (i < LATENCY_BUCKETS.length) s.inBucket[i] = (s.inBucket[i] ?? 0) + 1;
    s.sum += seconds;
    s.count++;
  }

  /** prom-client metric objects for Registry.registerMetric. */
  metrics(): { requests: object; latency: object } {
    const metric = (name: string, help: string, type: 'counter' | 'histogram', values: (series: readonly ReviewSeries[]) => MetricValue[]): object => ({
      name,
      help,
      type,
      aggregator: 'sum',
      labelNames: REVIEW_LABELS,
      get: async () => ({ name, help, type, aggregator: 'sum', values: values([...this.#series]) }),
      reset: (): void => {
        this.#series.length = 0;
        this.#byKind.clear();
      },
    });
    const latency = 'meshguard_admission_duration_seconds';
    const histogram = (s: ReviewSeries): MetricValue[] => {
      let acc = 0;
      return [
        ...LATENCY_BUCKETS.map((le, i): MetricValue => {
          acc += s.inBucket[i] ?? 0;
          return { metricName: `${latency}_bucket`, labels: { le }, sharedLabels: s.labels, value: acc };
        }),
        { metricName: `${latency}_bucket`, labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count },
        { metricName: `${latency}_sum`, labels: {}, sharedLabels: s.labels, value: s.sum },
        { metricName: `${latency}_count`, labels: {}, sharedLabels: s.labels, value: s.count },
      ];
    };
    return {
      requests: metric('meshguard_admission_requests_total', 'Admission reviews answered, by endpoint, kind, operation and verdict', 'counter', (all) =>
        all.map((s) => ({ labels: s.labels, value: s.count })),
      ),
      latency: metric(latency, 'Time from decoded review to encoded answer, by endpoint, kind, operation and verdict', 'histogram', (all) => all.flatMap(histogram)),
    };
  }
}

export class PromRecorder implements Recorder {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly #reviews = new ReviewMetrics();
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

  constructor() {
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    const reviews = this.#reviews.metrics();
    // Registered in this order so /metrics lists them where the prom-client objects were.
    this.registry.registerMetric(reviews.requests as Parameters<Registry['registerMetric']>[0]);
    this.registry.registerMetric(reviews.latency as Parameters<Registry['registerMetric']>[0]);
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
