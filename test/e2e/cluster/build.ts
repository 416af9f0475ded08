// Builds (once, cached) the real binaries the end-to-end suite runs:
// kube-apiserver, kube-controller-manager, etcd and kubectl from the Go module
// in this folder, helm from the module in ./helm, and istioctl and
// pilot-discovery (istiod) from the istio.io/istio module pinned in ./istio.
//
//   node test/e2e/cluster/build.ts        # build if needed, print the paths as JSON
//
// Cache: ${MESHGUARD_CACHE_DIR:-$HOME/.cache/meshguard}/bin/<key12>/ where the
// key is a sha256 over every go.mod, go.sum and .go file below this folder, the
// build recipe below and `go version`. A build goes to a temp dir that is
// renamed into place, so an interrupted build never leaves a half cache; a lock
// file keeps two concurrent test processes from building at once.

import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsc, rmSync } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Binaries {
  kubeApiserver: string;
  kubeControllerManager: string;
  etcd: string;
  kubectl: string;
  helm: string;
  istioctl: string;
  pilotDiscovery: string;
}

export const KUBERNETES_VERSION = 'v1.37.2';
export const ETCD_VERSION = 'v3.7.0';
export const HELM_VERSION = 'v3.22.0';
/** client-go minor that helm v3.22.0 is built against (for its default KubeVersion). */
const HELM_K8S_MAJOR = '1';
const HELM_K8S_MINOR = '37';
/** The istio.io/istio module version pinned in ./istio/go.mod (master at that commit). */
export const ISTIO_MODULE_VERSION = 'v0.0.0-20260827124520-eed52ebb66ad';
/** What the binaries report and the image tag their injector writes (the module's VERSION file, -dev). */
export const ISTIO_VERSION = '1.31-dev';
export const ISTIO_HUB = 'docker.io/istio';

const HERE = dirname(fileURLToPath(import.meta.url));
const HELM_MODULE = join(HERE, 'helm');
const ISTIO_MODULE = join(HERE, 'istio');

const K8S_VERSION_PKG = 'k8s.io/component-base/version';
const k8sLdflags = [
  '-s', '-w',
  `-X ${K8S_VERSION_PKG}.gitVersion=${KUBERNETES_VERSION}`,
  `-X ${K8S_VERSION_PKG}.gitMajor=${KUBERNETES_VERSION.slice(1).split('.')[0]}`,
  `-X ${K8S_VERSION_PKG}.gitMinor=${KUBERNETES_VERSION.split('.')[1]}`,
  `-X ${K8S_VERSION_PKG}.gitTreeState=clean`,
  `-X ${K8S_VERSION_PKG}.buildDate=1970-01-01T00:00:00Z`,
].join(' ');
const helmLdflags = [
  '-s', '-w',
  `-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`,
  '-X helm.sh/helm/v3/internal/version.gitTreeState=clean',
  `-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${HELM_K8S_MAJOR}`,
  `-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${HELM_K8S_MINOR}`,
  `-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${HELM_K8S_MAJOR}`,
  `-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${HELM_K8S_MINOR}`,
].join(' ');
const ISTIO_VERSION_PKG = 'istio.io/istio/pkg/version';
const istioLdflags = [
  '-s', '-w',
  `-X ${ISTIO_VERSION_PKG}.buildVersion=${ISTIO_VERSION}`,
  `-X ${ISTIO_VERSION_PKG}.buildHub=${ISTIO_HUB}`,
  `-X ${ISTIO_VERSION_PKG}.buildGitRevision=${ISTIO_MODULE_VERSION.split('-').pop()}`,
  `-X ${ISTIO_VERSION_PKG}.buildStatus=Clean`,
  `-X ${ISTIO_VERSION_PKG}.buildTag=${ISTIO_VERSION}`,
].join(' ');

interface Step {
  name: string;
  cwd: string;
  args: string[];
}

/** The build recipe; part of the cache key. Output paths are relative to the build dir. */
function steps(outDir: string): Step[] {
  return [
    {
      name: 'kube-apiserver, etcd, kubectl',
      cwd: HERE,
      args: ['build', '-trimpath', '-buildvcs=false', `-ldflags=${k8sLdflags}`, '-o', outDir + '/',
        './cmd/kube-apiserver', './cmd/kube-controller-manager', './cmd/etcd', './cmd/kubectl'],
    },
    {
      name: 'helm',
      cwd: HELM_MODULE,
      args: ['build', '-trimpath', '-buildvcs=false', `-ldflags=${helmLdflags}`, '-o', join(outDir, 'helm'),
        'helm.sh/helm/v3/cmd/helm'],
    },
    {
      name: 'istioctl, pilot-discovery',
      cwd: ISTIO_MODULE,
      args: ['build', '-trimpath', '-buildvcs=false', `-ldflags=${istioLdflags}`, '-o', outDir + '/',
        'istio.io/istio/istioctl/cmd/istioctl', 'istio.io/istio/pilot/cmd/pilot-discovery'],
    },
  ];
}

const BINARY_NAMES = {
  kubeApiserver: 'kube-apiserver',
  kubeControllerManager: 'kube-controller-manager',
  etcd: 'etcd',
  kubectl: 'kubectl',
  helm: 'helm',
  istioctl: 'istioctl',
  pilotDiscovery: 'pilot-discovery',
} as const;

function goCommand(): string {
  return process.env.MESHGUARD_GO || 'go';
}

function log(msg: string): void {
  process.stderr.write(`[meshguard e2e build] ${msg}\n`);
}

export function cacheRoot(): string {
  return process.env.MESHGUARD_CACHE_DIR || join(homedir(), '.cache', 'meshguard');
}

async function listSources(dir: string, out: string[] = []): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'testdata' || e.name.startsWith('.') || e.name === 'node_modules') continue;
      await listSources(p, out);
    } else if (e.isFile() && (e.name === 'go.mod' || e.name === 'go.sum' || e.name.endsWith('.go'))) {
      out.push(p);
    }
  }
  return out;
}

function goVersion(): Promise<string> {
  return new Promise((res, rej) => {
    execFile(goCommand(), ['version'], { env: buildEnv() }, (err, stdout) => {
      if (err) {
        rej(new Error(`cannot run '${goCommand()} version' (Go is needed to build the e2e cluster binaries): ${err.message}`));
      } else {
        res(stdout.trim());
      }
    });
  });
}

function buildEnv(): NodeJS.ProcessEnv {
  return { ...process.env, CGO_ENABLED: '0' };
}

/** sha256 over sources, recipe and `go version`; hex. */
export async function cacheKey(): Promise<string> {
  const h = createHash('sha256');
  const files = (await listSources(HERE)).sort();
  for (const f of files) {
    h.update(relative(HERE, f).split('\\').join('/'));
    h.update('\0');
    h.update(await readFile(f));
    h.update('\0');
  }
  h.update(JSON.stringify(steps('$OUT').map((s) => ({ cwd: relative(HERE, s.cwd), args: s.args }))));
  h.update('\0CGO_ENABLED=0\0');
  h.update(await goVersion());
  return h.digest('hex');
}

function paths(dir: string): Binaries {
  const out = {} as Binaries;
  for (const [k, name] of Object.entries(BINARY_NAMES)) out[k as keyof Binaries] = join(dir, name);
  return out;
}

async function complete(dir: string): Promise<boolean> {
  try {
    for (const p of Object.values(paths(dir))) await access(p, fsc.X_OK);
    await access(join(dir, 'BUILD-INFO.json'));
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Take the lock (O_EXCL file holding our pid); waits while a live process holds it. */
async function lock(lockPath: string, binDir: string): Promise<(() => Promise<void>) | null> {
  let lastNote = 0;
  const started = Date.now();
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(JSON.stringify({ pid: process.pid, since: new Date().toISOString() }));
      await fh.close();
      return async () => {
        await rm(lockPath, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // Someone holds it. If they finished, use their result.
    if (await complete(binDir)) return null;
    let holder = 0;
    try {
      holder = Number(JSON.parse(await readFile(lockPath, 'utf8')).pid) || 0;
    } catch {
      // Being written right now, or garbage: judge by age.
      try {
        const st = await stat(lockPath);
        if (Date.now() - st.mtimeMs > 10_000) holder = -1;
      } catch {
        continue; // vanished: retry at once
      }
    }
    if (holder === -1 || (holder > 0 && !pidAlive(holder))) {
      log(`removing stale lock ${lockPath} (holder ${holder > 0 ? `pid ${holder}` : 'unknown'} is gone)`);
      await rm(lockPath, { force: true });
      continue;
    }
    if (Date.now() - lastNote > 30_000) {
      lastNote = Date.now();
      log(`waiting for another build (pid ${holder}) holding ${lockPath} (${Math.round((Date.now() - started) / 1000)}s)`);
    }
    await sleep(1000);
  }
}

function run(step: Step, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    log(`go ${step.args[0]} ${step.name} (in ${relative(process.cwd(), step.cwd) || '.'}) ...`);
    const child = spawn(goCommand(), step.args, { cwd: step.cwd, env, stdio: ['ignore', 'inherit', 'pipe'] });
    let tail = '';
    let partial = '';
    let downloads = 0;
    child.stderr.on('data', (d: Buffer) => {
      const text = partial + d.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail = (tail + line + '\n').slice(-8000);
        // One line per module fetched from an empty module cache: count them instead.
        if (line.startsWith('go: downloading ')) {
          if (++downloads % 50 === 0) log(`  downloaded ${downloads} modules`);
          continue;
        }
        process.stderr.write(line + '\n');
      }
    });
    const beat = setInterval(() => {
      log(`  still building ${step.name} (${Math.round((Date.now() - t0) / 1000)}s)`);
    }, 60_000);
    const cleanup = () => clearInterval(beat);
    const onSignal = () => child.kill('SIGTERM');
    process.once('exit', onSignal);
    child.on('error', (e) => {
      cleanup();
      process.removeListener('exit', onSignal);
      rej(new Error(`cannot run ${goCommand()}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      cleanup();
      process.removeListener('exit', onSignal);
      if (partial) {
        tail = (tail + partial).slice(-8000);
        process.stderr.write(partial + '\n');
      }
      if (downloads) log(`  downloaded ${downloads} modules in all`);
      if (code === 0) {
        log(`  built ${step.name} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
        res();
      } else {
        rej(new Error(`go build of ${step.name} failed (${signal ?? `exit ${code}`}):\n${tail}`));
      }
    });
  });
}

let inFlight: Promise<Binaries> | null = null;

/**
 * Paths to kube-apiserver, etcd, kubectl and helm, building them first when the
 * cache for the current sources lacks them. Safe to call concurrently, in one
 * process or across processes.
 */
export function ensureBinaries(): Promise<Binaries> {
  if (!inFlight) {
    inFlight = ensure().catch((e: unknown) => {
      inFlight = null;
      throw e;
    });
  }
  return inFlight;
}

async function ensure(): Promise<Binaries> {
  const key = (await cacheKey()).slice(0, 12);
  const binRoot = join(cacheRoot(), 'bin');
  const binDir = join(binRoot, key);
  if (await complete(binDir)) return paths(binDir);

  await mkdir(binRoot, { recursive: true });
  const release = await lock(join(binRoot, `${key}.lock`), binDir);
  if (!release) return paths(binDir); // another process built it while we waited
  try {
    if (await complete(binDir)) return paths(binDir);
    // Leftovers of builds of this key that were killed outright (we hold the lock).
    for (const e of await readdir(binRoot)) {
      if (e.startsWith(`.tmp-${key}-`)) await rm(join(binRoot, e), { recursive: true, force: true });
    }
    const tmp = join(binRoot, `.tmp-${key}-${process.pid}-${Date.now()}`);
    await mkdir(tmp, { recursive: true });
    const t0 = Date.now();
    log(`building e2e cluster binaries into ${binDir} (Kubernetes ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION}, helm ${HELM_VERSION}, Istio ${ISTIO_VERSION}); the first build takes many minutes`);
    const removeTmp = () => {
      // Best effort on abnormal exit: never leave a half build around.
      try {
        rmSync(tmp, { recursive: true, force: true });
        rmSync(join(binRoot, `${key}.lock`), { force: true });
      } catch {
        // ignore
      }
    };
    process.once('exit', removeTmp);
    try {
      const env = buildEnv();
      for (const step of steps(tmp)) await run(step, env);
      await writeFile(
        join(tmp, 'BUILD-INFO.json'),
        JSON.stringify({
          key,
          kubernetes: KUBERNETES_VERSION,
          etcd: ETCD_VERSION,
          helm: HELM_VERSION,
          istio: ISTIO_VERSION,
          istioModule: ISTIO_MODULE_VERSION,
          go: await goVersion(),
          builtAt: new Date().toISOString(),
          buildSeconds: Math.round((Date.now() - t0) / 1000),
        }, null, 2) + '\n',
      );
      await rm(binDir, { recursive: true, force: true });
      await rename(tmp, binDir);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    } finally {
      process.removeListener('exit', removeTmp);
    }
    log(`done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    return paths(binDir);
  } finally {
    await release();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t0 = performance.now();
  ensureBinaries().then(
    (b) => {
      log(`binaries ready in ${((performance.now() - t0) / 1000).toFixed(3)}s`);
      process.stdout.write(JSON.stringify(b, null, 2) + '\n');
    },
    (e: unknown) => {
      log(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
