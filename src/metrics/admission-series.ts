// The per-request admission metrics (reviews answered, their latency, rule results) as plain
// per-series counters, exposed through prom-client's registry as metric objects of their own:
// prom-client's Counter and Histogram hash the label object on every call, which the hot path
// cannot afford. PromRecorder (recorder.ts) registers them.
import type { Mode, RuleSettings } from '../config/types.ts';
import type { Result } from '../core/types.ts';
import type { ReviewLabels, RuleResultsLabels } from './recorder.ts';

const REVIEW_LABELS = ['endpoint', 'kind', 'operation', 'verdict'] as const;
// Up to the webhook timeout: the apiserver waits at most 30 s (the chart's default is 5 s); a
// latency series that ends at 1 s cannot show requests that came close to it.
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 2.5, 5, 10];

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
export class ReviewMetrics {
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

const RESULTS = ['pass', 'fail', 'error'] as const;
const MODES: readonly Mode[] = ['enforce', 'audit'];
const RULE_LABELS = ['rule', 'result', 'mode', 'operation', 'kind'] as const;

interface RuleCounts {
  readonly rule: string;
  /** By mode (enforce, audit) then result (pass, fail, error). */
  readonly counts: number[];
  /** config.rules the pin was read from, and the rule's pinned mode in it. */
  pinnedFor: object | undefined;
  pin: Mode | undefined;
}

interface RuleSlot {
  readonly byRule: Map<string, RuleCounts>;
  /** The entry last seen at each result position. */
  readonly at: (RuleCounts | undefined)[];
}

/**
 * meshguard_rule_results_total{rule,result,mode,operation,kind}: the label sets are bound ahead,
 * as prom-client's Counter.labels() does, but without its per-call hashing: per request one lookup
 * of (kind, operation), then per result one lookup of the rule and an increment. Cardinality is
 * bounded by the rules (a rule only sees the kinds it matches), three results, two modes and the
 * four operations; no object or namespace names.
 */
export class RuleMetrics {
  /** kind -> operation -> the counts of each rule seen there. */
  readonly #byKind = new Map<string, Map<string, RuleSlot>>();

  #slot(kind: string, operation: string): RuleSlot {
    let byOp = this.#byKind.get(kind);
    if (byOp === undefined) {
      byOp = new Map();
      this.#byKind.set(kind, byOp);
    }
    let slot = byOp.get(operation);
    if (slot === undefined) {
      slot = { byRule: new Map(), at: [] };
      byOp.set(operation, slot);
    }
    return slot;
  }

  observe(l: RuleResultsLabels, results: readonly Result[], pinned: Readonly<Record<string, RuleSettings>>): void {
    const slot = this.#slot(l.kind, l.operation);
    let previous: Result | undefined;
    for (let n = 0; n < results.length; n++) {
      const r = results[n] as Result;
      const at = r.status === 'pass' ? 0 : r.status === 'fail' ? 1 : r.status === 'error' ? 2 : -1;
      // A rule with several violations fails once per request (its results are adjacent).
      const repeat = previous !== undefined && previous.ruleId === r.ruleId && previous.status === r.status;
      previous = r;
      if (at < 0 || repeat) continue;
      // The rules run in a fixed order, so the entry at this position is almost always the one:
      // a reference comparison of the rule id instead of a Map lookup.
      let e = slot.at[n];
      if (e === undefined || e.rule !== r.ruleId) {
        e = slot.byRule.get(r.ruleId);
        if (e === undefined) {
          e = { rule: r.ruleId, counts: [0, 0, 0, 0, 0, 0], pinnedFor: undefined, pin: undefined };
          slot.byRule.set(r.ruleId, e);
        }
        slot.at[n] = e;
      }
      if (e.pinnedFor !== pinned) {
        const m = pinned[r.ruleId]?.mode;
        e.pin = m === undefined || m === 'inherit' ? undefined : m;
        e.pinnedFor = pinned;
      }
      const i = ((e.pin ?? l.mode) === 'enforce' ? 0 : 3) + at;
      e.counts[i] = (e.counts[i] ?? 0) + 1;
    }
  }

  metric(): object {
    const name = 'meshguard_rule_results_total';
    const help = 'Validating rule results in admission, by rule, result (pass, fail, error), effective mode, operation and kind';
    const values = (): MetricValue[] => {
      const out: MetricValue[] = [];
      for (const [kind, byOp] of this.#byKind) {
        for (const [operation, slot] of byOp) {
          for (const [rule, { counts }] of slot.byRule) {
            MODES.forEach((mode, m) =>
              RESULTS.forEach((result, k) => {
                const value = counts[m * 3 + k] ?? 0;
                if (value > 0) out.push({ labels: { rule, result, mode, operation, kind }, value });
              }),
            );
          }
        }
      }
      return out;
    };
    return {
      name,
      help,
      type: 'counter',
      aggregator: 'sum',
      labelNames: RULE_LABELS,
      get: async () => ({ name, help, type: 'counter', aggregator: 'sum', values: values() }),
      reset: (): void => this.#byKind.clear(),
    };
  }
}
