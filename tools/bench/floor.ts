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
import { parseArgs } from 'node:util';
import { serveFloor } from './floor-server.ts';

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

serveFloor({ cert: values.cert, key: values.key, port: values.port, host: values.host }, (_req, res, chunks) => {
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
