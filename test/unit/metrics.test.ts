// The review metrics are kept in meshguard's own per-series counters (src/metrics/recorder.ts) and
// exposed through prom-client's registry. What Prometheus scrapes must be exactly what a
// prom-client Counter and Histogram with the same names, help, labels and buckets would expose.
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { PromRecorder, type ReviewLabels } from '../../src/metrics/recorder.ts';

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 2.5, 5, 10];

/** The review metrics as prom-client objects, the reference. */
function reference(): { registry: Registry; observe(l: ReviewLabels, s: number): void } {
  const registry = new Registry();
  const labelNames = ['endpoint', 'kind', 'operation', 'verdict'] as const;
  const requests = new Counter({ name: 'meshguard_admission_requests_total', help: 'Admission reviews answered, by endpoint, kind, operation and verdict', labelNames, registers: [registry] });
  const latency = new Histogram({ name: 'meshguard_admission_duration_seconds', help: 'Time from decoded review to encoded answer, by endpoint, kind, operation and verdict', labelNames, buckets: BUCKETS, registers: [registry] });
  return {
    registry,
    observe(l, s) {
      const labels = { endpoint: l.endpoint, kind: l.kind, operation: l.operation, verdict: l.verdict };
      requests.inc(labels);
      latency.observe(labels, s);
    },
  };
}

/** The blocks of the two review metrics in an exposition, in order. */
function reviewBlocks(text: string): string {
  return text
    .split('\n\n')
    .map((b) => b.trimEnd())
    .filter((b) => /# HELP meshguard_admission_(requests_total|duration_seconds) /.test(b))
    .join('\n\n');
}

const observations: readonly [ReviewLabels, number][] = [
  [{ endpoint: 'validate', kind: 'Pod', operation: 'CREATE', verdict: 'allowed' }, 0.00004],
  [{ endpoint: 'validate', kind: 'Pod', operation: 'CREATE', verdict: 'allowed' }, 0.0001],
  [{ endpoint: 'validate', kind: 'Pod', operation: 'CREATE', verdict: 'allowed' }, 0.00010001],
  [{ endpoint: 'validate', kind: 'Pod', operation: 'CREATE', verdict: 'allowed' }, 1],
  [{ endpoint: 'validate', kind: 'Pod', operation: 'CREATE', verdict: 'allowed' }, 7.5],
  [{ endpoint: 'mutate', kind: 'Namespace', operation: 'CREATE', verdict: 'patched' }, 0.0009],
  [{ endpoint: 'validate', kind: 'Deployment', operation: 'UPDATE', verdict: 'denied' }, 0.02],
  [{ endpoint: 'validate', kind: 'we"ird\\kind\n', operation: 'CREATE', verdict: 'warned' }, 0.3],
];

t.test('the review counter and latency histogram expose exactly what prom-client would', async (t) => {
  const ours = new PromRecorder();
  const ref = reference();
  t.equal(reviewBlocks(await ours.render()), reviewBlocks(await ref.registry.metrics()), 'no reviews yet: HELP and TYPE only');
  for (const [l, s] of observations) {
    ours.observeReview(l, s);
    ref.observe(l, s);
  }
  const got = reviewBlocks(await ours.render());
  t.equal(got, reviewBlocks(await ref.registry.metrics()), 'the same text, byte for byte, for every series, bucket edge and escaped label');
  t.match(got, /meshguard_admission_duration_seconds_bucket\{le="0.0001",endpoint="validate",kind="Pod",operation="CREATE",verdict="allowed"\} 2\n/, 'a value on a bucket edge counts in that bucket');
  t.match(got, /meshguard_admission_duration_seconds_bucket\{le="\+Inf",endpoint="validate",kind="Pod",operation="CREATE",verdict="allowed"\} 5\n/, 'a value above the last bucket counts only in +Inf');
});

t.test('resetting the registry clears the review series, like prom-client', async (t) => {
  const ours = new PromRecorder();
  const ref = reference();
  for (const [l, s] of observations) {
    ours.observeReview(l, s);
    ref.observe(l, s);
  }
  ours.registry.resetMetrics();
  ref.registry.resetMetrics();
  t.equal(reviewBlocks(await ours.render()), reviewBlocks(await ref.registry.metrics()));
  t.notMatch(await ours.render(), /meshguard_admission_requests_total\{/, 'no series left');
});
