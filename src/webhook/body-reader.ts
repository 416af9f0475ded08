// Reads a request body into a string, counting every chunk into the load gauge as it arrives
// (src/webhook/overload.ts), so the byte budget holds what was received rather than what a
// Content-Length header promised, and a request the gauge cuts (too slow, or its source over its
// share of a full budget) stops being read into memory at once. Same limits and error codes as
// Fastify's own reader: a declared or received size over the body limit is 413, a body shorter
// or longer than its Content-Length is 400.
import type { IncomingMessage } from 'node:http';
import type { LoadGauge } from './overload.ts';
import { ticketOf } from './overload.ts';

export type BodyDone = (err: Error | null, text?: string) => void;

function codedError(message: string, code: string, statusCode: number): Error {
  return Object.assign(new Error(message), { code, statusCode });
}

export function readBody(raw: IncomingMessage, payload: NodeJS.ReadableStream, gauge: LoadGauge, limit: number, done: BodyDone): void {
  const declared = Number(raw.headers['content-length']);
  if (declared > limit) {
    done(codedError('Request body is too large', 'FST_ERR_CTP_BODY_TOO_LARGE', 413));
    return;
  }
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
      done(codedError('Request body is too large', 'FST_ERR_CTP_BODY_TOO_LARGE', 413));
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
      done(codedError('Request body size did not match Content-Length', 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', 400));
      return;
    }
    done(null, chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks, received).toString('utf8'));
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
