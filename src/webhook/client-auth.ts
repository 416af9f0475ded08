// Client-certificate authentication of the apiserver (server.clientCaFile): the TLS layer asks
// every client for a certificate (probes and metrics scrapers need none), and the admission
// endpoints refuse a connection without one signed by that CA, before its body is read.
import type { FastifyInstance } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { errorBody } from '../errors.ts';
import type { Recorder } from '../metrics/recorder.ts';
import { createDrainer } from './drainer.ts';
import { ADMISSION_PATHS } from './guards.ts';

export function registerClientAuth(app: FastifyInstance, recorder: Recorder): void {
  const drainer = createDrainer({ lingerMs: 5000, concurrency: 8 });
  app.addHook('onRequest', function meshguardClientAuth(req, reply, done) {
    const socket = req.raw.socket as TLSSocket | null;
    const path = req.url.split('?')[0] ?? '';
    if (!ADMISSION_PATHS.has(path) || socket?.authorized === true) {
      done();
      return;
    }
    const refusal = socket?.authorizationError !== undefined && socket.authorizationError !== null ? String(socket.authorizationError) : 'no client certificate was presented';
    const body = errorBody('CLIENT_CERT', refusal);
    recorder.observeRejected(path, body.code);
    if (req.raw.complete) {
      void reply.code(body.statusCode).send(body);
      return;
    }
    // Answer before reading the body, without losing the answer to a reset.
    reply.hijack();
    drainer.answer(req.raw, socket, body);
  });
}
