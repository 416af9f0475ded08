// Answering a request whose body may still be arriving (a shed or cut request, a client without
// a certificate): the answer goes out first, the rest of the body is read and discarded, then the
// connection is closed, so the client reads the answer instead of losing it to a reset.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorBody } from '../errors.ts';

const STATUS_TEXT: Readonly<Record<number, string>> = { 401: 'Unauthorized', 408: 'Request Timeout', 503: 'Service Unavailable' };

export interface Drainer {
  /**
   * Answer a request whose body may still be arriving, without losing the answer to a reset:
   * write the answer (Connection: close) on the socket now, then read and discard the rest of the
   * body, so a client that sends its whole body before it reads gets to read the answer, and end
   * the connection once the body is in (a close with unread bytes makes the kernel send a reset,
   * and the client can lose the answer with it). Nothing of the discarded body is kept. At most
   * `concurrency` connections are drained at once (discarding costs TLS decryption and garbage
   * at the sender's speed), each for at most `lingerMs`; the others wait, unread, for a turn
   * (at most `waitMs`), their answer already on its way to the client.
   */
  answer(raw: IncomingMessage, socket: Socket | null, body: ErrorBody): void;
}

export interface DrainerOptions {
  /** How long a connection may keep sending once its rest is being read (ms). */
  readonly lingerMs: number;
  /** Connections read and discarded at once. */
  readonly concurrency: number;
  /** How long a connection may wait, unread, for its turn (ms; default 6 x lingerMs): its client
   * has the answer to read meanwhile. */
  readonly waitMs?: number;
  /** Most connections waiting for a turn; past it the longest-waiting one is closed (default 4096). */
  readonly maxWaiting?: number;
}

export function createDrainer(options: DrainerOptions): Drainer {
  let active = 0;
  const waitMs = options.waitMs ?? 6 * options.lingerMs;
  const maxWaiting = options.maxWaiting ?? 4096;
  // Insertion-ordered: the first entry has waited longest.
  const waiting = new Set<{ readonly start: () => void; readonly socket: Socket }>();
  const next = (): void => {
    for (const w of waiting) {
      if (active >= options.concurrency) return;
      waiting.delete(w);
      w.start();
    }
  };
  return {
    answer(raw, socket, body) {
      if (socket === null || socket.destroyed) return;
      const payload = JSON.stringify(body);
      const head =
        `HTTP/1.1 ${body.statusCode} ${STATUS_TEXT[body.statusCode] ?? 'Error'}\r\n` +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(payload)}\r\n` +
        (body.statusCode === 503 ? 'retry-after: 1\r\n' : '') +
        'connection: close\r\n\r\n';
      // Whoever else listened for the body (the body reader) stops receiving it.
      raw.removeAllListeners('data');
      socket.pause();
      socket.write(head + payload);
      const finish = (): void => {
        if (!socket.destroyed) socket.end();
      };
      let timer = setTimeout(() => socket.destroy(), raw.complete ? options.lingerMs : waitMs);
      timer.unref();
      if (raw.complete) {
        socket.once('close', () => clearTimeout(timer));
        finish();
        // Read on, so the client's close is seen (nothing more is dispatched on this connection:
        // its current response never finishes).
        socket.resume();
        return;
      }
      let started = false;
      const start = (): void => {
        if (socket.destroyed) return;
        started = true;
        active++;
        clearTimeout(timer);
        timer = setTimeout(() => socket.destroy(), options.lingerMs);
        timer.unref();
        raw.on('data', () => {});
        raw.once('end', finish);
        raw.resume();
        socket.resume();
      };
      const entry = { start, socket };
      socket.once('close', () => {
        clearTimeout(timer);
        if (started) {
          active--;
          next();
        } else {
          waiting.delete(entry);
        }
      });
      if (waiting.size >= maxWaiting) {
        // Full: the connection that has waited longest (and had longest to read its answer) goes.
        for (const oldest of waiting) {
          waiting.delete(oldest);
          oldest.socket.destroy();
          break;
        }
      }
      waiting.add(entry);
      next();
    },
  };
}
