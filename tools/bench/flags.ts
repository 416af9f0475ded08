// The bench's command line: flags, the settings derived from them, and the progress log.
import { join } from 'node:path';
import { parseArgs } from 'node:util';

export const BENCH_HELP = `Usage: npm run bench [-- flags]

meshguard against the physical floor of a webhook, side by side in one run on one machine
(docs/performance.md describes the method).

  (no flags)                 full run (under 10 minutes), results/latest.json
  --quick                    smoke run (well under a minute), results/quick.json; exits 1 if
                             any answer was wrong or a connection broke (503 MG_OVERLOADED,
                             load shedding, is counted apart)
  --cluster auto|on|off      real apiserver for the namespace cache (auto: when the e2e
                             binaries are already built; never builds them)
  --rounds N                 rounds per cell (default 3, 1 with --quick)
  --target-rounds N          extra rounds for the target cells (Pod CREATE at 2 and 50
                             connections; default 4, 0 with --quick)
  --duration SECONDS         measured time per run (default 1.5, 0.25 with --quick)
  --out FILE                 results file
  --source bundle|dist|ts    what meshguard runs from (default bundle, as the image)
  --runtime image|defaults   runtime settings of the servers (default image: the Dockerfile's
                             NODE_OPTIONS and MALLOC_ARENA_MAX, for meshguard and the floors alike)
  --no-profile               skip the --cpu-prof profiles
  --no-micro                 skip the in-process microbenchmark
  -h, --help                 this help
`;

export interface Settings {
  readonly quick: boolean;
  readonly rounds: number;
  /** Extra rounds for the two target cells (Pod CREATE at 2 and 50 connections), on top of rounds. */
  readonly targetExtraRounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly connections: readonly [1, 2, 50];
  readonly sizes: readonly number[];
  /** The namespace counts of the scaling table (with a cluster). */
  readonly nsSteps: readonly number[];
  /** The namespaces the main table runs with (with a cluster). */
  readonly mainNamespaces: number;
  readonly out: string;
  readonly source: string;
  readonly cluster: string;
  readonly runtime: string;
  readonly profile: boolean;
  readonly micro: boolean;
}

export const BENCH = new URL('./', import.meta.url).pathname;

/** The settings, or 'help' when --help was asked for. */
export function readFlags(args: readonly string[]): Settings | 'help' {
  const { values: flags } = parseArgs({
    args: [...args],
    options: {
      quick: { type: 'boolean', default: false },
      cluster: { type: 'string', default: 'auto' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      out: { type: 'string' },
      source: { type: 'string', default: 'bundle' },
      'no-profile': { type: 'boolean', default: false },
      'no-micro': { type: 'boolean', default: false },
      runtime: { type: 'string', default: 'image' },
      'target-rounds': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (flags.help === true) return 'help';
  if (!['bundle', 'dist', 'ts'].includes(flags.source)) throw new Error(`--source ${flags.source}: bundle, dist or ts`);
  if (!['image', 'defaults'].includes(flags.runtime)) throw new Error(`--runtime ${flags.runtime}: image or defaults`);
  const quick = flags.quick === true;
  return {
    quick,
    rounds: Number(flags.rounds ?? (quick ? 1 : 3)),
    targetExtraRounds: Number(flags['target-rounds'] ?? (quick ? 0 : 4)),
    durationMs: Number(flags.duration ?? (quick ? 0.25 : 1.5)) * 1000,
    warmupMs: quick ? 100 : 400,
    connections: [1, 2, 50],
    sizes: [1024, 10 * 1024, 100 * 1024, 1024 * 1024],
    nsSteps: quick ? [] : [10, 1000, 50_000],
    mainNamespaces: 1000,
    out: flags.out ?? join(BENCH, 'results', quick ? 'quick.json' : 'latest.json'),
    source: flags.source,
    cluster: quick ? 'off' : flags.cluster,
    runtime: flags.runtime,
    profile: flags['no-profile'] !== true,
    micro: flags['no-micro'] !== true,
  };
}

const t0 = performance.now();

/** Seconds since the bench started. */
export function elapsedSeconds(): number {
  return (performance.now() - t0) / 1000;
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${elapsedSeconds().toFixed(0).padStart(3)}s] ${msg}\n`);
}
