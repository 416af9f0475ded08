// The optional plain-HTTP metrics listener (config metrics.port): GET /metrics and nothing else,
// on its own address, so Prometheus needs no TLS settings and the webhook port can stop serving
// /metrics (metricsEnabled false) to whoever reaches it. Off by default.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Recorder } from './recorder.ts';

export interface MetricsServer {
  /** http://host:port */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: { readonly host: string; readonly port: number; readonly recorder: Recorder }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if ((req.method !== 'GET' && req.method !== 'HEAD') || path !== '/metrics') {
      res.writeHead(req.method !== 'GET' && req.method !== 'HEAD' && path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' });
      res.end(path === '/metrics' ? 'method not allowed\n' : 'not found: only GET /metrics is served here\n');
      return;
    }
    options.recorder.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': options.recorder.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('metrics could not be rendered\n');
      },
    );
  });
  // A scrape is one small GET: bound what a slow or idle client can hold.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 65_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
