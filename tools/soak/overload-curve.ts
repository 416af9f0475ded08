// Overload curve: `meshguard serve` (its own process, default limits unless --config is given)
// under closed-loop load at growing concurrency. Per step: answers per second, p50/p99 latency,
// the share answered 503 MG_OVERLOADED, other errors and the server's peak RSS. Shows where
// meshguard saturates and that past it the excess is shed quickly with bounded memory instead of
// queueing. Not part of `npm test`:
//
//   node tools/soak/overload-curve.ts                       # 1..1024 clients, 10 s each, 10 KiB Pod reviews
//   node tools/soak/overload-curve.ts --steps 1,8,64,512 --seconds 5 --body-kib 512 --config cfg.json
//
// Results: JSON in tools/soak/results/ (or --out FILE) and a table on stderr.
import { Agent, request } from 'node:https';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServe } from '../../test/helpers/process.ts';
import { createReview } from './review.ts';

const HERE = new URL('.', import.meta.url).pathname;
const { values: flags } = parseArgs({
  options: {
    steps: { type: 'string', default: '1,4,16,64,256,1024' },
    seconds: { type: 'string', default: '10' },
    'body-kib': { type: 'string', default: '0' },
    config: { type: 'string' },
    out: { type: 'string' },
  },
});
const STEPS = (flags.steps ?? '').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
const STEP_MS = Number(flags.seconds) * 1000;
const FILLER_KIB = Number(flags['body-kib']);

const pod = JSON.parse(readFileSync(join(HERE, '../bench/fixtures/pod-injected.json'), 'utf8')) as Record<string, any>;
function body(): string {
  const object = FILLER_KIB > 0 ? { ...pod, metadata: { ...pod['metadata'], annotations: { ...pod['metadata']?.annotations, 'example.com/filler': 'x'.repeat(FILLER_KIB * 1024) } } } : pod;
  return createReview({
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: 'pods',
    namespace: object['metadata']?.namespace ?? 'shop',
    name: object['metadata']?.name ?? '',
    userInfo: { username: 'curve', groups: ['system:authenticated'] },
    object,
  });
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN) / 1024;
}
const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshguard-curve-'));
  const args = ['--port', '0', '--cert-dir', join(dir, 'certs'), '--log-level', 'error', '--audit-log', join(dir, 'audit.jsonl')];
  if (flags.config !== undefined) args.push('--config', flags.config);
  const s = await startServe(args);
  const pid = s.child.pid ?? 0;
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  const rows: Record<string, unknown>[] = [];
  try {
    for (const clients of STEPS) {
      const agent = new Agent({ keepAlive: true, maxSockets: clients });
      const lat: number[] = [];
      const counts = { ok: 0, shed: 0, deadline: 0, other: 0 };
      let peak = rssMiB(pid);
      const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
      const end = performance.now() + STEP_MS;
      const one = (): Promise<void> =>
        new Promise((resolve) => {
          const started = performance.now();
          const b = body();
          const req = request(new URL('/validate?timeout=5s', s.url), { method: 'POST', ca, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) } }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => {
              lat.push(performance.now() - started);
              if (res.statusCode === 200) {
                if (text.includes('meshguard was overloaded')) counts.deadline++;
                else counts.ok++;
              } else if (res.statusCode === 503 && text.includes('MG_OVERLOADED')) counts.shed++;
              else counts.other++;
              resolve();
            });
          });
          req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
          req.on('error', () => {
            counts.other++;
            resolve();
          });
          req.end(b);
        });
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (performance.now() < end) await one();
        }),
      );
      clearInterval(sampler);
      agent.destroy();
      lat.sort((a, b) => a - b);
      const total = counts.ok + counts.shed + counts.deadline + counts.other;
      const row = {
        clients,
        answersPerS: round(total / (STEP_MS / 1000)),
        evaluatedPerS: round(counts.ok / (STEP_MS / 1000)),
        p50Ms: round(pct(lat, 50), 2),
        p99Ms: round(pct(lat, 99), 2),
        shedPct: round((100 * counts.shed) / Math.max(1, total)),
        deadlineAnswers: counts.deadline,
        otherErrors: counts.other,
        peakRssMiB: round(peak),
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await s.stop('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  const result = { when: new Date().toISOString(), node: process.version, stepSeconds: STEP_MS / 1000, bodyFillerKiB: FILLER_KIB, config: flags.config ?? 'defaults', rows };
  const out = flags.out ?? join(HERE, 'results', `overload-curve-${result.when.replaceAll(':', '-').replace(/\..*/, '')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`overload curve written to ${out}\n`);
}

await main();
