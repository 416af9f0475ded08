// Everything a bench run stands on: CPU pinning, a work folder, the certificates (meshguard's
// own ECDSA P-256, and an RSA-2048 chain for comparison), the builds of meshguard and the floors,
// the namespace cache's apiserver, the runtime settings, and how each server is started.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { generate } from 'selfsigned';
import ts from 'typescript';
import { ensureGenerated } from '../../src/jobs/certs/source.ts';
import { defaultSans } from '../../src/jobs/certs/selfsigned.ts';
import { imageEnv } from '../../test/helpers/image.ts';
import { bundle } from '../bundle.ts';
import { clusterBinariesCached, startBenchCluster, type BenchCluster } from './cluster.ts';
import { BENCH, log, type Settings } from './flags.ts';
import { loadAverage, machine, pin, tasksetPath } from './procstat.ts';
import { startServer, type Server } from './servers.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const NODE = process.execPath;
const ENV = { NODE_ENV: 'production' };

export interface Runtime {
  readonly nodeFlags: string[];
  readonly env: Record<string, string>;
  readonly label: string;
}

export interface MeshguardStart {
  readonly cert?: 'rsa';
  readonly cluster: boolean;
  readonly nodeFlags?: string[];
  readonly env?: Record<string, string>;
}

export interface Bench {
  readonly settings: Settings;
  readonly mach: ReturnType<typeof machine>;
  readonly canPin: boolean;
  readonly serverCpus: string | undefined;
  readonly loadAtStart: number[];
  readonly work: string;
  readonly ecdsa: { readonly certFile: string; readonly keyFile: string };
  readonly ecdsaCa: string;
  readonly rsaDir: string;
  /** Where builds and kept profiles go. */
  readonly build: string;
  readonly meshguardMain: string;
  readonly floorMain: string;
  readonly fastifyFloorMain: string;
  readonly pathFloorMain: string;
  readonly bc: BenchCluster | undefined;
  readonly imageRuntime: Runtime;
  /** The runtime settings of every server unless a run names its own. */
  readonly runtime: Runtime;
  /** The other choice, run beside meshguard in the framework split. */
  readonly otherRuntime: Runtime;
  startMeshguard(name: string, start: MeshguardStart): Promise<Server>;
  startFloor(name: string, cert: 'ecdsa' | 'rsa', nodeFlags?: string[], env?: Record<string, string>): Promise<Server>;
  /** A server started with the bench's settings (CPU, stdout file, environment). */
  startScript(name: string, script: string, args: string[]): Promise<Server>;
}

async function rsaChain(dir: string): Promise<void> {
  mkdirSync(dir);
  const ca = await generate([{ name: 'commonName', value: 'meshguard-bench-rsa-ca' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }],
  });
  const leaf = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    ca: { cert: ca.cert, key: ca.private },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  writeFileSync(join(dir, 'ca.crt'), ca.cert);
  writeFileSync(join(dir, 'tls.crt'), leaf.cert);
  writeFileSync(join(dir, 'tls.key'), leaf.private, { mode: 0o600 });
}

/** The Fastify floor with its types stripped, so it pays nothing for Node's type stripping. */
function stripTypes(from: string, to: string): void {
  writeFileSync(to, ts.transpileModule(readFileSync(from, 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 } }).outputText);
}

// Build: meshguard as the image runs it (the bundle of tools/bundle.ts, NODE_ENV=production);
// the floors bundled or with their types stripped. --source dist runs tsc's output from
// node_modules instead (what `npm run build` and the bin launcher run), --source ts src/main.ts
// through Node's type stripping.
// --quick builds into its own folder, so a smoke run (npm test) never deletes the build under a
// full run going on at the same time.
async function buildMeshguard(settings: Settings, build: string, buildRel: string): Promise<string> {
  if (settings.source === 'bundle') {
    const out = join(build, 'bundle', 'meshguard.mjs');
    rmSync(dirname(out), { recursive: true, force: true });
    const b = await bundle(out);
    for (const w of b.warnings) log(`bundle warning: ${w}`);
    return `${buildRel}/bundle/meshguard.mjs`;
  }
  if (settings.source === 'dist') {
    const dist = join(build, 'dist');
    rmSync(dist, { recursive: true, force: true });
    try {
      execFileSync(NODE, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dist, '--sourceMap', 'false'], { stdio: 'pipe' });
    } catch (e) {
      // tsc still emits on type errors (another change in progress): use the output if it is there.
      if (!existsSync(join(dist, 'main.js'))) throw e;
      log('tsc reported type errors; benchmarking its output anyway');
    }
    return `${buildRel}/dist/main.js`;
  }
  return 'src/main.ts';
}

/** The runtime settings the image gives meshguard: NODE_OPTIONS and MALLOC_ARENA_MAX from the
 * Dockerfile's ENV lines, so the memory row "as the image runs it" follows the Dockerfile. */
function imageRuntime(): Runtime {
  const image = imageEnv();
  const nodeFlags = (image['NODE_OPTIONS'] ?? '').split(' ').filter((f) => f !== '');
  const env: Record<string, string> = image['MALLOC_ARENA_MAX'] !== undefined ? { MALLOC_ARENA_MAX: image['MALLOC_ARENA_MAX'] } : {};
  const label = [...nodeFlags, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ') || 'no settings';
  return { nodeFlags, env, label };
}

export async function setUp(settings: Settings): Promise<Bench> {
  const mach = machine();
  const canPin = tasksetPath() !== undefined && mach.nproc >= 2;
  const serverCpus = canPin ? '0' : undefined;
  const clientCpus = canPin ? '1' : undefined;
  if (clientCpus !== undefined) pin(process.pid, clientCpus);
  log(`${mach.nproc} CPUs (${mach.cpuModel}), Node ${mach.node}; ${canPin ? 'servers pinned to CPU 0, load generator and apiserver to CPU 1' : 'no pinning (taskset missing or one CPU)'}`);

  const loadAtStart = loadAverage();
  const work = mkdtempSync(join(tmpdir(), 'meshguard-bench-'));
  process.once('exit', () => rmSync(work, { recursive: true, force: true }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const ecdsa = await ensureGenerated(join(work, 'certs'), defaultSans('meshguard'));
  const ecdsaCa = readFileSync(ecdsa.caFile as string, 'utf8');
  const rsaDir = join(work, 'rsa');
  await rsaChain(rsaDir);

  const buildRel = settings.quick ? '.cache/bench-quick' : '.cache/bench';
  const build = join(ROOT, buildRel);
  const meshguardMain = await buildMeshguard(settings, build, buildRel);
  mkdirSync(build, { recursive: true });
  stripTypes(join(BENCH, 'fastify-floor.ts'), join(build, 'fastify-floor.mjs'));
  // The floor and the decision-path floor import modules (their shared server, meshguard's
  // admission path): bundled like meshguard.
  await bundle(join(build, 'floor', 'floor.mjs'), join(BENCH, 'floor.ts'));
  await bundle(join(build, 'path-floor', 'path-floor.mjs'), join(BENCH, 'path-floor.ts'));

  // The namespace cache.
  let bc: BenchCluster | undefined;
  if (settings.cluster === 'on' || (settings.cluster === 'auto' && (await clusterBinariesCached()))) {
    log('starting etcd + kube-apiserver for the namespace cache');
    bc = await startBenchCluster(clientCpus !== undefined ? { pinCpus: clientCpus } : {});
    process.once('exit', () => void bc?.stop());
  } else {
    log(`no cluster (${settings.cluster === 'off' ? '--cluster off' : 'e2e binaries not built'}): unknownNamespace: allow; namespace scaling from micro.ts only`);
  }
  const configFile = join(work, 'config.json');
  writeFileSync(configFile, JSON.stringify(bc === undefined ? { unknownNamespace: 'allow' } : {}));
  const allowConfig = join(work, 'config-allow.json');
  writeFileSync(allowConfig, JSON.stringify({ unknownNamespace: 'allow' }));

  // The runtime settings of every server (meshguard, the floor and the Fastify floor) unless a run
  // names its own: the image's (--runtime image, the default: meshguard as it ships, and the
  // floors with the same settings, which do not change their cost), or V8's defaults (--runtime
  // defaults, how this bench ran before 2026-12-02). The framework split also runs a meshguard
  // with the other choice, so both figures are in every full run.
  const image = imageRuntime();
  const v8Defaults: Runtime = { nodeFlags: [], env: {}, label: 'V8 defaults' };
  const runtime = settings.runtime === 'image' ? image : v8Defaults;
  const otherRuntime = settings.runtime === 'image' ? v8Defaults : image;

  const started = (name: string, script: string, args: string[], nodeFlags: string[], env: Record<string, string>, timeoutMs?: number): Promise<Server> =>
    startServer({ name, script, args, nodeFlags, cpus: serverCpus, stdoutFile: join(work, `${name}.out`), env: { ...ENV, ...env }, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  const floorMain = `${buildRel}/floor/floor.mjs`;
  return {
    settings,
    mach,
    canPin,
    serverCpus,
    loadAtStart,
    work,
    ecdsa,
    ecdsaCa,
    rsaDir,
    build,
    meshguardMain,
    floorMain,
    fastifyFloorMain: `${buildRel}/fastify-floor.mjs`,
    pathFloorMain: `${buildRel}/path-floor/path-floor.mjs`,
    bc,
    imageRuntime: image,
    runtime,
    otherRuntime,
    startMeshguard(name, start) {
      const certArgs = start.cert === 'rsa' ? ['--cert-file', join(rsaDir, 'tls.crt'), '--key-file', join(rsaDir, 'tls.key')] : ['--cert-dir', join(work, 'certs')];
      const clusterArgs = start.cluster && bc !== undefined ? ['--kubeconfig', bc.cluster.adminKubeconfig, '--config', configFile] : ['--config', bc === undefined ? configFile : allowConfig];
      return started(name, meshguardMain, ['serve', '--port', '0', '--mode', 'enforce', ...certArgs, ...clusterArgs], start.nodeFlags ?? runtime.nodeFlags, start.env ?? runtime.env, 120_000);
    },
    startFloor(name, cert, nodeFlags = runtime.nodeFlags, env = runtime.env) {
      const files = cert === 'rsa' ? { c: join(rsaDir, 'tls.crt'), k: join(rsaDir, 'tls.key') } : { c: ecdsa.certFile, k: ecdsa.keyFile };
      return started(name, floorMain, ['--cert', files.c, '--key', files.k], nodeFlags, env);
    },
    startScript(name, script, args) {
      return started(name, script, args, runtime.nodeFlags, runtime.env);
    },
  };
}
