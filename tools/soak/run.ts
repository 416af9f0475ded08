// Soak: `meshguard serve` (the real CLI, its own process) under a steady mixed load for a bounded
// time, then a settle period with no load. Samples the server's RSS every 10 s, fits a line to the
// loaded samples after warm-up and reports the growth in MiB per 10 minutes, plus every error.
// Not part of `npm test`:
//
//   node tools/soak/run.ts                       # 20 min load + 2 min settle, 100 req/s
//   node tools/soak/run.ts --load-min 2 --settle-min 0.5 --warmup-min 0.5 --rps 200
//   node tools/soak/run.ts --bundle             # the image's server (npm run bundle's one file)
//
// Pass: zero errors and growth under --max-growth (5 MiB per 10 min). Exit 0 on pass, 1 on fail.
// Results: JSON in tools/soak/results/ (or --out FILE).
import { Agent, request } from 'node:https';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { bundle } from '../bundle.ts';
import { startServe } from '../../test/helpers/process.ts';

const HERE = new URL('.', import.meta.url).pathname;
const FIXTURES = join(HERE, '../bench/fixtures');

const { values: flags } = parseArgs({
  options: {
    'load-min': { type: 'string', default: '20' },
    'settle-min': { type: 'string', default: '2' },
    'warmup-min': { type: 'string', default: '5' },
    rps: { type: 'string', default: '100' },
    'sample-s': { type: 'string', default: '10' },
    'max-growth': { type: 'string', default: '5' },
    sockets: { type: 'string', default: '16' },
    out: { type: 'string' },
    // Run the image's server (npm run bundle's one file) instead of src/main.ts.
    bundle: { type: 'boolean', default: false },
  },
});

const num = (name: keyof typeof flags): number => {
  const v = Number(flags[name]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  return v;
};
const LOAD_MS = num('load-min') * 60_000;
const SETTLE_MS = num('settle-min') * 60_000;
const WARMUP_MS = num('warmup-min') * 60_000;
const RPS = num('rps');
const SAMPLE_MS = num('sample-s') * 1000;
const MAX_GROWTH = num('max-growth');

// ---------------------------------------------------------------- the mix ---

type Obj = Record<string, any>;
const load = (f: string): Obj => JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Obj;
const namespace = load('namespace.json');
const pod = load('pod-injected.json');
const deployment = load('deployment.json');

interface Shape {
  readonly name: string;
  readonly path: '/validate' | '/mutate';
  readonly weight: number;
  body(): string;
}

function review(object: Obj, kind: { group: string; version: string; kind: string }, resource: string, opts: { operation?: string; oldObject?: Obj; namespace?: string } = {}): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind,
      resource: { group: kind.group, version: kind.version, resource },
      requestKind: kind,
      requestResource: { group: kind.group, version: kind.version, resource },
      name: object['metadata']?.name ?? '',
      namespace: opts.namespace ?? object['metadata']?.namespace ?? '',
      operation: opts.operation ?? 'CREATE',
      userInfo: { username: 'soak', groups: ['system:authenticated'] },
      object,
      oldObject: opts.oldObject ?? null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  });
}

const NS = { group: '', version: 'v1', kind: 'Namespace' };
const POD = { group: '', version: 'v1', kind: 'Pod' };
const DEPLOY = { group: 'apps', version: 'v1', kind: 'Deployment' };
let seq = 0;
const fresh = (o: Obj, name: string): Obj => ({ ...o, metadata: { ...o['metadata'], name } });
const meshed = (o: Obj): Obj => ({ ...o, metadata: { ...o['metadata'], labels: { ...o['metadata']?.labels, 'istio-injection': 'enabled' } } });
const optedOut = (o: Obj): Obj => ({ ...o, metadata: { ...o['metadata'], labels: { ...o['metadata']?.labels, 'istio-injection': 'disabled' } } });

const SHAPES: readonly Shape[] = [
  { name: 'namespace create /mutate', path: '/mutate', weight: 2, body: () => review(fresh(namespace, `soak-${++seq}`), NS, 'namespaces') },
  { name: 'namespace create /validate (meshed)', path: '/validate', weight: 2, body: () => review(meshed(fresh(namespace, `soak-${++seq}`)), NS, 'namespaces') },
  { name: 'namespace update /validate (opt-out, denied)', path: '/validate', weight: 1, body: () => review(optedOut(namespace), NS, 'namespaces', { operation: 'UPDATE', oldObject: meshed(namespace) }) },
  { name: 'pod create /validate', path: '/validate', weight: 4, body: () => review(fresh(pod, `checkout-${++seq}`), POD, 'pods') },
  { name: 'deployment create /validate', path: '/validate', weight: 2, body: () => review(deployment, DEPLOY, 'deployments') },
  { name: 'deployment update /validate', path: '/validate', weight: 1, body: () => review(deployment, DEPLOY, 'deployments', { operation: 'UPDATE', oldObject: deployment }) },
];
const TOTAL_WEIGHT = SHAPES.reduce((a, s) => a + s.weight, 0);
function pick(): Shape {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const s of SHAPES) if ((r -= s.weight) < 0) return s;
  return SHAPES[0] as Shape;
}

// ---------------------------------------------------------------- client ---

interface ErrorRecord {
  readonly atS: number;
  readonly shape: string;
  readonly error: string;
}

const errors: ErrorRecord[] = [];
let sent = 0;
let answered = 0;
const verdicts: Record<string, number> = {};
let windowLatencies: number[] = [];

function send(url: string, ca: string, agent: Agent, t0: number): void {
  const shape = pick();
  const body = shape.body();
  const started = performance.now();
  sent++;
  const fail = (error: string): void => void errors.push({ atS: Math.round((performance.now() - t0) / 100) / 10, shape: shape.name, error });
  const req = request(new URL(shape.path, url), { method: 'POST', ca, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      windowLatencies.push(performance.now() - started);
      const text = Buffer.concat(chunks).toString('utf8');
      if (res.statusCode !== 200) return fail(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
      try {
        const r = JSON.parse(text) as { response?: { uid?: string; allowed?: boolean; patch?: string } };
        const uid = (JSON.parse(body) as { request: { uid: string } }).request.uid;
        if (r.response?.uid !== uid) return fail('uid not echoed');
        const v = r.response.patch !== undefined ? 'patched' : r.response.allowed === true ? 'allowed' : 'denied';
        verdicts[v] = (verdicts[v] ?? 0) + 1;
        answered++;
      } catch (err) {
        fail(`bad answer: ${(err as Error).message}`);
      }
    });
    res.on('error', (e) => fail(e.message));
  });
  req.setTimeout(10_000, () => req.destroy(new Error('timeout after 10 s')));
  req.on('error', (e: NodeJS.ErrnoException) => fail(`${e.code ?? ''} ${e.message}`));
  req.end(body);
}

// ---------------------------------------------------------------- stats ---

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] === undefined ? Number.NaN : Number(m[1]) / 1024;
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  return sxx === 0 ? Number.NaN : sxy / sxx;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- run ---

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'meshguard-soak-'));
  const main = flags.bundle === true ? (await bundle(join(dir, 'bundle', 'meshguard.mjs'))).outfile : undefined;
  const server = await startServe(['--port', '0', '--cert-dir', join(dir, 'certs'), '--log-level', 'warn', '--audit-log', join(dir, 'audit.jsonl')], main !== undefined ? { main } : {});
  const pid = server.child.pid ?? 0;
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  const agent = new Agent({ keepAlive: true, maxSockets: num('sockets'), timeout: 90_000 });
  const samples: { tS: number; phase: 'load' | 'settle'; rssMiB: number; sent: number; errors: number; p50Ms: number; p99Ms: number }[] = [];
  const t0 = performance.now();
  const elapsed = (): number => performance.now() - t0;
  process.stderr.write(`soak: meshguard pid ${pid} at ${server.url}; ${RPS} req/s for ${LOAD_MS / 60_000} min, settle ${SETTLE_MS / 60_000} min, sample every ${SAMPLE_MS / 1000} s\n`);

  const sample = (phase: 'load' | 'settle'): void => {
    const lat = windowLatencies.sort((a, b) => a - b);
    windowLatencies = [];
    const s = { tS: round(elapsed() / 1000, 1), phase, rssMiB: round(rssMiB(pid)), sent, errors: errors.length, p50Ms: round(percentile(lat, 50)), p99Ms: round(percentile(lat, 99)) };
    samples.push(s);
    process.stderr.write(`soak: t=${s.tS}s ${phase} rss=${s.rssMiB} MiB sent=${sent} errors=${errors.length} p50=${s.p50Ms} ms p99=${s.p99Ms} ms\n`);
  };
  sample('load');

  // Open-loop schedule: requests are started on time whatever the answers do.
  let due = 0;
  const tickMs = 10;
  const ticker = setInterval(() => {
    if (elapsed() >= LOAD_MS) return;
    due += (RPS * tickMs) / 1000;
    while (due >= 1) {
      due--;
      send(server.url, ca, agent, t0);
    }
  }, tickMs);
  let next = SAMPLE_MS;
  while (elapsed() < LOAD_MS) {
    await sleep(Math.max(0, Math.min(next, LOAD_MS) - elapsed()));
    if (elapsed() >= next) {
      sample('load');
      next += SAMPLE_MS;
    }
  }
  clearInterval(ticker);
  // Let the last answers arrive, then settle with no load.
  for (let i = 0; i < 100 && answered + errors.length < sent; i++) await sleep(100);
  sample('load');
  agent.destroy();
  const settleEnd = elapsed() + SETTLE_MS;
  while (elapsed() < settleEnd) {
    await sleep(Math.min(SAMPLE_MS, settleEnd - elapsed()));
    sample('settle');
  }
  const exit = await server.stop('SIGTERM');
  rmSync(dir, { recursive: true, force: true });

  const loaded = samples.filter((s) => s.phase === 'load');
  const afterWarmup = loaded.filter((s) => s.tS * 1000 >= WARMUP_MS);
  const perMs = slope(afterWarmup.map((s) => ({ x: s.tS * 1000, y: s.rssMiB })));
  const growthPer10Min = round(perMs * 600_000, 3);
  const warm = afterWarmup[0]?.rssMiB ?? Number.NaN;
  const endLoad = loaded.at(-1)?.rssMiB ?? Number.NaN;
  const endSettle = samples.at(-1)?.rssMiB ?? Number.NaN;
  const allLat = samples.filter((s) => s.phase === 'load' && Number.isFinite(s.p99Ms)).map((s) => s.p99Ms);
  const pass = errors.length === 0 && answered === sent && Number.isFinite(growthPer10Min) && growthPer10Min < MAX_GROWTH && exit === 0;
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    settings: { loadMin: LOAD_MS / 60_000, settleMin: SETTLE_MS / 60_000, warmupMin: WARMUP_MS / 60_000, rps: RPS, sampleS: SAMPLE_MS / 1000, sockets: num('sockets'), maxGrowthMiBPer10Min: MAX_GROWTH, server: flags.bundle === true ? 'bundle' : 'src/main.ts', nodeOptions: process.env['NODE_OPTIONS'] ?? '', mallocArenaMax: process.env['MALLOC_ARENA_MAX'] ?? '' },
    mix: SHAPES.map((s) => ({ name: s.name, path: s.path, share: round(s.weight / TOTAL_WEIGHT, 3) })),
    requests: { sent, answered, verdicts, achievedRps: round(sent / (LOAD_MS / 1000), 1) },
    errors: { count: errors.length, first: errors.slice(0, 20) },
    rss: {
      atStartMiB: samples[0]?.rssMiB,
      afterWarmupMiB: warm,
      endOfLoadMiB: endLoad,
      endOfSettleMiB: endSettle,
      maxMiB: Math.max(...samples.map((s) => s.rssMiB)),
      growthMiBPer10MinAfterWarmup: growthPer10Min,
      fitPoints: afterWarmup.length,
    },
    latency: { worstWindowP99Ms: Math.max(...allLat), medianWindowP99Ms: percentile([...allLat].sort((a, b) => a - b), 50) },
    serverExitCode: exit,
    pass,
    samples,
  };
  const out = flags.out ?? join(HERE, 'results', `soak-${result.when.replaceAll(':', '-').replace(/\..*/, '')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(
    `soak: ${pass ? 'PASS' : 'FAIL'}: ${sent} requests, ${errors.length} errors, RSS ${warm} -> ${endLoad} MiB under load (fit ${growthPer10Min} MiB/10 min after warm-up, bound ${MAX_GROWTH}), ${endSettle} MiB after settling; results in ${out}\n`,
  );
  return pass ? 0 : 1;
}

process.exitCode = await main();
