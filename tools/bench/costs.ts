// The phases after the main table: memory with 50 000 namespaces (the long-running meshguard and
// fresh processes), CPU per request as the object grows, full TLS handshakes, --cpu-prof profiles
// and the in-process microbenchmark.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH, log } from './flags.ts';
import { waitForNamespace, type Agg, type Measurements, type Run, type ServerKind } from './measure.ts';
import type { MicroResult } from './micro.ts';
import { memory, tasksetPath } from './procstat.ts';
import { areaDiff, summarize as summarizeProfile, type AreaDiffRow, type ProfileSummary } from './profile.ts';
import { buildRequests, sizedRequest, type BenchRequest } from './requests.ts';
import { waitReady, type Server } from './servers.ts';
import type { Bench } from './setup.ts';
import type { NamespaceScaling, Scenarios } from './throughput.ts';

export interface FreshRow { name: string; server: ServerKind; flags: string; namespaces: number; startSeconds: number; idleRssMiB: number; peakRssMiB: number; rssAnonMiB: number; rssFileMiB: number; cpuUsPerRequest: number; rps: number }
export interface SizeRow { targetBytes: number; objectBytes: number; bodyBytes: number; meshguard: Agg; floor: Agg; cpuRatio: number }
export interface ProfileRun { readonly label: string; readonly summary: ProfileSummary; readonly requests: number; readonly file: string }
export interface Profiles { readonly runs: ProfileRun[]; readonly diff: AreaDiffRow[]; readonly diff2: AreaDiffRow[] }
export interface Memory50k { readonly rss50k: { rssBeforeMiB: number; peakAfterLoadMiB: number } | undefined; readonly fresh: FreshRow[] }

export async function memoryAt50k(bench: Bench, m: Measurements, ns: NamespaceScaling, scenarios: Scenarios, mg: Server, fl: Server): Promise<Memory50k> {
  const { bc, ecdsaCa, imageRuntime } = bench;
  const fresh: FreshRow[] = [];
  if (bc === undefined || !bench.settings.nsSteps.includes(50_000)) return { rss50k: undefined, fresh };
  const podCreate = scenarios['pod-create'] as BenchRequest[];
  log('growing the namespace cache to 50 000');
  await ns.grow(mg, 50_000);
  const before = memory(mg.pid).rss / 1048576;
  await ns.point(mg, fl, 50_000, 2);
  await m.pairs('namespaces-50000', mg, fl, { scenario: 'mix', requests: scenarios['mix'] as BenchRequest[], connections: 50, rounds: 1 });
  const rss50k = { rssBeforeMiB: before, peakAfterLoadMiB: memory(mg.pid).peakRss / 1048576 };
  log(`50 000 namespaces: long-running meshguard RSS ${before.toFixed(0)} MiB before load, peak ${rss50k.peakAfterLoadMiB.toFixed(0)} MiB after`);

  // Fresh processes that start with 50 000 namespaces: memory without the history of the runs
  // above, under the Pod CREATE load of the throughput target; with V8's defaults (the young
  // generation is sized from this machine's RAM: on a 64-bit machine with several GiB it grows to
  // 2 x 32 MiB semi-spaces under allocation-heavy load) and as the image runs meshguard (its
  // NODE_OPTIONS and MALLOC_ARENA_MAX), side by side. Fresh floors under the same load and
  // settings show what any Node server's RSS is made of here.
  const variants: [string, ServerKind, string[], Record<string, string>][] = [
    ['meshguard fresh, 50 000 namespaces, V8 defaults', 'meshguard', [], {}],
    [`meshguard fresh, 50 000 namespaces, as the image runs it (${imageRuntime.label})`, 'meshguard', imageRuntime.nodeFlags, imageRuntime.env],
    ['meshguard fresh, 50 000 namespaces, --max-heap-size=256', 'meshguard', ['--max-heap-size=256'], {}],
    ['floor fresh, V8 defaults', 'floor', [], {}],
    [`floor fresh, with the image's settings (${imageRuntime.label})`, 'floor', imageRuntime.nodeFlags, imageRuntime.env],
  ];
  const started: { name: string; server: ServerKind; flags: string[]; s: Server; startSeconds: number; idle: number }[] = [];
  for (const [name, server, nodeFlags, env] of variants) {
    const t1 = performance.now();
    const s = server === 'floor' ? await bench.startFloor(`fresh-floor-${started.length}`, 'ecdsa', nodeFlags, env) : await bench.startMeshguard(`fresh-${started.length}`, { cluster: true, nodeFlags, env });
    if (server === 'meshguard') {
      await waitReady(s.port, ecdsaCa, 180_000);
      await waitForNamespace(s, 49_999, 300_000, ecdsaCa);
    }
    const startSeconds = (performance.now() - t1) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    started.push({ name, server, flags: nodeFlags, s, startSeconds, idle: memory(s.pid).rss / 1048576 });
  }
  for (const v of started) await m.warmUp(v.s, v.server);
  for (let round = 0; round < 2; round++) {
    for (const v of round % 2 === 0 ? started : [...started].reverse()) {
      await m.measure('fresh-50000', v.s, v.server, { variant: v.name, scenario: 'pod-create', requests: podCreate, connections: 50, round });
    }
  }
  for (const v of started) {
    const a = m.agg((r) => r.section === 'fresh-50000' && r.variant === v.name);
    const mem = memory(v.s.pid);
    fresh.push({ name: v.name, server: v.server, flags: v.flags.join(' '), namespaces: v.server === 'floor' ? 0 : 50_000, startSeconds: v.startSeconds, idleRssMiB: v.idle, peakRssMiB: mem.peakRss / 1048576, rssAnonMiB: mem.rssAnon / 1048576, rssFileMiB: mem.rssFile / 1048576, cpuUsPerRequest: a.cpuUsPerRequest, rps: a.rps });
    await v.s.stop();
  }
  for (const f of fresh) log(`  ${f.name}: ready in ${f.startSeconds.toFixed(1)} s, idle RSS ${f.idleRssMiB.toFixed(0)} MiB, peak under load ${f.peakRssMiB.toFixed(0)} MiB, ${f.cpuUsPerRequest.toFixed(0)} µs CPU/request`);
  return { rss50k, fresh };
}

/** One Deployment CREATE grown to each size, 2 connections. */
export async function sizeScaling(bench: Bench, m: Measurements, namespace: string, mg: Server, fl: Server): Promise<SizeRow[]> {
  log('size scaling');
  const rows: SizeRow[] = [];
  for (const bytes of bench.settings.sizes) {
    const reqs = Array.from({ length: 4 }, () => sizedRequest(namespace, bytes));
    const scenario = `size-${bytes}`;
    await m.pairs('size', mg, fl, { scenario, requests: reqs, connections: 2, rounds: bench.settings.quick ? 1 : 2 });
    const isA = (r: Run): boolean => r.section === 'size' && r.scenario === scenario && r.server === 'meshguard';
    const isB = (r: Run): boolean => r.section === 'size' && r.scenario === scenario && r.server === 'floor';
    rows.push({ targetBytes: bytes, objectBytes: (reqs[0] as { objectBytes: number }).objectBytes, bodyBytes: Buffer.byteLength((reqs[0] as BenchRequest).body), meshguard: m.agg(isA), floor: m.agg(isB), cpuRatio: m.pairedRatio(isA, isB, (r) => r.cpuUsPerRequest) });
  }
  return rows;
}

/** Full TLS handshakes: a new connection per request (no session resumption), ECDSA and RSA. */
export async function handshakes(bench: Bench, m: Measurements, scenarios: Scenarios, requestNamespaces: readonly string[], fl: Server): Promise<Record<string, Agg>> {
  log('TLS handshakes');
  const { bc } = bench;
  const hsRequests = scenarios['pod-create'] as BenchRequest[];
  const mgE = await bench.startMeshguard('meshguard-hs-ecdsa', { cluster: false });
  const mgR = await bench.startMeshguard('meshguard-hs-rsa', { cert: 'rsa', cluster: false });
  const flR = await bench.startFloor('floor-rsa', 'rsa');
  const rsaCa = readFileSync(join(bench.rsaDir, 'ca.crt'), 'utf8');
  const hsNamespaces = bc === undefined ? requestNamespaces : ['shop'];
  const hsReqs = bc === undefined ? hsRequests : buildRequests('pod-create', hsNamespaces, 64);
  const conns = 4;
  for (let round = 0; round < (bench.settings.quick ? 1 : 2); round++) {
    await m.measure('handshake', mgE, 'meshguard', { variant: 'meshguard ECDSA P-256', scenario: 'new-connection', requests: hsReqs, connections: conns, round, handshake: true });
    await m.measure('handshake', mgR, 'meshguard', { variant: 'meshguard RSA-2048', scenario: 'new-connection', requests: hsReqs, connections: conns, round, handshake: true, ca: rsaCa });
    await m.measure('handshake', fl, 'floor', { variant: 'floor ECDSA P-256', scenario: 'new-connection', requests: hsRequests, connections: conns, round, handshake: true });
    await m.measure('handshake', flR, 'floor', { variant: 'floor RSA-2048', scenario: 'new-connection', requests: hsRequests, connections: conns, round, handshake: true, ca: rsaCa });
  }
  const hsAgg: Record<string, Agg> = {};
  for (const v of ['meshguard ECDSA P-256', 'meshguard RSA-2048', 'floor ECDSA P-256', 'floor RSA-2048']) hsAgg[v] = m.agg((r) => r.section === 'handshake' && r.variant === v);
  await Promise.all([mgE.stop(), mgR.stop(), flR.stop()]);
  return hsAgg;
}

// Profiles: a separate meshguard (same configuration and cache) and a separate floor, each under
// --cpu-prof, driven with 50 connections of Pod CREATE (and meshguard also of the denied Pod);
// only the samples inside each measured window are summarized.
export async function profiles(bench: Bench, m: Measurements, scenarios: Scenarios): Promise<Profiles> {
  const { bc, ecdsaCa } = bench;
  const runs: ProfileRun[] = [];
  log('profiling meshguard and the floor under --cpu-prof (50 connections)');
  const durationMs = bench.settings.quick ? 500 : 3000;
  const one = async (label: string, kindOf: ServerKind, scenariosToRun: [string, number][]): Promise<void> => {
    const dir = join(bench.work, `profile-${kindOf}`);
    const nodeFlags = [...bench.runtime.nodeFlags, '--cpu-prof', '--cpu-prof-dir', dir];
    const s = kindOf === 'meshguard' ? await bench.startMeshguard('meshguard-profile', { cluster: true, nodeFlags }) : await bench.startFloor('floor-profile', 'ecdsa', nodeFlags);
    if (kindOf === 'meshguard') {
      await waitReady(s.port, ecdsaCa, 180_000);
      if (bc !== undefined) await waitForNamespace(s, bc.count - 1, 300_000, ecdsaCa);
    }
    await m.warmUp(s, kindOf);
    const windows: { scenario: string; window: { start: bigint; end: bigint }; requests: number }[] = [];
    for (const [scenario, connections] of scenariosToRun) {
      const window = { start: 0n, end: 0n };
      const r = await m.measure('profile', s, kindOf, { variant: `${kindOf} --cpu-prof`, scenario, requests: scenarios[scenario] as BenchRequest[], connections, round: 0, durationMs, window });
      windows.push({ scenario: `${scenario} x${connections}`, window, requests: r.requests });
    }
    await s.stop();
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`${label}: no .cpuprofile written`);
    const kept = join(bench.build, `${kindOf}.cpuprofile`);
    writeFileSync(kept, readFileSync(join(dir, file)));
    for (const w of windows) runs.push({ label: `${label}, ${w.scenario}`, summary: summarizeProfile(kept, 30, { fromUs: Number(w.window.start), toUs: Number(w.window.end) }), requests: w.requests, file: kept });
  };
  await one('meshguard', 'meshguard', [['pod-create', 50], ['pod-denied', 50], ['pod-create', 2]]);
  await one('floor', 'floor', [['pod-create', 50], ['pod-create', 2]]);
  const diffOf = (connections: number): AreaDiffRow[] => {
    const a = runs.find((x) => x.label === `meshguard, pod-create x${connections}`);
    const b = runs.find((x) => x.label === `floor, pod-create x${connections}`);
    return a !== undefined && b !== undefined ? areaDiff(a.summary, a.requests, b.summary, b.requests) : [];
  };
  return { runs, diff: diffOf(50), diff2: diffOf(2) };
}

/** The in-process microbenchmark (micro.ts), pinned like the servers. */
export async function microbench(bench: Bench): Promise<MicroResult> {
  log('microbenchmark (micro.ts)');
  const node = process.execPath;
  const cpus = bench.serverCpus;
  const args = [join(BENCH, 'micro.ts'), '--json', ...(bench.settings.quick ? ['--quick'] : [])];
  const child = spawn(cpus !== undefined ? (tasksetPath() as string) : node, cpus !== undefined ? ['-c', cpus, node, ...args] : args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`micro.ts exited with ${code}`);
  return JSON.parse(out) as MicroResult;
}
