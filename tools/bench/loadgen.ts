// A small closed-loop HTTP/1.1-over-TLS load generator (no dependencies), used by run.ts.
//
// Each connection is one TLS socket (tls.connect, no session reuse) that sends one request,
// waits for the whole response and sends the next (keep-alive, no pipelining), like the
// apiserver's webhook client. Requests are pre-encoded (headers + body) and the responses parsed
// by hand (status line, content-length), so the client spends a few microseconds per request and
// a server on another core is the bottleneck; run.ts still reports the client's own CPU use so a
// client-bound run shows. Every response is checked: status 200, the request's uid in the body
// and, when given, the expected verdict. A `503 MG_OVERLOADED` is meshguard shedding load (on a
// busy machine its event loop lags past the bound): counted as shed, not as an error, since it is
// the documented answer; anything else that is not the expected answer is an error.
import { connect, type TLSSocket } from 'node:tls';
import type { BenchRequest, Expect } from './requests.ts';

export interface Target {
  readonly host: string;
  readonly port: number;
  /** PEM of the CA that signed the server certificate (verified, like the apiserver does). */
  readonly ca: string;
  /** Name checked against the certificate (a SAN). */
  readonly servername: string;
}

export interface Prepared {
  readonly wire: Buffer;
  readonly uid: string;
  readonly expect: Expect | undefined;
}

/** Encode requests as the apiserver sends them (POST, JSON, ?timeout=10s). */
export function prepare(target: Target, requests: readonly BenchRequest[], opts: { checkVerdict: boolean; close?: boolean }): Prepared[] {
  return requests.map((r) => {
    const body = Buffer.from(r.body, 'utf8');
    const head =
      `POST ${r.path}?timeout=10s HTTP/1.1\r\n` +
      `Host: ${target.servername}:${target.port}\r\n` +
      'User-Agent: kube-apiserver-admission\r\n' +
      'Accept: application/json, */*\r\n' +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n` +
      (opts.close === true ? 'Connection: close\r\n' : '') +
      'Accept-Encoding: gzip\r\n\r\n';
    return { wire: Buffer.concat([Buffer.from(head, 'latin1'), body]), uid: r.uid, expect: opts.checkVerdict ? r.expect : undefined };
  });
}

export interface LatencySummary {
  readonly count: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
}

export function summarize(samplesUs: Float64Array): LatencySummary {
  const s = Float64Array.from(samplesUs).sort();
  const q = (p: number): number => (s.length === 0 ? 0 : (s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] ?? 0));
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    meanUs: s.length === 0 ? 0 : sum / s.length,
    p50Us: q(0.5),
    p90Us: q(0.9),
    p99Us: q(0.99),
    p999Us: q(0.999),
    maxUs: s.length === 0 ? 0 : (s[s.length - 1] ?? 0),
  };
}

export interface RunOptions {
  readonly target: Target;
  readonly requests: readonly Prepared[];
  readonly connections: number;
  /** Measured window; requests before it (warm-up) are sent but not counted. */
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Full TLS handshake per request (Connection: close, a new socket each time). */
  readonly handshakePerRequest?: boolean;
  /** Called at the start and end of the measured window (read server CPU there). */
  readonly onWindow?: (edge: 'start' | 'end') => void;
}

export interface RunResult {
  readonly requests: number;
  /** Wrong answers, malformed responses and broken connections. */
  readonly errors: number;
  readonly errorSamples: readonly string[];
  /** 503 MG_OVERLOADED answers (load shedding). */
  readonly shed: number;
  readonly seconds: number;
  readonly rps: number;
  readonly latency: LatencySummary;
  /** Share of one core the client (this process) used during the window. */
  readonly clientCpu: number;
}

class Growable {
  data = new Float64Array(1 << 14);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** Parse one response at the start of buf: undefined while incomplete. */
function parseResponse(buf: Buffer): { status: number; body: string; end: number; close: boolean } | { error: string } | undefined {
  const h = buf.indexOf(CRLFCRLF);
  if (h < 0) return undefined;
  const head = buf.toString('latin1', 0, h);
  const status = Number(head.slice(9, 12));
  const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (cl === null) return { error: `response without content-length: ${head.split('\r\n')[0] ?? ''}` };
  const end = h + 4 + Number(cl[1]);
  if (buf.length < end) return undefined;
  return { status, body: buf.toString('utf8', h + 4, end), end, close: /\r\nconnection: *close/i.test(head) };
}

const SHED = 'shed';

function check(p: Prepared, status: number, body: string): string | undefined {
  if (status === 503 && body.includes('"MG_OVERLOADED"')) return SHED;
  if (status !== 200) return `HTTP ${status}: ${body.slice(0, 200)}`;
  if (!body.includes(p.uid)) return `uid ${p.uid} not echoed: ${body.slice(0, 200)}`;
  switch (p.expect) {
    case undefined:
      return undefined;
    case 'allowed':
      return body.includes('"allowed":true') && !body.includes('"patch":') ? undefined : `expected allowed: ${body.slice(0, 300)}`;
    case 'patched':
      return body.includes('"allowed":true') && body.includes('"patch":') ? undefined : `expected a patch: ${body.slice(0, 300)}`;
    case 'denied':
      return body.includes('"allowed":false') ? undefined : `expected denied: ${body.slice(0, 300)}`;
  }
}

/** Run one closed-loop load test. Resolves once every connection has stopped. */
export function runLoad(load: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const samples = new Growable();
    const errorSamples: string[] = [];
    let errors = 0;
    let shed = 0;
    let counting = false;
    let stopping = false;
    let next = 0;
    let windowStart = 0;
    let windowEnd = 0;
    let cpuStart = process.cpuUsage();
    let cpuUsed = 0;
    let live = 0;

    const fail = (msg: string): void => {
      // Errors count whenever they happen (warm-up included): a run must have none.
      errors++;
      if (errorSamples.length < 5) errorSamples.push(msg);
    };

    const finish = (): void => {
      live--;
      if (live > 0) return;
      const seconds = (windowEnd - windowStart) / 1000;
      resolve({
        requests: samples.length,
        errors,
        errorSamples,
        shed,
        seconds,
        rps: seconds > 0 ? samples.length / seconds : 0,
        latency: summarize(samples.view()),
        clientCpu: seconds > 0 ? cpuUsed / 1e6 / seconds : 0,
      });
    };

    const options = { host: load.target.host, port: load.target.port, ca: load.target.ca, servername: load.target.servername };

    // One connection's loop. With handshakePerRequest, each request gets a fresh socket.
    const startConnection = (): void => {
      live++;
      let socket: TLSSocket;
      let buf: Buffer | null = null;
      let current: Prepared | undefined;
      let sentAt = 0;
      let connected = false;

      const send = (): void => {
        if (stopping) {
          socket.destroy();
          return;
        }
        current = load.requests[next++ % load.requests.length];
        if (current === undefined) throw new Error('no requests');
        sentAt = performance.now();
        socket.write(current.wire);
      };

      const open = (): void => {
        connected = false;
        buf = null;
        socket = connect(options);
        socket.setNoDelay(true);
        socket.on('secureConnect', () => {
          connected = true;
          send();
        });
        socket.on('data', (chunk: Buffer) => {
          buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
          const r = parseResponse(buf);
          if (r === undefined) return;
          if ('error' in r) {
            fail(r.error);
            socket.destroy();
            return;
          }
          const took = performance.now() - sentAt;
          const p = current as Prepared;
          current = undefined;
          const problem = check(p, r.status, r.body);
          if (problem === SHED) shed++;
          else if (problem !== undefined) fail(problem);
          else if (counting) samples.push(took * 1000);
          buf = r.end < buf.length ? buf.subarray(r.end) : null;
          if (load.handshakePerRequest === true || r.close) {
            socket.destroy();
            return;
          }
          send();
        });
        socket.on('error', (e: Error) => {
          if (!stopping) fail(`socket: ${e.message}`);
        });
        socket.on('close', () => {
          if (current !== undefined && !stopping) fail(`connection closed with a request in flight (connected ${connected})`);
          current = undefined;
          if (stopping) finish();
          else setImmediate(open);
        });
      };
      open();
    };

    for (let i = 0; i < load.connections; i++) startConnection();
    setTimeout(() => {
      load.onWindow?.('start');
      cpuStart = process.cpuUsage();
      windowStart = performance.now();
      counting = true;
      setTimeout(() => {
        counting = false;
        windowEnd = performance.now();
        const c = process.cpuUsage(cpuStart);
        cpuUsed = c.user + c.system;
        load.onWindow?.('end');
        stopping = true;
      }, load.durationMs);
    }, load.warmupMs);
  });
}
