// Graceful shutdown (issue 8 item 4; checklist B13). Two `meshguard serve` processes, A and B, play
// the old and the new pod of a rollout. A client sends about 100 requests per second to A; A gets
// SIGTERM. A's readiness must turn false first, A keeps answering for drainSeconds (with
// `Connection: close`, so keep-alive connections end after a complete answer), then stops
// accepting connections; the client fails over to B when a connection is refused.
// The client retries a request only when it never got as far as writing it: the connection was
// refused or broke before the TLS handshake completed (what Go's transport, and so the apiserver,
// also retries: nothing was written). A request that fails after it was written is a failure.
// Must hold: zero failures; an in-flight request whose body is still arriving when A closes is
// answered; an idle keep-alive connection to A is closed by A without an error.
import t from 'tap';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServe, type ServeProcess } from '../helpers/process.ts';
import { reviewBody } from '../helpers/review.ts';

const DRAIN_S = 2;
const dir = mkdtempSync(join(tmpdir(), 'meshguard-shutdown-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'config.json'), JSON.stringify({ server: { drainSeconds: DRAIN_S } }));
const args = ['--port', '0', '--cert-dir', join(dir, 'certs'), '--config', join(dir, 'config.json'), '--log-level', 'warn', '--audit-log', join(dir, 'audit.jsonl')];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  readonly target: string;
  readonly status: number;
  readonly connectionClose: boolean;
  readonly text?: string;
  readonly error?: string;
  /** The request had been (or may have been) written when the error happened. */
  readonly sent: boolean;
}

function once(url: string, ca: string, agent: Agent | false, path: string, body: string | undefined, restAfterMs?: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let connected = false;
    const req = request(
      new URL(path, url),
      { method: body === undefined ? 'GET' : 'POST', ca, agent, headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ target: url, status: res.statusCode ?? 0, connectionClose: res.headers.connection === 'close', text: Buffer.concat(chunks).toString('utf8'), sent: true }));
        res.on('error', (e) => resolve({ target: url, status: 0, connectionClose: false, error: e.message, sent: true }));
      },
    );
    req.on('socket', (s) => {
      if (req.reusedSocket) connected = true;
      else (s as TLSSocket).once('secureConnect', () => (connected = true));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ target: url, status: 0, connectionClose: false, error: e.code ?? e.message, sent: connected }));
    if (body === undefined) req.end();
    else if (restAfterMs === undefined) req.end(body);
    else {
      const half = Math.floor(body.length / 2);
      req.write(body.slice(0, half));
      setTimeout(() => req.end(body.slice(half)), restAfterMs);
    }
  });
}

t.test('SIGTERM under 100 req/s: readiness first, drain, fail over, zero failed or reset requests', async (t) => {
  const a: ServeProcess = await startServe(args);
  const b: ServeProcess = await startServe(args);
  t.teardown(() => a.stop('SIGKILL'));
  t.teardown(() => b.stop('SIGKILL'));
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  const agents = new Map([
    [a.url, new Agent({ keepAlive: true, maxSockets: 8, scheduling: 'fifo' })],
    [b.url, new Agent({ keepAlive: true, maxSockets: 8, scheduling: 'fifo' })],
  ]);
  t.teardown(() => agents.forEach((g) => g.destroy()));
  let current = a.url;
  const other = (u: string): string => (u === a.url ? b.url : a.url);

  const outcomes: Outcome[] = [];
  const failures: string[] = [];
  const retried: string[] = [];
  let pending = 0;
  const review = (): string => JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } }));

  /** One request as the client issues it: to the current target; on a connection that never got
   * to write the request, once more to the other target. */
  const issue = async (restAfterMs?: number): Promise<Outcome> => {
    pending++;
    try {
      const target = current;
      let o = await once(target, ca, agents.get(target) ?? false, '/validate', review(), restAfterMs);
      if (o.error !== undefined && !o.sent) {
        retried.push(`${o.error} from ${target === a.url ? 'A' : 'B'}`);
        if (current === target) current = other(target);
        o = await once(current, ca, agents.get(current) ?? false, '/validate', review(), restAfterMs);
      }
      outcomes.push(o);
      if (o.error !== undefined) failures.push(`${o.error} (${o.sent ? 'after the request was sent' : 'twice refused'})`);
      else if (o.status !== 200) failures.push(`HTTP ${o.status}`);
      return o;
    } finally {
      pending--;
    }
  };

  // An idle keep-alive connection to A, opened before the shutdown and never used again.
  const idleAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => idleAgent.destroy());
  let idleSocketError: string | undefined;
  let idleSocketClosed = false;
  const first = await new Promise<number>((resolve) => {
    const req = request(new URL('/healthz', a.url), { ca, agent: idleAgent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('socket', (s) => {
      s.on('error', (e) => (idleSocketError = e.message));
      s.on('close', () => (idleSocketClosed = true));
    });
    req.end();
  });
  t.equal(first, 200, 'the idle keep-alive connection to A is open');

  // Steady load: one request every 10 ms.
  let running = true;
  const ticker = setInterval(() => {
    if (running) void issue();
  }, 10);
  await sleep(1500);

  const termAt = performance.now();
  const exited = a.stop('SIGTERM');
  // Readiness turns false first, while A still answers admission requests.
  let readyFalseAt = 0;
  let readyBody = '';
  for (let i = 0; i < 100 && readyFalseAt === 0; i++) {
    const r = await once(a.url, ca, false, '/readyz', undefined);
    if (r.status === 503) {
      readyFalseAt = performance.now();
      readyBody = r.text ?? '';
    }
    if (readyFalseAt === 0) await sleep(20);
  }
  t.ok(readyFalseAt > 0 && readyFalseAt - termAt < 1000, `A's /readyz is 503 within 1 s of SIGTERM (${Math.round(readyFalseAt - termAt)} ms)`);
  t.match(readyBody, /"shutdown":"shutting down"/, 'and says why');

  // A request whose body is still arriving when A closes its listener (at about DRAIN_S).
  await sleep(DRAIN_S * 1000 - (performance.now() - termAt) - 400);
  const inFlight = current === a.url ? issue(1200) : undefined;

  const code = await exited;
  const exitAt = performance.now();
  await sleep(1500);
  running = false;
  clearInterval(ticker);
  for (let i = 0; i < 100 && pending > 0; i++) await sleep(50);

  const fromA = outcomes.filter((o) => o.target === a.url && o.status === 200);
  const fromB = outcomes.filter((o) => o.target === b.url && o.status === 200);
  const drainedWithClose = fromA.filter((o) => o.connectionClose).length;
  t.equal(code, 0, 'A exited 0');
  // Connections that were busy when the listener closed must not linger as idle keep-alives until
  // keepAliveTimeout (95 s): terminationGracePeriodSeconds would SIGKILL the pod first.
  t.ok(exitAt - termAt < (DRAIN_S + 5) * 1000, `A exited ${((exitAt - termAt) / 1000).toFixed(1)} s after SIGTERM (drain ${DRAIN_S} s + at most 5 s)`);
  t.same(failures, [], `zero failed or reset requests (${outcomes.length} requests: ${fromA.length} answered by A, ${fromB.length} by B)`);
  t.ok(drainedWithClose > 10, `A kept answering while draining, each with Connection: close (${drainedWithClose})`);
  t.ok(fromB.length > 10, 'the client failed over to B');
  // A connection the kernel accepted just before A closed its listener is reset before the TLS
  // handshake completes: like a refusal, nothing of the request was written, so it is retried.
  t.ok(retried.every((r) => /^(ECONNREFUSED|ECONNRESET) /.test(r)), `only connections that never carried the request were retried (${retried.length}: ${[...new Set(retried)].join(', ') || 'none'})`);
  if (inFlight !== undefined) {
    const o = await inFlight;
    t.equal(o.status, 200, `the request still receiving its body when A closed was answered (by ${o.target === a.url ? 'A' : 'B'})`);
  } else t.fail('the client had already left A before the in-flight request');
  t.ok(idleSocketClosed, 'the idle keep-alive connection was closed by A');
  t.equal(idleSocketError, undefined, 'without an error (no reset)');
  t.notMatch(a.stderr(), /"level":50|error/i, 'A logged no error while shutting down');
});
