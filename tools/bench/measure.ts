// One measured run of a server under load (req/s, latency, server CPU per request, memory, the
// noise from other processes on the server's CPU), the runs kept for the tables, and the medians
// and paired ratios the tables are made of.
import { log } from './flags.ts';
import { prepare, runLoad, type LatencySummary, type RunResult, type Target } from './loadgen.ts';
import { namespaceName } from './namespaces.ts';
import { cpuBusyMicros, cpuMicros, memory } from './procstat.ts';
import { buildRequests, KINDS, type BenchRequest } from './requests.ts';
import { httpsPost, type Server } from './servers.ts';
import type { Bench } from './setup.ts';

export type ServerKind = 'meshguard' | 'floor';

/** One measured run: the load generator's result (its latency summary flattened) and the
 * server's side of it. */
export interface Run extends Omit<RunResult, 'latency'>, Omit<LatencySummary, 'count'> {
  readonly section: string;
  readonly server: ServerKind;
  readonly variant: string;
  readonly scenario: string;
  readonly connections: number;
  readonly round: number;
  /** Server CPU (user + system, all threads) per request in the measured window. */
  readonly cpuUsPerRequest: number;
  /** Server CPU share of one core during the window. */
  readonly serverCpu: number;
  /** Share of the server's CPU used by other processes during the window (noise), when pinned. */
  readonly otherOnServerCpu: number;
  readonly peakRssMiB: number;
  readonly rssMiB: number;
  readonly namespaces: number;
}

export interface Agg {
  readonly rps: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly cpuUsPerRequest: number;
  readonly clientCpu: number;
  readonly otherOnServerCpu: number;
  readonly peakRssMiB: number;
  readonly errors: number;
  readonly rounds: number;
  readonly cleanRounds: number;
}

export interface MeasureOptions {
  readonly variant?: string;
  readonly scenario: string;
  readonly requests: readonly BenchRequest[];
  readonly connections: number;
  readonly round: number;
  readonly handshake?: boolean;
  readonly ca?: string;
  readonly durationMs?: number;
  /** Filled with the measured window (µs since an arbitrary origin, as --cpu-prof's clock). */
  readonly window?: { start: bigint; end: bigint };
}

export interface PairOptions extends Omit<MeasureOptions, 'round' | 'variant'> {
  readonly rounds: number;
  readonly variants?: [string, string];
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

/**
 * A run is clean when other processes used less than 10% of the server's CPU during its window.
 * The machine is shared: medians and paired ratios use the clean rounds when there are any, and
 * every table says how many rounds were clean.
 */
export const NOISE = 0.1;
const clean = (r: Run): boolean => r.otherOnServerCpu < NOISE;

export class Measurements {
  readonly runs: Run[] = [];
  totalErrors = 0;
  /** 503 MG_OVERLOADED answers (meshguard shedding load on a busy machine): reported, not errors. */
  totalShed = 0;
  readonly #bench: Bench;
  readonly #scenarios: Readonly<Record<string, readonly BenchRequest[]>>;

  constructor(bench: Bench, scenarios: Readonly<Record<string, readonly BenchRequest[]>>) {
    this.#bench = bench;
    this.#scenarios = scenarios;
  }

  target(s: Server, ca = this.#bench.ecdsaCa): Target {
    return { host: '127.0.0.1', port: s.port, ca, servername: 'localhost' };
  }

  async measure(section: string, server: Server, kindOf: ServerKind, run: MeasureOptions): Promise<Run> {
    const { serverCpus } = this.#bench;
    const { settings } = this.#bench;
    const t = this.target(server, run.ca);
    let c0 = 0;
    let c1 = 0;
    let b0 = 0;
    let b1 = 0;
    const r: RunResult = await runLoad({
      target: t,
      requests: prepare(t, run.requests, { checkVerdict: kindOf === 'meshguard', close: run.handshake === true }),
      connections: run.connections,
      durationMs: run.durationMs ?? settings.durationMs,
      warmupMs: settings.warmupMs,
      handshakePerRequest: run.handshake === true,
      onWindow(edge) {
        if (edge === 'start') {
          if (serverCpus !== undefined) b0 = cpuBusyMicros(Number(serverCpus));
          c0 = cpuMicros(server.pid);
          if (run.window !== undefined) run.window.start = process.hrtime.bigint() / 1000n;
        } else {
          c1 = cpuMicros(server.pid);
          if (serverCpus !== undefined) b1 = cpuBusyMicros(Number(serverCpus));
          if (run.window !== undefined) run.window.end = process.hrtime.bigint() / 1000n;
        }
      },
    });
    const mem = memory(server.pid);
    const result: Run = {
      section,
      server: kindOf,
      variant: run.variant ?? kindOf,
      scenario: run.scenario,
      connections: run.connections,
      round: run.round,
      requests: r.requests,
      errors: r.errors,
      errorSamples: r.errorSamples,
      shed: r.shed,
      seconds: r.seconds,
      rps: r.rps,
      p50Us: r.latency.p50Us,
      p90Us: r.latency.p90Us,
      p99Us: r.latency.p99Us,
      p999Us: r.latency.p999Us,
      maxUs: r.latency.maxUs,
      meanUs: r.latency.meanUs,
      cpuUsPerRequest: r.requests > 0 ? (c1 - c0) / r.requests : 0,
      serverCpu: r.seconds > 0 ? (c1 - c0) / 1e6 / r.seconds : 0,
      clientCpu: r.clientCpu,
      otherOnServerCpu: serverCpus !== undefined && r.seconds > 0 ? Math.max(0, (b1 - b0 - (c1 - c0)) / 1e6 / r.seconds) : 0,
      peakRssMiB: mem.peakRss / 1048576,
      rssMiB: mem.rss / 1048576,
      namespaces: this.#bench.bc?.count ?? 0,
    };
    this.runs.push(result);
    this.totalErrors += r.errors;
    this.totalShed += r.shed;
    if (r.shed > 0) log(`  ${result.variant} ${run.scenario} x${run.connections}: ${r.shed} answers shed (503 MG_OVERLOADED)`);
    if (r.errors > 0) log(`  ${result.variant} ${run.scenario} x${run.connections}: ${r.errors} errors, e.g. ${r.errorSamples[0] ?? ''}`);
    return result;
  }

  /** A and B alternately, the order flipped each round. */
  async pairs(section: string, mg: Server, fl: Server, pair: PairOptions): Promise<void> {
    for (let round = 0; round < pair.rounds; round++) {
      const order: [ServerKind, Server][] = round % 2 === 0 ? [['meshguard', mg], ['floor', fl]] : [['floor', fl], ['meshguard', mg]];
      for (const [k, s] of order) {
        const variant = pair.variants === undefined ? k : k === 'meshguard' ? pair.variants[0] : pair.variants[1];
        await this.measure(section, s, k, { ...pair, round, variant });
      }
    }
  }

  /** Not recorded: JIT and heap warm-up of a fresh server (every scenario, 50 connections). */
  async warmUp(s: Server, kindOf: ServerKind, ca = this.#bench.ecdsaCa): Promise<void> {
    const t = this.target(s, ca);
    for (const reqs of Object.values(this.#scenarios)) {
      const r = await runLoad({ target: t, requests: prepare(t, reqs, { checkVerdict: kindOf === 'meshguard' }), connections: 50, durationMs: this.#bench.settings.quick ? 50 : 600, warmupMs: 0 });
      this.totalErrors += r.errors;
      this.totalShed += r.shed;
      if (r.errors > 0) log(`  warm-up of ${s.name}: ${r.errors} errors, e.g. ${r.errorSamples[0] ?? ''}`);
    }
  }

  agg(filter: (r: Run) => boolean): Agg {
    const all = this.runs.filter(filter);
    const c = all.filter(clean);
    const rs = c.length > 0 ? c : all;
    return {
      rps: median(rs.map((r) => r.rps)),
      p50Us: median(rs.map((r) => r.p50Us)),
      p99Us: median(rs.map((r) => r.p99Us)),
      p999Us: median(rs.map((r) => r.p999Us)),
      cpuUsPerRequest: median(rs.map((r) => r.cpuUsPerRequest)),
      clientCpu: Math.max(0, ...rs.map((r) => r.clientCpu)),
      otherOnServerCpu: median(rs.map((r) => r.otherOnServerCpu)),
      peakRssMiB: Math.max(0, ...rs.map((r) => r.peakRssMiB)),
      errors: all.reduce((a, r) => a + r.errors, 0),
      rounds: all.length,
      cleanRounds: c.length,
    };
  }

  /** Median over rounds of the per-round ratio A/B (paired: each round's runs are neighbours in time). */
  pairedRatio(a: (r: Run) => boolean, b: (r: Run) => boolean, metric: (r: Run) => number): number {
    const ra = this.runs.filter(a);
    const rb = this.runs.filter(b);
    const ratios: number[] = [];
    const cleanRatios: number[] = [];
    for (const x of ra) {
      const y = rb.find((r) => r.round === x.round);
      if (y === undefined || metric(y) <= 0) continue;
      ratios.push(metric(x) / metric(y));
      if (clean(x) && clean(y)) cleanRatios.push(metric(x) / metric(y));
    }
    return median(cleanRatios.length > 0 ? cleanRatios : ratios);
  }
}

/** Every request kind gets the answer it should (allowed, patched or denied). */
export async function expectVerdicts(s: Server, namespaces: readonly string[], ca: string): Promise<void> {
  for (const k of KINDS) {
    const r = buildRequests(k, namespaces, 1)[0] as BenchRequest;
    const res = await httpsPost(s.port, r.path, r.body, ca);
    const resp = (res.json as { response?: { allowed?: boolean; patch?: string; status?: { message?: string } } }).response;
    const got = resp === undefined ? `HTTP ${res.status}` : resp.allowed === false ? 'denied' : resp.patch !== undefined ? 'patched' : 'allowed';
    if (got !== r.expect) throw new Error(`${s.name}: ${k} answered ${got}, expected ${r.expect}: ${JSON.stringify(res.json).slice(0, 500)}`);
  }
}

/** Until meshguard's cache holds namespace i (a Pod there is allowed, not denied as unknown). */
export async function waitForNamespace(s: Server, i: number, timeoutMs: number, ca: string): Promise<number> {
  const start = performance.now();
  const name = namespaceName(i - (i % 10 < 8 ? 0 : (i % 10) - 7));
  const r = buildRequests('pod-create', [name], 1)[0] as BenchRequest;
  for (;;) {
    const res = await httpsPost(s.port, r.path, r.body, ca);
    if ((res.json as { response?: { allowed?: boolean } }).response?.allowed === true) return (performance.now() - start) / 1000;
    if (performance.now() - start > timeoutMs) throw new Error(`${s.name}: namespace ${name} not in the cache after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
