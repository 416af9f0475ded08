// Slow bodies cannot starve the server (issue 18 item 1; the figure with 50 attackers against
// `meshguard serve` comes from tools/soak/slow-body.ts). Connections from another loopback address
// (127.0.0.2: another source, as a pod other than the apiserver would be) declare a large body and
// trickle it; a well-behaved client on 127.0.0.1 must keep being served, never 503; the slow
// connections are cut with 408 once below the configured minimum rate; a source that fills the
// byte budget gives up its own requests, not the other source's; and a shed request whose client
// writes its whole body before reading gets its 503, not a reset. Outcomes only, no durations.
import t from 'tap';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ERRORS } from '../../src/errors.ts';
import { reviewBody } from '../helpers/review.ts';
import { post, startServer, type TestServer } from '../helpers/server.ts';

const ATTACKER = '127.0.0.2';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Slow {
  readonly socket: TLSSocket;
  /** Resolves when the server closed the connection: the first line it sent ('' for none). */
  readonly closed: Promise<string>;
  /** The first line the server has sent so far ('' for none). */
  first(): string;
}

/** A TLS connection from `from` that sends headers declaring `declared` bytes, then `first`
 * bytes of body, then one byte every `everyMs` until the server closes it. */
function slowBody(server: TestServer, from: string, declared: number, first: number, everyMs: number): Slow {
  const tcp = netConnect({ host: '127.0.0.1', port: server.port, localAddress: from });
  tcp.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const socket = tlsConnect({ socket: tcp, ca: server.ca, servername: 'localhost' }, () => {
    socket.write(`POST /validate?timeout=5s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n{${'a'.repeat(Math.max(0, first - 1))}`);
    timer = setInterval(() => {
      if (!socket.destroyed) socket.write('a');
    }, everyMs);
  });
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<string>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve(text.split('\r\n')[0] ?? '');
    }),
  );
  return { socket, closed, first: () => text.split('\r\n')[0] ?? '' };
}

const namespaceReview = (filler = 0): string =>
  JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' }, ...(filler > 0 ? { annotations: { 'example.com/filler': 'x'.repeat(filler) } } : {}) } }));

t.test('slow-body connections from another source: the good client is served, the slow ones are cut with 408 below the minimum rate', async (t) => {
  // A tight byte budget (what the declared bodies would have reserved: 20 x 6 MB) and a small
  // rate window so the cut happens within the test.
  const server = await startServer({ 'server.maxInFlightBytes': 1024 * 1024, 'server.minBodyBytesPerSecond': 1000, 'server.bodyRateGraceMs': 500 });
  t.teardown(() => server.close());
  const slow = Array.from({ length: 20 }, () => slowBody(server, ATTACKER, 6_100_805, 1, 200));
  await sleep(200);
  const answers: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await post(server, '/validate?timeout=5s', namespaceReview());
    answers.push(r.status === 200 && r.json().response?.allowed === true ? 'served' : `${r.status} ${r.json().code ?? ''}`);
  }
  t.same(answers.filter((a) => a !== 'served'), [], `every good request is served while the slow connections exist (${answers.length})`);
  const firstLines = await Promise.race([Promise.all(slow.map((s) => s.closed)), sleep(30_000).then(() => undefined)]);
  t.ok(firstLines !== undefined, 'every slow connection is closed by the server');
  t.same(
    (firstLines ?? []).filter((l) => !l.startsWith('HTTP/1.1 408')),
    [],
    'each was told 408 (MG_TIMEOUT: below the minimum body rate) before the close',
  );
  for (const s of slow) s.socket.destroy();
});

t.test('a source that fills the byte budget gives up its own requests; another source is still served', async (t) => {
  // No rate check: the attackers send fast enough, they just hold a lot.
  const server = await startServer({ 'server.maxInFlightBytes': 200_000, 'server.minBodyBytesPerSecond': 0, 'server.requestTimeoutMs': 20_000, 'server.headersTimeoutMs': 10_000 });
  t.teardown(() => server.close());
  // Ten connections each send 30 000 of a declared 1 000 000 bytes and stall: 300 000 bytes
  // received, more than the budget, so some of them are cut to keep it.
  const hogs = Array.from({ length: 10 }, () => slowBody(server, ATTACKER, 1_000_000, 30_000, 60_000));
  await sleep(500);
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await post(server, '/validate', namespaceReview(50_000));
    answers.push(r.status === 200 && r.json().response?.allowed === true ? 'served' : `${r.status} ${r.json().code ?? ''}`);
  }
  t.same(answers.filter((a) => a !== 'served'), [], 'every 50 KB review from the other source is served');
  const told503 = hogs.filter((h) => h.first().startsWith('HTTP/1.1 503')).length;
  t.ok(told503 > 0, `hogging connections were cut with 503 to keep the budget (${told503} of ${hogs.length})`);
  for (const h of hogs) h.socket.destroy();
});

t.test('a shed request whose client writes its whole large body before reading gets the 503, not a reset', async (t) => {
  const server = await startServer({ 'server.maxInFlight': 1, 'server.minBodyBytesPerSecond': 0, 'server.requestTimeoutMs': 20_000, 'server.headersTimeoutMs': 10_000 });
  t.teardown(() => server.close());
  // One request from 127.0.0.1 holds the only slot (its body never completes).
  const holder = slowBody(server, '127.0.0.1', 1000, 10, 60_000);
  await sleep(300);
  const body = namespaceReview(2 * 1024 * 1024);
  const answer = await new Promise<{ first: string; text: string; error?: string }>((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' }, () => {
      // Paused: nothing is read until the whole body has been written (a write-then-read client).
      socket.pause();
      socket.write(`POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
      socket.write(body, () => {
        let text = '';
        socket.on('data', (c: Buffer) => (text += c.toString('utf8')));
        socket.on('end', () => resolve({ first: text.split('\r\n')[0] ?? '', text }));
        socket.resume();
      });
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve({ first: '', text: '', error: e.code ?? e.message }));
  });
  t.equal(answer.error, undefined, 'no reset or EPIPE');
  t.equal(answer.first, 'HTTP/1.1 503 Service Unavailable', 'the 503 arrives');
  t.match(answer.text, ERRORS.OVERLOADED.code, 'with MG_OVERLOADED');
  holder.socket.destroy();
});
