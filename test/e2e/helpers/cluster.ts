// A real, throwaway control plane for end-to-end tests: etcd + kube-apiserver
// (built by test/e2e/cluster/build.ts) on loopback ports, with generated
// certificates, an admin identity (system:masters), a "tenant" identity with
// ordinary edit-like RBAC, and a JSON audit log. No controller-manager, no
// scheduler, no nodes: objects are stored and admitted, nothing runs.
//
//   const cluster = await startCluster();
//   t.teardown(() => cluster.stop());
//   await cluster.applyYaml(yaml, { as: 'tenant' });

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, type Binaries } from '../cluster/build.ts';

export type { Binaries };
export type Identity = 'admin' | 'tenant';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  server: string;
  /** PEM of the CA that signed the apiserver's serving certificate. */
  caPem: string;
  /** Path of a kubeconfig for user "admin" in group system:masters. */
  adminKubeconfig: string;
  /** Path of a kubeconfig for user "tenant" in group "tenants" (edit-like RBAC). */
  tenantKubeconfig: string;
  /** JSON-lines audit log of the apiserver. */
  auditLogPath: string;
  /** Temp dir holding certs, kubeconfigs, etcd data and logs; removed by stop(). */
  dir: string;
  /** Paths of the built binaries (kube-apiserver, etcd, kubectl, helm). */
  binaries: Binaries;
  /** Process ids of etcd and kube-apiserver. */
  pids: { etcd: number; apiserver: number };
  /** Runs kubectl with the kubeconfig of the identity (admin by default). Never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { as?: Identity | undefined; input?: string | undefined }): Promise<RunResult>;
  /** Runs helm with the kubeconfig of the identity (admin by default). Never throws on a non-zero exit. */
  helm(args: string[], opts?: { as?: Identity | undefined; input?: string | undefined }): Promise<RunResult>;
  /** `kubectl apply -f -`; throws with kubectl's stderr on failure. */
  applyYaml(yaml: string, opts?: { as?: Identity | undefined }): Promise<void>;
  /** Tail of the apiserver's log (stderr), for diagnostics. */
  apiserverLogTail(chars?: number): Promise<string>;
  /** Kills both processes and removes `dir`; idempotent. */
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  /** audit.k8s.io/v1 Policy; default logs everything at Metadata level. */
  auditPolicyYaml?: string;
  /** Extra kube-apiserver flags (e.g. `--feature-gates=...`), appended last. */
  extraApiserverArgs?: string[];
  /** Readiness deadline for the apiserver in ms (default 60000). */
  readyTimeoutMs?: number;
}

export const DEFAULT_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
`;

export const TENANT_GROUP = 'tenants';
export const TENANT_USER = 'tenant';

const TENANT_RBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: meshguard-e2e-tenant
rules:
  - apiGroups: [""]
    resources: [namespaces, pods, pods/ephemeralcontainers, replicationcontrollers, configmaps, services, serviceaccounts, secrets]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  - apiGroups: [""]
    resources: [pods/log, events]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [deployments, deployments/scale, replicasets, replicasets/scale, statefulsets, statefulsets/scale, daemonsets]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  - apiGroups: [batch]
    resources: [jobs, cronjobs]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  - apiGroups: [networking.istio.io, security.istio.io, extensions.istio.io, install.istio.io]
    resources: ["*"]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: meshguard-e2e-tenant
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: meshguard-e2e-tenant
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: ${TENANT_GROUP}
`;

const DEFAULT_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';

// ---------------------------------------------------------------- cleanup ---

interface Live {
  procs: ChildProcess[];
  dir: string;
}
const live = new Set<Live>();
let hooksInstalled = false;

function killNow(l: Live): void {
  for (const p of l.procs) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  try {
    rmSync(l.dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const l of live) killNow(l);
    live.clear();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const l of live) killNow(l);
      live.clear();
      // Re-raise so the exit status says what happened.
      process.kill(process.pid, sig);
    });
  }
}

// ---------------------------------------------------------------- helpers ---

function log(msg: string): void {
  process.stderr.write(`[meshguard e2e cluster] ${msg}\n`);
}

function run(cmd: string, args: string[], opts: { input?: string | undefined; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    child.stdin?.on('error', () => {
      // the command may exit without reading stdin
    });
    child.stdin?.end(opts.input ?? '');
  });
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await run('openssl', args, { cwd });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr}`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Pki {
  caPem: string;
  caCrt: string;
  clientCaCrt: string;
  servingCrt: string;
  servingKey: string;
  saKey: string;
  saPub: string;
  admin: { crt: string; key: string };
  tenant: { crt: string; key: string };
}

/** CA + serving cert (SAN 127.0.0.1), client CA + client certs, service-account key pair, via the openssl CLI. */
async function makePki(dir: string): Promise<Pki> {
  const d = join(dir, 'pki');
  await mkdir(d, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = (name: string, cn: string) =>
    openssl(['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], d);
  await Promise.all([ca('ca', 'meshguard-e2e-serving-ca'), ca('client-ca', 'meshguard-e2e-client-ca')]);
  const leaf = (name: string, signer: string, subj: string, ext: string[]) =>
    openssl(['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3', '-subj', subj,
      '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`,
      '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
      ...ext.flatMap((e) => ['-addext', e])], d);
  await Promise.all([
    leaf('serving', 'ca', '/CN=kube-apiserver', [
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
    ]),
    leaf('admin', 'client-ca', '/O=system:masters/CN=admin', ['extendedKeyUsage=clientAuth']),
    leaf('tenant', 'client-ca', `/O=${TENANT_GROUP}/CN=${TENANT_USER}`, ['extendedKeyUsage=clientAuth']),
    (async () => {
      await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'sa.key'], d);
      await openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], d);
    })(),
  ]);
  const p = (f: string) => join(d, f);
  return {
    caPem: await readFile(p('ca.crt'), 'utf8'),
    caCrt: p('ca.crt'),
    clientCaCrt: p('client-ca.crt'),
    servingCrt: p('serving.crt'),
    servingKey: p('serving.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
    admin: { crt: p('admin.crt'), key: p('admin.key') },
    tenant: { crt: p('tenant.crt'), key: p('tenant.key') },
  };
}

async function writeKubeconfig(path: string, server: string, caPem: string, user: string, crt: string, key: string): Promise<void> {
  const b64 = async (f: string) => (await readFile(f)).toString('base64');
  const cfg = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name: user, user: { 'client-certificate-data': await b64(crt), 'client-key-data': await b64(key) } }],
    contexts: [{ name: user, context: { cluster: 'e2e', user, namespace: 'default' } }],
    'current-context': user,
  };
  // JSON is valid YAML, and every kubeconfig reader accepts it.
  await writeFile(path, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
}

/** The environment with loopback exempted from any HTTP(S) proxy (webhook calls, client calls). */
function loopbackEnv(): NodeJS.ProcessEnv {
  const noProxy = [process.env.NO_PROXY ?? process.env.no_proxy, '127.0.0.1', 'localhost'].filter(Boolean).join(',');
  return { ...process.env, NO_PROXY: noProxy, no_proxy: noProxy };
}

/** Spawns a server process with output to a log file; SIGKILLed by the kernel if this process dies (setpriv). */
function startProcess(bin: string, args: string[], logPath: string, logFd: number): ChildProcess {
  const usePdeath = existsSync('/usr/bin/setpriv');
  const cmd = usePdeath ? '/usr/bin/setpriv' : bin;
  const argv = usePdeath ? ['--pdeathsig', 'KILL', '--', bin, ...args] : args;
  const child = spawn(cmd, argv, { stdio: ['ignore', logFd, logFd], env: loopbackEnv() });
  child.on('error', (e) => log(`${bin} failed to start: ${e.message} (log ${logPath})`));
  return child;
}

async function tail(path: string, chars = 4000): Promise<string> {
  try {
    const s = await readFile(path, 'utf8');
    return s.length > chars ? '…' + s.slice(-chars) : s;
  } catch {
    return '(no log)';
  }
}

function exited(p: ChildProcess): boolean {
  return p.exitCode !== null || p.signalCode !== null;
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (exited(p)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(exited(p)), ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function terminate(p: ChildProcess | undefined): Promise<void> {
  if (!p || exited(p)) return;
  p.kill('SIGTERM');
  if (await waitExit(p, 5000)) return;
  p.kill('SIGKILL');
  await waitExit(p, 5000);
}

interface HttpsId {
  ca: string;
  cert: string;
  key: string;
}

function httpsGet(url: string, id: HttpsId, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ca: id.ca, cert: id.cert, key: id.key, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function httpGetPlain(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

const DIR_PREFIX = 'meshguard-cluster-';

/** Temp dirs of clusters whose test process was killed outright (SIGKILL leaves no chance to clean up). */
async function removeAbandonedDirs(): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(tmpdir());
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.startsWith(DIR_PREFIX)) continue;
    const d = join(tmpdir(), e);
    try {
      const pid = Number(await readFile(join(d, 'owner.pid'), 'utf8'));
      if (!(pid > 0) || pid === process.pid) continue;
      try {
        process.kill(pid, 0);
        continue; // owner alive
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EPERM') continue;
      }
      await rm(d, { recursive: true, force: true });
    } catch {
      // no owner file (being created, or not ours): leave it
    }
  }
}

class StartError extends Error {
  retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

const PORT_IN_USE = /address already in use|bind: address/i;

// ------------------------------------------------------------------ start ---

/** Starts etcd + kube-apiserver in a fresh temp dir and waits until they serve. */
export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const binaries = await ensureBinaries();
  installHooks();
  let lastErr: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce(binaries, opts);
    } catch (e) {
      lastErr = e;
      if (!(e instanceof StartError && e.retryable)) throw e;
      log(`start attempt ${attempt} failed, retrying with new ports: ${e.message.split('\n')[0]}`);
    }
  }
  throw lastErr;
}

async function startOnce(bins: Binaries, opts: StartClusterOptions): Promise<Cluster> {
  const t0 = Date.now();
  await removeAbandonedDirs();
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const entry: Live = { procs: [], dir };
  live.add(entry);
  let etcd: ChildProcess | undefined;
  let apiserver: ChildProcess | undefined;
  const fail = async (e: unknown): Promise<never> => {
    await terminate(apiserver);
    await terminate(etcd);
    live.delete(entry);
    if (process.env.MESHGUARD_E2E_KEEP_FAILED) log(`kept ${dir} for inspection`);
    else await rm(dir, { recursive: true, force: true });
    throw e;
  };

  try {
    const pki = await makePki(dir);
    const [clientPort, peerPort, securePort] = await distinctFreePorts(3);
    const server = `https://127.0.0.1:${securePort}`;

    // --- etcd
    const etcdLog = join(dir, 'etcd.log');
    const etcdFh = await open(etcdLog, 'a');
    const clientUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    etcd = startProcess(bins.etcd, [
      '--name=e2e',
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=e2e=${peerUrl}`,
      '--initial-cluster-state=new',
      '--unsafe-no-fsync',
      '--log-level=warn',
    ], etcdLog, etcdFh.fd);
    await etcdFh.close();
    entry.procs.push(etcd);

    const etcdDeadline = Date.now() + 30_000;
    for (;;) {
      if (exited(etcd)) {
        const t = await tail(etcdLog);
        throw new StartError(`etcd exited (${etcd.exitCode ?? etcd.signalCode}) before becoming healthy:\n${t}`, PORT_IN_USE.test(t));
      }
      try {
        const r = await httpGetPlain(`${clientUrl}/health`);
        if (r.status === 200 && /"health":\s*"true"/.test(r.body)) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > etcdDeadline) throw new StartError(`etcd not healthy within 30s:\n${await tail(etcdLog)}`, false);
      await sleep(100);
    }

    // --- kube-apiserver
    const auditPolicy = join(dir, 'audit-policy.yaml');
    await writeFile(auditPolicy, opts.auditPolicyYaml ?? DEFAULT_AUDIT_POLICY);
    const auditLogPath = join(dir, 'audit.log');
    const apiLog = join(dir, 'kube-apiserver.log');
    const apiFh = await open(apiLog, 'a');
    const certDir = join(dir, 'apiserver-certs');
    await mkdir(certDir);
    apiserver = startProcess(bins.kubeApiserver, [
      `--etcd-servers=${clientUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${securePort}`,
      `--cert-dir=${certDir}`,
      `--tls-cert-file=${pki.servingCrt}`,
      `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.clientCaCrt}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      '--authorization-mode=RBAC',
      // No controller-manager creates the "default" ServiceAccount in new
      // namespaces, so the ServiceAccount plugin would reject every Pod.
      '--disable-admission-plugins=ServiceAccount',
      '--allow-privileged=true',
      // Endpoints may not point at loopback; nothing here needs them.
      '--endpoint-reconciler-type=none',
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLogPath}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      '--profiling=false',
      // A webhook or APIService that names a Service goes through its Endpoints (there are none
      // here) instead of the machine's DNS resolver, which answers for names outside the test.
      '--enable-aggregator-routing=true',
      ...(opts.extraApiserverArgs ?? []),
    ], apiLog, apiFh.fd);
    await apiFh.close();
    entry.procs.push(apiserver);

    const admin: HttpsId = { ca: pki.caPem, cert: await readFile(pki.admin.crt, 'utf8'), key: await readFile(pki.admin.key, 'utf8') };
    const readyTimeout = opts.readyTimeoutMs ?? 60_000;
    const deadline = Date.now() + readyTimeout;
    let last = '';
    for (;;) {
      if (exited(apiserver)) {
        const t = await tail(apiLog);
        throw new StartError(`kube-apiserver exited (${apiserver.exitCode ?? apiserver.signalCode}) before becoming ready:\n${t}`, PORT_IN_USE.test(t));
      }
      try {
        const r = await httpsGet(`${server}/readyz`, admin);
        if (r.status === 200) break;
        last = `readyz ${r.status}: ${r.body.split('\n').filter((l) => l.includes('[-]')).join('; ')}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new StartError(`kube-apiserver not ready within ${readyTimeout / 1000}s (last: ${last}); log tail:\n${await tail(apiLog)}`, false);
      }
      await sleep(200);
    }
    for (const ns of DEFAULT_NAMESPACES) {
      for (;;) {
        const r = await httpsGet(`${server}/api/v1/namespaces/${ns}`, admin).catch(() => ({ status: 0, body: '' }));
        if (r.status === 200) break;
        if (Date.now() > deadline) throw new StartError(`namespace ${ns} did not appear within ${readyTimeout / 1000}s`, false);
        await sleep(100);
      }
    }

    // --- clients
    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    const tenantKubeconfig = join(dir, 'tenant.kubeconfig');
    await writeKubeconfig(adminKubeconfig, server, pki.caPem, 'admin', pki.admin.crt, pki.admin.key);
    await writeKubeconfig(tenantKubeconfig, server, pki.caPem, TENANT_USER, pki.tenant.crt, pki.tenant.key);
    const kubeCache = join(dir, 'kube-cache');
    const helmHome = join(dir, 'helm');
    const clientEnv: NodeJS.ProcessEnv = {
      ...loopbackEnv(),
      KUBECONFIG: '',
      KUBERC: 'off',
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    };
    const kcFor = (as: Identity | undefined) => (as === 'tenant' ? tenantKubeconfig : adminKubeconfig);

    const procs = { etcd: etcd, apiserver: apiserver };
    let stopping: Promise<void> | null = null;
    const cluster: Cluster = {
      server,
      caPem: pki.caPem,
      adminKubeconfig,
      tenantKubeconfig,
      auditLogPath,
      dir,
      binaries: bins,
      pids: { etcd: etcd.pid ?? -1, apiserver: apiserver.pid ?? -1 },
      kubectl(args, o = {}) {
        return run(bins.kubectl, [`--kubeconfig=${kcFor(o.as)}`, `--cache-dir=${kubeCache}`, ...args], { input: o.input, env: clientEnv });
      },
      helm(args, o = {}) {
        return run(bins.helm, [`--kubeconfig=${kcFor(o.as)}`, ...args], { input: o.input, env: clientEnv });
      },
      async applyYaml(yaml, o = {}) {
        const r = await cluster.kubectl(['apply', '-f', '-'], { as: o.as, input: yaml });
        if (r.code !== 0) throw new Error(`kubectl apply (as ${o.as ?? 'admin'}) failed (exit ${r.code}):\n${r.stderr || r.stdout}`);
      },
      apiserverLogTail(chars) {
        return tail(apiLog, chars);
      },
      stop() {
        if (!stopping) {
          stopping = (async () => {
            await terminate(procs.apiserver);
            await terminate(procs.etcd);
            live.delete(entry);
            await rm(dir, { recursive: true, force: true });
          })();
        }
        return stopping;
      },
    };

    await cluster.applyYaml(TENANT_RBAC);
    log(`cluster ready at ${server} in ${((Date.now() - t0) / 1000).toFixed(1)}s (dir ${dir})`);
    return cluster;
  } catch (e) {
    return fail(e);
  }
}
