// Waiting for a server child process to say where it listens: `meshguard serve` and the bench's
// floors all print "serving on https://HOST:PORT" on stderr once they accept connections. Shared by
// the test helpers (process.ts) and the benchmark (tools/bench/servers.ts); no other imports, so
// the benchmark harness loads nothing more.
import type { ChildProcess } from 'node:child_process';

export interface Serving {
  /** The URL from the "serving on" line; rejects when the child exits first or after timeoutMs. */
  readonly url: Promise<string>;
  /** Everything the child wrote on stderr so far (the last part, past `keepChars`). */
  stderr(): string;
}

export function serving(child: ChildProcess, name: string, options: { timeoutMs: number; keepChars?: number }): Serving {
  let err = '';
  const keep = options.keepChars;
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${options.timeoutMs / 1000} s:\n${err}`)), options.timeoutMs);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      if (keep !== undefined && err.length > 2 * keep) err = err.slice(-keep);
      const m = /serving on (https:\/\/[^\s]+)/.exec(err);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${err}`));
    });
  });
  return { url, stderr: () => err };
}
