// A real apiserver for the benchmark's namespace cache: the e2e suite's throwaway etcd +
// kube-apiserver (test/e2e/helpers/cluster.ts), filled with N namespaces over parallel
// keep-alive POSTs, so `meshguard serve --kubeconfig` holds them in its watch-backed cache
// exactly as in a cluster.
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { cacheKey, cacheRoot } from '../../test/e2e/cluster/build.ts';
import { startCluster, type Cluster } from '../../test/e2e/helpers/cluster.ts';
import { namespaceLabels, namespaceName } from './namespaces.ts';
import { pin } from './procstat.ts';

/** True when the e2e binaries are already built (the benchmark never starts a long Go build). */
export async function clusterBinariesCached(): Promise<boolean> {
  try {
    const dir = join(cacheRoot(), 'bin', (await cacheKey()).slice(0, 12));
    return existsSync(join(dir, 'kube-apiserver')) && existsSync(join(dir, 'etcd'));
  } catch {
    return false; // no Go toolchain: cannot even compute the cache key
  }
}

export interface BenchCluster {
  readonly cluster: Cluster;
  readonly count: number;
  /** Create namespaces [count, n). Returns the seconds it took. */
  growTo(n: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startBenchCluster(opts: { pinCpus?: string }): Promise<BenchCluster> {
  const cluster = await startCluster({ extraApiserverArgs: ['--max-requests-inflight=800', '--max-mutating-requests-inflight=400'] });
  // The apiserver and etcd share the load generator's core: the server core stays for the server
  // under test (they are idle during measurements, apart from the watch).
  if (opts.pinCpus !== undefined) {
    pin(cluster.pids.apiserver, opts.pinCpus);
    pin(cluster.pids.etcd, opts.pinCpus);
  }
  const kc = JSON.parse(readFileSync(cluster.adminKubeconfig, 'utf8')) as { users: { user: Record<string, string> }[] };
  const user = kc.users[0]?.user ?? {};
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 48,
    ca: cluster.caPem,
    cert: Buffer.from(user['client-certificate-data'] ?? '', 'base64'),
    key: Buffer.from(user['client-key-data'] ?? '', 'base64'),
  });
  const post = (body: string): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const req = request(`${cluster.server}/api/v1/namespaces`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  let count = 0;
  const bc: BenchCluster = {
    cluster,
    get count() {
      return count;
    },
    async growTo(n) {
      const t0 = performance.now();
      let next = count;
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++;
          const body = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespaceName(i), labels: namespaceLabels(i) } });
          for (let attempt = 0; ; attempt++) {
            const r = await post(body);
            if (r.status === 201 || r.status === 409) break;
            if (attempt >= 5 || (r.status !== 429 && r.status < 500)) throw new Error(`creating ${namespaceName(i)}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
            await new Promise((res) => setTimeout(res, 100 * (attempt + 1)));
          }
        }
      };
      await Promise.all(Array.from({ length: 48 }, worker));
      count = Math.max(count, n);
      return (performance.now() - t0) / 1000;
    },
    async stop() {
      agent.destroy();
      await cluster.stop();
    },
  };
  return bc;
}
