// The report of a bench run: the tables (markdown on stdout), the targets of issue 7 and the
// results file (JSON, every run included).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Memory50k, Profiles, SizeRow } from './costs.ts';
import { BENCH, elapsedSeconds, log } from './flags.ts';
import { NOISE, type Agg, type Measurements, type Run } from './measure.ts';
import { microTable, type MicroResult } from './micro.ts';
import { loadAverage, type memory } from './procstat.ts';
import { profileText, type AreaDiffRow } from './profile.ts';
import type { Bench } from './setup.ts';
import type { FrameworkRow, NamespaceScaling, Scenarios } from './throughput.ts';

type Memory = ReturnType<typeof memory>;

/** What the phases measured, beyond the runs themselves. */
export interface Results {
  readonly namespaces: NamespaceScaling;
  readonly mainMemory: { readonly meshguard: Memory; readonly floor: Memory };
  readonly framework: FrameworkRow[] | undefined;
  readonly memory50k: Memory50k;
  readonly sizeRows: SizeRow[];
  readonly afterSizeMemory: { readonly meshguard: Memory; readonly floor: Memory };
  readonly handshakes: Record<string, Agg>;
  readonly profiles: Profiles;
  readonly micro: MicroResult | undefined;
}

interface MainRow { scenario: string; connections: number; meshguard: Agg; floor: Agg; rpsRatio: number; cpuRatio: number; p99Ratio: number }

const mib = (b: number): number => b / 1048576;
const us = (x: number): string => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(0)} µs`);
const ratio = (x: number): string => (Number.isFinite(x) && x > 0 ? x.toFixed(2) : 'n/a');

/** Self time per request by area, meshguard against the floor (areas under 0.5 µs left out). */
function areaTable(rows: readonly AreaDiffRow[]): string[] {
  return [
    '| area | meshguard µs/req | floor µs/req | difference |',
    '|---|---:|---:|---:|',
    ...rows.filter((x) => Math.max(x.aUs, x.bUs) >= 0.5).map((d) => `| ${d.area} | ${d.aUs.toFixed(1)} | ${d.bUs.toFixed(1)} | ${(d.aUs - d.bUs >= 0 ? '+' : '') + (d.aUs - d.bUs).toFixed(1)} |`),
  ];
}

/** Prints the tables and writes the results file. */
export function report(bench: Bench, m: Measurements, scenarios: Scenarios, res: Results): void {
  const { settings, mach, canPin, loadAtStart, bc } = bench;
  const mainRows: MainRow[] = [];
  for (const scenario of Object.keys(scenarios)) {
    for (const connections of settings.connections) {
      const isA = (r: Run): boolean => r.section === 'main' && r.scenario === scenario && r.connections === connections && r.server === 'meshguard';
      const isB = (r: Run): boolean => r.section === 'main' && r.scenario === scenario && r.connections === connections && r.server === 'floor';
      mainRows.push({
        scenario,
        connections,
        meshguard: m.agg(isA),
        floor: m.agg(isB),
        rpsRatio: m.pairedRatio(isA, isB, (r) => r.rps),
        cpuRatio: m.pairedRatio(isA, isB, (r) => r.cpuUsPerRequest),
        p99Ratio: m.pairedRatio(isA, isB, (r) => r.p99Us),
      });
    }
  }

  const row = (s: string, c: number): MainRow | undefined => mainRows.find((r) => r.scenario === s && r.connections === c);
  const pod50 = row('pod-create', 50);
  const pod2 = row('pod-create', 2);
  // The memory target is read on meshguard as it ships: the image's runtime settings (the first
  // row, V8 defaults, stays in the table and in a context line).
  const rssTarget = res.memory50k.fresh.find((f) => f.server === 'meshguard' && f.name.includes('as the image runs it'))?.peakRssMiB ?? res.memory50k.rss50k?.peakAfterLoadMiB;
  const rssDefaults = res.memory50k.fresh.find((f) => f.server === 'meshguard' && f.name.endsWith('V8 defaults'))?.peakRssMiB;
  const floorFreshRss = res.memory50k.fresh.find((f) => f.server === 'floor' && f.name.includes("the image's settings"))?.peakRssMiB;
  const targets = [
    { target: 'throughput at 50 connections, Pod CREATE: meshguard/floor >= 0.85', measured: pod50?.rpsRatio ?? 0, pass: (pod50?.rpsRatio ?? 0) >= 0.85 },
    { target: 'server CPU per request, Pod CREATE at 50 connections: meshguard/floor <= 1.2', measured: pod50?.cpuRatio ?? 0, pass: (pod50?.cpuRatio ?? Infinity) <= 1.2 },
    { target: 'p99 at 2 connections, Pod CREATE: meshguard/floor <= 1.5', measured: pod2?.p99Ratio ?? 0, pass: (pod2?.p99Ratio ?? Infinity) <= 1.5 },
    { target: 'p99 at 2 connections, Pod CREATE: < 2 ms', measured: (pod2?.meshguard.p99Us ?? 0) / 1000, pass: (pod2?.meshguard.p99Us ?? Infinity) < 2000 },
    { target: `peak RSS under load with 50 000 namespaces cached <= 150 MiB (res.memory50k.fresh process, Pod CREATE x50, as the image runs it: ${bench.imageRuntime.label})`, measured: rssTarget ?? Number.NaN, pass: rssTarget === undefined ? null : rssTarget <= 150 },
    ...(rssDefaults !== undefined ? [{ target: 'context, not a target: the same with V8 defaults (MiB)', measured: rssDefaults, pass: null }] : []),
    { target: 'no request errors in any run', measured: m.totalErrors, pass: m.totalErrors === 0 },
    { target: 'context, not a target: answers shed with 503 MG_OVERLOADED (the machine was too busy)', measured: m.totalShed, pass: null },
    ...(floorFreshRss !== undefined && rssTarget !== undefined
      ? [{ target: "context, not a target: peak RSS of a fresh floor under the same load with the image's settings, and meshguard minus floor (MiB)", measured: floorFreshRss, pass: null, meshguardMinusFloor: rssTarget - floorFreshRss }]
      : []),
  ];

  const lines: string[] = [];
  const p = (s = ''): void => void lines.push(s);
  p(`# meshguard vs floor, ${new Date().toISOString()}${settings.quick ? ' (--quick: smoke run, figures not meaningful)' : ''}`);
  p(`load average at start ${loadAtStart.join(' ')}, at end ${loadAverage().join(' ')} (other work on this shared machine shows in the "other load on CPU 0" column)`);
  p(`machine: ${mach.nproc} CPUs, ${mach.cpuModel}, ${mach.memTotalMiB} MiB, ${mach.kernel}, Node ${mach.node}; ${canPin ? 'servers on CPU 0, load generator on CPU 1 (taskset)' : 'not pinned'}`);
  p(`runtime settings of meshguard, the floor and the Fastify floor: ${bench.runtime === bench.imageRuntime ? `the image's (${bench.imageRuntime.label})` : 'V8 defaults'} (--runtime ${settings.runtime}); the framework split adds a meshguard with ${bench.otherRuntime.label}; the fresh 50 000-namespace rows name their own`);
  p(`meshguard: ${bench.meshguardMain}, enforce mode, all rules, namespace cache: ${bc === undefined ? 'none (unknownNamespace: allow)' : `real apiserver, ${settings.mainNamespaces} namespaces for the main table`}; ${settings.rounds} rounds x ${settings.durationMs / 1000} s per cell (${settings.rounds + settings.targetExtraRounds} for Pod CREATE at 2 and 50 connections, the target cells), meshguard and floor alternating (medians; ratios are medians of paired per-round ratios; rounds where other processes took >= ${NOISE * 100}% of CPU 0 are left out when clean ones exist)`);
  p();
  p('| scenario | conns | meshguard req/s | floor req/s | ratio | mg p50 | mg p99 | mg p99.9 | floor p50 | floor p99 | floor p99.9 | p99 ratio | mg CPU/req | floor CPU/req | CPU ratio | client CPU | other load on CPU 0 | clean rounds | errors |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of mainRows) {
    p(`| ${r.scenario} | ${r.connections} | ${r.meshguard.rps.toFixed(0)} | ${r.floor.rps.toFixed(0)} | ${ratio(r.rpsRatio)} | ${us(r.meshguard.p50Us)} | ${us(r.meshguard.p99Us)} | ${us(r.meshguard.p999Us)} | ${us(r.floor.p50Us)} | ${us(r.floor.p99Us)} | ${us(r.floor.p999Us)} | ${ratio(r.p99Ratio)} | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${(Math.max(r.meshguard.clientCpu, r.floor.clientCpu) * 100).toFixed(0)}% | ${(Math.max(r.meshguard.otherOnServerCpu, r.floor.otherOnServerCpu) * 100).toFixed(0)}% | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} | ${r.meshguard.errors + r.floor.errors} |`);
  }
  p();
  p(`peak RSS after the main table: meshguard ${mib(res.mainMemory.meshguard.peakRss).toFixed(0)} MiB, floor ${mib(res.mainMemory.floor.peakRss).toFixed(0)} MiB (ratio ${ratio(res.mainMemory.meshguard.peakRss / res.mainMemory.floor.peakRss)})`);
  p();
  p('## Object size (Deployment CREATE, 2 connections)');
  p('| object | body | meshguard CPU/req | floor CPU/req | ratio | meshguard µs/KiB | floor µs/KiB | meshguard req/s | floor req/s | clean rounds |');
  p('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of res.sizeRows) {
    const kib = r.bodyBytes / 1024;
    p(`| ${(r.objectBytes / 1024).toFixed(1)} KiB | ${kib.toFixed(1)} KiB | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${(r.meshguard.cpuUsPerRequest / kib).toFixed(2)} | ${(r.floor.cpuUsPerRequest / kib).toFixed(2)} | ${r.meshguard.rps.toFixed(0)} | ${r.floor.rps.toFixed(0)} | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} |`);
  }
  p(`peak RSS after the size runs: meshguard ${mib(res.afterSizeMemory.meshguard.peakRss).toFixed(0)} MiB, floor ${mib(res.afterSizeMemory.floor.peakRss).toFixed(0)} MiB`);
  p();
  if (res.namespaces.points.length > 0) {
    p('## Namespace cache (real apiserver watch; Pod CREATE, 50 connections)');
    p('| namespaces | created in | meshguard CPU/req | floor CPU/req | ratio | meshguard req/s | meshguard RSS idle | meshguard peak RSS | clean rounds |');
    p('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of res.namespaces.points) {
      const info = res.namespaces.info.find((x) => x.count === r.namespaces);
      p(`| ${r.namespaces} | ${info?.createSeconds.toFixed(1) ?? '?'} s | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${r.meshguard.rps.toFixed(0)} | ${info?.meshguardRssMiB.toFixed(0) ?? '?'} MiB | ${r.meshguard.peakRssMiB.toFixed(0)} MiB | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} |`);
    }
    p();
  }
  if (res.memory50k.fresh.length > 0 || res.memory50k.rss50k !== undefined) {
    p('## Memory with 50 000 namespaces');
    if (res.memory50k.rss50k !== undefined) p(`long-running meshguard (after all runs above): RSS ${res.memory50k.rss50k.rssBeforeMiB.toFixed(0)} MiB before the 50 000-namespace runs, peak ${res.memory50k.rss50k.peakAfterLoadMiB.toFixed(0)} MiB after them`);
    p();
    p('| process | ready in | idle RSS | peak RSS under Pod CREATE x50 | RSS after: anon / file | CPU/req | req/s |');
    p('|---|---:|---:|---:|---:|---:|---:|');
    const idle10 = res.namespaces.info.find((x) => x.count === 10);
    if (idle10 !== undefined) p(`| meshguard, 10 namespaces (the main process before any load) | | ${idle10.meshguardRssMiB.toFixed(0)} MiB | ${(res.namespaces.points.find((x) => x.namespaces === 10)?.meshguard.peakRssMiB ?? 0).toFixed(0)} MiB | | ${us(res.namespaces.points.find((x) => x.namespaces === 10)?.meshguard.cpuUsPerRequest ?? 0)} | ${(res.namespaces.points.find((x) => x.namespaces === 10)?.meshguard.rps ?? 0).toFixed(0)} |`);
    for (const f of res.memory50k.fresh) p(`| ${f.name} | ${f.startSeconds.toFixed(1)} s | ${f.idleRssMiB.toFixed(0)} MiB | ${f.peakRssMiB.toFixed(0)} MiB | ${f.rssAnonMiB.toFixed(0)} / ${f.rssFileMiB.toFixed(0)} MiB | ${us(f.cpuUsPerRequest)} | ${f.rps.toFixed(0)} |`);
    p();
  }
  p('## Full TLS handshakes (new connection per Pod CREATE request, 4 concurrent, no resumption)');
  p('| server / certificate | connections/s | server CPU per connection | connections/s per core (1e6 / CPU) | CPU above a keep-alive request | client CPU |');
  p('|---|---:|---:|---:|---:|---:|');
  for (const [v, a] of Object.entries(res.handshakes)) {
    const keepAlive = row('pod-create', 2)?.[v.startsWith('meshguard') ? 'meshguard' : 'floor'].cpuUsPerRequest ?? 0;
    p(`| ${v} | ${a.rps.toFixed(0)} | ${us(a.cpuUsPerRequest)} | ${a.cpuUsPerRequest > 0 ? (1e6 / a.cpuUsPerRequest).toFixed(0) : 'n/a'} | ${us(a.cpuUsPerRequest - keepAlive)} | ${(a.clientCpu * 100).toFixed(0)}%${a.clientCpu >= 0.9 ? ' (client-bound: connections/s is the client\'s limit; CPU per connection is the server figure)' : ''} |`);
  }
  p();
  if (res.framework !== undefined) {
    p('## Where the cost above the floor sits (Pod CREATE, 50 connections, the servers alternated)');
    p('| server | req/s | CPU/req | CPU ratio to the floor | req/s ratio to the floor | clean rounds |');
    p('|---|---:|---:|---:|---:|---:|');
    for (const f of res.framework) p(`| ${f.variant} | ${f.agg.rps.toFixed(0)} | ${us(f.agg.cpuUsPerRequest)} | ${ratio(f.cpuRatio)} | ${ratio(f.rpsRatio)} | ${f.agg.cleanRounds}/${f.agg.rounds} |`);
    p();
  }
  if (res.micro !== undefined) {
    p('## Microbenchmark (in-process, no TLS; median ns/op)');
    p(microTable(res.micro).trimEnd());
    p();
  }
  if (res.profiles.runs.length > 0) {
    p('## Profiles (--cpu-prof, 50 connections; self time per request by area, meshguard vs floor, Pod CREATE)');
    for (const line of areaTable(res.profiles.diff)) p(line);
    p();
    if (res.profiles.diff2.length > 0) {
      p('Same at 2 connections:');
      for (const line of areaTable(res.profiles.diff2)) p(line);
      p();
    }
    for (const pr of res.profiles.runs) {
      p(`### ${pr.label} (${pr.requests} requests in the window; ${pr.file})`);
      p('```');
      p(profileText(pr.summary).trimEnd());
      p('```');
      p();
    }
  }
  p('## Targets (issue 7)');
  for (const t of targets) p(`- ${t.target.startsWith('context') ? 'CONTEXT' : t.pass === null ? 'NOT MEASURED' : t.pass ? 'MET' : 'MISSED'}: ${t.target}; measured ${Number.isFinite(t.measured) ? t.measured.toFixed(2) : 'n/a'}${'meshguardMinusFloor' in t ? `, meshguard minus floor ${t.meshguardMinusFloor.toFixed(0)} MiB` : ''}`);
  p();
  p(`total time ${(elapsedSeconds()).toFixed(0)} s; errors ${m.totalErrors}; shed ${m.totalShed}`);
  process.stdout.write(`${lines.join('\n')}\n`);

  mkdirSync(join(BENCH, 'results'), { recursive: true });
  writeFileSync(
    settings.out,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        quick: settings.quick,
        machine: mach,
        loadAverage: { start: loadAtStart, end: loadAverage() },
        settings: { rounds: settings.rounds, targetExtraRounds: settings.targetExtraRounds, durationMs: settings.durationMs, warmupMs: settings.warmupMs, connections: settings.connections, pinned: canPin, meshguard: bench.meshguardMain, runtime: bench.runtime.label, cluster: bc !== undefined, mainNamespaces: bc === undefined ? 0 : settings.mainNamespaces },
        targets,
        main: mainRows,
        memory: { afterMain: res.mainMemory, afterSize: res.afterSizeMemory, namespaces: res.namespaces.info, with50000: res.memory50k.rss50k ?? null },
        sizeScaling: res.sizeRows,
        namespaceScaling: res.namespaces.points,
        handshakes: res.handshakes,
        micro: res.micro ?? null,
        profiles: res.profiles.runs.map((x) => ({ label: x.label, requests: x.requests, summary: x.summary })),
        profileDiff: res.profiles.diff,
        profileDiff2: res.profiles.diff2,
        fresh: res.memory50k.fresh,
        framework: res.framework ?? null,
        totalErrors: m.totalErrors,
        totalShed: m.totalShed,
        seconds: elapsedSeconds(),
        runs: m.runs,
      },
      null,
      1,
    )}\n`,
  );
  log(`raw results in ${settings.out}`);
  process.exitCode = m.totalErrors > 0 ? 1 : 0;
}
