// npm run bench: meshguard against the physical floor of a webhook (issue 7), side by side in one
// run on one machine.
//
//   npm run bench                      full run (under 10 minutes), results/latest.json
//   npm run bench -- --quick           smoke run (well under a minute), results/quick.json;
//                                      exits 1 if any answer was wrong or a connection broke
//                                      (503 MG_OVERLOADED, load shedding, is counted apart)
//   flags: --cluster auto|on|off       real apiserver for the namespace cache (auto: when the
//                                      e2e binaries are already built; never builds them)
//          --rounds N --duration SECONDS --out FILE --source bundle|dist|ts --no-profile --no-micro
//          --target-rounds N          extra rounds for the target cells (Pod CREATE at 2 and 50
//                                      connections; default 4, 0 with --quick)
//          --runtime image|defaults   runtime settings of the servers (default image: the
//                                      Dockerfile's NODE_OPTIONS and MALLOC_ARENA_MAX, for meshguard
//                                      and the floors alike)
//
// What it does (see docs/performance.md for the method and the latest figures):
//  - builds meshguard like the container image does (npm run bundle's one file, into
//    .cache/bench/bundle, or .cache/bench-quick/bundle with --quick, run with
//    NODE_ENV=production) and the floor (tools/bench/floor.ts with its types stripped), so neither
//    pays for Node's type stripping at run time;
//  - starts `meshguard serve --mode enforce` (all rules, default configuration) and the floor with
//    the same generated ECDSA P-256 certificate, both pinned to CPU 0 with taskset, this process
//    (the load generator) pinned to CPU 1;
//  - namespace cache: with a cluster, meshguard watches a real kube-apiserver holding 10, then
//    1 000, then 50 000 namespaces; without one, `unknownNamespace: allow` (HTTP path only);
//  - drives both with the same requests (Pod CREATE of an injected Pod, Deployment UPDATE with
//    object and oldObject, Namespace CREATE through /mutate, a denied Pod, and the four mixed) at
//    1, 2 and 50 keep-alive connections, alternating meshguard and floor run by run;
//  - measures per run: req/s, latency percentiles, server CPU per request (/proc utime+stime over
//    the measured window), peak RSS (VmHWM), the load generator's own CPU share;
//  - then: CPU per request as the object grows (1 KB .. 1 MB), full TLS handshakes (ECDSA P-256
//    against RSA-2048), the framework split (the floor, the floor with a 10 µs busy-wait per
//    request, the Fastify floor, meshguard's decision path on bare node:https and meshguard,
//    alternated on Pod CREATE x50), a --cpu-prof profile of meshguard under the 50-connection Pod
//    CREATE load, and the in-process microbenchmark (micro.ts).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { generate } from 'selfsigned';
import ts from 'typescript';
import { ensureGenerated } from '../../src/jobs/certs/source.ts';
import { bundle } from '../bundle.ts';
import { imageEnv } from '../../test/helpers/image.ts';
import { defaultSans } from '../../src/jobs/certs/selfsigned.ts';
import { clusterBinariesCached, startBenchCluster, type BenchCluster } from './cluster.ts';
import { injectedNamespaces, namespaceName } from './namespaces.ts';
import { prepare, runLoad, type RunResult, type Target } from './loadgen.ts';
import { microTable, type MicroResult } from './micro.ts';
import { cpuBusyMicros, cpuMicros, loadAverage, machine, memory, pin, procAvailable, tasksetPath } from './procstat.ts';
import { areaDiff, profileText, summarize as summarizeProfile, type AreaDiffRow, type ProfileSummary } from './profile.ts';
import { buildMix, buildRequests, KINDS, sizedRequest, type BenchRequest, type Kind } from './requests.ts';
import { httpsPost, startServer, waitReady, type Server } from './servers.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const BENCH = new URL('./', import.meta.url).pathname;
const NODE = process.execPath;
const t0 = performance.now();

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    cluster: { type: 'string', default: 'auto' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    out: { type: 'string' },
    source: { type: 'string', default: 'bundle' },
    'no-profile': { type: 'boolean', default: false },
    'no-micro': { type: 'boolean', default: false },
    runtime: { type: 'string', default: 'image' },
    'target-rounds': { type: 'string' },
  },
});
const QUICK = flags.quick === true;
const ROUNDS = Number(flags.rounds ?? (QUICK ? 1 : 3));
/** Extra rounds for the two target cells (Pod CREATE at 2 and 50 connections), on top of ROUNDS. */
const TARGET_EXTRA_ROUNDS = Number(flags['target-rounds'] ?? (QUICK ? 0 : 4));
const DURATION_MS = Number(flags.duration ?? (QUICK ? 0.25 : 1.5)) * 1000;
const WARMUP_MS = QUICK ? 100 : 400;
const CONNECTIONS = [1, 2, 50] as const;
const SIZES = [1024, 10 * 1024, 100 * 1024, 1024 * 1024] as const;
const NS_STEPS = QUICK ? [] : [10, 1000, 50_000];
const MAIN_NAMESPACES = 1000;
const OUT = flags.out ?? join(BENCH, 'results', QUICK ? 'quick.json' : 'latest.json');

function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
}

if (!procAvailable()) {
  process.stderr.write('bench: /proc is needed for server CPU and memory (Linux only)\n');
  process.exit(2);
}

// ---------------------------------------------------------------- setup ---

const mach = machine();
const canPin = tasksetPath() !== undefined && mach.nproc >= 2;
const SERVER_CPUS = canPin ? '0' : undefined;
const CLIENT_CPUS = canPin ? '1' : undefined;
if (CLIENT_CPUS !== undefined) pin(process.pid, CLIENT_CPUS);
log(`${mach.nproc} CPUs (${mach.cpuModel}), Node ${mach.node}; ${canPin ? 'servers pinned to CPU 0, load generator and apiserver to CPU 1' : 'no pinning (taskset missing or one CPU)'}`);

const loadAtStart = loadAverage();
const work = mkdtempSync(join(tmpdir(), 'meshguard-bench-'));
process.once('exit', () => rmSync(work, { recursive: true, force: true }));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

// Certificates: meshguard's own generator (ECDSA P-256), and an RSA-2048 chain for comparison.
const ecdsa = await ensureGenerated(join(work, 'certs'), defaultSans('meshguard'));
const ecdsaCa = readFileSync(ecdsa.caFile as string, 'utf8');
const rsaDir = join(work, 'rsa');
mkdirSync(rsaDir);
{
  const ca = await generate([{ name: 'commonName', value: 'meshguard-bench-rsa-ca' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }],
  });
  const leaf = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    ca: { cert: ca.cert, key: ca.private },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  writeFileSync(join(rsaDir, 'ca.crt'), ca.cert);
  writeFileSync(join(rsaDir, 'tls.crt'), leaf.cert);
  writeFileSync(join(rsaDir, 'tls.key'), leaf.private, { mode: 0o600 });
}

// Build: meshguard as the image runs it (the bundle of tools/bundle.ts, NODE_ENV=production);
// the floor with its types stripped. --source dist runs tsc's output from node_modules instead
// (what `npm run build` and the bin launcher run), --source ts src/main.ts through Node's type
// stripping.
// --quick builds into its own folder, so a smoke run (npm test) never deletes the build under a
// full run going on at the same time.
const BUILD_REL = QUICK ? '.cache/bench-quick' : '.cache/bench';
const BUILD = join(ROOT, BUILD_REL);
let meshguardMain = 'src/main.ts';
if (!['bundle', 'dist', 'ts'].includes(flags.source)) throw new Error(`--source ${flags.source}: bundle, dist or ts`);
if (flags.source === 'bundle') {
  const out = join(BUILD, 'bundle', 'meshguard.mjs');
  rmSync(dirname(out), { recursive: true, force: true });
  const b = await bundle(out);
  for (const w of b.warnings) log(`bundle warning: ${w}`);
  meshguardMain = `${BUILD_REL}/bundle/meshguard.mjs`;
}
if (flags.source === 'dist') {
  const dist = join(BUILD, 'dist');
  rmSync(dist, { recursive: true, force: true });
  try {
    execFileSync(NODE, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dist, '--sourceMap', 'false'], { stdio: 'pipe' });
  } catch (e) {
    // tsc still emits on type errors (another change in progress): use the output if it is there.
    if (!existsSync(join(dist, 'main.js'))) throw e;
    log('tsc reported type errors; benchmarking its output anyway');
  }
  meshguardMain = `${BUILD_REL}/dist/main.js`;
}
mkdirSync(BUILD, { recursive: true });
writeFileSync(
  join(BUILD, 'floor.mjs'),
  ts.transpileModule(readFileSync(join(BENCH, 'floor.ts'), 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 } }).outputText,
);
const FLOOR_MAIN = `${BUILD_REL}/floor.mjs`;
writeFileSync(
  join(BUILD, 'fastify-floor.mjs'),
  ts.transpileModule(readFileSync(join(BENCH, 'fastify-floor.ts'), 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 } }).outputText,
);
const FASTIFY_FLOOR_MAIN = `${BUILD_REL}/fastify-floor.mjs`;
// The decision-path floor imports meshguard's modules: bundled like meshguard.
await bundle(join(BUILD, 'path-floor', 'path-floor.mjs'), join(BENCH, 'path-floor.ts'));
const PATH_FLOOR_MAIN = `${BUILD_REL}/path-floor/path-floor.mjs`;
/** The busy-wait of the framework split's calibration floor, in µs per request. */
const SPIN_US = 10;

// The namespace cache.
let bc: BenchCluster | undefined;
const clusterMode = QUICK ? 'off' : flags.cluster;
if (clusterMode === 'on' || (clusterMode === 'auto' && (await clusterBinariesCached()))) {
  log('starting etcd + kube-apiserver for the namespace cache');
  bc = await startBenchCluster(CLIENT_CPUS !== undefined ? { pinCpus: CLIENT_CPUS } : {});
  process.once('exit', () => void bc?.stop());
} else {
  log(`no cluster (${clusterMode === 'off' ? '--cluster off' : 'e2e binaries not built'}): unknownNamespace: allow; namespace scaling from micro.ts only`);
}
const configFile = join(work, 'config.json');
writeFileSync(configFile, JSON.stringify(bc === undefined ? { unknownNamespace: 'allow' } : {}));
const allowConfig = join(work, 'config-allow.json');
writeFileSync(allowConfig, JSON.stringify({ unknownNamespace: 'allow' }));

const ENV = { NODE_ENV: 'production' };

/** The runtime settings the image gives meshguard: NODE_OPTIONS and MALLOC_ARENA_MAX from the
 * Dockerfile's ENV lines, so the memory row "as the image runs it" follows the Dockerfile. */
const IMAGE_RUNTIME = ((): { nodeFlags: string[]; env: Record<string, string>; label: string } => {
  const image = imageEnv();
  const nodeFlags = (image['NODE_OPTIONS'] ?? '').split(' ').filter((f) => f !== '');
  const env: Record<string, string> = image['MALLOC_ARENA_MAX'] !== undefined ? { MALLOC_ARENA_MAX: image['MALLOC_ARENA_MAX'] } : {};
  const label = [...nodeFlags, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ') || 'no settings';
  return { nodeFlags, env, label };
})();

/** The runtime settings of every server (meshguard, the floor and the Fastify floor) unless a run
 * names its own: the image's (--runtime image, the default: meshguard as it ships, and the floors
 * with the same settings, which do not change their cost), or V8's defaults (--runtime defaults,
 * how this bench ran before 2026-12-02). The framework split also runs a meshguard with the other
 * choice, so both figures are in every full run. */
if (!['image', 'defaults'].includes(flags.runtime)) throw new Error(`--runtime ${flags.runtime}: image or defaults`);
const V8_DEFAULTS = { nodeFlags: [] as string[], env: {} as Record<string, string>, label: 'V8 defaults' };
const RUNTIME = flags.runtime === 'image' ? IMAGE_RUNTIME : V8_DEFAULTS;
const OTHER_RUNTIME = flags.runtime === 'image' ? V8_DEFAULTS : IMAGE_RUNTIME;

function startMeshguard(name: string, o: { cert?: 'rsa'; cluster: boolean; nodeFlags?: string[]; env?: Record<string, string> }): Promise<Server> {
  const certArgs = o.cert === 'rsa' ? ['--cert-file', join(rsaDir, 'tls.crt'), '--key-file', join(rsaDir, 'tls.key')] : ['--cert-dir', join(work, 'certs')];
  const clusterArgs = o.cluster && bc !== undefined ? ['--kubeconfig', bc.cluster.adminKubeconfig, '--config', configFile] : ['--config', bc === undefined ? configFile : allowConfig];
  return startServer({
    name,
    script: meshguardMain,
    args: ['serve', '--port', '0', '--mode', 'enforce', ...certArgs, ...clusterArgs],
    nodeFlags: o.nodeFlags ?? RUNTIME.nodeFlags,
    cpus: SERVER_CPUS,
    stdoutFile: join(work, `${name}.out`),
    env: { ...ENV, ...(o.env ?? RUNTIME.env) },
    timeoutMs: 120_000,
  });
}

function startFloor(name: string, cert: 'ecdsa' | 'rsa', nodeFlags: string[] = RUNTIME.nodeFlags, env: Record<string, string> = RUNTIME.env): Promise<Server> {
  const files = cert === 'rsa' ? { c: join(rsaDir, 'tls.crt'), k: join(rsaDir, 'tls.key') } : { c: ecdsa.certFile, k: ecdsa.keyFile };
  return startServer({ name, script: FLOOR_MAIN, args: ['--cert', files.c, '--key', files.k], nodeFlags, cpus: SERVER_CPUS, stdoutFile: join(work, `${name}.out`), env: { ...ENV, ...env } });
}

function target(s: Server, ca = ecdsaCa): Target {
  return { host: '127.0.0.1', port: s.port, ca, servername: 'localhost' };
}

// ---------------------------------------------------------------- runs ---

interface Run {
  readonly section: string;
  readonly server: 'meshguard' | 'floor';
  readonly variant: string;
  readonly scenario: string;
  readonly connections: number;
  readonly round: number;
  readonly requests: number;
  readonly errors: number;
  readonly errorSamples: readonly string[];
  readonly shed: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
  /** Server CPU (user + system, all threads) per request in the measured window. */
  readonly cpuUsPerRequest: number;
  /** Server CPU share of one core during the window. */
  readonly serverCpu: number;
  readonly clientCpu: number;
  /** Share of the server's CPU used by other processes during the window (noise), when pinned. */
  readonly otherOnServerCpu: number;
  readonly peakRssMiB: number;
  readonly rssMiB: number;
  readonly namespaces: number;
}

const runs: Run[] = [];
let totalErrors = 0;
/** 503 MG_OVERLOADED answers (meshguard shedding load on a busy machine): reported, not errors. */
let totalShed = 0;

async function measure(section: string, server: Server, kindOf: 'meshguard' | 'floor', o: {
  variant?: string;
  scenario: string;
  requests: readonly BenchRequest[];
  connections: number;
  round: number;
  handshake?: boolean;
  ca?: string;
  durationMs?: number;
  window?: { start: bigint; end: bigint };
}): Promise<Run> {
  const t = target(server, o.ca);
  let c0 = 0;
  let c1 = 0;
  let b0 = 0;
  let b1 = 0;
  const r: RunResult = await runLoad({
    target: t,
    requests: prepare(t, o.requests, { checkVerdict: kindOf === 'meshguard', close: o.handshake === true }),
    connections: o.connections,
    durationMs: o.durationMs ?? DURATION_MS,
    warmupMs: WARMUP_MS,
    handshakePerRequest: o.handshake === true,
    onWindow(edge) {
      if (edge === 'start') {
        if (SERVER_CPUS !== undefined) b0 = cpuBusyMicros(Number(SERVER_CPUS));
        c0 = cpuMicros(server.pid);
        if (o.window !== undefined) o.window.start = process.hrtime.bigint() / 1000n;
      } else {
        c1 = cpuMicros(server.pid);
        if (SERVER_CPUS !== undefined) b1 = cpuBusyMicros(Number(SERVER_CPUS));
        if (o.window !== undefined) o.window.end = process.hrtime.bigint() / 1000n;
      }
    },
  });
  const mem = memory(server.pid);
  const run: Run = {
    section,
    server: kindOf,
    variant: o.variant ?? kindOf,
    scenario: o.scenario,
    connections: o.connections,
    round: o.round,
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
    otherOnServerCpu: SERVER_CPUS !== undefined && r.seconds > 0 ? Math.max(0, (b1 - b0 - (c1 - c0)) / 1e6 / r.seconds) : 0,
    peakRssMiB: mem.peakRss / 1048576,
    rssMiB: mem.rss / 1048576,
    namespaces: bc?.count ?? 0,
  };
  runs.push(run);
  totalErrors += r.errors;
  totalShed += r.shed;
  if (r.shed > 0) log(`  ${run.variant} ${o.scenario} x${o.connections}: ${r.shed} answers shed (503 MG_OVERLOADED)`);
  if (r.errors > 0) log(`  ${run.variant} ${o.scenario} x${o.connections}: ${r.errors} errors, e.g. ${r.errorSamples[0] ?? ''}`);
  return run;
}

/** A and B alternately, the order flipped each round. */
async function pairs(section: string, mg: Server, fl: Server, o: { scenario: string; requests: readonly BenchRequest[]; connections: number; rounds: number; durationMs?: number; ca?: string; handshake?: boolean; variants?: [string, string] }): Promise<void> {
  for (let round = 0; round < o.rounds; round++) {
    const order: ['meshguard' | 'floor', Server][] = round % 2 === 0 ? [['meshguard', mg], ['floor', fl]] : [['floor', fl], ['meshguard', mg]];
    for (const [k, s] of order) {
      const variant = o.variants === undefined ? k : k === 'meshguard' ? o.variants[0] : o.variants[1];
      await measure(section, s, k, { ...o, round, variant });
    }
  }
}

/** Not recorded: JIT and heap warm-up of a fresh server (every scenario, 50 connections). */
async function warmUp(s: Server, kindOf: 'meshguard' | 'floor', ca = ecdsaCa): Promise<void> {
  const t = target(s, ca);
  for (const reqs of Object.values(scenarios)) {
    const r = await runLoad({ target: t, requests: prepare(t, reqs, { checkVerdict: kindOf === 'meshguard' }), connections: 50, durationMs: QUICK ? 50 : 600, warmupMs: 0 });
    totalErrors += r.errors;
    totalShed += r.shed;
    if (r.errors > 0) log(`  warm-up of ${s.name}: ${r.errors} errors, e.g. ${r.errorSamples[0] ?? ''}`);
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

interface Agg {
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

/**
 * A run is clean when other processes used less than 10% of the server's CPU during its window.
 * The machine is shared: medians and paired ratios use the clean rounds when there are any, and
 * every table says how many rounds were clean.
 */
const NOISE = 0.1;
const clean = (r: Run): boolean => r.otherOnServerCpu < NOISE;

function agg(filter: (r: Run) => boolean): Agg {
  const all = runs.filter(filter);
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
function pairedRatio(a: (r: Run) => boolean, b: (r: Run) => boolean, metric: (r: Run) => number): number {
  const ra = runs.filter(a);
  const rb = runs.filter(b);
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

async function expectVerdicts(s: Server, namespaces: readonly string[]): Promise<void> {
  for (const k of KINDS) {
    const r = buildRequests(k, namespaces, 1)[0] as BenchRequest;
    const res = await httpsPost(s.port, r.path, r.body, ecdsaCa);
    const resp = (res.json as { response?: { allowed?: boolean; patch?: string; status?: { message?: string } } }).response;
    const got = resp === undefined ? `HTTP ${res.status}` : resp.allowed === false ? 'denied' : resp.patch !== undefined ? 'patched' : 'allowed';
    if (got !== r.expect) throw new Error(`${s.name}: ${k} answered ${got}, expected ${r.expect}: ${JSON.stringify(res.json).slice(0, 500)}`);
  }
}

/** Until meshguard's cache holds namespace i (a Pod there is allowed, not denied as unknown). */
async function waitForNamespace(s: Server, i: number, timeoutMs: number): Promise<number> {
  const start = performance.now();
  const name = namespaceName(i - (i % 10 < 8 ? 0 : (i % 10) - 7));
  const r = buildRequests('pod-create', [name], 1)[0] as BenchRequest;
  for (;;) {
    const res = await httpsPost(s.port, r.path, r.body, ecdsaCa);
    if ((res.json as { response?: { allowed?: boolean } }).response?.allowed === true) return (performance.now() - start) / 1000;
    if (performance.now() - start > timeoutMs) throw new Error(`${s.name}: namespace ${name} not in the cache after ${timeoutMs / 1000} s`);
    await new Promise((res2) => setTimeout(res2, 250));
  }
}

// ---------------------------------------------------------------- main ---

const requestNamespaces = bc === undefined ? ['shop', 'payments', 'web'] : injectedNamespaces(10);
const scenarios: Record<string, BenchRequest[]> = {};
for (const k of KINDS) scenarios[k] = buildRequests(k as Kind, requestNamespaces, 128);
scenarios['mix'] = buildMix(requestNamespaces, 32);

const nsInfo: { count: number; createSeconds: number; cacheSeconds: number; meshguardRssMiB: number; meshguardPeakRssMiB: number }[] = [];
const nsScaling: { namespaces: number; meshguard: Agg; floor: Agg; cpuRatio: number }[] = [];

async function growNamespaces(mg: Server, n: number): Promise<void> {
  if (bc === undefined) return;
  const createSeconds = await bc.growTo(n);
  const cacheSeconds = await waitForNamespace(mg, n - 1, 300_000);
  const m = memory(mg.pid);
  nsInfo.push({ count: n, createSeconds, cacheSeconds, meshguardRssMiB: m.rss / 1048576, meshguardPeakRssMiB: m.peakRss / 1048576 });
  log(`${n} namespaces: created in ${createSeconds.toFixed(1)} s, in meshguard's cache ${cacheSeconds.toFixed(1)} s later; meshguard RSS ${(m.rss / 1048576).toFixed(0)} MiB`);
}

async function namespacePoint(mg: Server, fl: Server, n: number, rounds: number): Promise<void> {
  const section = `namespaces-${n}`;
  if (n !== MAIN_NAMESPACES) await pairs(section, mg, fl, { scenario: 'pod-create', requests: scenarios['pod-create'] as BenchRequest[], connections: 50, rounds });
  const sec = n === MAIN_NAMESPACES ? 'main' : section;
  const isA = (r: Run): boolean => r.section === sec && r.scenario === 'pod-create' && r.connections === 50 && r.server === 'meshguard';
  const isB = (r: Run): boolean => r.section === sec && r.scenario === 'pod-create' && r.connections === 50 && r.server === 'floor';
  nsScaling.push({ namespaces: n, meshguard: agg(isA), floor: agg(isB), cpuRatio: pairedRatio(isA, isB, (r) => r.cpuUsPerRequest) });
}

if (bc !== undefined) await bc.growTo(NS_STEPS[0] ?? MAIN_NAMESPACES);
log(`starting meshguard (${meshguardMain}) and the floor`);
const mg = await startMeshguard('meshguard', { cluster: true });
const fl = await startFloor('floor', 'ecdsa');
await waitReady(mg.port, ecdsaCa, 120_000);

if (bc !== undefined) {
  await growNamespaces(mg, NS_STEPS[0] as number);
  await expectVerdicts(mg, requestNamespaces);
  await Promise.all([warmUp(mg, 'meshguard')]);
  await warmUp(fl, 'floor');
  log('namespace scaling: 10 namespaces');
  await namespacePoint(mg, fl, 10, 2);
  await growNamespaces(mg, MAIN_NAMESPACES);
} else {
  await expectVerdicts(mg, requestNamespaces);
  await warmUp(mg, 'meshguard');
  await warmUp(fl, 'floor');
}

/** Which server of the main table runs first in a round: flipped by round and connection count. */
const mainOrder = (round: number, connections: number): ['meshguard' | 'floor', Server][] =>
  (round + connections) % 2 === 0 ? [['meshguard', mg], ['floor', fl]] : [['floor', fl], ['meshguard', mg]];
log(`main matrix: ${Object.keys(scenarios).length} scenarios x ${CONNECTIONS.length} connection counts x ${ROUNDS} rounds x 2 servers, ${DURATION_MS / 1000} s each`);
for (let round = 0; round < ROUNDS; round++) {
  for (const [scenario, requests] of Object.entries(scenarios)) {
    for (const connections of CONNECTIONS) {
      for (const [k, s] of mainOrder(round, connections)) await measure('main', s, k, { scenario, requests, connections, round });
    }
  }
  log(`  round ${round + 1}/${ROUNDS} done`);
}
// The cells the targets are read from (Pod CREATE at 2 and 50 connections) get TARGET_EXTRA_ROUNDS
// more alternated rounds: single rounds of the 50-connection cell ranged from 1.32 to 1.81 times the
// floor over three full runs of the same code on a noisy machine, so a median of three moved by 0.4
// from run to run.
if (TARGET_EXTRA_ROUNDS > 0) {
  log(`target cells: ${TARGET_EXTRA_ROUNDS} more rounds of Pod CREATE at 2 and 50 connections`);
  for (let round = ROUNDS; round < ROUNDS + TARGET_EXTRA_ROUNDS; round++) {
    for (const connections of [2, 50]) {
      for (const [k, s] of mainOrder(round, connections)) await measure('main', s, k, { scenario: 'pod-create', requests: scenarios['pod-create'] as BenchRequest[], connections, round });
    }
  }
}
const mainMemory = { meshguard: memory(mg.pid), floor: memory(fl.pid) };

// Where the cost above the floor sits: the floor, the Fastify floor (tools/bench/fastify-floor.ts:
// a bare Fastify route with meshguard's body parser and a constant answer) and meshguard,
// alternated round by round on the target cell (Pod CREATE, 50 connections). The Fastify
// floor minus the floor is the framework's share; meshguard minus the Fastify floor is meshguard's.
// Two more servers in the same rounds: the decision-path floor (tools/bench/path-floor.ts:
// meshguard's parser, decode, review, recorder and encode in a bare node:https handler, with the
// main table's namespace cache), what meshguard's decision costs with no framework around it; and
// the floor with a busy-wait of SPIN_US µs per request, what a known amount of work per request
// shows as on this machine.
let framework: { variant: string; agg: Agg; cpuRatio: number; rpsRatio: number }[] | undefined;
{
  const ff = await startServer({ name: 'fastify-floor', script: FASTIFY_FLOOR_MAIN, args: ['--cert', ecdsa.certFile, '--key', ecdsa.keyFile], nodeFlags: RUNTIME.nodeFlags, cpus: SERVER_CPUS, stdoutFile: join(work, 'fastify-floor.out'), env: { ...ENV, ...RUNTIME.env } });
  await warmUp(ff, 'floor');
  const pathFloor = await startServer({ name: 'path-floor', script: PATH_FLOOR_MAIN, args: ['--cert', ecdsa.certFile, '--key', ecdsa.keyFile, '--namespaces', String(bc === undefined ? 0 : MAIN_NAMESPACES)], nodeFlags: RUNTIME.nodeFlags, cpus: SERVER_CPUS, stdoutFile: join(work, 'path-floor.out'), env: { ...ENV, ...RUNTIME.env } });
  await warmUp(pathFloor, 'meshguard');
  const spinFloor = await startServer({ name: 'spin-floor', script: FLOOR_MAIN, args: ['--cert', ecdsa.certFile, '--key', ecdsa.keyFile, '--spin-us', String(SPIN_US)], nodeFlags: RUNTIME.nodeFlags, cpus: SERVER_CPUS, stdoutFile: join(work, 'spin-floor.out'), env: { ...ENV, ...RUNTIME.env } });
  await warmUp(spinFloor, 'floor');
  const pathVariant = 'decision path on node:https';
  const spinVariant = `floor + ${SPIN_US} µs busy-wait`;
  // A second meshguard with the other runtime settings (not in --quick): what the choice of
  // settings is worth, side by side.
  const otherVariant = `meshguard, ${OTHER_RUNTIME.label}`;
  const other = QUICK ? undefined : await startMeshguard('meshguard-other-runtime', { cluster: true, nodeFlags: OTHER_RUNTIME.nodeFlags, env: OTHER_RUNTIME.env });
  if (other !== undefined) {
    await waitReady(other.port, ecdsaCa, 180_000);
    if (bc !== undefined) await waitForNamespace(other, bc.count - 1, 300_000);
    await warmUp(other, 'meshguard');
  }
  const podCreate = scenarios['pod-create'] as BenchRequest[];
  const servers: ['meshguard' | 'floor', string, Server][] = [
    ['meshguard', 'meshguard', mg],
    ['floor', 'floor', fl],
    ['floor', 'fastify-floor', ff],
    ['meshguard', pathVariant, pathFloor],
    ['floor', spinVariant, spinFloor],
    ...(other === undefined ? [] : [['meshguard', otherVariant, other] as ['meshguard', string, Server]]),
  ];
  // As many rounds as the target cells, shorter: the servers' differences here are a few
  // percent, and single rounds on a shared machine move by more.
  const splitRounds = ROUNDS + TARGET_EXTRA_ROUNDS;
  const splitMs = Math.min(DURATION_MS, 1000);
  log(`framework split: floor, Fastify floor, ${pathVariant}, ${spinVariant} and meshguard${other === undefined ? '' : ` (and ${otherVariant})`}, Pod CREATE x50, ${splitRounds} rounds x ${splitMs / 1000} s`);
  for (let round = 0; round < splitRounds; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const [k, variant, s] of order) await measure('framework', s, k, { variant, scenario: 'pod-create', requests: podCreate, connections: 50, round, durationMs: splitMs });
  }
  await ff.stop();
  await pathFloor.stop();
  await spinFloor.stop();
  await other?.stop();
  const of = (variant: string) => (r: Run): boolean => r.section === 'framework' && r.variant === variant;
  framework = ['floor', spinVariant, 'fastify-floor', pathVariant, 'meshguard', ...(other === undefined ? [] : [otherVariant])].map((variant) => ({
    variant,
    agg: agg(of(variant)),
    cpuRatio: variant === 'floor' ? 1 : pairedRatio(of(variant), of('floor'), (r) => r.cpuUsPerRequest),
    rpsRatio: variant === 'floor' ? 1 : pairedRatio(of(variant), of('floor'), (r) => r.rps),
  }));
  for (const f of framework) log(`  ${f.variant}: ${f.agg.cpuUsPerRequest.toFixed(0)} µs CPU/request (x${f.cpuRatio.toFixed(2)} the floor), ${f.agg.rps.toFixed(0)} req/s (x${f.rpsRatio.toFixed(2)})`);
}
if (bc !== undefined) await namespacePoint(mg, fl, MAIN_NAMESPACES, ROUNDS);

let rss50k: { rssBeforeMiB: number; peakAfterLoadMiB: number } | undefined;
interface FreshRow { name: string; server: 'meshguard' | 'floor'; flags: string; namespaces: number; startSeconds: number; idleRssMiB: number; peakRssMiB: number; rssAnonMiB: number; rssFileMiB: number; cpuUsPerRequest: number; rps: number }
const fresh: FreshRow[] = [];
if (bc !== undefined && NS_STEPS.includes(50_000)) {
  log('growing the namespace cache to 50 000');
  await growNamespaces(mg, 50_000);
  const before = memory(mg.pid).rss / 1048576;
  await namespacePoint(mg, fl, 50_000, 2);
  await pairs('namespaces-50000', mg, fl, { scenario: 'mix', requests: scenarios['mix'] as BenchRequest[], connections: 50, rounds: 1 });
  rss50k = { rssBeforeMiB: before, peakAfterLoadMiB: memory(mg.pid).peakRss / 1048576 };
  log(`50 000 namespaces: long-running meshguard RSS ${before.toFixed(0)} MiB before load, peak ${rss50k.peakAfterLoadMiB.toFixed(0)} MiB after`);

  // Fresh processes that start with 50 000 namespaces: memory without the history of the runs
  // above, under the Pod CREATE load of the throughput target; with V8's defaults (the young
  // generation is sized from this machine's RAM: on a 64-bit machine with several GiB it grows to
  // 2 x 32 MiB semi-spaces under allocation-heavy load) and as the image runs meshguard (its
  // NODE_OPTIONS and MALLOC_ARENA_MAX), side by side. Fresh floors under the same load and
  // settings show what any Node server's RSS is made of here.
  const variants: [string, 'meshguard' | 'floor', string[], Record<string, string>][] = [
    ['meshguard fresh, 50 000 namespaces, V8 defaults', 'meshguard', [], {}],
    [`meshguard fresh, 50 000 namespaces, as the image runs it (${IMAGE_RUNTIME.label})`, 'meshguard', IMAGE_RUNTIME.nodeFlags, IMAGE_RUNTIME.env],
    ['meshguard fresh, 50 000 namespaces, --max-heap-size=256', 'meshguard', ['--max-heap-size=256'], {}],
    ['floor fresh, V8 defaults', 'floor', [], {}],
    [`floor fresh, with the image's settings (${IMAGE_RUNTIME.label})`, 'floor', IMAGE_RUNTIME.nodeFlags, IMAGE_RUNTIME.env],
  ];
  const started: { name: string; server: 'meshguard' | 'floor'; flags: string[]; s: Server; startSeconds: number; idle: number }[] = [];
  for (const [name, server, nodeFlags, env] of variants) {
    const t1 = performance.now();
    const s = server === 'floor' ? await startFloor(`fresh-floor-${started.length}`, 'ecdsa', nodeFlags, env) : await startMeshguard(`fresh-${started.length}`, { cluster: true, nodeFlags, env });
    if (server === 'meshguard') {
      await waitReady(s.port, ecdsaCa, 180_000);
      await waitForNamespace(s, 49_999, 300_000);
    }
    const startSeconds = (performance.now() - t1) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    started.push({ name, server, flags: nodeFlags, s, startSeconds, idle: memory(s.pid).rss / 1048576 });
  }
  for (const v of started) await warmUp(v.s, v.server);
  for (let round = 0; round < 2; round++) {
    for (const v of round % 2 === 0 ? started : [...started].reverse()) {
      await measure('fresh-50000', v.s, v.server, { variant: v.name, scenario: 'pod-create', requests: scenarios['pod-create'] as BenchRequest[], connections: 50, round });
    }
  }
  for (const v of started) {
    const a = agg((r) => r.section === 'fresh-50000' && r.variant === v.name);
    const m = memory(v.s.pid);
    fresh.push({ name: v.name, server: v.server, flags: v.flags.join(' '), namespaces: v.server === 'floor' ? 0 : 50_000, startSeconds: v.startSeconds, idleRssMiB: v.idle, peakRssMiB: m.peakRss / 1048576, rssAnonMiB: m.rssAnon / 1048576, rssFileMiB: m.rssFile / 1048576, cpuUsPerRequest: a.cpuUsPerRequest, rps: a.rps });
    await v.s.stop();
  }
  for (const f of fresh) log(`  ${f.name}: ready in ${f.startSeconds.toFixed(1)} s, idle RSS ${f.idleRssMiB.toFixed(0)} MiB, peak under load ${f.peakRssMiB.toFixed(0)} MiB, ${f.cpuUsPerRequest.toFixed(0)} µs CPU/request`);
}

// Size scaling: one Deployment CREATE grown to each size, 2 connections.
log('size scaling');
const sizeRows: { targetBytes: number; objectBytes: number; bodyBytes: number; meshguard: Agg; floor: Agg; cpuRatio: number }[] = [];
for (const bytes of SIZES) {
  const reqs = Array.from({ length: 4 }, () => sizedRequest(requestNamespaces[0] as string, bytes));
  const scenario = `size-${bytes}`;
  await pairs('size', mg, fl, { scenario, requests: reqs, connections: 2, rounds: QUICK ? 1 : 2 });
  const isA = (r: Run): boolean => r.section === 'size' && r.scenario === scenario && r.server === 'meshguard';
  const isB = (r: Run): boolean => r.section === 'size' && r.scenario === scenario && r.server === 'floor';
  sizeRows.push({ targetBytes: bytes, objectBytes: (reqs[0] as { objectBytes: number }).objectBytes, bodyBytes: Buffer.byteLength((reqs[0] as BenchRequest).body), meshguard: agg(isA), floor: agg(isB), cpuRatio: pairedRatio(isA, isB, (r) => r.cpuUsPerRequest) });
}
const afterSizeMemory = { meshguard: memory(mg.pid), floor: memory(fl.pid) };

// Full TLS handshakes: a new connection per request (no session resumption), ECDSA and RSA.
log('TLS handshakes');
const hsAgg: Record<string, Agg> = {};
{
  const hsRequests = scenarios['pod-create'] as BenchRequest[];
  const mgE = await startMeshguard('meshguard-hs-ecdsa', { cluster: false });
  const mgR = await startMeshguard('meshguard-hs-rsa', { cert: 'rsa', cluster: false });
  const flR = await startFloor('floor-rsa', 'rsa');
  const rsaCa = readFileSync(join(rsaDir, 'ca.crt'), 'utf8');
  const hsNamespaces = bc === undefined ? requestNamespaces : ['shop'];
  const hsReqs = bc === undefined ? hsRequests : buildRequests('pod-create', hsNamespaces, 64);
  const conns = 4;
  for (let round = 0; round < (QUICK ? 1 : 2); round++) {
    await measure('handshake', mgE, 'meshguard', { variant: 'meshguard ECDSA P-256', scenario: 'new-connection', requests: hsReqs, connections: conns, round, handshake: true });
    await measure('handshake', mgR, 'meshguard', { variant: 'meshguard RSA-2048', scenario: 'new-connection', requests: hsReqs, connections: conns, round, handshake: true, ca: rsaCa });
    await measure('handshake', fl, 'floor', { variant: 'floor ECDSA P-256', scenario: 'new-connection', requests: hsRequests, connections: conns, round, handshake: true });
    await measure('handshake', flR, 'floor', { variant: 'floor RSA-2048', scenario: 'new-connection', requests: hsRequests, connections: conns, round, handshake: true, ca: rsaCa });
  }
  for (const v of ['meshguard ECDSA P-256', 'meshguard RSA-2048', 'floor ECDSA P-256', 'floor RSA-2048']) hsAgg[v] = agg((r) => r.section === 'handshake' && r.variant === v);
  await Promise.all([mgE.stop(), mgR.stop(), flR.stop()]);
}

// Profiles: a separate meshguard (same configuration and cache) and a separate floor, each under
// --cpu-prof, driven with 50 connections of Pod CREATE (and meshguard also of the denied Pod);
// only the samples inside each measured window are summarized.
interface ProfileRun { readonly label: string; readonly summary: ProfileSummary; readonly requests: number; readonly file: string }
const profiles: ProfileRun[] = [];
let profileDiff: AreaDiffRow[] = [];
let profileDiff2: AreaDiffRow[] = [];
if (flags['no-profile'] !== true) {
  log('profiling meshguard and the floor under --cpu-prof (50 connections)');
  const durationMs = QUICK ? 500 : 3000;
  const one = async (label: string, kindOf: 'meshguard' | 'floor', scenariosToRun: [string, number][]): Promise<void> => {
    const dir = join(work, `profile-${kindOf}`);
    const nodeFlags = [...RUNTIME.nodeFlags, '--cpu-prof', '--cpu-prof-dir', dir];
    const s = kindOf === 'meshguard' ? await startMeshguard('meshguard-profile', { cluster: true, nodeFlags }) : await startFloor('floor-profile', 'ecdsa', nodeFlags);
    if (kindOf === 'meshguard') {
      await waitReady(s.port, ecdsaCa, 180_000);
      if (bc !== undefined) await waitForNamespace(s, bc.count - 1, 300_000);
    }
    await warmUp(s, kindOf);
    const windows: { scenario: string; window: { start: bigint; end: bigint }; requests: number }[] = [];
    for (const [scenario, connections] of scenariosToRun) {
      const window = { start: 0n, end: 0n };
      const r = await measure('profile', s, kindOf, { variant: `${kindOf} --cpu-prof`, scenario, requests: scenarios[scenario] as BenchRequest[], connections, round: 0, durationMs, window });
      windows.push({ scenario: `${scenario} x${connections}`, window, requests: r.requests });
    }
    await s.stop();
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`${label}: no .cpuprofile written`);
    const kept = join(BUILD, `${kindOf}.cpuprofile`);
    writeFileSync(kept, readFileSync(join(dir, file)));
    for (const w of windows) profiles.push({ label: `${label}, ${w.scenario}`, summary: summarizeProfile(kept, 30, { fromUs: Number(w.window.start), toUs: Number(w.window.end) }), requests: w.requests, file: kept });
  };
  await one('meshguard', 'meshguard', [['pod-create', 50], ['pod-denied', 50], ['pod-create', 2]]);
  await one('floor', 'floor', [['pod-create', 50], ['pod-create', 2]]);
  const a = profiles.find((x) => x.label === 'meshguard, pod-create x50');
  const b = profiles.find((x) => x.label === 'floor, pod-create x50');
  const a2 = profiles.find((x) => x.label === 'meshguard, pod-create x2');
  const b2 = profiles.find((x) => x.label === 'floor, pod-create x2');
  if (a2 !== undefined && b2 !== undefined) profileDiff2 = areaDiff(a2.summary, a2.requests, b2.summary, b2.requests);
  if (a !== undefined && b !== undefined) profileDiff = areaDiff(a.summary, a.requests, b.summary, b.requests);
}

await Promise.all([mg.stop(), fl.stop()]);
if (bc !== undefined) await bc.stop();

// In-process microbenchmark, pinned like the servers.
let micro: MicroResult | undefined;
if (flags['no-micro'] !== true) {
  log('microbenchmark (micro.ts)');
  const args = [join(BENCH, 'micro.ts'), '--json', ...(QUICK ? ['--quick'] : [])];
  const child = spawn(SERVER_CPUS !== undefined ? (tasksetPath() as string) : NODE, SERVER_CPUS !== undefined ? ['-c', SERVER_CPUS, NODE, ...args] : args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`micro.ts exited with ${code}`);
  micro = JSON.parse(out) as MicroResult;
}

// ---------------------------------------------------------------- report ---

const mib = (b: number): number => b / 1048576;
const us = (x: number): string => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(0)} µs`);
const ratio = (x: number): string => (Number.isFinite(x) && x > 0 ? x.toFixed(2) : 'n/a');

interface MainRow { scenario: string; connections: number; meshguard: Agg; floor: Agg; rpsRatio: number; cpuRatio: number; p99Ratio: number }
const mainRows: MainRow[] = [];
for (const scenario of Object.keys(scenarios)) {
  for (const connections of CONNECTIONS) {
    const isA = (r: Run): boolean => r.section === 'main' && r.scenario === scenario && r.connections === connections && r.server === 'meshguard';
    const isB = (r: Run): boolean => r.section === 'main' && r.scenario === scenario && r.connections === connections && r.server === 'floor';
    mainRows.push({
      scenario,
      connections,
      meshguard: agg(isA),
      floor: agg(isB),
      rpsRatio: pairedRatio(isA, isB, (r) => r.rps),
      cpuRatio: pairedRatio(isA, isB, (r) => r.cpuUsPerRequest),
      p99Ratio: pairedRatio(isA, isB, (r) => r.p99Us),
    });
  }
}

const row = (s: string, c: number): MainRow | undefined => mainRows.find((r) => r.scenario === s && r.connections === c);
const pod50 = row('pod-create', 50);
const pod2 = row('pod-create', 2);
// The memory target is read on meshguard as it ships: the image's runtime settings (the first
// row, V8 defaults, stays in the table and in a context line).
const rssTarget = fresh.find((f) => f.server === 'meshguard' && f.name.includes('as the image runs it'))?.peakRssMiB ?? rss50k?.peakAfterLoadMiB;
const rssDefaults = fresh.find((f) => f.server === 'meshguard' && f.name.endsWith('V8 defaults'))?.peakRssMiB;
const floorFreshRss = fresh.find((f) => f.server === 'floor' && f.name.includes("the image's settings"))?.peakRssMiB;
const targets = [
  { target: 'throughput at 50 connections, Pod CREATE: meshguard/floor >= 0.85', measured: pod50?.rpsRatio ?? 0, pass: (pod50?.rpsRatio ?? 0) >= 0.85 },
  { target: 'server CPU per request, Pod CREATE at 50 connections: meshguard/floor <= 1.2', measured: pod50?.cpuRatio ?? 0, pass: (pod50?.cpuRatio ?? Infinity) <= 1.2 },
  { target: 'p99 at 2 connections, Pod CREATE: meshguard/floor <= 1.5', measured: pod2?.p99Ratio ?? 0, pass: (pod2?.p99Ratio ?? Infinity) <= 1.5 },
  { target: 'p99 at 2 connections, Pod CREATE: < 2 ms', measured: (pod2?.meshguard.p99Us ?? 0) / 1000, pass: (pod2?.meshguard.p99Us ?? Infinity) < 2000 },
  { target: `peak RSS under load with 50 000 namespaces cached <= 150 MiB (fresh process, Pod CREATE x50, as the image runs it: ${IMAGE_RUNTIME.label})`, measured: rssTarget ?? Number.NaN, pass: rssTarget === undefined ? null : rssTarget <= 150 },
  ...(rssDefaults !== undefined ? [{ target: 'context, not a target: the same with V8 defaults (MiB)', measured: rssDefaults, pass: null }] : []),
  { target: 'no request errors in any run', measured: totalErrors, pass: totalErrors === 0 },
  { target: 'context, not a target: answers shed with 503 MG_OVERLOADED (the machine was too busy)', measured: totalShed, pass: null },
  ...(floorFreshRss !== undefined && rssTarget !== undefined
    ? [{ target: "context, not a target: peak RSS of a fresh floor under the same load with the image's settings, and meshguard minus floor (MiB)", measured: floorFreshRss, pass: null, meshguardMinusFloor: rssTarget - floorFreshRss }]
    : []),
];

const lines: string[] = [];
const p = (s = ''): void => void lines.push(s);
p(`# meshguard vs floor, ${new Date().toISOString()}${QUICK ? ' (--quick: smoke run, figures not meaningful)' : ''}`);
p(`load average at start ${loadAtStart.join(' ')}, at end ${loadAverage().join(' ')} (other work on this shared machine shows in the "other load on CPU 0" column)`);
p(`machine: ${mach.nproc} CPUs, ${mach.cpuModel}, ${mach.memTotalMiB} MiB, ${mach.kernel}, Node ${mach.node}; ${canPin ? 'servers on CPU 0, load generator on CPU 1 (taskset)' : 'not pinned'}`);
p(`runtime settings of meshguard, the floor and the Fastify floor: ${RUNTIME === IMAGE_RUNTIME ? `the image's (${IMAGE_RUNTIME.label})` : 'V8 defaults'} (--runtime ${flags.runtime}); the framework split adds a meshguard with ${OTHER_RUNTIME.label}; the fresh 50 000-namespace rows name their own`);
p(`meshguard: ${meshguardMain}, enforce mode, all rules, namespace cache: ${bc === undefined ? 'none (unknownNamespace: allow)' : `real apiserver, ${MAIN_NAMESPACES} namespaces for the main table`}; ${ROUNDS} rounds x ${DURATION_MS / 1000} s per cell (${ROUNDS + TARGET_EXTRA_ROUNDS} for Pod CREATE at 2 and 50 connections, the target cells), meshguard and floor alternating (medians; ratios are medians of paired per-round ratios; rounds where other processes took >= ${NOISE * 100}% of CPU 0 are left out when clean ones exist)`);
p();
p('| scenario | conns | meshguard req/s | floor req/s | ratio | mg p50 | mg p99 | mg p99.9 | floor p50 | floor p99 | floor p99.9 | p99 ratio | mg CPU/req | floor CPU/req | CPU ratio | client CPU | other load on CPU 0 | clean rounds | errors |');
p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of mainRows) {
  p(`| ${r.scenario} | ${r.connections} | ${r.meshguard.rps.toFixed(0)} | ${r.floor.rps.toFixed(0)} | ${ratio(r.rpsRatio)} | ${us(r.meshguard.p50Us)} | ${us(r.meshguard.p99Us)} | ${us(r.meshguard.p999Us)} | ${us(r.floor.p50Us)} | ${us(r.floor.p99Us)} | ${us(r.floor.p999Us)} | ${ratio(r.p99Ratio)} | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${(Math.max(r.meshguard.clientCpu, r.floor.clientCpu) * 100).toFixed(0)}% | ${(Math.max(r.meshguard.otherOnServerCpu, r.floor.otherOnServerCpu) * 100).toFixed(0)}% | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} | ${r.meshguard.errors + r.floor.errors} |`);
}
p();
p(`peak RSS after the main table: meshguard ${mib(mainMemory.meshguard.peakRss).toFixed(0)} MiB, floor ${mib(mainMemory.floor.peakRss).toFixed(0)} MiB (ratio ${ratio(mainMemory.meshguard.peakRss / mainMemory.floor.peakRss)})`);
p();
p('## Object size (Deployment CREATE, 2 connections)');
p('| object | body | meshguard CPU/req | floor CPU/req | ratio | meshguard µs/KiB | floor µs/KiB | meshguard req/s | floor req/s | clean rounds |');
p('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of sizeRows) {
  const kib = r.bodyBytes / 1024;
  p(`| ${(r.objectBytes / 1024).toFixed(1)} KiB | ${kib.toFixed(1)} KiB | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${(r.meshguard.cpuUsPerRequest / kib).toFixed(2)} | ${(r.floor.cpuUsPerRequest / kib).toFixed(2)} | ${r.meshguard.rps.toFixed(0)} | ${r.floor.rps.toFixed(0)} | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} |`);
}
p(`peak RSS after the size runs: meshguard ${mib(afterSizeMemory.meshguard.peakRss).toFixed(0)} MiB, floor ${mib(afterSizeMemory.floor.peakRss).toFixed(0)} MiB`);
p();
if (nsScaling.length > 0) {
  p('## Namespace cache (real apiserver watch; Pod CREATE, 50 connections)');
  p('| namespaces | created in | meshguard CPU/req | floor CPU/req | ratio | meshguard req/s | meshguard RSS idle | meshguard peak RSS | clean rounds |');
  p('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of nsScaling) {
    const info = nsInfo.find((x) => x.count === r.namespaces);
    p(`| ${r.namespaces} | ${info?.createSeconds.toFixed(1) ?? '?'} s | ${us(r.meshguard.cpuUsPerRequest)} | ${us(r.floor.cpuUsPerRequest)} | ${ratio(r.cpuRatio)} | ${r.meshguard.rps.toFixed(0)} | ${info?.meshguardRssMiB.toFixed(0) ?? '?'} MiB | ${r.meshguard.peakRssMiB.toFixed(0)} MiB | ${Math.min(r.meshguard.cleanRounds, r.floor.cleanRounds)}/${r.meshguard.rounds} |`);
  }
  p();
}
if (fresh.length > 0 || rss50k !== undefined) {
  p('## Memory with 50 000 namespaces');
  if (rss50k !== undefined) p(`long-running meshguard (after all runs above): RSS ${rss50k.rssBeforeMiB.toFixed(0)} MiB before the 50 000-namespace runs, peak ${rss50k.peakAfterLoadMiB.toFixed(0)} MiB after them`);
  p();
  p('| process | ready in | idle RSS | peak RSS under Pod CREATE x50 | RSS after: anon / file | CPU/req | req/s |');
  p('|---|---:|---:|---:|---:|---:|---:|');
  const idle10 = nsInfo.find((x) => x.count === 10);
  if (idle10 !== undefined) p(`| meshguard, 10 namespaces (the main process before any load) | | ${idle10.meshguardRssMiB.toFixed(0)} MiB | ${(nsScaling.find((x) => x.namespaces === 10)?.meshguard.peakRssMiB ?? 0).toFixed(0)} MiB | | ${us(nsScaling.find((x) => x.namespaces === 10)?.meshguard.cpuUsPerRequest ?? 0)} | ${(nsScaling.find((x) => x.namespaces === 10)?.meshguard.rps ?? 0).toFixed(0)} |`);
  for (const f of fresh) p(`| ${f.name} | ${f.startSeconds.toFixed(1)} s | ${f.idleRssMiB.toFixed(0)} MiB | ${f.peakRssMiB.toFixed(0)} MiB | ${f.rssAnonMiB.toFixed(0)} / ${f.rssFileMiB.toFixed(0)} MiB | ${us(f.cpuUsPerRequest)} | ${f.rps.toFixed(0)} |`);
  p();
}
p('## Full TLS handshakes (new connection per Pod CREATE request, 4 concurrent, no resumption)');
p('| server / certificate | connections/s | server CPU per connection | connections/s per core (1e6 / CPU) | CPU above a keep-alive request | client CPU |');
p('|---|---:|---:|---:|---:|---:|');
for (const [v, a] of Object.entries(hsAgg)) {
  const keepAlive = row('pod-create', 2)?.[v.startsWith('meshguard') ? 'meshguard' : 'floor'].cpuUsPerRequest ?? 0;
  p(`| ${v} | ${a.rps.toFixed(0)} | ${us(a.cpuUsPerRequest)} | ${a.cpuUsPerRequest > 0 ? (1e6 / a.cpuUsPerRequest).toFixed(0) : 'n/a'} | ${us(a.cpuUsPerRequest - keepAlive)} | ${(a.clientCpu * 100).toFixed(0)}%${a.clientCpu >= 0.9 ? ' (client-bound: connections/s is the client\'s limit; CPU per connection is the server figure)' : ''} |`);
}
p();
if (framework !== undefined) {
  p('## Where the cost above the floor sits (Pod CREATE, 50 connections, the servers alternated)');
  p('| server | req/s | CPU/req | CPU ratio to the floor | req/s ratio to the floor | clean rounds |');
  p('|---|---:|---:|---:|---:|---:|');
  for (const f of framework) p(`| ${f.variant} | ${f.agg.rps.toFixed(0)} | ${us(f.agg.cpuUsPerRequest)} | ${ratio(f.cpuRatio)} | ${ratio(f.rpsRatio)} | ${f.agg.cleanRounds}/${f.agg.rounds} |`);
  p();
}
if (micro !== undefined) {
  p('## Microbenchmark (in-process, no TLS; median ns/op)');
  p(microTable(micro).trimEnd());
  p();
}
if (profiles.length > 0) {
  p('## Profiles (--cpu-prof, 50 connections; self time per request by area, meshguard vs floor, Pod CREATE)');
  p('| area | meshguard µs/req | floor µs/req | difference |');
  p('|---|---:|---:|---:|');
  for (const d of profileDiff.filter((x) => Math.max(x.aUs, x.bUs) >= 0.5)) p(`| ${d.area} | ${d.aUs.toFixed(1)} | ${d.bUs.toFixed(1)} | ${(d.aUs - d.bUs >= 0 ? '+' : '') + (d.aUs - d.bUs).toFixed(1)} |`);
  p();
  if (profileDiff2.length > 0) {
    p('Same at 2 connections:');
    p('| area | meshguard µs/req | floor µs/req | difference |');
    p('|---|---:|---:|---:|');
    for (const d of profileDiff2.filter((x) => Math.max(x.aUs, x.bUs) >= 0.5)) p(`| ${d.area} | ${d.aUs.toFixed(1)} | ${d.bUs.toFixed(1)} | ${(d.aUs - d.bUs >= 0 ? '+' : '') + (d.aUs - d.bUs).toFixed(1)} |`);
    p();
  }
  for (const pr of profiles) {
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
p(`total time ${((performance.now() - t0) / 1000).toFixed(0)} s; errors ${totalErrors}; shed ${totalShed}`);
process.stdout.write(`${lines.join('\n')}\n`);

mkdirSync(join(BENCH, 'results'), { recursive: true });
writeFileSync(
  OUT,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      quick: QUICK,
      machine: mach,
      loadAverage: { start: loadAtStart, end: loadAverage() },
      settings: { rounds: ROUNDS, targetExtraRounds: TARGET_EXTRA_ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, connections: CONNECTIONS, pinned: canPin, meshguard: meshguardMain, runtime: RUNTIME.label, cluster: bc !== undefined, mainNamespaces: bc === undefined ? 0 : MAIN_NAMESPACES },
      targets,
      main: mainRows,
      memory: { afterMain: mainMemory, afterSize: afterSizeMemory, namespaces: nsInfo, with50000: rss50k ?? null },
      sizeScaling: sizeRows,
      namespaceScaling: nsScaling,
      handshakes: hsAgg,
      micro: micro ?? null,
      profiles: profiles.map((x) => ({ label: x.label, requests: x.requests, summary: x.summary })),
      profileDiff,
      profileDiff2,
      fresh,
      framework: framework ?? null,
      totalErrors,
      totalShed,
      seconds: (performance.now() - t0) / 1000,
      runs,
    },
    null,
    1,
  )}\n`,
);
log(`raw results in ${OUT}`);
process.exitCode = totalErrors > 0 ? 1 : 0;
