// Small helpers shared by the subcommands.
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Exit codes: 0 clean, 1 violations, 2 bad usage, configuration or unreadable input. */
export const EXIT = Object.freeze({ OK: 0, VIOLATIONS: 1, USAGE: 2 });

export interface Io {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: () => Promise<string>;
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export const processIo: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  env: process.env,
  stdin: readStdin,
};
