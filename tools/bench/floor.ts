// The physical floor of a correct webhook (issue 7): Node's own https server with meshguard's
// certificate, which reads the body, JSON.parses it and answers a constant "allowed"
// AdmissionReview with the request's uid echoed (the apiserver rejects an answer whose uid does
// not match, so echoing it is part of the floor). No framework, no validation, no logging.
//
//   node tools/bench/floor.ts --cert FILE --key FILE [--spin-us N] [--port 0] [--host 127.0.0.1]
//
// --spin-us N: busy-wait N microseconds per request after the parse (default 0). The framework
// split runs such a floor to show what a known amount of work per request adds to the CPU per
// request on this machine (more than N: see docs/performance.md).
//
// Prints "floor: serving on https://HOST:PORT" on stderr, like meshguard serve.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { cert: { type: 'string' }, key: { type: 'string' }, 'spin-us': { type: 'string', default: '0' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
});
const spinMs = Number(values['spin-us']) / 1000;
if (values.cert === undefined || values.key === undefined || !(spinMs >= 0)) {
  process.stderr.write('usage: floor.ts --cert FILE --key FILE [--spin-us N] [--port N] [--host ADDR]\n');
  process.exit(2);
}

const HEAD = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":';
const TAIL = ',"allowed":true}}';

// Same TLS floor as meshguard (TLS 1.2 minimum; Node's defaults otherwise) and the same
// keep-alive idle time, so neither side closes connections during a run.
const server = createServer({ cert: readFileSync(values.cert, 'utf8'), key: readFileSync(values.key, 'utf8'), minVersion: 'TLSv1.2', keepAliveTimeout: 95_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let uid: unknown = '';
    try {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request?: { uid?: unknown } };
      uid = review.request?.uid ?? '';
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"not JSON"}');
      return;
    }
    if (spinMs > 0) {
      const t0 = performance.now();
      while (performance.now() - t0 < spinMs);
    }
    const body = HEAD + JSON.stringify(uid) + TAIL;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
});
server.headersTimeout = 10_000;
server.requestTimeout = 15_000;
server.listen(Number(values.port), values.host, () => {
  const a = server.address() as AddressInfo;
  process.stderr.write(`floor: serving on https://${values.host}:${a.port}\n`);
});
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
