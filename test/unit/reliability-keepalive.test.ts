// Keep-alive (issue 8 item 5; checklist B14). Go's HTTP client, and so the apiserver's webhook
// client, keeps idle connections for 90 s. meshguard keeps them for keepAliveTimeout (95 s), so the
// client always closes first and never sends a request on a connection the server is closing at
// that moment. Clients that idle between 4 and 80 s between requests over one kept connection must
// see no ECONNRESET, EOF or "socket hang up", and every request after the first must reuse the
// connection (the idle connection really survived the gap). Takes about 90 s; runs in parallel.
import t from 'tap';
import { Agent, request } from 'node:https';
import { reviewBody } from '../helpers/review.ts';
import { startServer } from '../helpers/server.ts';

const server = await startServer();
t.teardown(() => server.close());

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A small deterministic PRNG, so the random schedule is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomGaps(seed: number, totalS: number): number[] {
  const rnd = mulberry32(seed);
  const gaps: number[] = [];
  let sum = 0;
  while (totalS - sum >= 4) {
    const g = Math.min(4 + Math.round(rnd() * 76), totalS - sum);
    gaps.push(g);
    sum += g;
  }
  return gaps;
}

const SCHEDULES: Record<string, number[]> = {
  'short then the longest gap': [4, 80, 5],
  'the longest gap first': [80, 4, 4],
  'growing gaps': [10, 20, 30, 30],
  'two 45 s gaps': [45, 45],
  'every 4 s': Array.from({ length: 22 }, () => 4),
  'random gaps (seed 7)': randomGaps(7, 90),
  'random gaps (seed 42)': randomGaps(42, 90),
};

interface ClientResult {
  readonly name: string;
  readonly requests: number;
  readonly errors: string[];
  readonly sockets: number;
  readonly reused: number;
}

async function client(name: string, gapsS: readonly number[]): Promise<ClientResult> {
  // Go's http.DefaultTransport: IdleConnTimeout 90 s. Node's agent closes a free socket after
  // `timeout` (and never later than the server's Keep-Alive hint, 95 s - 1 s).
  const agent = new Agent({ keepAlive: true, maxSockets: 1, timeout: 90_000 });
  const errors: string[] = [];
  let sockets = 0;
  let reused = 0;
  let requests = 0;
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const body = JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } }));
      const req = request(new URL('/validate?timeout=10s', server.url), { method: 'POST', ca: server.ca, agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) errors.push(`HTTP ${res.statusCode}`);
          resolve();
        });
        res.on('error', (e) => {
          errors.push(e.message);
          resolve();
        });
      });
      req.on('socket', (s) => {
        if (req.reusedSocket) reused++;
        else {
          sockets++;
          s.on('error', (e) => errors.push(`socket: ${e.message}`));
        }
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        errors.push(`${e.code ?? ''} ${e.message}`);
        resolve();
      });
      req.end(body);
      requests++;
    });
  await once();
  for (const g of gapsS) {
    await sleep(g * 1000);
    await once();
  }
  agent.destroy();
  return { name, requests, errors, sockets, reused };
}

t.test('idle keep-alive connections with 4-80 s gaps see no resets (about 90 s)', async (t) => {
  t.equal(server.config.server.keepAliveTimeoutMs, 95_000, 'the server keeps idle connections 95 s');
  const results = await Promise.all(Object.entries(SCHEDULES).map(([name, gaps]) => client(name, gaps)));
  for (const r of results) {
    t.same(r.errors, [], `${r.name} (gaps ${SCHEDULES[r.name]?.join(', ')} s): ${r.requests} requests, no ECONNRESET, EOF or hang-up`);
    t.equal(r.sockets, 1, `${r.name}: one connection, kept across every idle gap (${r.reused} reuses)`);
  }
});
