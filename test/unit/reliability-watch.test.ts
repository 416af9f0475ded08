// Watch failures at unit level (issue 8 item 7; checklist B15): the namespace cache (ClusterCache
// and its ListWatch, through the real @kubernetes/client-node) against a tiny HTTPS server of our
// own that answers 429 and 500, then valid lists and watches, then drops the watch and fails again.
// A fake of the apiserver is used ONLY here, because a real kube-apiserver cannot be made to answer
// 429 or 500 on demand; test/e2e/watch-failures.test.ts restarts a real apiserver instead.
// Must hold: the cache retries with growing backoff, readiness (/readyz) reports the cache problem
// while the initial list fails and once the watch has been down longer than the staleness bound,
// no admission decision is made from a stale copy (503 MG_CACHE_STALE: the failure policy applies),
// and after recovery the cache, readiness and admission decisions use the fresh labels. A
// blackholed connection (requests accepted, nothing ever answered, no reset) is detected the same
// way, within the bound, and its hung requests are given up.
import t from 'tap';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import { CoreV1Api, KubeConfig, Watch, type V1Namespace } from '@kubernetes/client-node';
import { ClusterCache } from '../../src/kube/namespace-cache.ts';
import { ListWatch } from '../../src/kube/list-watch.ts';
import { get, post, startServer, testCerts } from '../helpers/server.ts';
import { reviewBody } from '../helpers/review.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function eventually(what: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await what()) return true;
    await sleep(50);
  }
  return what();
}

interface Hit {
  readonly atMs: number;
  readonly kind: 'list' | 'watch' | 'stream';
  readonly status: number;
}

/** The fake apiserver: namespaces only, scripted by the test. */
class FakeApiserver {
  server!: Server;
  url = '';
  state: 'boot' | 'up' | 'down' = 'boot';
  /** Blackholed: every request is accepted and never answered, and open watches go silent. */
  blackhole = false;
  /** The blackhole begins as the server next ends a watch (timeoutSeconds): the re-watch that
   * follows is never answered. */
  blackholeAtWatchEnd = false;
  /** Requests held unanswered by the blackhole that the client has not given up yet. */
  readonly held = new Set<ServerResponse>();
  /** A watch with sendInitialEvents (a streaming list): refused with 422 like an apiserver without
   * WatchList (1.33, or the gate off), or ignored like one older than 1.27 (the namespace as a
   * plain ADDED event, and never the bookmark that ends the initial events). */
  streaming: 'refuse' | 'ignore' = 'refuse';
  /** Statuses the next lists answer before a good one (boot). */
  readonly bootLists = [429, 500];
  labels: Record<string, string> = { 'istio-injection': 'disabled' };
  rv = 10;
  readonly hits: Hit[] = [];
  readonly watches = new Set<ServerResponse>();
  readonly t0 = performance.now();

  namespace(): object {
    return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-w', resourceVersion: String(this.rv), labels: { ...this.labels, 'kubernetes.io/metadata.name': 'team-w' } } };
  }

  #fail(res: ServerResponse, status: number, kind: Hit['kind']): void {
    this.hits.push({ atMs: performance.now() - this.t0, kind, status });
    const reason = status === 429 ? 'TooManyRequests' : 'InternalError';
    res.writeHead(status, { 'content-type': 'application/json', ...(status === 429 ? { 'retry-after': '1' } : {}) });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code: status, message: `fake ${reason}` }));
  }

  async start(): Promise<void> {
    const certs = await testCerts();
    this.server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      const u = new URL(req.url ?? '/', 'https://x');
      if (u.pathname !== '/api/v1/namespaces') {
        res.writeHead(404).end();
        return;
      }
      if (this.blackhole) {
        this.held.add(res);
        res.on('close', () => this.held.delete(res));
        return;
      }
      if (u.searchParams.get('watch') === 'true' && u.searchParams.get('sendInitialEvents') === 'true' && this.streaming === 'refuse') {
        this.hits.push({ atMs: performance.now() - this.t0, kind: 'stream', status: 422 });
        res.writeHead(422, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Invalid', code: 422, message: 'sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled' }));
        return;
      }
      if (u.searchParams.get('watch') === 'true') {
        if (this.state !== 'up') return this.#fail(res, 500, 'watch');
        this.hits.push({ atMs: performance.now() - this.t0, kind: 'watch', status: 200 });
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        res.write(u.searchParams.get('sendInitialEvents') === 'true' ? `${JSON.stringify({ type: 'ADDED', object: this.namespace() })}\n` : '');
        this.watches.add(res);
        res.on('close', () => this.watches.delete(res));
        // Like the apiserver: the watch ends cleanly after timeoutSeconds (unless blackholed).
        const timeoutSeconds = Number(u.searchParams.get('timeoutSeconds') ?? 0);
        if (timeoutSeconds > 0) {
          setTimeout(() => {
            if (this.blackholeAtWatchEnd) {
              this.blackholeAtWatchEnd = false;
              this.blackhole = true;
              res.end();
            }
            if (!this.blackhole) res.end();
          }, timeoutSeconds * 1000).unref();
        }
        return;
      }
      if (this.state === 'down') return this.#fail(res, this.hits.length % 2 === 0 ? 429 : 500, 'list');
      const boot = this.state === 'boot' ? this.bootLists.shift() : undefined;
      if (boot !== undefined) return this.#fail(res, boot, 'list');
      this.state = 'up';
      this.hits.push({ atMs: performance.now() - this.t0, kind: 'list', status: 200 });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'NamespaceList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: [this.namespace()] }));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const a = this.server.address();
    this.url = `https://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`;
  }

  /** A watch event to every open watch. */
  modify(labels: Record<string, string>): void {
    this.labels = labels;
    this.rv++;
    if (this.blackhole) return; // the change is made, the event never arrives
    for (const w of this.watches) w.write(`${JSON.stringify({ type: 'MODIFIED', object: this.namespace() })}\n`);
  }

  /** The apiserver goes away: open watches are cut, every request fails. */
  goDown(): void {
    this.state = 'down';
    for (const w of this.watches) w.socket?.destroy();
  }

  close(): Promise<void> {
    for (const w of this.watches) w.socket?.destroy();
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** A client-node KubeConfig that trusts the fake and points at it. */
async function kubeConfigFor(fake: FakeApiserver): Promise<KubeConfig> {
  const certs = await testCerts();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: fake.url, caData: Buffer.from(certs.caCert).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'meshguard', token: 'not-checked' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'meshguard' }],
    currentContext: 'fake',
  });
  return kc;
}

t.test('429 and 500 from the API server: backoff, readiness reflects staleness, fresh labels after recovery', async (t) => {
  const fake = new FakeApiserver();
  await fake.start();
  t.teardown(() => fake.close());
  const kc = await kubeConfigFor(fake);
  const warnings: { retryInMs?: number; err?: string }[] = [];
  const cache = new ClusterCache(kc, {
    resyncMs: 600_000,
    staleAfterMs: 2000,
    discoverRevisions: false,
    configuredRevisions: [],
    log: { info: () => {}, warn: (o) => void warnings.push(o as { retryInMs?: number }) },
  });
  const server = await startServer({ 'cluster.staleAfterSeconds': 2 }, { cluster: cache });
  t.teardown(() => server.close());
  t.teardown(() => cache.stop());
  const deployment = (): string =>
    JSON.stringify(reviewBody({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'team-w' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } } }));
  const allowed = async (): Promise<boolean> => (await post(server, '/validate', deployment())).json().response.allowed as boolean;
  const answer = async (): Promise<{ status: number; code: unknown }> => {
    const r = await post(server, '/validate', deployment());
    return { status: r.status, code: r.json().code };
  };

  cache.start();
  const booting = await get(server, '/readyz');
  t.equal(booting.status, 503, 'not ready while the initial list is answered 429 and 500');
  t.match(booting.json().failing.caches, /namespaces: initial list not completed/, 'and /readyz says which cache and why');
  t.same(await answer(), { status: 503, code: 'MG_CACHE_STALE' }, 'no decision before the initial sync: 503 MG_CACHE_STALE (the apiserver applies the failure policy)');

  t.ok(await eventually(() => cache.synced(), 10_000), 'the cache syncs once the list succeeds');
  t.same(fake.hits[0] && `${fake.hits[0].kind} ${fake.hits[0].status}`, 'stream 422', 'a streaming list first, refused (an apiserver without WatchList)');
  t.equal(fake.hits.filter((h) => h.kind === 'stream').length, 1, 'and not asked again');
  const lists = fake.hits.filter((h) => h.kind === 'list');
  t.same(lists.slice(0, 3).map((h) => `${h.kind} ${h.status}`), ['list 429', 'list 500', 'list 200'], 'paged lists from then on: it retried through 429 and 500');
  const [h429, h500, h200] = lists;
  t.ok((h500?.atMs ?? 0) - (h429?.atMs ?? 0) >= 400, `waited before the first retry (${Math.round((h500?.atMs ?? 0) - (h429?.atMs ?? 0))} ms)`);
  t.ok((h200?.atMs ?? 0) - (h500?.atMs ?? 0) >= 1.5 * ((h500?.atMs ?? 0) - (h429?.atMs ?? 0)), 'and longer before the second (exponential backoff)');
  t.equal((await get(server, '/readyz')).status, 200, 'ready once synced');
  t.equal(await allowed(), false, 'a Deployment in the namespace labelled istio-injection=disabled is denied');

  t.ok(await eventually(() => fake.watches.size === 1, 5000), 'a watch is open from the list resourceVersion');
  fake.modify({ 'istio-injection': 'enabled' });
  t.ok(await eventually(() => cache.namespace('team-w')?.labels['istio-injection'] === 'enabled', 5000), 'a watch event updates the cache');
  t.equal(await allowed(), true, 'and the next decision uses it (allowed)');

  // The apiserver goes down: the watch is cut, lists and watches fail with 429 and 500.
  const downAt = performance.now();
  const hitsBefore = fake.hits.length;
  fake.goDown();
  t.equal((await get(server, '/readyz')).status, 200, 'still ready right after the watch drops (within the staleness bound)');
  t.ok(await eventually(async () => (await get(server, '/readyz')).status === 503, 5000), 'readiness turns false once the watch has been down longer than the bound');
  const stale = await get(server, '/readyz');
  t.match(stale.json().failing.caches, /namespaces: watch down for \d+ s \(bound 2 s\)/, `/readyz names the stale cache after ${((performance.now() - downAt) / 1000).toFixed(1)} s`);
  t.same(await answer(), { status: 503, code: 'MG_CACHE_STALE' }, 'while stale, no decision is made from the last known labels: 503 MG_CACHE_STALE');
  await sleep(3500);
  const failing = fake.hits.slice(hitsBefore).filter((h) => h.status !== 200);
  const gaps = failing.slice(1).map((h, i) => h.atMs - (failing[i]?.atMs ?? 0));
  t.ok(failing.length >= 2 && failing.length <= 8, `${failing.length} failed attempts in ${((performance.now() - downAt) / 1000).toFixed(1)} s (not a tight loop)`);
  t.ok(gaps.every((g, i) => i === 0 || g >= (gaps[i - 1] ?? 0) * 0.9), `growing gaps between attempts: ${gaps.map((g) => Math.round(g)).join(', ')} ms`);
  const retries = warnings.map((w) => w.retryInMs).filter((r): r is number => typeof r === 'number');
  t.ok(retries.length >= 3 && retries.at(-1)! > retries.at(-2)!, `the cache logs each failure with its next retry delay: ${retries.join(', ')} ms`);

  // Recovery, with a label changed while it was away.
  fake.labels = { 'istio-injection': 'disabled', 'changed-while-down': 'yes' };
  fake.rv = 50;
  fake.state = 'up';
  t.ok(await eventually(() => cache.synced(), 20_000), 'the cache reconnects (relist, then watch)');
  t.equal((await get(server, '/readyz')).status, 200, 'readiness returns');
  t.same(cache.namespace('team-w')?.labels, { 'istio-injection': 'disabled' }, 'the cache holds the labels rules read, as they are now (enabled before the outage; others are not kept)');
  t.equal(await allowed(), false, 'and the next decision uses them (denied again)');
  t.ok(await eventually(() => fake.watches.size === 1, 5000), 'a new watch is open');
  fake.modify({ 'istio-injection': 'enabled' });
  t.ok(await eventually(async () => await allowed(), 5000), 'watch events flow again after recovery');
});

/** A fake apiserver that answers, a namespace cache on it with a 2 s staleness bound, and a
 * meshguard reading that cache; all closed when `t` ends. */
async function staleBoundRig(t: { teardown(fn: () => unknown): void }): Promise<{ fake: FakeApiserver; cache: ClusterCache; server: Awaited<ReturnType<typeof startServer>>; warnings: string[]; STALE_MS: number }> {
  const fake = new FakeApiserver();
  fake.state = 'up';
  await fake.start();
  t.teardown(() => fake.close());
  const kc = await kubeConfigFor(fake);
  const warnings: string[] = [];
  const STALE_MS = 2000;
  const cache = new ClusterCache(kc, {
    resyncMs: 600_000,
    staleAfterMs: STALE_MS,
    discoverRevisions: false,
    configuredRevisions: [],
    log: { info: () => {}, warn: (o) => void warnings.push((o as { err?: string }).err ?? '') },
  });
  const server = await startServer({ 'cluster.staleAfterSeconds': 2 }, { cluster: cache });
  t.teardown(() => server.close());
  t.teardown(() => cache.stop());
  return { fake, cache, server, warnings, STALE_MS };
}

t.test('a blackholed connection (no reset, nothing answered): the stall is seen within the bound, no decision from stale labels, recovery', async (t) => {
  const { fake, cache, server, warnings, STALE_MS } = await staleBoundRig(t);
  const deployment = JSON.stringify(reviewBody({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'team-w' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } } }));
  const validate = async (): Promise<{ status: number; allowed: unknown; code: unknown }> => {
    const r = await post(server, '/validate', deployment);
    const j = r.json();
    return { status: r.status, allowed: j.response?.allowed, code: j.code };
  };
  const [nsWatch] = cache.watchers;

  fake.labels = { 'istio-injection': 'enabled' };
  cache.start();
  t.ok(await eventually(() => cache.synced(), 10_000), 'synced');
  t.match(await validate(), { status: 200, allowed: true }, 'a Deployment in team-w (istio-injection=enabled) is allowed');
  // A quiet, healthy watch is not a stall: the server ends each watch after timeoutSeconds
  // (half the bound) and the cache watches again.
  const watchesBefore = fake.hits.filter((h) => h.kind === 'watch').length;
  await sleep(3 * STALE_MS);
  t.equal((await get(server, '/readyz')).status, 200, 'three bounds of a quiet watch later, still ready');
  t.ok(fake.hits.filter((h) => h.kind === 'watch').length > watchesBefore, 'the watch was ended by the server and opened again meanwhile');
  t.equal(nsWatch?.stats.stalls, 0, 'no stall counted');

  // The link goes dark: nothing more arrives, nothing is reset. Meanwhile an admin takes the
  // namespace out of the mesh; the event is never delivered.
  fake.blackhole = true;
  fake.modify({ 'istio-injection': 'disabled' });
  t.ok(await eventually(async () => (await get(server, '/readyz')).status === 503, 4 * STALE_MS + 2000), 'readiness turns 503 (within four bounds)');
  const stale = await get(server, '/readyz');
  t.match(stale.json().failing.caches, /namespaces: watch stalled: nothing received for \d+ s \(bound 2 s\)/, `/readyz names the stalled cache: ${stale.json().failing.caches}`);
  t.same(await validate(), { status: 503, allowed: undefined, code: 'MG_CACHE_STALE' }, 'the Deployment is not admitted on the stale labels: 503 MG_CACHE_STALE, so the failure policy applies');
  const nsReview = JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-n', labels: { 'istio-injection': 'enabled' } } }));
  const nsAnswer = await post(server, '/validate', nsReview);
  t.match({ status: nsAnswer.status, allowed: nsAnswer.json().response?.allowed }, { status: 200, allowed: true }, 'a Namespace is still decided: its decision reads no namespace labels from the cache (only Istio revisions, not watched here)');
  t.ok(await eventually(() => (nsWatch?.stats.stalls ?? 0) >= 1, 4 * STALE_MS + 2000), 'the silent watch was abandoned as stalled');
  t.ok(await eventually(() => warnings.some((w) => /not answered within|nothing received|no response within/.test(w)), 10_000), `the relists and watches that followed timed out too: ${warnings.slice(-2).join(' | ')}`);
  // Hung requests are given up by the client, not left open: at most the ones in flight now.
  await sleep(2 * STALE_MS);
  t.ok(fake.held.size <= 2, `requests held by the blackhole and still open on the client side: ${fake.held.size}`);

  // The link comes back: relist, watch, fresh labels decide.
  fake.blackhole = false;
  t.ok(await eventually(() => cache.synced(), 30_000), 'the cache recovers (relist, then watch)');
  t.same(cache.namespace('team-w')?.labels, { 'istio-injection': 'disabled' }, 'with the labels changed during the blackhole');
  t.match(await validate(), { status: 200, allowed: false }, 'and the Deployment is denied on them');
});

t.test('a blackhole that begins as the server ends a watch (the re-watch is never answered) is a stall too', async (t) => {
  const { fake, cache, server, warnings, STALE_MS } = await staleBoundRig(t);
  const [nsWatch] = cache.watchers;

  cache.start();
  t.ok(await eventually(() => cache.synced(), 10_000), 'synced');
  t.ok(await eventually(() => fake.watches.size === 1, 5000), 'a watch is open');
  fake.blackholeAtWatchEnd = true;
  t.ok(await eventually(() => fake.blackhole, 4 * STALE_MS), 'the server ended the watch and the link went dark');
  t.ok(await eventually(async () => (await get(server, '/readyz')).status === 503, 4 * STALE_MS + 2000), 'readiness turns 503 (within four bounds)');
  const stale = await get(server, '/readyz');
  t.match(stale.json().failing.caches, /namespaces: watch stalled: nothing received for \d+ s \(bound 2 s\)/, `/readyz calls it a stall, not an apiserver error: ${stale.json().failing.caches}`);
  t.ok(await eventually(() => (nsWatch?.stats.stalls ?? 0) >= 1, 4 * STALE_MS + 2000), 'the unanswered re-watch was abandoned as stalled');
  t.ok(warnings.some((w) => /no response within/.test(w)), `the cache logged the unanswered request: ${warnings.slice(-2).join(' | ')}`);

  fake.blackhole = false;
  t.ok(await eventually(() => cache.synced(), 30_000), 'the cache recovers (relist, then watch)');
  t.equal((await get(server, '/readyz')).status, 200, 'readiness returns');
});

t.test('an apiserver that ignores sendInitialEvents (older than 1.27): no end of the initial events, paged lists after the timeout', async (t) => {
  const fake = new FakeApiserver();
  fake.streaming = 'ignore';
  fake.state = 'up';
  await fake.start();
  t.teardown(() => fake.close());
  const kc = await kubeConfigFor(fake);
  const core = kc.makeApiClient(CoreV1Api);
  const infos: string[] = [];
  const names = new Set<string>();
  const lw = new ListWatch<V1Namespace>({
    name: 'namespaces',
    list: (p) => core.listNamespace({ limit: p.limit }),
    watch: new Watch(kc),
    watchPath: '/api/v1/namespaces',
    streamingList: true,
    initialEventsTimeoutMs: 1000,
    replace: (items) => {
      names.clear();
      for (const ns of items) names.add(ns.metadata?.name ?? '');
    },
    upsert: (ns) => void names.add(ns.metadata?.name ?? ''),
    remove: (ns) => void names.delete(ns.metadata?.name ?? ''),
    resyncMs: 600_000,
    staleAfterMs: 30_000,
    log: { info: (o, m) => void infos.push(`${m} ${JSON.stringify(o)}`), warn: () => {} },
  });
  t.teardown(() => lw.stop());
  const started = performance.now();
  lw.start();
  t.ok(await eventually(() => lw.synced(), 10_000), 'synced');
  const seconds = (performance.now() - started) / 1000;
  t.ok(seconds >= 0.9 && seconds < 5, `after the 1 s wait for the end of the initial events (${seconds.toFixed(1)} s)`);
  t.match(lw.stats, { streams: 0, lists: 1, failures: 0 }, 'by one paged list, without counting a failure');
  t.ok(names.has('team-w'), 'with the namespace');
  t.match(infos, [/streaming list not available; using paged lists .*no end of the initial events within 1 s/], 'the fallback is logged with its reason');
  // The regular watch is opened right after the sync; its request may still be on its way.
  await eventually(() => fake.hits.length >= 3, 5000);
  t.same(fake.hits.map((h) => h.kind), ['watch', 'list', 'watch'], 'the streaming attempt, the list, then the regular watch');
});
