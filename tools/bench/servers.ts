// Start the servers under test as child processes: `meshguard serve` (src/main.ts, exactly what
// a user runs) and the floor (floor.ts), optionally pinned to one CPU with taskset.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { serving } from '../../test/helpers/serving.ts';
import { tasksetPath } from './procstat.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const NODE = process.execPath;

export interface Server {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
  stderr(): string;
  /** SIGTERM and wait for exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly name: string;
  /** Script and its arguments (relative to the repository root). */
  readonly script: string;
  readonly args: readonly string[];
  /** Extra node flags (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  /** CPU list for taskset (e.g. "0"); ignored without taskset. */
  readonly cpus?: string | undefined;
  /** stdout goes to this file (audit records and logs): never a pipe that could fill up. */
  readonly stdoutFile: string;
  readonly env?: Record<string, string>;
  readonly timeoutMs?: number;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export async function startServer(start: StartOptions): Promise<Server> {
  const taskset = start.cpus !== undefined ? tasksetPath() : undefined;
  const argv = [...(start.nodeFlags ?? []), join(ROOT, start.script), ...start.args];
  const cmd = taskset !== undefined ? taskset : NODE;
  const args = taskset !== undefined ? ['-c', start.cpus as string, NODE, ...argv] : argv;
  const out = openSync(start.stdoutFile, 'a');
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...start.env }, stdio: ['ignore', out, 'pipe'] });
  closeSync(out);
  live.add(child);
  const started = serving(child, start.name, { timeoutMs: start.timeoutMs ?? 30_000, keepChars: 100_000 });
  const url = await started.url;
  if (child.pid === undefined) throw new Error(`${start.name}: no pid`);
  return {
    name: start.name,
    pid: child.pid,
    port: Number(new URL(url).port),
    child,
    stderr: started.stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await once(child, 'exit');
      clearTimeout(t);
      live.delete(child);
    },
  };
}

/** GET a path over HTTPS (readiness polling). */
export function httpsGet(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', ca, servername: 'localhost', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** POST a JSON body and return the parsed answer. */
export function httpsPost(port: number, path: string, body: string, ca: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', ca, servername: 'localhost', agent: false, timeout: 10_000, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as unknown });
          } catch {
            resolve({ status: res.statusCode ?? 0, json: text });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

export async function waitReady(port: number, ca: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await httpsGet(port, '/readyz', ca);
      if (r.status === 200) return;
      last = `${r.status} ${r.body.slice(0, 300)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs / 1000} s: ${last}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}
