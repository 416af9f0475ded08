// Reads a request body into a string, counting every chunk into the load gauge as it arrives
// (src/webhook/overload.ts), so the byte budget holds what was received rather than what a
// Content-Length header promised, and a request the gauge cuts (too slow, or its source over its
// share of a full budget) stops being read into memory at once. The size cap as received (the
// declared size was checked by the edge guards, guards.ts): over the limit is 413, a body shorter
// or longer than its Content-Length is 400.
import type { IncomingMessage } from 'node:http';
import { EdgeError } from '../errors.ts';
import type { LoadGauge } from './load-gauge.ts';
import { ticketOf } from './overload.ts';

export type BodyDone = (err: Error | null, text?: string) => void;

export function readBody(raw: IncomingMessage, payload: NodeJS.ReadableStream, gauge: LoadGauge, limit: number, done: BodyDone): void {
  const declared = Number(raw.headers['content-length']);
  const ticket = ticketOf(raw);
  let received = 0;
  const chunks: Buffer[] = [];
  const stop = (): void => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onEnd);
  };
  function onData(chunk: Buffer | string): void {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    received += b.length;
    if (ticket !== undefined && !gauge.addBytes(ticket, b.length)) {
      // Cut by the gauge: its answer is on the way (Drainer.answer); keep nothing.
      stop();
      chunks.length = 0;
      return;
    }
    if (received > limit) {
      stop();
      chunks.length = 0;
      done(new EdgeError('BODY_TOO_LARGE', 'Request body is too large'));
      return;
    }
    chunks.push(b);
  }
  function onEnd(err?: Error): void {
    stop();
    if (ticket !== undefined) gauge.bodyDone(ticket);
    if (ticket?.cutFor !== undefined) return;
    if (err !== undefined && err !== null) {
      const status = (err as { statusCode?: unknown }).statusCode;
      done(Object.assign(err, { statusCode: typeof status === 'number' && status >= 400 ? status : 400 }));
      return;
    }
    if (!Number.isNaN(declared) && received !== declared) {
      done(new EdgeError('BODY_NOT_JSON', 'Request body size did not match Content-Length'));
      return;
    }
    done(null, chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks, received).toString('utf8'));
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
