// The throughput phases: meshguard and the floor started side by side, the namespace cache
// grown on the real apiserver, the main matrix (every scenario at 1, 2 and 50 connections,
// alternated), the extra rounds of the target cells, and the framework split.
import { log } from './flags.ts';
import { expectVerdicts, waitForNamespace, type Agg, type Measurements, type Run, type ServerKind } from './measure.ts';
import { memory } from './procstat.ts';
import type { BenchRequest } from './requests.ts';
import { waitReady, type Server } from './servers.ts';
import type { Bench } from './setup.ts';

export type Scenarios = Readonly<Record<string, readonly BenchRequest[]>>;

export interface NamespaceInfo { count: number; createSeconds: number; cacheSeconds: number; meshguardRssMiB: number; meshguardPeakRssMiB: number }
export interface NamespacePoint { namespaces: number; meshguard: Agg; floor: Agg; cpuRatio: number }
export interface FrameworkRow { variant: string; agg: Agg; cpuRatio: number; rpsRatio: number }

/** The namespace cache grown step by step on the real apiserver, and Pod CREATE x50 at each step. */
export class NamespaceScaling {
  readonly info: NamespaceInfo[] = [];
  readonly points: NamespacePoint[] = [];
  readonly #bench: Bench;
  readonly #m: Measurements;
  readonly #scenarios: Scenarios;

  constructor(bench: Bench, m: Measurements, scenarios: Scenarios) {
    this.#bench = bench;
    this.#m = m;
    this.#scenarios = scenarios;
  }

  async grow(mg: Server, n: number): Promise<void> {
    const { bc, ecdsaCa } = this.#bench;
    if (bc === undefined) return;
    const createSeconds = await bc.growTo(n);
    const cacheSeconds = await waitForNamespace(mg, n - 1, 300_000, ecdsaCa);
    const mem = memory(mg.pid);
    this.info.push({ count: n, createSeconds, cacheSeconds, meshguardRssMiB: mem.rss / 1048576, meshguardPeakRssMiB: mem.peakRss / 1048576 });
    log(`${n} namespaces: created in ${createSeconds.toFixed(1)} s, in meshguard's cache ${cacheSeconds.toFixed(1)} s later; meshguard RSS ${(mem.rss / 1048576).toFixed(0)} MiB`);
  }

  /** The main table's own cell stands for the main namespace count; other counts get their runs. */
  async point(mg: Server, fl: Server, n: number, rounds: number): Promise<void> {
    const main = this.#bench.settings.mainNamespaces;
    const section = `namespaces-${n}`;
    if (n !== main) await this.#m.pairs(section, mg, fl, { scenario: 'pod-create', requests: this.#scenarios['pod-create'] as BenchRequest[], connections: 50, rounds });
    const sec = n === main ? 'main' : section;
    const isA = (r: Run): boolean => r.section === sec && r.scenario === 'pod-create' && r.connections === 50 && r.server === 'meshguard';
    const isB = (r: Run): boolean => r.section === sec && r.scenario === 'pod-create' && r.connections === 50 && r.server === 'floor';
    this.points.push({ namespaces: n, meshguard: this.#m.agg(isA), floor: this.#m.agg(isB), cpuRatio: this.#m.pairedRatio(isA, isB, (r) => r.cpuUsPerRequest) });
  }
}

/** meshguard and the floor, ready, checked and warmed up (with a cluster: the 10-namespace point). */
export async function startMain(bench: Bench, m: Measurements, ns: NamespaceScaling, requestNamespaces: readonly string[]): Promise<{ mg: Server; fl: Server }> {
  const { bc, ecdsaCa, settings } = bench;
  if (bc !== undefined) await bc.growTo(settings.nsSteps[0] ?? settings.mainNamespaces);
  log(`starting meshguard (${bench.meshguardMain}) and the floor`);
  const mg = await bench.startMeshguard('meshguard', { cluster: true });
  const fl = await bench.startFloor('floor', 'ecdsa');
  await waitReady(mg.port, ecdsaCa, 120_000);
  if (bc !== undefined) {
    await ns.grow(mg, settings.nsSteps[0] as number);
    await expectVerdicts(mg, requestNamespaces, ecdsaCa);
    await m.warmUp(mg, 'meshguard');
    await m.warmUp(fl, 'floor');
    log('namespace scaling: 10 namespaces');
    await ns.point(mg, fl, 10, 2);
    await ns.grow(mg, settings.mainNamespaces);
  } else {
    await expectVerdicts(mg, requestNamespaces, ecdsaCa);
    await m.warmUp(mg, 'meshguard');
    await m.warmUp(fl, 'floor');
  }
  return { mg, fl };
}

export async function mainMatrix(bench: Bench, m: Measurements, scenarios: Scenarios, mg: Server, fl: Server): Promise<void> {
  const { rounds, targetExtraRounds, connections: connectionCounts, durationMs } = bench.settings;
  /** Which server of the main table runs first in a round: flipped by round and connection count. */
  const mainOrder = (round: number, connections: number): [ServerKind, Server][] =>
    (round + connections) % 2 === 0 ? [['meshguard', mg], ['floor', fl]] : [['floor', fl], ['meshguard', mg]];
  log(`main matrix: ${Object.keys(scenarios).length} scenarios x ${connectionCounts.length} connection counts x ${rounds} rounds x 2 servers, ${durationMs / 1000} s each`);
  for (let round = 0; round < rounds; round++) {
    for (const [scenario, requests] of Object.entries(scenarios)) {
      for (const connections of connectionCounts) {
        for (const [k, s] of mainOrder(round, connections)) await m.measure('main', s, k, { scenario, requests, connections, round });
      }
    }
    log(`  round ${round + 1}/${rounds} done`);
  }
  // The cells the targets are read from (Pod CREATE at 2 and 50 connections) get
  // targetExtraRounds more alternated rounds: single rounds of the 50-connection cell ranged from
  // 1.32 to 1.81 times the floor over three full runs of the same code on a noisy machine, so a
  // median of three moved by 0.4 from run to run.
  if (targetExtraRounds > 0) {
    log(`target cells: ${targetExtraRounds} more rounds of Pod CREATE at 2 and 50 connections`);
    for (let round = rounds; round < rounds + targetExtraRounds; round++) {
      for (const connections of [2, 50]) {
        for (const [k, s] of mainOrder(round, connections)) await m.measure('main', s, k, { scenario: 'pod-create', requests: scenarios['pod-create'] as BenchRequest[], connections, round });
      }
    }
  }
}

/** The busy-wait of the framework split's calibration floor, in µs per request. */
const SPIN_US = 10;

// Where the cost above the floor sits: the floor, the Fastify floor (tools/bench/fastify-floor.ts:
// a bare Fastify route with meshguard's body parser and a constant answer) and meshguard,
// alternated round by round on the target cell (Pod CREATE, 50 connections). The Fastify
// floor minus the floor is the framework's share; meshguard minus the Fastify floor is meshguard's.
// Two more servers in the same rounds: the decision-path floor (tools/bench/path-floor.ts:
// meshguard's parser, decode, review, recorder and encode in a bare node:https handler, with the
// main table's namespace cache), what meshguard's decision costs with no framework around it; and
// the floor with a busy-wait of SPIN_US µs per request, what a known amount of work per request
// shows as on this machine.
export async function frameworkSplit(bench: Bench, m: Measurements, scenarios: Scenarios, mg: Server, fl: Server): Promise<FrameworkRow[]> {
  const { bc, ecdsa, ecdsaCa, settings, otherRuntime } = bench;
  const certArgs = ['--cert', ecdsa.certFile, '--key', ecdsa.keyFile];
  const ff = await bench.startScript('fastify-floor', bench.fastifyFloorMain, certArgs);
  await m.warmUp(ff, 'floor');
  const pathFloor = await bench.startScript('path-floor', bench.pathFloorMain, [...certArgs, '--namespaces', String(bc === undefined ? 0 : settings.mainNamespaces)]);
  await m.warmUp(pathFloor, 'meshguard');
  const spinFloor = await bench.startScript('spin-floor', bench.floorMain, [...certArgs, '--spin-us', String(SPIN_US)]);
  await m.warmUp(spinFloor, 'floor');
  const pathVariant = 'decision path on node:https';
  const spinVariant = `floor + ${SPIN_US} µs busy-wait`;
  // A second meshguard with the other runtime settings (not in --quick): what the choice of
  // settings is worth, side by side.
  const otherVariant = `meshguard, ${otherRuntime.label}`;
  const other = settings.quick ? undefined : await bench.startMeshguard('meshguard-other-runtime', { cluster: true, nodeFlags: otherRuntime.nodeFlags, env: otherRuntime.env });
  if (other !== undefined) {
    await waitReady(other.port, ecdsaCa, 180_000);
    if (bc !== undefined) await waitForNamespace(other, bc.count - 1, 300_000, ecdsaCa);
    await m.warmUp(other, 'meshguard');
  }
  const podCreate = scenarios['pod-create'] as BenchRequest[];
  const servers: [ServerKind, string, Server][] = [
    ['meshguard', 'meshguard', mg],
    ['floor', 'floor', fl],
    ['floor', 'fastify-floor', ff],
    ['meshguard', pathVariant, pathFloor],
    ['floor', spinVariant, spinFloor],
    ...(other === undefined ? [] : [['meshguard', otherVariant, other] as [ServerKind, string, Server]]),
  ];
  // As many rounds as the target cells, shorter: the servers' differences here are a few
  // percent, and single rounds on a shared machine move by more.
  const splitRounds = settings.rounds + settings.targetExtraRounds;
  const splitMs = Math.min(settings.durationMs, 1000);
  log(`framework split: floor, Fastify floor, ${pathVariant}, ${spinVariant} and meshguard${other === undefined ? '' : ` (and ${otherVariant})`}, Pod CREATE x50, ${splitRounds} rounds x ${splitMs / 1000} s`);
  for (let round = 0; round < splitRounds; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const [k, variant, s] of order) await m.measure('framework', s, k, { variant, scenario: 'pod-create', requests: podCreate, connections: 50, round, durationMs: splitMs });
  }
  await ff.stop();
  await pathFloor.stop();
  await spinFloor.stop();
  await other?.stop();
  const of = (variant: string) => (r: Run): boolean => r.section === 'framework' && r.variant === variant;
  const framework = ['floor', spinVariant, 'fastify-floor', pathVariant, 'meshguard', ...(other === undefined ? [] : [otherVariant])].map((variant) => ({
    variant,
    agg: m.agg(of(variant)),
    cpuRatio: variant === 'floor' ? 1 : m.pairedRatio(of(variant), of('floor'), (r) => r.cpuUsPerRequest),
    rpsRatio: variant === 'floor' ? 1 : m.pairedRatio(of(variant), of('floor'), (r) => r.rps),
  }));
  for (const f of framework) log(`  ${f.variant}: ${f.agg.cpuUsPerRequest.toFixed(0)} µs CPU/request (x${f.cpuRatio.toFixed(2)} the floor), ${f.agg.rps.toFixed(0)} req/s (x${f.rpsRatio.toFixed(2)})`);
  return framework;
}
