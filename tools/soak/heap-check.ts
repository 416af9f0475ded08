// Heap check: the whole admission path in one process (real HTTPS, keep-alive) under the bench's
// request mix, with a forced full GC between rounds, so a per-request leak in JavaScript shows as
// heapUsed growing with the number of requests. Complements the soak, whose RSS is coarse (V8
// grows its heap in steps). Not part of `npm test`:
//
//   node --expose-gc tools/soak/heap-check.ts [--rounds 6] [--per-round 20000]
import { Agent, request } from 'node:https';
import { parseArgs } from 'node:util';
import { buildMix } from '../bench/requests.ts';
import { nullAuditSink } from '../../src/webhook/audit-sink.ts';
import { startServer } from '../../test/helpers/server.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '6' }, 'per-round': { type: 'string', default: '20000' } } });
const rounds = Number(values.rounds);
const perRound = Number(values['per-round']);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

// Audit records are discarded (the test helper's default sink keeps them in memory).
const server = await startServer({ 'server.maxEventLoopDelayMs': 0 }, { audit: nullAuditSink });
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
const mix = buildMix(['team-a', 'team-b'], 50);
let errors = 0;

function send(i: number): Promise<void> {
  const r = mix[i % mix.length]!;
  return new Promise((resolve) => {
    const req = request(new URL(r.path, server.url), { method: 'POST', ca: server.ca, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) errors++;
        resolve();
      });
    });
    req.on('error', () => {
      errors++;
      resolve();
    });
    req.end(r.body);
  });
}

const heapMiB = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1048576;
};
const rows: { requests: number; heapUsedMiB: number }[] = [];
let sent = 0;
rows.push({ requests: 0, heapUsedMiB: heapMiB() });
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < perRound; i += 8) await Promise.all(Array.from({ length: 8 }, (_, k) => send(sent + i + k)));
  sent += perRound;
  rows.push({ requests: sent, heapUsedMiB: heapMiB() });
  process.stderr.write(`heap-check: ${sent} requests, heapUsed ${rows.at(-1)!.heapUsedMiB.toFixed(2)} MiB, errors ${errors}\n`);
}
agent.destroy();
await server.close();
// Growth per 100 000 requests after the first round (warm-up: JIT, caches, metric series).
const a = rows[1]!;
const b = rows.at(-1)!;
const per100k = ((b.heapUsedMiB - a.heapUsedMiB) / (b.requests - a.requests)) * 100_000;
process.stdout.write(`${JSON.stringify({ rows, errors, growthMiBPer100kRequests: Number(per100k.toFixed(3)) })}\n`);
