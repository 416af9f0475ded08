// The Fastify floor: the least a Fastify route can do for a webhook, to split meshguard's cost
// above the floor (tools/bench/floor.ts) into Fastify's share and meshguard's own. The same body
// parser meshguard registers (the body read as a string, JSON.parse), the same certificate, TLS
// minimum and keep-alive timeout; no hooks, no logger, no validation; a constant "allowed"
// AdmissionReview with the request's uid echoed, sent as a ready string.
//
//   node tools/bench/fastify-floor.ts --cert FILE --key FILE [--port 0] [--host 127.0.0.1]
//
// Prints "floor: serving on https://HOST:PORT" on stderr, like the floor and meshguard serve.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

const { values } = parseArgs({
  options: { cert: { type: 'string' }, key: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
});
if (values.cert === undefined || values.key === undefined) {
  process.stderr.write('usage: fastify-floor.ts --cert FILE --key FILE [--port N] [--host ADDR]\n');
  process.exit(2);
}

const HEAD = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":';
const TAIL = ',"allowed":true}}';

const app = Fastify({
  logger: false,
  https: { cert: readFileSync(values.cert, 'utf8'), key: readFileSync(values.key, 'utf8'), minVersion: 'TLSv1.2' },
  keepAliveTimeout: 95_000,
});
app.removeAllContentTypeParsers();
app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
  try {
    done(null, JSON.parse(body as string));
  } catch (err) {
    done(Object.assign(err as Error, { statusCode: 400 }), undefined);
  }
});
const answer = (req: { body: unknown }, reply: { header(k: string, v: string): { send(p: string): unknown } }): void => {
  const uid = (req.body as { request?: { uid?: unknown } } | null)?.request?.uid ?? '';
  reply.header('content-type', 'application/json').send(HEAD + JSON.stringify(uid) + TAIL);
};
app.post('/validate', answer);
app.post('/mutate', answer);
await app.listen({ port: Number(values.port), host: values.host });
process.stderr.write(`floor: serving on https://${values.host}:${(app.server.address() as AddressInfo).port}\n`);
const stop = (): void => {
  void app.close().then(() => process.exit(0));
  app.server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
