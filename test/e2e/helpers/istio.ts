// Real Istio for the tests: istioctl and pilot-discovery (istiod) built from the pinned
// istio.io/istio module (test/e2e/cluster/build.ts). Offline: `istioctl manifest generate` gives
// the injector configuration, its values and the mesh config of an install variant, and
// `istioctl kube-inject` injects manifests with them. Live: istiod runs against the test
// apiserver with its injection webhook registered by a loopback URL, next to
// kube-controller-manager, so Deployments become ReplicaSets and Pods as in a real cluster.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? { ...process.env, KUBECONFIG: '/nonexistent' },
      maxBuffer: 256 * 1024 * 1024,
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 120_000,
    }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input ?? '');
  });
}

async function must(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr || r.stdout}`);
  return r.stdout;
}

/** All YAML documents of a text, as plain objects (nulls dropped). */
export function docs(text: string): Record<string, unknown>[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS({ maxAliasCount: 1000 }) as unknown)
    .filter((d): d is Record<string, unknown> => typeof d === 'object' && d !== null && !Array.isArray(d));
}

/** What the injector needs, for one install variant. */
export interface InstallFiles {
  readonly dir: string;
  readonly injectConfigFile: string;
  readonly valuesFile: string;
  readonly meshConfigFile: string;
  readonly revision: string;
  /** Every document istioctl rendered (CRDs, RBAC, the istiod Deployment, ConfigMaps, webhooks). */
  readonly manifests: readonly Record<string, unknown>[];
}

function configMap(all: readonly Record<string, unknown>[], name: string): Record<string, string> {
  const cm = all.find((d) => d['kind'] === 'ConfigMap' && (d['metadata'] as Record<string, unknown> | undefined)?.['name'] === name);
  if (cm === undefined) throw new Error(`istioctl manifest generate rendered no ConfigMap ${name}`);
  return (cm['data'] ?? {}) as Record<string, string>;
}

/**
 * `istioctl manifest generate --set ...` (offline), with the injector's config, values and the
 * mesh config written to files in `dir`, as `istioctl kube-inject` and istiod read them.
 */
export async function installFiles(istioctl: string, dir: string, sets: readonly string[]): Promise<InstallFiles> {
  await mkdir(dir, { recursive: true });
  const out = await must(istioctl, ['manifest', 'generate', ...sets.flatMap((s) => ['--set', s])]);
  const all = docs(out);
  const revSet = sets.find((s) => s.startsWith('revision='));
  const revision = revSet === undefined ? 'default' : revSet.slice('revision='.length);
  const suffix = revision === 'default' ? '' : `-${revision}`;
  const injector = configMap(all, `istio-sidecar-injector${suffix}`);
  const mesh = configMap(all, `istio${suffix}`);
  const f = { injectConfigFile: join(dir, 'config'), valuesFile: join(dir, 'values'), meshConfigFile: join(dir, 'mesh') };
  await writeFile(f.injectConfigFile, injector['config'] ?? '');
  await writeFile(f.valuesFile, injector['values'] ?? '');
  await writeFile(f.meshConfigFile, mesh['mesh'] ?? '');
  return { dir, ...f, revision, manifests: all };
}

/** `istioctl kube-inject` of a YAML text with an install variant's files (offline: --revision is required). */
export async function kubeInject(istioctl: string, files: InstallFiles, yaml: string): Promise<string> {
  const input = join(files.dir, `input-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(input, yaml);
  try {
    return await must(istioctl, [
      'kube-inject',
      '--injectConfigFile', files.injectConfigFile,
      '--valuesFile', files.valuesFile,
      '--meshConfigFile', files.meshConfigFile,
      '--revision', files.revision,
      '-f', input,
    ]);
  } finally {
    await rm(input, { force: true });
  }
}

// ------------------------------------------------------------------ live ---

export { distinctFreePorts, freePort } from './cluster.ts';

export interface Proc {
  readonly child: ChildProcess;
  readonly logPath: string;
  stop(): Promise<void>;
  logTail(chars?: number): Promise<string>;
}

/** Spawns a server with output to a log file; killed with the test process (setpriv --pdeathsig). */
export async function startProc(bin: string, args: string[], logPath: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
  const fh = await open(logPath, 'a');
  const usePdeath = existsSync('/usr/bin/setpriv');
  const noProxy = [process.env.NO_PROXY ?? process.env.no_proxy, '127.0.0.1', 'localhost'].filter(Boolean).join(',');
  const child = spawn(usePdeath ? '/usr/bin/setpriv' : bin, usePdeath ? ['--pdeathsig', 'KILL', '--', bin, ...args] : args, {
    cwd: opts.cwd,
    stdio: ['ignore', fh.fd, fh.fd],
    env: { ...process.env, NO_PROXY: noProxy, no_proxy: noProxy, ...opts.env },
  });
  await fh.close();
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const waitExit = (ms: number) => new Promise<boolean>((res) => {
    if (exited()) return res(true);
    const t = setTimeout(() => res(exited()), ms);
    child.once('exit', () => {
      clearTimeout(t);
      res(true);
    });
  });
  process.once('exit', () => {
    if (!exited()) child.kill('SIGKILL');
  });
  return {
    child,
    logPath,
    async stop() {
      if (exited()) return;
      child.kill('SIGTERM');
      if (!(await waitExit(5000))) {
        child.kill('SIGKILL');
        await waitExit(5000);
      }
    },
    async logTail(chars = 4000) {
      const s = await readFile(logPath, 'utf8').catch(() => '(no log)');
      return s.length > chars ? `…${s.slice(-chars)}` : s;
    },
  };
}

/** A client certificate for `user` in `groups`, signed by the cluster's client CA (openssl). */
export async function clientCert(pkiDir: string, name: string, user: string, groups: readonly string[]): Promise<{ crt: string; key: string }> {
  const subj = `${groups.map((g) => `/O=${g}`).join('')}/CN=${user}`;
  const r = await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3', '-subj', subj,
    '-CA', 'client-ca.crt', '-CAkey', 'client-ca.key',
    '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
    '-addext', 'extendedKeyUsage=clientAuth',
  ], { cwd: pkiDir });
  if (r.code !== 0) throw new Error(`openssl for ${user} failed:\n${r.stderr}`);
  return { crt: join(pkiDir, `${name}.crt`), key: join(pkiDir, `${name}.key`) };
}

/** A serving certificate for 127.0.0.1 signed by a new CA, for istiod's webhook (openssl). */
export async function servingCert(dir: string): Promise<{ caPem: string; caFile: string; crt: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  let r = await run('openssl', ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3', '-subj', '/CN=istiod-e2e-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], { cwd: dir });
  if (r.code !== 0) throw new Error(r.stderr);
  r = await run('openssl', ['req', '-x509', ...ec, '-keyout', 'tls.key', '-out', 'tls.crt', '-days', '3', '-subj', '/CN=istiod.istio-system.svc',
    '-CA', 'ca.crt', '-CAkey', 'ca.key', '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment', '-addext', 'extendedKeyUsage=serverAuth',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:istiod.istio-system.svc'], { cwd: dir });
  if (r.code !== 0) throw new Error(r.stderr);
  return { caPem: await readFile(join(dir, 'ca.crt'), 'utf8'), caFile: join(dir, 'ca.crt'), crt: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

const CRDS = new URL('../../fixtures/istio/crds/', import.meta.url).pathname;
const ISTIO_OPERATOR_CRD = new URL('../../fixtures/crds/istiooperator-crd.yaml', import.meta.url).pathname;

/**
 * Istio's real CRD set (manifests/charts/base/files/crd-all.gen.yaml of the pinned module) and the
 * hand-written IstioOperator CRD that Istio no longer ships, as one multi-document YAML text.
 */
export async function istioCrdsYaml(): Promise<string> {
  return `${await readFile(join(CRDS, 'crd-all.gen.yaml'), 'utf8')}\n---\n${await readFile(ISTIO_OPERATOR_CRD, 'utf8')}`;
}

/** The Gateway API standard-channel CRDs the pinned Istio requires (for istiod's gateway controllers). */
export async function gatewayApiCrdsYaml(): Promise<string> {
  return readFile(join(CRDS, 'gateway-api-standard.yaml'), 'utf8');
}

interface KubectlRunner {
  kubectl(args: string[], opts?: { input?: string | undefined }): Promise<RunResult>;
}

/**
 * Applies Istio's real CRD set (plus extra CRD YAML) server-side, since several of Istio's CRDs
 * are larger than client-side apply's last-applied annotation allows, and waits until every CRD
 * is established.
 */
export async function applyIstioCrds(cluster: KubectlRunner, extra: readonly string[] = []): Promise<void> {
  for (const yaml of [await istioCrdsYaml(), ...extra]) {
    const r = await cluster.kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: yaml });
    if (r.code !== 0) throw new Error(`applying CRDs failed (exit ${r.code}):\n${r.stderr || r.stdout}`);
  }
  const est = await cluster.kubectl(['wait', '--for=condition=established', '--timeout=60s', 'crd', '--all']);
  if (est.code !== 0) throw new Error(`CRDs not established: ${est.stderr}`);
}
