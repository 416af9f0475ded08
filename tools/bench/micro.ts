// In-process microbenchmark of meshguard's decision path, per request kind, without TLS or HTTP:
//
//   parse  (the server's JSON body parser, src/webhook/json-body.ts)
//   decode (src/webhook/decode.ts decodeReview)
//   review (src/core/pipeline.ts reviewRequest: evaluate, decide, render)
//   encode (JSON.stringify of the AdmissionReview answer)
//
// ns/op per stage and in total, after a warm-up, as the median of several rounds; next to the
// floor's own work (JSON.parse of the body and a constant answer with the uid). Also the same
// Pod CREATE against namespace caches of 10, 1 000 and 50 000 namespaces.
//
//   node tools/bench/micro.ts [--quick] [--json]
import { parseArgs } from 'node:util';
import { encodeDecision, encodeReview } from '../../src/webhook/encode.ts';
import { decodeReview } from '../../src/webhook/decode.ts';
import { StaticClusterView, namespaceLabels as cachedLabels, type NamespaceInfo } from '../../src/core/cluster-view.ts';
import { loadConfig } from '../../src/config/load.ts';
import { reviewRequest, type Endpoint } from '../../src/core/pipeline.ts';
import { BUILTIN_RULES, RULE_IDS } from '../../src/policies/registry.ts';
import { parseJsonBody } from '../../src/webhook/json-body.ts';
import { injectedNamespaces, namespaceLabels, namespaceName } from './namespaces.ts';
import { buildRequests, KINDS, type BenchRequest } from './requests.ts';

export interface MicroRow {
  readonly name: string;
  readonly bodyBytes: number;
  /** Median ns/op over rounds, per stage and in total. */
  readonly parseNs: number;
  readonly decodeNs: number;
  readonly reviewNs: number;
  readonly encodeNs: number;
  readonly totalNs: number;
  /** The floor's work for the same body: JSON.parse and a constant answer. */
  readonly floorNs: number;
  readonly rounds: number;
  readonly opsPerRound: number;
  readonly verdict: string;
}

export interface MicroResult {
  readonly kinds: readonly MicroRow[];
  readonly namespaceScaling: readonly (MicroRow & { readonly namespaces: number })[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

function cache(n: number): StaticClusterView {
  const list: NamespaceInfo[] = [];
  for (let i = 0; i < n; i++) list.push({ name: namespaceName(i), labels: Object.freeze(cachedLabels({ 'kubernetes.io/metadata.name': namespaceName(i), ...namespaceLabels(i) })) });
  return new StaticClusterView(list);
}

let sink = 0;

function bench(name: string, requests: readonly BenchRequest[], cluster: StaticClusterView, timing: { warmupMs: number; rounds: number; roundMs: number }): MicroRow {
  const config = loadConfig({ ruleIds: RULE_IDS });
  const endpoint = (r: BenchRequest): Endpoint => (r.path === '/mutate' ? 'mutate' : 'validate');
  let verdict = '';
  const one = (r: BenchRequest, t: Float64Array): void => {
    const t0 = performance.now();
    const body = parseJsonBody(r.body);
    const t1 = performance.now();
    const d = decodeReview(body);
    if (!d.ok) throw new Error(`${name}: ${d.error.name} ${d.error.detail}`);
    const t2 = performance.now();
    const outcome = reviewRequest(endpoint(r), d.request, config, cluster, BUILTIN_RULES);
    const t3 = performance.now();
    const text = encodeReview(encodeDecision(d.request.uid, outcome.decision));
    const t4 = performance.now();
    sink += text.length;
    verdict = outcome.verdict;
    t[0] = (t[0] ?? 0) + (t1 - t0);
    t[1] = (t[1] ?? 0) + (t2 - t1);
    t[2] = (t[2] ?? 0) + (t3 - t2);
    t[3] = (t[3] ?? 0) + (t4 - t3);
  };
  const floorOne = (r: BenchRequest): void => {
    const review = JSON.parse(r.body) as { request?: { uid?: unknown } };
    const text = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":${JSON.stringify(review.request?.uid ?? '')},"allowed":true}}`;
    sink += text.length;
  };
  // Warm-up: both paths, until the JIT has settled.
  const scratch = new Float64Array(4);
  let i = 0;
  for (const end = performance.now() + timing.warmupMs; performance.now() < end; ) {
    const r = requests[i++ % requests.length] as BenchRequest;
    one(r, scratch);
    floorOne(r);
  }
  const stages: number[][] = [[], [], [], []];
  const totals: number[] = [];
  const floors: number[] = [];
  let ops = 0;
  for (let round = 0; round < timing.rounds; round++) {
    const t = new Float64Array(4);
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < timing.roundMs) {
      for (let k = 0; k < 16; k++) one(requests[i++ % requests.length] as BenchRequest, t);
      n += 16;
    }
    const elapsed = performance.now() - start;
    for (let s = 0; s < 4; s++) (stages[s] as number[]).push(((t[s] ?? 0) * 1e6) / n);
    totals.push((elapsed * 1e6) / n);
    ops = n;
    let m = 0;
    const fstart = performance.now();
    while (performance.now() - fstart < timing.roundMs / 2) {
      for (let k = 0; k < 16; k++) floorOne(requests[i++ % requests.length] as BenchRequest);
      m += 16;
    }
    floors.push(((performance.now() - fstart) * 1e6) / m);
  }
  return {
    name,
    bodyBytes: Buffer.byteLength((requests[0] as BenchRequest).body),
    parseNs: median(stages[0] as number[]),
    decodeNs: median(stages[1] as number[]),
    reviewNs: median(stages[2] as number[]),
    encodeNs: median(stages[3] as number[]),
    totalNs: median(totals),
    floorNs: median(floors),
    rounds: timing.rounds,
    opsPerRound: ops,
    verdict,
  };
}

export function runMicro(quick: boolean): MicroResult {
  const o = quick ? { warmupMs: 200, rounds: 2, roundMs: 100 } : { warmupMs: 1000, rounds: 5, roundMs: 300 };
  const nsCounts = quick ? [10, 1000] : [10, 1000, 50_000];
  const big = cache(1000);
  const namespaces = injectedNamespaces(10);
  const kinds = KINDS.map((k) => bench(k, buildRequests(k, namespaces, 64), big, o));
  const namespaceScaling = nsCounts.map((n) => ({ ...bench(`pod-create, ${n} namespaces`, buildRequests('pod-create', namespaces, 64), cache(n), o), namespaces: n }));
  if (sink === -1) process.stdout.write('');
  return { kinds, namespaceScaling };
}

function fmt(ns: number): string {
  return ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : `${(ns / 1000).toFixed(2)} µs`;
}

export function microTable(r: MicroResult): string {
  const head = '| request | body | parse | decode | review | encode | total | floor | total/floor | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n';
  const row = (x: MicroRow): string =>
    `| ${x.name} | ${(x.bodyBytes / 1024).toFixed(1)} KiB | ${fmt(x.parseNs)} | ${fmt(x.decodeNs)} | ${fmt(x.reviewNs)} | ${fmt(x.encodeNs)} | ${fmt(x.totalNs)} | ${fmt(x.floorNs)} | ${(x.totalNs / x.floorNs).toFixed(2)} | ${x.verdict} |\n`;
  return head + [...r.kinds, ...r.namespaceScaling].map(row).join('');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
  const r = runMicro(values.quick === true);
  process.stdout.write(values.json === true ? `${JSON.stringify(r)}\n` : microTable(r));
}
