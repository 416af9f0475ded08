// meshguard as the real apiserver's webhook: the same `meshguard serve` a user runs, in its own
// process, with a certificate whose SANs cover 127.0.0.1, registered by clientConfig.url.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { webhookConfigurations, type FailurePolicy } from '../../../src/policies/webhook-config.ts';
import { DEFAULT_EXEMPT_NAMESPACES } from '../../../src/config/schema.ts';
import { RULES } from '../../../src/policies/registry.ts';
import { startServe, type ServeProcess } from '../../helpers/process.ts';
import { get } from '../../helpers/server.ts';
import type { Cluster } from './cluster.ts';

export interface Meshguard {
  readonly process: ServeProcess;
  readonly url: string;
  readonly caPem: string;
  readonly certDir: string;
  /** Apply the webhook configurations generated from the rule registry, once meshguard is ready
   * (its caches synced: until then it answers 503 MG_CACHE_STALE, and the failure policy applies). */
  register(failurePolicy: FailurePolicy): Promise<void>;
  /** The JSON audit records meshguard printed so far. */
  auditRecords(): Record<string, unknown>[];
  stop(): Promise<void>;
}

export interface MeshguardOptions {
  /** The kubeconfig meshguard uses (default: the cluster's admin kubeconfig). */
  readonly kubeconfig?: string;
  readonly mode?: 'enforce' | 'audit';
  /** Extra configuration (written to a file passed with --config). */
  readonly config?: Record<string, unknown>;
  readonly args?: readonly string[];
  /** Reuse this port (to come back where the webhooks point). */
  readonly port?: number;
  readonly name?: string;
  /** Run this build of the CLI instead of src/main.ts (the image's bundle), from its directory, with these environment variables. */
  readonly main?: string;
  readonly env?: Record<string, string>;
}

export async function startMeshguard(cluster: Cluster, o: MeshguardOptions = {}): Promise<Meshguard> {
  const name = o.name ?? 'meshguard';
  const certDir = join(cluster.dir, `${name}-certs`);
  mkdirSync(certDir, { recursive: true });
  const configFile = join(cluster.dir, `${name}-config.json`);
  writeFileSync(configFile, JSON.stringify(o.config ?? {}));
  const proc = await startServe([
    '--port', String(o.port ?? 0),
    '--cert-dir', certDir,
    '--kubeconfig', o.kubeconfig ?? cluster.adminKubeconfig,
    '--mode', o.mode ?? 'enforce',
    '--config', configFile,
    '--log-level', 'warn',
    ...(o.args ?? []),
  ], { ...(o.main !== undefined ? { main: o.main, cwd: dirname(o.main) } : {}), ...(o.env !== undefined ? { env: o.env } : {}) });
  const caPem = readFileSync(join(certDir, 'ca.crt'), 'utf8');
  return {
    process: proc,
    url: proc.url,
    caPem,
    certDir,
    async register(failurePolicy) {
      await eventually(async () => (await get({ url: proc.url, ca: caPem }, '/readyz').catch(() => ({ status: 0 }))).status === 200, 60_000, 100);
      const { mutating, validating } = webhookConfigurations({
        client: { url: proc.url },
        caBundle: Buffer.from(caPem).toString('base64'),
        failurePolicy,
        timeoutSeconds: 5,
        exemptNamespaces: DEFAULT_EXEMPT_NAMESPACES,
        meshguardNamespace: 'meshguard',
        rules: RULES,
      });
      await cluster.applyYaml(`${JSON.stringify(mutating)}\n---\n${JSON.stringify(validating)}\n`);
    },
    auditRecords() {
      return proc
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{') && l.includes('"audit":true'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    stop: async () => void (await proc.stop()),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Retry `fn` until it returns true or the deadline passes. */
export async function eventually(fn: () => Promise<boolean>, ms = 10_000, every = 200): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await sleep(every);
  }
  return fn();
}
