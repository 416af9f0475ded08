// A real meshguard HTTPS server on 127.0.0.1 port 0, and a small HTTPS client that trusts it.
import { request, Agent } from 'node:https';
import { generate } from 'selfsigned';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppDeps } from '../../src/app.ts';
import { generateBundle, type CertBundle } from '../../src/jobs/certs/selfsigned.ts';
import type { Config } from '../../src/config/types.ts';
import { PromRecorder } from '../../src/metrics/recorder.ts';
import { memoryAuditSink } from '../../src/webhook/audit-sink.ts';
import { secureContextOptions } from '../../src/webhook/tls-options.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import { config as makeConfig, state } from './review.ts';

let bundle: Promise<CertBundle> | undefined;
/** One generated CA + serving certificate per test process (SANs 127.0.0.1, localhost). */
export function testCerts(): Promise<CertBundle> {
  bundle ??= generateBundle({ sans: ['localhost', '127.0.0.1', '::1'] });
  return bundle;
}

export interface TestServer {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly port: number;
  readonly ca: string;
  readonly audit: ReturnType<typeof memoryAuditSink>;
  readonly recorder: PromRecorder;
  readonly config: Config;
  close(): Promise<void>;
}

export async function startServer(overrides: Record<string, unknown> = {}, deps: Partial<AppDeps> = {}): Promise<TestServer> {
  const certs = await testCerts();
  const config = makeConfig({ 'server.port': 0, ...overrides });
  const audit = memoryAuditSink();
  const recorder = new PromRecorder();
  const app = await buildApp(config, {
    cluster: state([], config.revisions),
    rules: BUILTIN_RULES,
    recorder,
    audit,
    https: secureContextOptions({ cert: certs.cert, key: certs.key, ca: certs.caCert }, config.server.tlsMinVersion),
    ...deps,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return { app, url: `https://127.0.0.1:${port}`, port, ca: certs.caCert, audit, recorder, config, close: () => app.close() };
}

/** The app without a listener, for app.inject(): built with the test config and closed when `t` ends. */
export async function injectableApp(t: { teardown(fn: () => unknown): void }, overrides: Record<string, unknown> = {}, deps: Partial<AppDeps> = {}): Promise<FastifyInstance> {
  const config = makeConfig(overrides);
  const app = await buildApp(config, { cluster: state([], config.revisions), rules: BUILTIN_RULES, ...deps });
  t.teardown(() => app.close());
  return app;
}

/** A log that keeps what the app writes (AppDeps.log), for assertions. */
export function captureLog(): { lines: { level: string; obj: Record<string, unknown>; msg: string }[]; log: NonNullable<AppDeps['log']> } {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg: string): void => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } };
}

export interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  json<T = any>(): T;
}

export function post(
  server: { url: string; ca: string },
  path: string,
  body: string | Buffer | undefined,
  headers: Record<string, string> = { 'content-type': 'application/json' },
  agent?: Agent,
  method = 'POST',
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server.url), { method, ca: server.ca, headers, ...(agent !== undefined ? { agent } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function get(server: { url: string; ca: string }, path: string): Promise<HttpResult> {
  return post(server, path, undefined, {}, undefined, 'GET');
}

/** A client certificate (extKeyUsage clientAuth) signed by `ca`. */
export async function clientCert(ca: { cert: string; key: string }, cn: string): Promise<{ cert: string; key: string }> {
  const c = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 5 * 60_000),
    notAfterDate: new Date(Date.now() + 86_400_000),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { cert: c.cert, key: c.private };
}
