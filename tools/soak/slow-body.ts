// Slow-body probe: one `meshguard serve` (its own process) against N connections that each
// declare a large Content-Length (about 6 MB: 64 MiB / 11) and then send one body byte a second, reconnecting
// whenever the server cuts them, while a well-behaved client (two sequential loops on kept
// connections, as the apiserver's client does) sends ordinary Namespace reviews with
// `?timeout=5s`. Reports the well-behaved client's success share and latency (a request
// succeeds when it gets HTTP 200 with an AdmissionReview within the 5 s webhook timeout) and how
// often the attackers were cut. Loopback only; bounded in connections and time. Not part of
// `npm test`:
//
//   node tools/soak/slow-body.ts                                  # 50 attackers, 60 s
//   node tools/soak/slow-body.ts --attackers 50 --seconds 60 --config cfg.json --out result.json
//
// The attackers connect from 127.0.0.2 (any 127/8 address is loopback on Linux), so the server
// sees them as a source other than the well-behaved client's 127.0.0.1, as it would see a pod
// other than the apiserver.
import { Agent, request } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { startServe } from '../../test/helpers/process.ts';
import { createReview } from './review.ts';

const { values: flags } = parseArgs({
  options: {
    attackers: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '60' },
    // 64 MiB (the default server.maxInFlightBytes) / 11: eleven declared bodies fill the byte
    // budget to within 9 bytes, the worst case for a budget reserved from Content-Length.
    'content-length': { type: 'string', default: String(Math.floor((64 * 1024 * 1024) / 11)) },
    'attacker-address': { type: 'string', default: '127.0.0.2' },
    config: { type: 'string' },
    out: { type: 'string' },
  },
});
const ATTACKERS = Math.min(500, Math.max(0, Number(flags.attackers)));
const RUN_MS = Math.min(600, Math.max(5, Number(flags.seconds))) * 1000;
const DECLARED = Number(flags['content-length']);
const ATTACKER_ADDRESS = flags['attacker-address'] ?? '127.0.0.2';
if (!ATTACKER_ADDRESS.startsWith('127.')) throw new Error('the attackers must use a loopback address');
const WEBHOOK_TIMEOUT_MS = 5000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

function review(): string {
  const object = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `team-${randomUUID().slice(0, 8)}`, labels: { 'istio-injection': 'enabled' } } };
  return createReview({
    kind: { group: '', version: 'v1', kind: 'Namespace' },
    resource: 'namespaces',
    name: object.metadata.name,
    userInfo: { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] },
    object,
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshguard-slow-body-'));
  const args = ['--port', '0', '--host', '127.0.0.1', '--cert-dir', join(dir, 'certs'), '--log-level', 'error', '--audit-log', join(dir, 'audit.jsonl')];
  if (flags.config !== undefined) args.push('--config', flags.config);
  const s = await startServe(args);
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  const port = s.port;
  let running = true;
  const attack = { connections: 0, cut: 0, answered: {} as Record<string, number>, bytesSent: 0 };

  /** One attacker: connect, declare DECLARED bytes, send one byte a second until cut; repeat. */
  const attacker = async (): Promise<void> => {
    while (running) {
      await new Promise<void>((resolve) => {
        attack.connections++;
        let first = '';
        let timer: NodeJS.Timeout | undefined;
        const tcp = netConnect({ host: '127.0.0.1', port, localAddress: ATTACKER_ADDRESS });
        tcp.on('error', () => {});
        const sock = tlsConnect({ socket: tcp, ca, servername: 'localhost' }, () => {
          sock.write(`POST /validate?timeout=5s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${DECLARED}\r\n\r\n{`);
          timer = setInterval(() => {
            if (!running) sock.destroy();
            else if (!sock.destroyed) {
              sock.write('a');
              attack.bytesSent++;
            }
          }, 1000);
        });
        sock.on('data', (c: Buffer) => {
          if (first === '') first = c.toString('latin1').split('\r\n')[0] ?? '';
        });
        sock.on('error', () => {});
        sock.on('close', () => {
          clearInterval(timer);
          if (running) attack.cut++;
          const key = first === '' ? 'closed without an answer' : first.replace(/^HTTP\/1\.1 /, '');
          attack.answered[key] = (attack.answered[key] ?? 0) + 1;
          resolve();
        });
      });
      if (running) await sleep(50);
    }
  };

  const good = { sent: 0, ok: 0, outcomes: {} as Record<string, number>, latencies: [] as number[] };
  const agent = new Agent({ keepAlive: true, maxSockets: 2 });
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      good.sent++;
      const started = performance.now();
      const b = review();
      const count = (key: string): void => {
        const ms = performance.now() - started;
        good.latencies.push(ms);
        const within = ms <= WEBHOOK_TIMEOUT_MS;
        const k = key === '200' && !within ? '200 after the webhook timeout' : key;
        good.outcomes[k] = (good.outcomes[k] ?? 0) + 1;
        if (key === '200' && within) good.ok++;
        resolve();
      };
      const req = request(
        new URL('/validate?timeout=5s', `https://127.0.0.1:${port}`),
        { method: 'POST', ca, agent, servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) }, timeout: WEBHOOK_TIMEOUT_MS },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let key = String(res.statusCode);
            try {
              const j = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string; response?: unknown };
              if (j.code !== undefined) key += ` ${j.code}`;
              else if (res.statusCode === 200 && j.response === undefined) key += ' without a response';
            } catch {
              key += ' not JSON';
            }
            count(key);
          });
          res.on('error', () => count('response error'));
        },
      );
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', (e: NodeJS.ErrnoException) => count(e.message === 'client timeout' ? `no answer within ${WEBHOOK_TIMEOUT_MS} ms` : (e.code ?? e.message)));
      req.end(b);
    });
  const goodLoop = async (): Promise<void> => {
    while (running) {
      await one();
      await sleep(50);
    }
  };

  const attackers = Array.from({ length: ATTACKERS }, () => attacker());
  // Let the attackers settle in before measuring the well-behaved client.
  await sleep(Math.min(5000, RUN_MS / 4));
  const loops = [goodLoop(), goodLoop()];
  await sleep(RUN_MS);
  running = false;
  await Promise.all(loops);
  await Promise.all(attackers);
  agent.destroy();
  await s.stop('SIGKILL');
  rmSync(dir, { recursive: true, force: true });

  const sorted = [...good.latencies].sort((a, b) => a - b);
  const result = {
    attackers: ATTACKERS,
    seconds: RUN_MS / 1000,
    declaredContentLength: DECLARED,
    config: flags.config === undefined ? 'defaults' : JSON.parse(readFileSync(flags.config, 'utf8')),
    good: {
      sent: good.sent,
      succeeded: good.ok,
      successShare: good.sent === 0 ? 0 : Math.round((good.ok / good.sent) * 10_000) / 10_000,
      p50Ms: Math.round(pct(sorted, 50)),
      p99Ms: Math.round(pct(sorted, 99)),
      maxMs: Math.round(sorted.at(-1) ?? Number.NaN),
      outcomes: good.outcomes,
    },
    attack: attack,
  };
  process.stderr.write(
    `slow-body probe: ${ATTACKERS} attackers (Content-Length ${DECLARED}, 1 byte/s), ${RUN_MS / 1000} s\n` +
      `  well-behaved client: ${good.ok}/${good.sent} succeeded (${(result.good.successShare * 100).toFixed(1)}%), p50 ${result.good.p50Ms} ms, p99 ${result.good.p99Ms} ms, max ${result.good.maxMs} ms\n` +
      `  outcomes: ${JSON.stringify(good.outcomes)}\n` +
      `  attackers: ${attack.connections} connections, ${attack.cut} cut by the server; first lines: ${JSON.stringify(attack.answered)}\n`,
  );
  const json = `${JSON.stringify(result, null, 2)}\n`;
  if (flags.out !== undefined) writeFileSync(flags.out, json);
  process.stdout.write(json);
}

await main();
