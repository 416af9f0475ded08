// meshguard's entry point: parse the subcommand, hand over to it, map errors to exit codes.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError, EXIT, processIo, type Io } from './cli/args.ts';
import { VERSION } from './version.ts';
import { ConfigError } from './config/validate.ts';

export const USAGE = `meshguard: admission webhook that keeps Istio hardening on

Usage:
  meshguard serve  [flags]                 run the HTTPS admission webhook
  meshguard check  -f <file|dir|-> [flags] evaluate manifests offline (CI)
  meshguard review [flags]                 send a sample AdmissionReview to a running server
  meshguard scan   [flags]                 report existing cluster objects that violate the rules
  meshguard verify [flags]                 check the installed webhooks with server-side dry runs
  meshguard mark-legacy [--apply]          put existing namespaces in audit until an admin enrols them
  meshguard help [command]
  meshguard --version

Run 'meshguard <command> --help' for the flags of a command.
Exit codes: 0 ok/clean, 1 violations found, 2 bad usage, configuration or input.
`;

// Subcommands are loaded when run: `meshguard --help` and `--version` then evaluate none of
// the server's dependencies (client-node, fastify), in the bundle as from the sources.
const runServe: Run = async (a, io) => (await import('./serve/serve.ts')).runServe(a, io);
const runCheck: Run = async (a, io) => (await import('./cli/check.ts')).runCheck(a, io);
const runReview: Run = async (a, io) => (await import('./cli/send-review.ts')).runReview(a, io);
const runScan: Run = async (a, io) => (await import('./cli/scan.ts')).runScan(a, io);
const runVerify: Run = async (a, io) => (await import('./cli/verify.ts')).runVerify(a, io);
const runMarkLegacy: Run = async (a, io) => (await import('./cli/mark-legacy.ts')).runMarkLegacy(a, io);

type Run = (argv: readonly string[], io: Io) => Promise<number>;

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await runServe(rest, io);
      case 'check':
        return await runCheck(rest, io);
      case 'review':
        return await runReview(rest, io);
      case 'scan':
        return await runScan(rest, io);
      case 'verify':
        return await runVerify(rest, io);
      case 'mark-legacy':
        return await runMarkLegacy(rest, io);
      case 'version':
      case '--version':
      case '-v':
        io.out(`meshguard ${VERSION}\n`);
        return EXIT.OK;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        if (rest[0] !== undefined) return await main([rest[0], '--help'], io);
        io.out(USAGE);
        return EXIT.OK;
      default:
        io.err(`meshguard: unknown command "${cmd}"\n\n${USAGE}`);
        return EXIT.USAGE;
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      io.err(`meshguard: ${err.message}\n`);
      return EXIT.USAGE;
    }
    // node:util parseArgs: an unknown flag, a stray positional argument ("meshguard check x.yaml"
    // instead of -f x.yaml), a flag without its value: a usage error, not a crash.
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS_')) {
      io.err(`meshguard: ${err.message}\nRun 'meshguard ${cmd ?? ''} --help' for its flags.\n`);
      return EXIT.USAGE;
    }
    throw err;
  }
}

// Run when executed directly (node src/main.ts ...); src/meshguard.js imports main() instead.

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  process.exitCode = await main(process.argv.slice(2));
}
