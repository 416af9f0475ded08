// Self-managed certificates: the pure renewal plan (table), the Secret round trip, the caBundle
// patch, and the manager's rounds against an in-memory Secret store with optimistic concurrency
// (resourceVersion, 409 like the API server) and an in-memory webhook configuration, with a fake
// clock: months of renewals and CA rollovers in which the serving certificate is always trusted by
// the caBundle the apiserver held before it was served. The real API is proven in
// test/e2e/helm-chart.test.ts.
import t from 'tap';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Secret } from '@kubernetes/client-node';
import { SecretConflict, type SecretStore } from '../../src/jobs/certs/adapter.ts';
import { startSelfManagedCerts } from '../../src/jobs/certs/loop.ts';
import { bundleFor, nextStored, planRenewal, renewalWindowMs, servingSans, splitPems, type PlanInput, type StoredCerts } from '../../src/jobs/certs/plan.ts';
import { secretFor, storedFrom, STAGED_AT_ANNOTATION } from '../../src/jobs/certs/secret.ts';
import { generateBundle, generateCA } from '../../src/jobs/certs/selfsigned.ts';
import { caBundlePatch, hasCaBundle, type PatchOutcome, type WebhookConfigurationLike, type WebhookPatcher } from '../../src/kube/webhook-patch.ts';
import { config } from '../helpers/review.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2030-01-01T00:00:00Z');
const SANS = ['meshguard.meshguard.svc', '127.0.0.1'];
const policy = { sans: SANS, renewBeforeMs: 30 * DAY, caSettleMs: 60_000 };
const at = (days: number): Date => new Date(T0 + days * DAY);
/** A PEM as the manager stores it in bundles (LF line ends). */
const pem = (p: string): string => splitPems(p).join('');

async function ca(days: number, issuedAtDay = 0): Promise<{ cert: string; key: string }> {
  return generateCA(days, at(issuedAtDay));
}
async function leaf(signer: { cert: string; key: string }, days: number, issuedAtDay = 0, sans: readonly string[] = SANS): Promise<{ cert: string; key: string }> {
  const b = await generateBundle({ sans, ca: signer, leafDays: days, now: at(issuedAtDay) });
  return { cert: b.cert, key: b.key };
}
function stored(c: { cert: string; key: string }, l: { cert: string; key: string }, extra: Partial<StoredCerts> = {}): StoredCerts {
  return { caCert: c.cert, caKey: c.key, cert: l.cert, key: l.key, bundle: c.cert, ...extra };
}
const plan = (i: Partial<PlanInput> & { stored: StoredCerts | undefined }) => planRenewal({ nowMs: T0, policy, webhooksInSync: true, ...i });
const summary = (p: ReturnType<typeof planRenewal>): string => (p.write ? `write ca=${p.ca} next=${p.nextCa} leaf=${p.leaf}` : 'keep');

const caA = await ca(3650);
const caB = await ca(3650);
const leafA = await leaf(caA, 365);

t.test('the renewal plan', async (t) => {
  const shortCa = await ca(40); // 40-day CA: within the 30-day window after day 10
  const leafOfShort = await leaf(shortCa, 365); // outlives its CA (generateBundle does not cap; the manager does)
  const cappedLeaf = await leaf(shortCa, 40);
  const staged = await ca(3650);
  const rows: { name: string; input: Parameters<typeof plan>[0]; want: string; reason?: RegExp }[] = [
    { name: 'no Secret: a new CA and serving certificate', input: { stored: undefined }, want: 'write ca=new next=none leaf=new', reason: /no Secret yet/ },
    { name: 'a fresh Secret is kept as it is', input: { stored: stored(caA, leafA) }, want: 'keep' },
    { name: 'a CA that is garbage: start over', input: { stored: stored({ cert: 'junk', key: caA.key }, leafA) }, want: 'write ca=new next=none leaf=new', reason: /CA is missing, unreadable/ },
    { name: 'a CA whose key does not match: start over', input: { stored: stored({ cert: caA.cert, key: caB.key }, leafA) }, want: 'write ca=new next=none leaf=new' },
    { name: 'an expired CA: start over', input: { stored: stored(caA, leafA), nowMs: T0 + 3651 * DAY }, want: 'write ca=new next=none leaf=new' },
    { name: 'a serving certificate within its window: a new one from the same CA', input: { stored: stored(caA, leafA), nowMs: T0 + 340 * DAY }, want: 'write ca=reuse next=none leaf=new', reason: /within the renewal window/ },
    { name: 'a serving certificate just outside its window is kept', input: { stored: stored(caA, leafA), nowMs: T0 + 330 * DAY }, want: 'keep' },
    { name: 'an expired serving certificate: a new one', input: { stored: stored(caA, leafA), nowMs: T0 + 366 * DAY }, want: 'write ca=reuse next=none leaf=new', reason: /expired/ },
    { name: 'a serving certificate that misses a name (a new SAN): a new one', input: { stored: stored(caA, leafA), policy: { ...policy, sans: [...SANS, 'meshguard.other.svc'] } }, want: 'write ca=reuse next=none leaf=new', reason: /does not cover/ },
    { name: 'a serving certificate signed by another CA: a new one', input: { stored: stored(caB, leafA, { bundle: caB.cert }) }, want: 'write ca=reuse next=none leaf=new', reason: /not signed by the stored CA/ },
    { name: 'a serving certificate whose key does not match: a new one', input: { stored: stored(caA, { cert: leafA.cert, key: caA.key }) }, want: 'write ca=reuse next=none leaf=new', reason: /does not match its key/ },
    { name: 'a forced renewal renews the serving certificate only', input: { stored: stored(caA, leafA), force: { leaf: true } }, want: 'write ca=reuse next=none leaf=new', reason: /renewal requested/ },
    { name: 'a forced CA rollover stages the next CA first; the old CA keeps signing', input: { stored: stored(caA, leafA), force: { ca: true } }, want: 'write ca=reuse next=new leaf=reuse', reason: /staging the next CA/ },
    { name: 'a CA within its window stages the next CA, and does not renew the certificate yet', input: { stored: stored(shortCa, leafOfShort), nowMs: T0 + 30 * DAY }, want: 'write ca=reuse next=new leaf=reuse', reason: /within the renewal window: staging/ },
    {
      name: 'a certificate running to the CA\'s own expiry is not renewed from that CA (the rollover renews it)',
      input: { stored: stored(shortCa, cappedLeaf, { nextCaCert: caB.cert, nextCaKey: caB.key, nextCaStagedAtMs: T0 + 38 * DAY - 30_000, bundle: shortCa.cert + caB.cert }), nowMs: T0 + 38 * DAY },
      want: 'keep',
    },
    {
      name: 'a staged CA waits for the settle time',
      input: { stored: stored(caA, leafA, { nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0 - 30_000, bundle: caA.cert + staged.cert }) },
      want: 'keep',
    },
    {
      name: 'a staged CA waits until every webhook carries it',
      input: { stored: stored(caA, leafA, { nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0 - 120_000, bundle: caA.cert + staged.cert }), webhooksInSync: false },
      want: 'keep',
    },
    {
      name: 'a staged CA that is trusted and settled is promoted, with a new certificate from it',
      input: { stored: stored(caA, leafA, { nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0 - 120_000, bundle: caA.cert + staged.cert }) },
      want: 'write ca=promote next=none leaf=new',
      reason: /signs from now on/,
    },
    {
      name: 'a staged CA missing from the stored bundle is added to it, not promoted',
      input: { stored: stored(caA, leafA, { nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0 - 120_000 }) },
      want: 'write ca=reuse next=keep leaf=reuse',
      reason: /bundle is out of date/,
    },
    { name: 'an unusable staged CA is dropped', input: { stored: stored(caA, leafA, { nextCaCert: 'junk', nextCaKey: 'junk' }) }, want: 'write ca=reuse next=none leaf=reuse', reason: /dropping/ },
    { name: 'a bundle without the signing CA is repaired', input: { stored: stored(caA, leafA, { bundle: caB.cert }) }, want: 'write ca=reuse next=none leaf=reuse', reason: /bundle is out of date/ },
  ];
  for (const row of rows) {
    const p = plan(row.input);
    t.equal(summary(p), row.want, row.name);
    if (row.reason !== undefined) t.match(p.reasons.join('; '), row.reason, `${row.name}: says why`);
  }
});

t.test('the trusted bundle keeps old CAs until they expire, never twice, signing CA first', async (t) => {
  const oldCa = await ca(10);
  const s = stored(caA, leafA, { bundle: caA.cert + oldCa.cert });
  t.equal(summary(plan({ stored: s })), 'keep', 'an unexpired old CA stays');
  const later = plan({ stored: s, nowMs: T0 + 11 * DAY });
  t.equal(summary(later), 'write ca=reuse next=none leaf=reuse', 'an expired old CA is dropped');
  t.same(later.keepTrusted, [pem(caA.cert)], 'only the signing CA is left');
  t.equal(bundleFor(caA.cert, caB.cert, [caB.cert, caA.cert, oldCa.cert]), pem(caA.cert) + pem(caB.cert) + pem(oldCa.cert), 'signing, staged, then the rest; no repeats');
  t.same(splitPems(`x${caA.cert}\n\n${caB.cert}y`), [pem(caA.cert), pem(caB.cert)], 'PEMs are split out of any surrounding text');
});

t.test('renewal window: renewBefore, but at most a third of the lifetime', async (t) => {
  t.equal(renewalWindowMs({ notBeforeMs: 0, notAfterMs: 365 * DAY }, 30 * DAY), 30 * DAY);
  t.equal(renewalWindowMs({ notBeforeMs: 0, notAfterMs: 30 * DAY }, 30 * DAY), 10 * DAY, 'renewBefore as long as the lifetime would renew at every check');
});

t.test('the Secret: layout, labels, staged-at annotation, optimistic concurrency, round trip', async (t) => {
  const staged = await ca(3650);
  const s: StoredCerts = { ...stored(caA, leafA), nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0, bundle: caA.cert + staged.cert };
  const created = secretFor(s, { name: 'meshguard-tls', namespace: 'meshguard' });
  t.equal(created.type, 'kubernetes.io/tls');
  t.same(Object.keys(created.data ?? {}).sort(), ['ca-bundle.crt', 'ca.crt', 'ca.key', 'next-ca.crt', 'next-ca.key', 'tls.crt', 'tls.key']);
  t.equal(created.metadata?.labels?.['app.kubernetes.io/managed-by'], 'meshguard');
  t.equal(created.metadata?.annotations?.[STAGED_AT_ANNOTATION], new Date(T0).toISOString());
  t.notOk('resourceVersion' in (created.metadata ?? {}), 'a create carries no resourceVersion');
  t.equal(secretFor(s, { name: 'x', namespace: 'y', resourceVersion: '42' }).metadata?.resourceVersion, '42', 'a replace carries the version that was read');
  t.same(storedFrom(created), s, 'storedFrom(secretFor(s)) is s');
  const plain = secretFor(stored(caA, leafA), { name: 'x', namespace: 'y' });
  t.notOk(plain.metadata?.annotations, 'no annotation without a staged CA');
  t.notOk('next-ca.crt' in (plain.data ?? {}));
});

t.test('nextStored applies a plan', async (t) => {
  const staged = await ca(3650);
  const s = stored(caA, leafA, { nextCaCert: staged.cert, nextCaKey: staged.key, nextCaStagedAtMs: T0 - 120_000, bundle: caA.cert + staged.cert });
  const p = plan({ stored: s });
  const newLeaf = await leaf(staged, 365);
  const n = nextStored(p, s, { leaf: newLeaf }, T0);
  t.equal(n.caCert, staged.cert, 'the staged CA signs');
  t.equal(n.cert, newLeaf.cert);
  t.equal(n.nextCaCert, undefined, 'nothing staged any more');
  t.equal(n.bundle, pem(staged.cert) + pem(caA.cert), 'the old CA stays trusted behind the new one');
  t.throws(() => nextStored(p, s, {}, T0), /needs a new serving certificate/, 'a plan without the material it needs is a bug, reported');
});

t.test('servingSans: the Service names and loopback, plus server.certSans', async (t) => {
  const sans = servingSans(config({ meshguardNamespace: 'mg', 'selfManagedCerts.serviceName': 'hook', 'server.certSans': ['hook.example.com'] }));
  for (const n of ['hook', 'hook.mg', 'hook.mg.svc', 'hook.mg.svc.cluster.local', '127.0.0.1', 'hook.example.com']) t.ok(sans.includes(n), n);
});

t.test('caBundle patch: only the webhooks that differ, guarded by name and clientConfig', async (t) => {
  const cfg = {
    webhooks: [
      { name: 'a.meshguard.dev', clientConfig: { service: { name: 'meshguard', namespace: 'meshguard', path: '/validate', port: 443 } } },
      { name: 'b.meshguard.dev', clientConfig: { caBundle: 'NEW', url: 'https://x' } },
      { name: 'c.meshguard.dev', clientConfig: { caBundle: 'OLD', url: 'https://y' } },
    ],
  };
  t.same(caBundlePatch(cfg, 'NEW'), [
    { op: 'test', path: '/webhooks/0/name', value: 'a.meshguard.dev' },
    { op: 'test', path: '/webhooks/0/clientConfig', value: cfg.webhooks[0]?.clientConfig },
    { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: 'NEW' },
    { op: 'test', path: '/webhooks/2/name', value: 'c.meshguard.dev' },
    { op: 'test', path: '/webhooks/2/clientConfig', value: { caBundle: 'OLD', url: 'https://y' } },
    { op: 'add', path: '/webhooks/2/clientConfig/caBundle', value: 'NEW' },
  ]);
  t.same(caBundlePatch({ webhooks: cfg.webhooks.slice(1, 2) }, 'NEW'), [], 'nothing when every webhook has it');
  t.ok(hasCaBundle({}, 'NEW'), 'a configuration without webhooks needs nothing');
  t.notOk(hasCaBundle(cfg, 'NEW'));
});

// ------------------------------------------------------------------------- manager rounds ---

/** Secret store with resourceVersion semantics; `gate` holds writes until N reads happened. */
class MemoryStore implements SecretStore {
  readonly where = 'meshguard/meshguard-tls';
  secret: V1Secret | undefined;
  rv = 0;
  reads = 0;
  writes = 0;
  conflicts = 0;
  #gate: { reads: number; open: Promise<void>; release: () => void } | undefined;

  holdWritesUntilReads(n: number): void {
    let release = (): void => undefined;
    const open = new Promise<void>((r) => (release = r));
    this.#gate = { reads: n, open, release };
  }

  async read(): Promise<V1Secret | undefined> {
    this.reads++;
    if (this.#gate !== undefined && this.reads >= this.#gate.reads) this.#gate.release();
    return this.secret === undefined ? undefined : structuredClone(this.secret);
  }

  async write(body: V1Secret): Promise<V1Secret> {
    if (this.#gate !== undefined) await Promise.race([this.#gate.open, new Promise((r) => setTimeout(r, 2000))]);
    const rv = body.metadata?.resourceVersion;
    if ((rv === undefined && this.secret !== undefined) || (rv !== undefined && rv !== this.secret?.metadata?.resourceVersion)) {
      this.conflicts++;
      throw new SecretConflict('409');
    }
    this.writes++;
    this.secret = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
    return structuredClone(this.secret);
  }
}

/** One webhook configuration pair; records every caBundle it was given, in order. */
class MemoryWebhooks implements WebhookPatcher {
  configs: Record<'mutating' | 'validating', WebhookConfigurationLike> = {
    mutating: { webhooks: [{ name: 'mutate.meshguard.dev', clientConfig: { url: 'https://127.0.0.1:1/mutate' } }] },
    validating: { webhooks: [{ name: 'validate.meshguard.dev', clientConfig: { url: 'https://127.0.0.1:1/validate' } }] },
  };
  history: string[] = [];
  async read(kind: 'mutating' | 'validating') {
    return this.configs[kind];
  }
  async inSync(b: string) {
    return hasCaBundle(this.configs.mutating, b) && hasCaBundle(this.configs.validating, b);
  }
  async patch(b: string, beforeWrite?: () => Promise<boolean>) {
    const out: Record<'mutating' | 'validating', PatchOutcome> = { mutating: 'unchanged', validating: 'unchanged' };
    if (await this.inSync(b)) return out;
    if (beforeWrite !== undefined && !(await beforeWrite())) return 'vetoed' as const;
    for (const kind of ['mutating', 'validating'] as const) {
      if (hasCaBundle(this.configs[kind], b)) continue;
      this.configs[kind] = { webhooks: (this.configs[kind].webhooks ?? []).map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle: b } })) };
      out[kind] = 'patched';
    }
    this.history.push(b);
    return out;
  }
  /** The PEM CAs the apiserver trusts now. */
  trusted(): string[] {
    const b = (this.configs.validating.webhooks?.[0]?.clientConfig as { caBundle?: string } | undefined)?.caBundle;
    return b === undefined ? [] : splitPems(Buffer.from(b, 'base64').toString('utf8'));
  }
}

const quiet = { info: () => undefined, warn: () => undefined };

function managerConfig(extra: Record<string, unknown> = {}) {
  return config({ 'selfManagedCerts.enabled': true, 'selfManagedCerts.checkIntervalSeconds': 86_400, ...extra });
}

function issuerOf(certPem: string, cas: readonly string[]): string | undefined {
  const x = new X509Certificate(certPem);
  return cas.find((c) => {
    try {
      return x.checkIssued(new X509Certificate(c)) && x.verify(createPublicKey(c));
    } catch {
      return false;
    }
  });
}

t.test('first start: Secret created, files written, both webhooks patched; a restart changes nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const hooks = new MemoryWebhooks();
  const m = await startSelfManagedCerts(managerConfig(), undefined, quiet, { certDir: dir, store, patcher: hooks });
  t.teardown(() => m.stop());
  t.equal(store.writes, 1, 'one write');
  const s = storedFrom(store.secret as V1Secret);
  t.equal(readFileSync(m.paths.certFile, 'utf8'), s.cert, 'tls.crt written');
  t.equal(readFileSync(m.paths.keyFile, 'utf8'), s.key, 'tls.key written');
  t.equal(readFileSync(m.paths.caFile as string, 'utf8'), s.caCert, 'ca.crt written');
  t.same(hooks.trusted(), [pem(s.caCert as string)], 'both webhooks trust the CA');
  t.ok(new X509Certificate(s.cert as string).checkHost('meshguard.meshguard.svc'), 'the certificate covers the Service name');

  const again = await startSelfManagedCerts(managerConfig(), undefined, quiet, { certDir: dir, store, patcher: hooks });
  t.teardown(() => again.stop());
  const r = await again.reconcile();
  t.equal(store.writes, 1, 'a second replica (or a restart) reuses the Secret');
  t.notOk(r.filesChanged, 'and leaves the files alone');
  t.same(r.webhooks, { mutating: 'unchanged', validating: 'unchanged' }, 'and does not patch');
});

t.test('two replicas starting at once agree on one CA (the loser of the race adopts the winner\'s Secret)', async (t) => {
  const store = new MemoryStore();
  store.holdWritesUntilReads(2);
  const hooks = new MemoryWebhooks();
  const dirs = [mkdtempSync(join(tmpdir(), 'mg-a-')), mkdtempSync(join(tmpdir(), 'mg-b-'))];
  t.teardown(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const [a, b] = await Promise.all(dirs.map((certDir) => startSelfManagedCerts(managerConfig(), undefined, quiet, { certDir, store, patcher: hooks })));
  t.teardown(() => Promise.all([a?.stop(), b?.stop()]));
  t.equal(store.conflicts, 1, 'one write lost the race with 409');
  t.equal(store.writes, 1, 'one Secret was written');
  const ca = storedFrom(store.secret as V1Secret).caCert;
  for (const d of dirs) t.equal(readFileSync(join(d, 'ca.crt'), 'utf8'), ca, `${d}: the winner's CA`);
  t.equal(readFileSync(join(dirs[0] as string, 'tls.crt'), 'utf8'), readFileSync(join(dirs[1] as string, 'tls.crt'), 'utf8'), 'the same serving certificate');
  t.equal(new Set(hooks.history).size, 1, 'the caBundle was set once and never flapped');
});

t.test('a replica holding an older Secret never puts an older bundle back', async (t) => {
  const store = new MemoryStore();
  const hooks = new MemoryWebhooks();
  const dir = mkdtempSync(join(tmpdir(), 'mg-stale-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const m = await startSelfManagedCerts(managerConfig(), undefined, quiet, { certDir: dir, store, patcher: hooks, caSettleMs: 0 });
  t.teardown(() => m.stop());
  const rollover = await m.renewNow({ ca: true });
  t.equal(splitPems(rollover.bundle).length, 2, 'staged: two CAs trusted');
  // Another writer changes the Secret right after this replica read it: the patch is vetoed.
  const realRead = store.read.bind(store);
  let n = 0;
  store.read = async () => {
    if (++n === 2) store.secret = { ...(store.secret as V1Secret), metadata: { ...store.secret?.metadata, resourceVersion: String(++store.rv) } };
    return realRead();
  };
  hooks.configs.mutating = { webhooks: [{ name: 'mutate.meshguard.dev', clientConfig: { url: 'https://127.0.0.1:1/mutate' } }] };
  const r = await m.reconcile();
  t.equal(r.webhooks, 'vetoed', 'the Secret changed between the read and the patch: no patch');
  store.read = realRead;
  t.same((await m.reconcile()).webhooks, { mutating: 'patched', validating: 'unchanged' }, 'the next round patches from the current Secret');
});

t.test('a year of checks: renewals and CA rollovers; the served certificate is always trusted by the bundle the apiserver already had', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-year-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const hooks = new MemoryWebhooks();
  let now = T0;
  const cfg = managerConfig({ 'selfManagedCerts.caDays': 60, 'selfManagedCerts.leafDays': 20, 'selfManagedCerts.renewBeforeDays': 5 });
  const m = await startSelfManagedCerts(cfg, undefined, quiet, { certDir: dir, store, patcher: hooks, now: () => now, caSettleMs: 3_600_000 });
  t.teardown(() => m.stop());
  let served = readFileSync(m.paths.certFile, 'utf8');
  const cas = new Set<string>([storedFrom(store.secret as V1Secret).caCert as string]);
  let leaves = 1;
  let violations = 0;
  for (let hour = 12; hour <= 365 * 24; hour += 12) {
    now = T0 + hour * 3_600_000;
    const trustedBefore = hooks.trusted();
    await m.reconcile();
    const next = readFileSync(m.paths.certFile, 'utf8');
    if (next !== served) {
      leaves++;
      if (issuerOf(next, trustedBefore) === undefined) violations++;
      served = next;
    }
    const x = new X509Certificate(served);
    if (Date.parse(x.validTo) <= now || issuerOf(served, hooks.trusted()) === undefined) violations++;
    cas.add(storedFrom(store.secret as V1Secret).caCert as string);
  }
  t.equal(violations, 0, 'never an expired certificate, never one the bundle did not already trust');
  t.ok(cas.size >= 6, `the CA rolled over (${cas.size} CAs in a year of 60-day CAs)`);
  t.ok(leaves >= 19, `the serving certificate was renewed (${leaves} certificates)`);
  t.ok(hooks.history.length <= 3 * cas.size + 2, `the bundle changed only around rollovers (${hooks.history.length} patches)`);
});
