// The environment the container image gives meshguard: the Dockerfile's `ENV KEY=VALUE` lines
// (NODE_ENV, NODE_OPTIONS, MALLOC_ARENA_MAX), for tests and benchmarks that run it as the image does.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;

export function imageEnv(dockerfile: string = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of dockerfile.matchAll(/^ENV (\w+)=(.*)$/gm)) env[m[1] as string] = (m[2] as string).trim();
  return env;
}
