// The namespace cache's initial sync (src/kube/list-watch.ts, streamingList) against real
// kube-apiservers: one that streams lists (WatchList, on by default since 1.34) and one started
// with --feature-gates=WatchList=false, which refuses sendInitialEvents like an older apiserver.
// Must hold on both: the cache syncs every namespace with its labels, and the watch that follows
// applies later changes and creations (deletions never complete here: no namespace controller).
// The first syncs by a streaming list and lists nothing; the second falls back to paged lists,
// says so once in the log, and never retries streaming.
import t from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterCache } from '../../src/kube/namespace-cache.ts';
import { startCluster, type Cluster } from './helpers/cluster.ts';

const COUNT = 120;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function eventually(what: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (what()) return true;
    await sleep(50);
  }
  return what();
}

function namespacesYaml(prefix: string): string {
  return Array.from({ length: COUNT }, (_, i) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${prefix}-${i}\n  labels:\n    istio-injection: ${i % 2 === 0 ? 'enabled' : 'disabled'}\n`).join('---\n');
}

async function cacheOf(cluster: Cluster, logs: string[]): Promise<ClusterCache> {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.adminKubeconfig);
  const line = (level: string) => (obj: object, msg: string): void => void logs.push(`${level} ${msg} ${JSON.stringify(obj)}`);
  return new ClusterCache(kc, { resyncMs: 300_000, staleAfterMs: 30_000, discoverRevisions: false, configuredRevisions: [], log: { info: line('info'), warn: line('warn') } });
}

for (const [name, extraApiserverArgs, streams] of [
  ['an apiserver that streams lists', [], true],
  ['an apiserver with the WatchList feature gate off', ['--feature-gates=WatchList=false'], false],
] as const) {
  t.test(`${name}: the cache syncs ${COUNT} namespaces ${streams ? 'by a streaming list' : 'by paged lists'} and keeps them current`, async (t) => {
    const cluster = await startCluster({ extraApiserverArgs: [...extraApiserverArgs] });
    t.teardown(() => cluster.stop());
    await cluster.applyYaml(namespacesYaml('sl'));
    const logs: string[] = [];
    const cache = await cacheOf(cluster, logs);
    t.teardown(() => cache.stop());
    cache.start();
    t.ok(await eventually(() => cache.synced(), 30_000), `synced (${cache.problem() ?? 'no problem'})`);
    const stats = cache.watchers[0]?.stats;
    t.ok(cache.size >= COUNT, `all ${COUNT} namespaces are in the cache (${cache.size} with the system ones)`);
    t.same(cache.namespace('sl-7')?.labels['istio-injection'], 'disabled', 'labels as created');
    if (streams) t.match(stats, { streams: 1, lists: 0 }, 'one streaming list, no paged list');
    else {
      t.match(stats, { streams: 0, lists: 1 }, 'no streaming list, one paged list');
      t.equal(logs.filter((l) => l.includes('streaming list not available')).length, 1, `the fallback is logged once: ${logs.find((l) => l.includes('streaming')) ?? 'none'}`);
    }

    // The watch continues from where the sync ended: a later change and a new namespace arrive.
    const label = await cluster.kubectl(['label', 'namespace', 'sl-7', 'istio-injection=enabled', '--overwrite']);
    t.equal(label.code, 0, label.stderr);
    t.ok(await eventually(() => cache.namespace('sl-7')?.labels['istio-injection'] === 'enabled', 15_000), 'a label change after the sync reaches the cache');
    await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sl-new\n');
    t.ok(await eventually(() => cache.namespace('sl-new') !== undefined, 15_000), 'a namespace created after the sync reaches the cache');
    t.equal(cache.watchers[0]?.stats.failures, 0, 'no list or watch failed');
    if (!streams) t.equal(cache.watchers[0]?.stats.streams, 0, 'streaming is not retried');
  });
}
