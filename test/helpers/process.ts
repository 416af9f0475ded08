// Run the real meshguard CLI as a child process (the same `meshguard serve` a user runs).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { ROOT } from './review.ts';
import { serving } from './serving.ts';

export const NODE = process.execPath;
export const MAIN = `${ROOT}src/main.ts`;

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function runCli(args: readonly string[], opts: { input?: string; cwd?: string; env?: Record<string, string>; main?: string } = {}): Promise<CliResult> {
  const child = spawn(NODE, [opts.main ?? MAIN, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(opts.input ?? '');
  const [code] = (await once(child, 'close')) as [number];
  return { code, stdout, stderr };
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  stdout(): string;
  stderr(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `meshguard serve` and wait for its "serving on" line. `main`: another build of the CLI (the image's bundle). */
export async function startServe(args: readonly string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; main?: string } = {}): Promise<ServeProcess> {
  const child = spawn(NODE, [opts.main ?? MAIN, 'serve', ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  // A bound for a hang, not a duration: on a loaded machine start-up (type stripping, key
  // generation) can take far longer than on an idle one.
  const started = serving(child, 'meshguard serve', { timeoutMs: opts.timeoutMs ?? 180_000 });
  const url = await started.url;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill(signal);
    const [code] = (await once(child, 'exit')) as [number | null];
    return code;
  };
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, url, port: Number(new URL(url).port), stdout: () => out, stderr: started.stderr, stop };
}
