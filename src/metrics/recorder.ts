// Instrumentation behind an interface with a no-op default; prom-client implements it.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

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
  /** Prometheus text exposition; empty for the no-op recorder. */
  render(): Promise<string>;
  readonly contentType: string;
}

export const noopRecorder: Recorder = {
  observeReview() {},
  observeRejected() {},
  certReload() {},
  certExpiry() {},
  render: async () => '',
  contentType: 'text/plain',
};

export class PromRecorder implements Recorder {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly #requests: Counter<'endpoint' | 'kind' | 'operation' | 'verdict'>;
  readonly #latency: Histogram<'endpoint' | 'kind' | 'operation' | 'verdict'>;
  readonly #rejected: Counter<'endpoint' | 'code'>;
  readonly #reloads: Counter<'result'>;
  readonly #reloadFailing: Gauge;
  readonly #expiry: Gauge<'cert'>;

  constructor() {
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'meshguard_admission_requests_total',
      help: 'Admission reviews answered, by endpoint, kind, operation and verdict',
      labelNames: ['endpoint', 'kind', 'operation', 'verdict'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'meshguard_admission_duration_seconds',
      help: 'Time from decoded review to encoded answer, by endpoint, kind, operation and verdict',
      labelNames: ['endpoint', 'kind', 'operation', 'verdict'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1],
      registers,
    });
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
  }

  observeReview(l: ReviewLabels, seconds: number): void {
    const labels = { endpoint: l.endpoint, kind: l.kind, operation: l.operation, verdict: l.verdict };
    this.#requests.inc(labels);
    this.#latency.observe(labels, seconds);
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
