// The reconciler's shell against an in-memory API server: it only works while leading, waits for
// the CRDs, restores, recreates, deletes, leaves unmanaged objects alone, and writes nothing in
// dry-run.
import t from 'tap';
import { ListWatch } from '../../src/kube/list-watch.ts';
import { managedLister, type ReconcilerClient, type WatchHandlers, type Watcher } from '../../src/jobs/reconciler/adapter.ts';
import type { NamespaceSnapshot } from '../../src/jobs/reconciler/desired.ts';
import { Reconciler } from '../../src/jobs/reconciler/loop.ts';
import { isManaged, MANAGED_KINDS, MANAGED_LABELS, MANAGED_SELECTOR, objectKey, observedFrom, type KindInfo, type ManagedKind, type ObservedObject } from '../../src/jobs/reconciler/resources.ts';
import { config } from '../helpers/review.ts';

class ApiError extends Error {
  code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** Namespaces and Istio objects in memory; watches see every write, like the real thing. */
class FakeApi implements ReconcilerClient {
  missing: ManagedKind[] = [];
  namespaces = new Map<string, NamespaceSnapshot>();
  objects = new Map<string, Record<string, unknown>>();
  writes: string[] = [];
  #rv = 0;
  #nsHandlers: WatchHandlers<NamespaceSnapshot>[] = [];
  #objHandlers = new Map<ManagedKind, WatchHandlers<ObservedObject>>();

  async missingKinds(): Promise<ManagedKind[]> {
    return [...this.missing];
  }

  #watcher(start: () => void): Watcher {
    let synced = false;
    return {
      start: () => {
        start();
        synced = true;
      },
      stop: async () => {},
      synced: () => synced,
      problem: () => undefined,
    };
  }

  watchNamespaces(h: WatchHandlers<NamespaceSnapshot>): Watcher {
    return this.#watcher(() => {
      this.#nsHandlers.push(h);
      h.replace([...this.namespaces.values()]);
    });
  }

  watchManaged(kind: KindInfo, h: WatchHandlers<ObservedObject>): Watcher {
    return this.#watcher(() => {
      this.#objHandlers.set(kind.kind, h);
      h.replace(this.#managedOf(kind.kind));
    });
  }

  #managedOf(kind: ManagedKind): ObservedObject[] {
    return [...this.objects.values()].map((o) => observedFrom(kind, o)).filter((o): o is ObservedObject => o !== undefined && o.kind === kind && isManaged(o.labels) && this.#kindOf(o) === kind);
  }

  #kindOf(o: ObservedObject): string {
    return (o.raw['kind'] as string) ?? '';
  }

  #notify(kind: ManagedKind, raw: Record<string, unknown> | undefined, removed?: Record<string, unknown>): void {
    const h = this.#objHandlers.get(kind);
    if (h === undefined) return;
    const o = raw === undefined ? undefined : observedFrom(kind, raw);
    const gone = removed === undefined ? undefined : observedFrom(kind, removed);
    if (o !== undefined && isManaged(o.labels)) h.upsert(o);
    else if (o !== undefined && gone === undefined) h.remove(o); // left the label selector
    if (gone !== undefined && isManaged(gone.labels)) h.remove(gone);
  }

  /** Test helpers: change the world as a user would. */
  setNamespace(n: NamespaceSnapshot): void {
    this.namespaces.set(n.name, n);
    for (const h of this.#nsHandlers) h.upsert(n);
  }

  put(kind: ManagedKind, namespace: string, name: string, spec: unknown, labels: Record<string, string>): void {
    const raw = { apiVersion: 'x/v1', kind, metadata: { name, namespace, labels, resourceVersion: String(++this.#rv), uid: `u${this.#rv}` }, spec };
    this.objects.set(`${kind}/${namespace}/${name}`, raw);
    this.#notify(kind, raw);
  }

  remove(kind: ManagedKind, namespace: string, name: string): void {
    const key = `${kind}/${namespace}/${name}`;
    const old = this.objects.get(key);
    this.objects.delete(key);
    this.#notify(kind, undefined, old);
  }

  spec(key: string): unknown {
    return this.objects.get(key)?.['spec'];
  }

  async create(kind: KindInfo, namespace: string, body: Record<string, unknown>): Promise<ObservedObject | undefined> {
    const name = (body['metadata'] as { name: string }).name;
    const key = `${kind.kind}/${namespace}/${name}`;
    if (this.objects.has(key)) throw new ApiError(409, 'already exists');
    this.writes.push(`create ${key}`);
    const meta = body['metadata'] as Record<string, unknown>;
    const raw = { ...body, metadata: { ...meta, resourceVersion: String(++this.#rv), uid: `u${this.#rv}` } };
    this.objects.set(key, raw);
    this.#notify(kind.kind, raw);
    return observedFrom(kind.kind, raw);
  }

  async replace(kind: KindInfo, namespace: string, name: string, body: Record<string, unknown>): Promise<ObservedObject | undefined> {
    const key = `${kind.kind}/${namespace}/${name}`;
    const cur = this.objects.get(key) as { metadata: { resourceVersion: string } } | undefined;
    if (cur === undefined) throw new ApiError(404, 'not found');
    if (cur.metadata.resourceVersion !== (body['metadata'] as { resourceVersion: string }).resourceVersion) throw new ApiError(409, 'conflict');
    this.writes.push(`replace ${key}`);
    const raw = { ...body, metadata: { ...(body['metadata'] as object), resourceVersion: String(++this.#rv) } };
    this.objects.set(key, raw);
    this.#notify(kind.kind, raw);
    return observedFrom(kind.kind, raw);
  }

  async delete(kind: KindInfo, o: ObservedObject): Promise<void> {
    const key = objectKey(o);
    if (!this.objects.has(key)) throw new ApiError(404, 'not found');
    this.writes.push(`delete ${key}`);
    this.remove(kind.kind, o.namespace, o.name);
  }

  async get(kind: KindInfo, namespace: string, name: string): Promise<ObservedObject | undefined> {
    const raw = this.objects.get(`${kind.kind}/${namespace}/${name}`);
    return raw === undefined ? undefined : observedFrom(kind.kind, raw);
  }
}

function logger(): { lines: string[]; log: { info(o: object, m: string): void; warn(o: object, m: string): void } } {
  const lines: string[] = [];
  return { lines, log: { info: (_o, m) => void lines.push(`info ${m}`), warn: (_o, m) => void lines.push(`warn ${m}`) } };
}

const meshed = (name: string): NamespaceSnapshot => ({ name, labels: { 'istio-injection': 'enabled' }, terminating: false });
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

async function leadingReconciler(api: FakeApi, overrides: Record<string, unknown> = {}): Promise<{ r: Reconciler; lines: string[] }> {
  const { lines, log } = logger();
  const r = new Reconciler({ config: config(overrides), client: api, log, debounceMs: 1 });
  r.start();
  await settle();
  await r.setLeading(true);
  await settle();
  await r.reconcile();
  return { r, lines };
}

t.test('a follower changes nothing; the leader creates the four objects in a meshed namespace', async (t) => {
  const api = new FakeApi();
  api.setNamespace(meshed('team-a'));
  const { lines, log } = logger();
  const r = new Reconciler({ config: config(), client: api, log, debounceMs: 1 });
  r.start();
  await settle();
  t.equal((await r.reconcile()).skipped, 'not the leader');
  t.same(api.writes, [], 'nothing written while following');
  await r.setLeading(true);
  await settle();
  await r.reconcile();
  t.same(api.writes.sort(), [
    'create AuthorizationPolicy/team-a/allow-same-namespace',
    'create AuthorizationPolicy/team-a/default-deny',
    'create PeerAuthentication/team-a/default',
    'create Sidecar/team-a/default',
  ]);
  t.ok(lines.includes('info reconciler: created Sidecar team-a/default'), 'each create is logged');
  api.writes = [];
  await r.reconcile();
  t.same(api.writes, [], 'a second pass changes nothing');
  t.equal(r.problem(), undefined);
  await r.stop();
});

t.test('a hand edit is restored and logged with what changed; a hand delete is undone', async (t) => {
  const api = new FakeApi();
  api.setNamespace(meshed('team-a'));
  const { r, lines } = await leadingReconciler(api);
  api.writes = [];
  const labels = { 'app.kubernetes.io/managed-by': 'meshguard', 'meshguard.dev/managed': 'true' };
  api.put('PeerAuthentication', 'team-a', 'default', { mtls: { mode: 'PERMISSIVE' } }, labels);
  await settle();
  await r.reconcile();
  t.same(api.spec('PeerAuthentication/team-a/default'), { mtls: { mode: 'STRICT' } }, 'restored');
  t.ok(lines.some((l) => l === 'warn reconciler: restored PeerAuthentication team-a/default, which was changed by hand: spec.mtls.mode: "PERMISSIVE" -> "STRICT"'), 'the restore names the change');
  api.remove('Sidecar', 'team-a', 'default');
  await settle();
  await r.reconcile();
  t.ok(api.objects.has('Sidecar/team-a/default'), 'recreated');
  await r.stop();
});

t.test('leaving the mesh removes the managed objects; unmanaged objects are never touched', async (t) => {
  const api = new FakeApi();
  api.setNamespace(meshed('team-a'));
  api.put('Sidecar', 'team-a', 'default', { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, { team: 'a' });
  api.put('AuthorizationPolicy', 'team-a', 'mine', { action: 'ALLOW' }, { team: 'a' });
  const { r, lines } = await leadingReconciler(api);
  t.same(api.spec('Sidecar/team-a/default'), { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, 'the unmanaged Sidecar with the same name is untouched');
  t.equal(lines.filter((l) => l.includes('conflict: leave Sidecar team-a/default alone')).length, 1, 'the conflict is reported');
  await r.reconcile();
  t.equal(lines.filter((l) => l.includes('conflict')).length, 1, 'and reported once');
  api.writes = [];
  api.setNamespace({ name: 'team-a', labels: { 'istio.io/dataplane-mode': 'none' }, terminating: false });
  await settle();
  await r.reconcile();
  t.same(api.writes, [
    'delete AuthorizationPolicy/team-a/default-deny',
    'delete PeerAuthentication/team-a/default',
    'delete AuthorizationPolicy/team-a/allow-same-namespace',
  ], 'managed objects deleted, default-deny first');
  t.same([...api.objects.keys()].sort(), ['AuthorizationPolicy/team-a/mine', 'Sidecar/team-a/default'], 'only the unmanaged objects remain');
  await r.stop();
});

t.test('dry-run logs the plan once and writes nothing', async (t) => {
  const api = new FakeApi();
  api.setNamespace(meshed('team-a'));
  const { r, lines } = await leadingReconciler(api, { 'reconciler.dryRun': true });
  await r.reconcile();
  t.same(api.writes, [], 'nothing written');
  t.same(lines.filter((l) => l.includes('would')), [
    'info reconciler (dry-run): would create AuthorizationPolicy team-a/allow-same-namespace (built-in:allow-same-namespace)',
    'info reconciler (dry-run): would create PeerAuthentication team-a/default (built-in:strict-mtls)',
    'info reconciler (dry-run): would create Sidecar team-a/default (built-in:registry-only-egress)',
    'info reconciler (dry-run): would create AuthorizationPolicy team-a/default-deny (built-in:default-deny)',
  ], 'the plan is logged once, in apply order');
  t.equal(r.last?.actions.length, 4);
  await r.stop();
});

t.test('without the Istio CRDs: a readiness problem, a log line, and nothing reconciled until they appear', async (t) => {
  const api = new FakeApi();
  api.missing = ['Sidecar', 'PeerAuthentication', 'AuthorizationPolicy', 'ServiceEntry'];
  api.setNamespace(meshed('team-a'));
  const { lines, log } = logger();
  const r = new Reconciler({ config: config(), client: api, log, debounceMs: 1, crdRecheckMs: 30 });
  r.start();
  await settle();
  await r.setLeading(true);
  t.equal(
    r.problem(),
    'reconciler: Istio CRDs not installed (sidecars.networking.istio.io, peerauthentications.security.istio.io, authorizationpolicies.security.istio.io, serviceentries.networking.istio.io); no hardening resources are reconciled',
  );
  await new Promise((r) => setTimeout(r, 150)); // several re-checks (every 30 ms here)
  t.equal(lines.filter((l) => l.startsWith('warn reconciler: Istio CRDs not installed')).length, 1, 'logged once, not at every re-check');
  t.match((await r.reconcile()).skipped, 'Istio CRDs not installed');
  t.same(api.writes, []);
  api.missing = [];
  const deadline = Date.now() + 2000;
  while (r.problem() !== undefined && Date.now() < deadline) await settle();
  t.equal(r.problem(), undefined, 'the CRDs are found again by the periodic check');
  await settle();
  await r.reconcile();
  t.equal(api.writes.length, 4, 'then it reconciles');
  await r.stop();
});

t.test('losing leadership stops reconciling', async (t) => {
  const api = new FakeApi();
  api.setNamespace(meshed('team-a'));
  const { r } = await leadingReconciler(api);
  await r.setLeading(false);
  api.writes = [];
  api.remove('Sidecar', 'team-a', 'default');
  await settle();
  t.equal((await r.reconcile()).skipped, 'not the leader');
  t.same(api.writes, []);
  t.equal(MANAGED_SELECTOR, 'app.kubernetes.io/managed-by=meshguard', 'the watches select on the managed-by label');
  await r.stop();
});

t.test('managed objects are listed page by page (custom lists carry metadata.continue)', async (t) => {
  const all = Array.from({ length: 5 }, (_, i) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `p${i}`, namespace: 'a', labels: MANAGED_LABELS } }));
  const calls: unknown[] = [];
  const custom = {
    listClusterCustomObject: async (p: { labelSelector?: string; limit?: number; _continue?: string }) => {
      calls.push(p);
      const start = Number(p._continue ?? '0');
      const end = start + (p.limit ?? 500);
      return { items: all.slice(start, end), metadata: { resourceVersion: '42', continue: end < all.length ? String(end) : '' } };
    },
  } as unknown as Parameters<typeof managedLister>[0];
  const kind = MANAGED_KINDS.find((k) => k.kind === 'AuthorizationPolicy') as KindInfo;
  let seen: readonly unknown[] = [];
  const lw = new ListWatch<unknown>({
    name: 'test',
    list: managedLister(custom, kind),
    watch: {
      // A watch that stays open until aborted, then ends cleanly.
      watch: async (_path: string, _q: object, _cb: unknown, done: (err: unknown) => void) => {
        const ac = new AbortController();
        ac.signal.addEventListener('abort', () => done(null));
        return ac;
      },
    },
    watchPath: '/x',
    replace: (items) => void (seen = items),
    upsert() {},
    remove() {},
    resyncMs: 60_000,
    staleAfterMs: 60_000,
    pageSize: 2,
    log: { info() {}, warn() {} },
  });
  lw.start();
  const deadline = Date.now() + 2000;
  while (seen.length === 0 && Date.now() < deadline) await settle();
  await lw.stop();
  t.equal(seen.length, 5, 'all three pages read');
  t.same(calls, [
    { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', labelSelector: 'app.kubernetes.io/managed-by=meshguard', limit: 2 },
    { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', labelSelector: 'app.kubernetes.io/managed-by=meshguard', limit: 2, _continue: '2' },
    { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', labelSelector: 'app.kubernetes.io/managed-by=meshguard', limit: 2, _continue: '4' },
  ], 'with the label selector and the continue token');
});
