// The watch requests of the cluster caches. client-node's Watch hands out its AbortController
// only once the server has answered, and sets no timeout: a connection that hangs before the
// response headers (a blackholed link, a hung proxy) can then never be aborted and stays open
// for good, one more per retry. This client has the same shape (events through callbacks,
// resolves with the controller, `done` once), gives up on a request whose response has not begun
// within responseTimeoutMs, and keeps TCP keep-alive on the socket it streams from. ListWatch
// bounds the silence after that (list-watch.ts).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig, Watch } from '@kubernetes/client-node';
import { StallError } from './stream-list.ts';

type Params = Parameters<Watch['watch']>[1];
type OnEvent = Parameters<Watch['watch']>[2];
type OnDone = Parameters<Watch['watch']>[3];

export class WatchClient implements Pick<Watch, 'watch'> {
  readonly #kc: KubeConfig;
  readonly #responseTimeoutMs: number;

  constructor(kc: KubeConfig, responseTimeoutMs: number) {
    this.#kc = kc;
    this.#responseTimeoutMs = responseTimeoutMs;
  }

  async watch(path: string, queryParams: Params, callback: OnEvent, done: OnDone): Promise<AbortController> {
    const cluster = this.#kc.getCurrentCluster();
    if (cluster === null) throw new Error('no current cluster in the kubeconfig');
    const url = new URL(cluster.server + path);
    url.searchParams.set('watch', 'true');
    for (const [k, v] of Object.entries(queryParams)) if (v !== undefined) url.searchParams.set(k, String(v));
    // Agent (CA, client certificate), Authorization header: as client-node's own requests.
    const opts: RequestOptions = {};
    await this.#kc.applyToHTTPSOptions(opts);
    const controller = new AbortController();
    return new Promise((resolve) => {
      let ended = false;
      const end = (err: unknown): void => {
        clearTimeout(timer);
        resolve(controller);
        if (ended) return;
        ended = true;
        controller.abort();
        done(err);
      };
      // Nothing received is a stall, as a silent open watch is: not an error from the server.
      const timer = setTimeout(() => end(new StallError(`watch ${path}: no response within ${this.#responseTimeoutMs / 1000} s`)), this.#responseTimeoutMs);
      timer.unref();
      const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
      const req = send(url, { ...opts, method: 'GET', signal: controller.signal }, (res) => {
        clearTimeout(timer);
        res.on('error', end);
        if (res.statusCode !== 200) {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            if (body.length < 4096) body += c;
          });
          res.on('end', () => end(Object.assign(new Error(`watch ${path}: HTTP ${res.statusCode ?? 0} ${body.slice(0, 300)}`), { statusCode: res.statusCode })));
          return;
        }
        res.socket.setKeepAlive(true, 30_000);
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        lines.on('error', end); // readline re-emits the response's errors (an abort, a reset)
        lines.on('line', (line) => {
          let data: { type?: unknown; object?: unknown };
          try {
            data = JSON.parse(line) as { type?: unknown; object?: unknown };
          } catch {
            return; // not an event (as client-node: skipped)
          }
          if (!ended) callback(String(data.type), data.object, data);
        });
        res.on('end', () => end(null));
        res.on('close', () => end(res.complete ? null : new Error(`watch ${path}: connection closed mid-stream`)));
        resolve(controller);
      });
      req.on('error', end);
      req.end();
    });
  }
}
