// The bare node:https server the bench's floors share (floor.ts, path-floor.ts): meshguard's
// certificate, its TLS floor (TLS 1.2 minimum; Node's defaults otherwise) and its keep-alive idle
// time, so neither side closes connections during a run. Each request's body is read whole and
// handed to the floor's answer. Prints "floor: serving on https://HOST:PORT" on stderr, like
// meshguard serve, and closes on SIGTERM or SIGINT.
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface FloorServerOptions {
  readonly cert: string;
  readonly key: string;
  readonly port: string;
  readonly host: string;
}

/** `answer` gets the body's chunks as read, so a floor times its own work from the first byte it
 * touches. */
export function serveFloor(options: FloorServerOptions, answer: (req: IncomingMessage, res: ServerResponse, chunks: readonly Buffer[]) => void): void {
  const server = createServer({ cert: readFileSync(options.cert, 'utf8'), key: readFileSync(options.key, 'utf8'), minVersion: 'TLSv1.2', keepAliveTimeout: 95_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(req, res, chunks));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.listen(Number(options.port), options.host, () => {
    const a = server.address() as AddressInfo;
    process.stderr.write(`floor: serving on https://${options.host}:${a.port}\n`);
  });
  const stop = (): void => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
