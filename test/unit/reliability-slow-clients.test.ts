// Slow clients (issue 8 item 2; checklist E27). Many connections trickle their headers, their
// body, or never finish the TLS handshake; the server cuts each one by headersTimeout,
// requestTimeout or the TLS handshake timeout, while ordinary requests keep being answered.
// Short timeouts through config overrides; we count errors and survivors, not latency.
// Needs the app.ts wiring (handshakeTimeout = headersTimeoutMs, connectionsCheckingInterval 1 s):
// without it Node sweeps timeouts only every 30 s and the handshake limit is 120 s.
import t from 'tap';
import { Agent } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { reviewBody } from '../helpers/review.ts';
import { post, startServer } from '../helpers/server.ts';

const HEADERS_MS = 1000;
const REQUEST_MS = 2000;
/** How long the client waits before giving up on a connection the server has not cut: a hang
 * bound, not a duration claim. Far beyond the timeouts above, however busy the machine, and short
 * of Node's defaults (timeouts swept every 30 s, 120 s for a TLS handshake), so a server without
 * the app.ts wiring fails here. */
const HANG_MS = 20_000;

const server = await startServer({ 'server.headersTimeoutMs': HEADERS_MS, 'server.requestTimeoutMs': REQUEST_MS });
t.teardown(() => server.close());

interface Ended {
  /** ms from connect to the server closing the connection (Infinity: still open when we gave up). */
  readonly afterMs: number;
  /** The first line the server sent, if any (e.g. "HTTP/1.1 408 Request Timeout"). */
  readonly firstLine: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** TLS connection that sends a request line and then one header byte every `everyMs`, forever;
 * or, with a Content-Length, complete headers and then one body byte every `everyMs`. */
function trickle(kind: 'headers' | 'body', everyMs: number, giveUpMs: number): Promise<Ended> {
  return new Promise((resolve) => {
    const started = performance.now();
    let first = '';
    let timer: NodeJS.Timeout | undefined;
    const s = tlsConnect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' }, () => {
      if (kind === 'headers') {
        s.write('POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Slow: ');
      } else {
        s.write('POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
      }
      timer = setInterval(() => {
        if (!s.destroyed) s.write('a');
      }, everyMs);
    });
    const giveUp = setTimeout(() => s.destroy(new Error('gave up')), giveUpMs);
    s.on('data', (c: Buffer) => {
      if (first === '') first = c.toString('latin1').split('\r\n')[0] ?? '';
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      const gaveUp = performance.now() - started >= giveUpMs - 5;
      resolve({ afterMs: gaveUp ? Number.POSITIVE_INFINITY : performance.now() - started, firstLine: first });
    });
  });
}

/** Plain TCP that never sends a ClientHello (or only part of one). */
function noHandshake(partial: boolean, giveUpMs: number): Promise<Ended> {
  return new Promise((resolve) => {
    const started = performance.now();
    const s = netConnect({ host: '127.0.0.1', port: server.port }, () => {
      if (partial) s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a record header, then nothing
    });
    const giveUp = setTimeout(() => s.destroy(), giveUpMs);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(giveUp);
      const gaveUp = performance.now() - started >= giveUpMs - 5;
      resolve({ afterMs: gaveUp ? Number.POSITIVE_INFINITY : performance.now() - started, firstLine: '' });
    });
  });
}

t.test('200 header tricklers, 50 body tricklers and 50 silent TCP connections are cut; normal requests keep succeeding', async (t) => {
  const giveUp = HANG_MS;
  const attackers = [
    ...Array.from({ length: 200 }, () => trickle('headers', 200, giveUp).then((e) => ({ kind: 'headers', limit: HEADERS_MS, ...e }))),
    ...Array.from({ length: 50 }, () => trickle('body', 200, giveUp).then((e) => ({ kind: 'body', limit: REQUEST_MS, ...e }))),
    ...Array.from({ length: 25 }, () => noHandshake(false, giveUp).then((e) => ({ kind: 'no TLS handshake', limit: HEADERS_MS, ...e }))),
    ...Array.from({ length: 25 }, () => noHandshake(true, giveUp).then((e) => ({ kind: 'partial ClientHello', limit: HEADERS_MS, ...e }))),
  ];

  // Ordinary traffic meanwhile: keep-alive and fresh connections, sequential.
  let running = true;
  let ok = 0;
  const answeredBy = [0, 0, 0, 0];
  const failures: string[] = [];
  const normal = async (agent: Agent | undefined, client: number): Promise<void> => {
    while (running) {
      const body = reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } });
      try {
        const r = await post(server, '/validate', JSON.stringify(body), { 'content-type': 'application/json' }, agent);
        if (r.status === 200 && r.json().response.uid === body.request.uid) {
          ok++;
          answeredBy[client]!++;
        }
        else failures.push(`HTTP ${r.status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
      await sleep(10);
    }
  };
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 2 });
  const clients = [normal(keepAlive, 0), normal(keepAlive, 1), normal(new Agent({ keepAlive: false }), 2), normal(undefined, 3)];

  const ended = await Promise.all(attackers);
  await sleep(500);
  running = false;
  await Promise.all(clients);
  keepAlive.destroy();

  for (const kind of ['headers', 'body', 'no TLS handshake', 'partial ClientHello']) {
    const mine = ended.filter((e) => e.kind === kind);
    const limit = mine[0]?.limit ?? 0;
    const late = mine.filter((e) => !Number.isFinite(e.afterMs));
    const early = mine.filter((e) => e.afterMs < limit - 100);
    const slowest = Math.max(...mine.map((e) => e.afterMs));
    t.equal(late.length, 0, `${kind}: all ${mine.length} cut by the server after its ${limit} ms timeout (slowest ${Number.isFinite(slowest) ? `${Math.round(slowest)} ms` : 'never'})`);
    t.equal(early.length, 0, `${kind}: none cut before its ${limit} ms timeout`);
    if (kind === 'headers' || kind === 'body') {
      const answered = mine.filter((e) => e.firstLine.startsWith('HTTP/1.1 408')).length;
      t.comment(`${kind}: ${answered} of ${mine.length} were told 408 before the close`);
    }
  }
  t.same(failures, [], `ordinary requests during the attack: ${ok} answered, ${failures.length} failed`);
  t.ok(answeredBy.every((n) => n >= 2), `ordinary traffic kept flowing on every client, keep-alive and fresh connections (answered: ${answeredBy.join(', ')})`);

  const after = await post(server, '/validate', JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-b' } })));
  t.equal(after.status, 200, 'the server answers normally after the attack');
});
