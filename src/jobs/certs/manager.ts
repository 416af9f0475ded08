// Self-managed certificates in the cluster: a CA and a serving certificate kept in a Secret that
// meshguard owns, written to the certificate directory that serve polls (so renewals swap the
// serving context without dropping connections), and a caBundle patched into meshguard's own
// webhook configurations.
//
// Pure core (tested without a cluster): parse the Secret, plan what to renew, assemble the next
// Secret. Shell: read, write with the resourceVersion that was read (two replicas racing cannot
// both win: the loser gets 409, re-reads and adopts the winner's CA), sync the files, patch.
//
// The caBundle is a stored value (the Secret's ca-bundle.crt), never recomputed per replica, so
// every replica patches the same bytes. A CA is replaced in two steps so that the apiserver trusts
// a new CA before any certificate signed by it is served: first the next CA is added to the bundle
// (staged) while the old CA keeps signing; a later round (once the webhooks carry the bundle and
// `caSettleMs` has passed) promotes it, issues a new serving certificate from it, and keeps the old
// CA in the bundle until it expires, so replicas still serving the old certificate stay trusted.
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { generate } from 'selfsigned';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import { kubeWebhookPatcher, type PatchOutcome, type WebhookKind, type WebhookPatcher } from '../../kube/webhook-patch.ts';
import type { Config } from '../../config/types.ts';
import { defaultSans, generateBundle } from './selfsigned.ts';
import type { FilePaths } from './source.ts';
import { statusCode } from '../../kube/errors.ts';

const DAY_MS = 86_400_000;

/** Keys of the Secret. tls.crt/tls.key/ca.crt follow the kubernetes.io/tls and cert-manager layout. */
export const SECRET_KEYS = Object.freeze({
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
  bundle: 'ca-bundle.crt',
  nextCaCert: 'next-ca.crt',
  nextCaKey: 'next-ca.key',
});
export const STAGED_AT_ANNOTATION = 'meshguard.dev/next-ca-staged-at';
export const SECRET_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'app.kubernetes.io/name': 'meshguard',
  'app.kubernetes.io/component': 'webhook-certificates',
  'app.kubernetes.io/managed-by': 'meshguard',
});
/** Default time between staging a new CA in the bundle and signing with it. */
export const DEFAULT_CA_SETTLE_MS = 60_000;

// ------------------------------------------------------------------------------ pure core ---

/** What the Secret holds, as PEM strings (any of them may be missing or garbage). */
export interface StoredCerts {
  readonly caCert?: string;
  readonly caKey?: string;
  readonly cert?: string;
  readonly key?: string;
  /** PEM certificates the webhooks trust (the caBundle, before base64). */
  readonly bundle?: string;
  /** A CA added to the bundle ahead of signing with it. */
  readonly nextCaCert?: string;
  readonly nextCaKey?: string;
  readonly nextCaStagedAtMs?: number;
}

interface CertFacts {
  readonly pem: string;
  readonly x: X509Certificate;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

function parseCert(pem: string | undefined): CertFacts | undefined {
  if (pem === undefined || pem.trim() === '') return undefined;
  try {
    const x = new X509Certificate(pem);
    return { pem: splitPems(pem)[0] ?? pem, x, notBeforeMs: Date.parse(x.validFrom), notAfterMs: Date.parse(x.validTo) };
  } catch {
    return undefined;
  }
}

function keyMatches(c: CertFacts, keyPem: string | undefined): boolean {
  if (keyPem === undefined) return false;
  try {
    return c.x.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

function signedBy(leaf: CertFacts, ca: CertFacts): boolean {
  try {
    return leaf.x.checkIssued(ca.x) && leaf.x.verify(createPublicKey(ca.pem));
  } catch {
    return false;
  }
}

function covers(c: CertFacts, sans: readonly string[]): boolean {
  return sans.every((s) => (/^[\d.]+$|:/.test(s) ? c.x.checkIP(s) !== undefined : c.x.checkHost(s) !== undefined));
}

/** The PEM certificates in a bundle, in order, each with LF line ends and one trailing newline. */
export function splitPems(bundle: string | undefined): string[] {
  return [...(bundle ?? '').matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0].replace(/\r\n/g, '\n')}\n`);
}

/** How long before expiry a certificate is renewed: renewBefore, but at most a third of its lifetime. */
export function renewalWindowMs(c: { readonly notBeforeMs: number; readonly notAfterMs: number }, renewBeforeMs: number): number {
  return Math.min(renewBeforeMs, (c.notAfterMs - c.notBeforeMs) / 3);
}

function inWindow(c: CertFacts, nowMs: number, renewBeforeMs: number): boolean {
  return c.notAfterMs - nowMs < renewalWindowMs(c, renewBeforeMs);
}

/** A CA that can sign: parses, its key matches, valid now. */
function usableCa(cert: string | undefined, key: string | undefined, nowMs: number): CertFacts | undefined {
  const c = parseCert(cert);
  if (c === undefined || !keyMatches(c, key) || c.notBeforeMs > nowMs || c.notAfterMs <= nowMs) return undefined;
  return c;
}

export interface RenewalPolicy {
  /** DNS names and IPs the serving certificate must cover. */
  readonly sans: readonly string[];
  readonly renewBeforeMs: number;
  /** How long a staged CA sits in the bundle before it signs (and the webhooks must carry it). */
  readonly caSettleMs: number;
}

export interface PlanInput {
  readonly stored: StoredCerts | undefined;
  readonly nowMs: number;
  readonly policy: RenewalPolicy;
  /** Every existing webhook carries the stored bundle (or none exists). */
  readonly webhooksInSync: boolean;
  /** Renew regardless of expiry: the serving certificate, and/or start a CA rollover. */
  readonly force?: { readonly leaf?: boolean; readonly ca?: boolean } | undefined;
}

export interface RenewalPlan {
  /** False: the Secret is fine as stored. */
  readonly write: boolean;
  /** reuse the stored CA, create a new one (nothing usable), or promote the staged next CA. */
  readonly ca: 'reuse' | 'new' | 'promote';
  /** none: no staged CA afterwards; keep the staged one; stage a new one. */
  readonly nextCa: 'none' | 'keep' | 'new';
  readonly leaf: 'reuse' | 'new';
  /** Other CAs that stay in the bundle (unexpired entries of the stored bundle, the replaced CA). */
  readonly keepTrusted: readonly string[];
  readonly reasons: readonly string[];
}

/** Why the stored serving certificate cannot be kept (whatever its expiry), or undefined. */
function leafProblem(leaf: CertFacts | undefined, key: string | undefined, ca: CertFacts, sans: readonly string[], nowMs: number): string | undefined {
  if (leaf === undefined || !keyMatches(leaf, key)) return 'the serving certificate is missing or does not match its key';
  if (!signedBy(leaf, ca)) return 'the serving certificate was not signed by the stored CA';
  if (!covers(leaf, sans)) return 'the serving certificate does not cover every name';
  if (leaf.notAfterMs <= nowMs) return 'the serving certificate has expired';
  return undefined;
}

/** Decide what to renew. Pure: the Secret as read, the clock and the policy in; a plan out. */
export function planRenewal(i: PlanInput): RenewalPlan {
  const s = i.stored ?? {};
  const now = i.nowMs;
  const before = i.policy.renewBeforeMs;
  const reasons: string[] = [];
  const unexpired = (pems: readonly string[]): string[] => pems.filter((p) => (parseCert(p)?.notAfterMs ?? 0) > now);
  const storedBundle = splitPems(s.bundle);

  const ca = usableCa(s.caCert, s.caKey, now);
  if (ca === undefined) {
    reasons.push(i.stored === undefined ? 'no Secret yet' : 'the stored CA is missing, unreadable, expired or does not match its key');
    return { write: true, ca: 'new', nextCa: 'none', leaf: 'new', keepTrusted: unexpired(storedBundle), reasons };
  }

  const leaf = parseCert(s.cert);
  const problem = leafProblem(leaf, s.key, ca, i.policy.sans, now);
  const leafDue = problem === undefined && leaf !== undefined && inWindow(leaf, now, before);
  // A certificate running to the CA's own expiry cannot be extended by the same CA; the CA
  // rollover (due no later: a shorter lifetime never has a longer window) renews it.
  const leafCapped = leaf !== undefined && leaf.notAfterMs >= ca.notAfterMs - 60_000;
  const caDue = inWindow(ca, now, before);

  let caAction: RenewalPlan['ca'] = 'reuse';
  let nextCa: RenewalPlan['nextCa'] = 'none';
  const next = usableCa(s.nextCaCert, s.nextCaKey, now);
  if (next !== undefined && !inWindow(next, now, before)) {
    const settled = s.nextCaStagedAtMs !== undefined && now - s.nextCaStagedAtMs >= i.policy.caSettleMs && i.webhooksInSync && storedBundle.includes(next.pem);
    if (settled) {
      caAction = 'promote';
      reasons.push('the staged CA has been trusted long enough: it signs from now on');
    } else {
      nextCa = 'keep';
    }
  } else if (caDue || i.force?.ca === true) {
    nextCa = 'new';
    reasons.push(caDue ? `the CA expires ${new Date(ca.notAfterMs).toISOString()}, within the renewal window: staging the next CA` : 'CA rollover requested: staging the next CA');
  } else if (s.nextCaCert !== undefined) {
    reasons.push('dropping an unusable staged CA');
  }

  let leafAction: RenewalPlan['leaf'] = 'new';
  if (caAction === 'promote') reasons.push('a new serving certificate from the promoted CA');
  else if (problem !== undefined) reasons.push(problem);
  else if (leafDue && !leafCapped) reasons.push(`the serving certificate expires ${new Date(leaf?.notAfterMs ?? 0).toISOString()}, within the renewal window`);
  else if (i.force?.leaf === true) reasons.push('renewal requested');
  else leafAction = 'reuse';

  const keepTrusted = unexpired([...storedBundle, ...(caAction === 'promote' ? [ca.pem] : [])]);
  const plan: RenewalPlan = { write: true, ca: caAction, nextCa, leaf: leafAction, keepTrusted, reasons };
  if (caAction !== 'reuse' || leafAction === 'new' || nextCa === 'new' || (s.nextCaCert !== undefined && nextCa === 'none')) return plan;
  // Nothing to generate; the bundle may still lack the current or staged CA, or hold expired ones.
  const wanted = bundleFor(ca.pem, nextCa === 'keep' ? next?.pem : undefined, keepTrusted);
  if (wanted !== storedBundle.join('')) return { ...plan, reasons: [...reasons, 'the trusted CA bundle is out of date'] };
  return { ...plan, write: false };
}

/** The caBundle: the signing CA, the staged CA, then the other still-trusted CAs, without repeats. */
export function bundleFor(caPem: string, nextCaPem: string | undefined, keepTrusted: readonly string[]): string {
  const out: string[] = [];
  for (const p of [...splitPems(caPem), ...splitPems(nextCaPem), ...keepTrusted.flatMap((k) => splitPems(k))]) if (!out.includes(p)) out.push(p);
  return out.join('');
}

export interface Generated {
  readonly ca?: { readonly cert: string; readonly key: string };
  readonly nextCa?: { readonly cert: string; readonly key: string };
  readonly leaf?: { readonly cert: string; readonly key: string };
}

/** The next content of the Secret from the plan, the stored content and what was generated. */
export function nextStored(plan: RenewalPlan, s: StoredCerts, g: Generated, nowMs: number): StoredCerts {
  const pick = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`internal: the plan needs ${what}`);
    return v;
  };
  const ca =
    plan.ca === 'reuse'
      ? { cert: pick(s.caCert, 'the stored CA'), key: pick(s.caKey, 'the stored CA key') }
      : plan.ca === 'promote'
        ? { cert: pick(s.nextCaCert, 'the staged CA'), key: pick(s.nextCaKey, 'the staged CA key') }
        : pick(g.ca, 'a new CA');
  const leaf = plan.leaf === 'new' ? pick(g.leaf, 'a new serving certificate') : { cert: pick(s.cert, 'the stored certificate'), key: pick(s.key, 'the stored key') };
  const next =
    plan.nextCa === 'new'
      ? { ...pick(g.nextCa, 'a new staged CA'), stagedAtMs: nowMs }
      : plan.nextCa === 'keep'
        ? { cert: pick(s.nextCaCert, 'the staged CA'), key: pick(s.nextCaKey, 'the staged CA key'), stagedAtMs: s.nextCaStagedAtMs ?? nowMs }
        : undefined;
  return {
    caCert: ca.cert,
    caKey: ca.key,
    cert: leaf.cert,
    key: leaf.key,
    bundle: bundleFor(ca.cert, next?.cert, plan.keepTrusted),
    ...(next !== undefined ? { nextCaCert: next.cert, nextCaKey: next.key, nextCaStagedAtMs: next.stagedAtMs } : {}),
  };
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));

/** The Secret to write (resourceVersion: replace only if unchanged since it was read). */
export function secretFor(s: StoredCerts, where: { readonly name: string; readonly namespace: string; readonly resourceVersion?: string | undefined }): V1Secret {
  const data: Record<string, string> = {};
  const put = (k: string, v: string | undefined): void => {
    if (v !== undefined) data[k] = b64(v);
  };
  put(SECRET_KEYS.caCert, s.caCert);
  put(SECRET_KEYS.caKey, s.caKey);
  put(SECRET_KEYS.cert, s.cert);
  put(SECRET_KEYS.key, s.key);
  put(SECRET_KEYS.bundle, s.bundle);
  put(SECRET_KEYS.nextCaCert, s.nextCaCert);
  put(SECRET_KEYS.nextCaKey, s.nextCaKey);
  const annotations: Record<string, string> = {};
  if (s.nextCaStagedAtMs !== undefined) annotations[STAGED_AT_ANNOTATION] = new Date(s.nextCaStagedAtMs).toISOString();
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name: where.name,
      namespace: where.namespace,
      labels: { ...SECRET_LABELS },
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ...(where.resourceVersion !== undefined ? { resourceVersion: where.resourceVersion } : {}),
    },
    data,
  };
}

/** The Secret's content as PEM strings. */
export function storedFrom(secret: V1Secret): StoredCerts {
  const d = secret.data ?? {};
  const at = secret.metadata?.annotations?.[STAGED_AT_ANNOTATION];
  const atMs = at === undefined ? Number.NaN : Date.parse(at);
  const out: Record<string, string | number> = {};
  for (const [field, key] of Object.entries(SECRET_KEYS)) {
    const v = unb64(d[key]);
    if (v !== undefined) out[field] = v;
  }
  if (!Number.isNaN(atMs)) out['nextCaStagedAtMs'] = atMs;
  return out as StoredCerts;
}

/** Names the serving certificate covers: the Service's DNS names, loopback, and server.certSans. */
export function servingSans(config: Config): string[] {
  return [...new Set([...defaultSans(config.meshguardNamespace, config.selfManagedCerts.serviceName), ...config.server.certSans])];
}

// ---------------------------------------------------------------------------------- shell ---

export interface SecretStore {
  /** The Secret, or undefined when it does not exist. */
  read(): Promise<V1Secret | undefined>;
  /** Create, or replace when `body.metadata.resourceVersion` is set; SecretConflict when someone else wrote first. */
  write(body: V1Secret): Promise<V1Secret>;
  readonly where: string;
}

/** Another replica wrote the Secret between our read and our write (409). */
export class SecretConflict extends Error {
  override name = 'SecretConflict';
}


export function kubeSecretStore(kc: KubeConfig, namespace: string, name: string): SecretStore {
  const api = kc.makeApiClient(CoreV1Api);
  return {
    where: `${namespace}/${name}`,
    async read() {
      try {
        return await api.readNamespacedSecret({ name, namespace });
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async write(body) {
      try {
        if (body.metadata?.resourceVersion === undefined) return await api.createNamespacedSecret({ namespace, body, fieldManager: 'meshguard' });
        return await api.replaceNamespacedSecret({ name, namespace, body, fieldManager: 'meshguard' });
      } catch (err) {
        if (statusCode(err) === 409) throw new SecretConflict(`Secret ${namespace}/${name} was written by another replica`);
        throw err;
      }
    },
  };
}

export interface RoundResult {
  /** This replica wrote the Secret in this round. */
  readonly wrote: boolean;
  readonly reasons: readonly string[];
  /** Some of tls.crt, tls.key, ca.crt changed on disk. */
  readonly filesChanged: boolean;
  readonly webhooks: Record<WebhookKind, PatchOutcome> | 'vetoed' | 'failed';
  readonly resourceVersion: string;
  /** The caBundle (PEM) now stored. */
  readonly bundle: string;
}

export interface SelfManagedCerts {
  /** Files serve loads and polls (FileCertSource). */
  readonly paths: FilePaths;
  /** Check now (what the timer does). */
  reconcile(): Promise<RoundResult>;
  /** Renew the serving certificate now; with ca, start (or finish) a CA rollover too. */
  renewNow(o?: { readonly ca?: boolean }): Promise<RoundResult>;
  stop(): Promise<void>;
}

export interface ManagerOptions {
  /** Default: config.server.certDir. */
  readonly certDir?: string;
  /** Default 60 s: how long a staged CA is trusted before it signs. */
  readonly caSettleMs?: number;
  readonly now?: () => number;
  /** Tests: replace the API. */
  readonly store?: SecretStore;
  readonly patcher?: WebhookPatcher;
  /** Start-up attempts before giving up (default 5, with 1, 2, 4, 8 s between). */
  readonly startAttempts?: number;
}

function writeIfChanged(path: string, data: string, mode: number): boolean {
  try {
    if (readFileSync(path, 'utf8') === data) return false;
  } catch {
    // missing: write it
  }
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
  return true;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A CA like generate.ts's generateCA, but with a subject of its own: during a rollover two CAs are
 * trusted at once, and certificates carry no authority key identifier, so a client that looks
 * issuers up by name (OpenSSL, hence Node) would try the wrong one if both were "meshguard-ca".
 */
async function generateNamedCA(days: number, now: Date): Promise<{ cert: string; key: string }> {
  const serial = `${now.toISOString().replace(/[-:]|\.\d+Z$/g, '')}-${randomBytes(3).toString('hex')}`;
  const ca = await generate([{ name: 'commonName', value: `meshguard-ca-${serial}` }, { name: 'organizationName', value: 'meshguard' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 5 * 60_000),
    notAfterDate: new Date(now.getTime() + days * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

class Manager implements SelfManagedCerts {
  readonly paths: FilePaths;
  readonly #config: Config;
  readonly #log: ListWatchLog;
  readonly #store: SecretStore;
  readonly #patcher: WebhookPatcher;
  readonly #now: () => number;
  readonly #policy: RenewalPolicy;
  readonly #dir: string;
  #chain: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(config: Config, kc: KubeConfig | undefined, log: ListWatchLog, o: ManagerOptions) {
    const c = config.selfManagedCerts;
    this.#config = config;
    this.#log = log;
    this.#dir = resolve(o.certDir ?? config.server.certDir);
    this.paths = { certFile: join(this.#dir, 'tls.crt'), keyFile: join(this.#dir, 'tls.key'), caFile: join(this.#dir, 'ca.crt') };
    const need = (): KubeConfig => {
      if (kc === undefined) throw new Error('self-managed certificates need cluster access');
      return kc;
    };
    this.#store = o.store ?? kubeSecretStore(need(), config.meshguardNamespace, c.secretName);
    this.#patcher = o.patcher ?? kubeWebhookPatcher(need(), c.webhookConfigurationName);
    this.#now = o.now ?? Date.now;
    this.#policy = { sans: servingSans(config), renewBeforeMs: c.renewBeforeDays * DAY_MS, caSettleMs: o.caSettleMs ?? DEFAULT_CA_SETTLE_MS };
  }

  reconcile(): Promise<RoundResult> {
    return this.#serial(() => this.#round(undefined));
  }

  renewNow(o: { readonly ca?: boolean } = {}): Promise<RoundResult> {
    return this.#serial(() => this.#round({ leaf: true, ca: o.ca === true }));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  async #generate(plan: RenewalPlan, s: StoredCerts): Promise<Generated> {
    const c = this.#config.selfManagedCerts;
    const now = new Date(this.#now());
    const ca = plan.ca === 'new' ? await generateNamedCA(c.caDays, now) : undefined;
    const nextCa = plan.nextCa === 'new' ? await generateNamedCA(c.caDays, now) : undefined;
    if (plan.leaf !== 'new') return { ...(ca !== undefined ? { ca } : {}), ...(nextCa !== undefined ? { nextCa } : {}) };
    const signer = ca ?? (plan.ca === 'promote' ? { cert: s.nextCaCert ?? '', key: s.nextCaKey ?? '' } : { cert: s.caCert ?? '', key: s.caKey ?? '' });
    // Never outlive the signing CA (a leaf valid after its CA expires is not valid at all).
    const caLeftDays = (Date.parse(new X509Certificate(signer.cert).validTo) - now.getTime()) / DAY_MS;
    const b = await generateBundle({ sans: this.#policy.sans, ca: signer, leafDays: Math.min(c.leafDays, caLeftDays), now });
    return { ...(ca !== undefined ? { ca } : {}), ...(nextCa !== undefined ? { nextCa } : {}), leaf: { cert: b.cert, key: b.key } };
  }

  async #round(force: PlanInput['force']): Promise<RoundResult> {
    const ns = this.#config.meshguardNamespace;
    let current: V1Secret | undefined;
    let wrote = false;
    let reasons: readonly string[] = [];
    let f = force;
    for (let attempt = 1; current === undefined; attempt++) {
      const read = await this.#store.read();
      const stored = read === undefined ? undefined : storedFrom(read);
      const inSync = stored?.nextCaCert !== undefined && stored.bundle !== undefined ? await this.#patcher.inSync(b64(stored.bundle)) : true;
      const plan = planRenewal({ stored, nowMs: this.#now(), policy: this.#policy, webhooksInSync: inSync, force: f });
      if (!plan.write) {
        current = read;
        break;
      }
      const next = nextStored(plan, stored ?? {}, await this.#generate(plan, stored ?? {}), this.#now());
      try {
        current = await this.#store.write(secretFor(next, { name: this.#config.selfManagedCerts.secretName, namespace: ns, resourceVersion: read?.metadata?.resourceVersion }));
        wrote = true;
        reasons = plan.reasons;
        this.#log.info({ secret: this.#store.where, reasons: plan.reasons, ca: plan.ca, nextCa: plan.nextCa, leaf: plan.leaf }, 'self-managed certificates written');
      } catch (err) {
        if (!(err instanceof SecretConflict) || attempt >= 5) throw err;
        // Someone else renewed first: theirs is fresh, so a forced renewal is done too.
        this.#log.info({ secret: this.#store.where }, 'another replica wrote the certificate Secret first; adopting it');
        f = undefined;
      }
    }
    if (current === undefined) throw new Error(`Secret ${this.#store.where} could not be read`);
    const s = storedFrom(current);
    if (s.cert === undefined || s.key === undefined || s.caCert === undefined || s.bundle === undefined) {
      throw new Error(`Secret ${this.#store.where} lacks tls.crt, tls.key, ca.crt or ca-bundle.crt`);
    }
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    // Key, then certificate, then CA: serve's poller (same process, synchronous reads) sees a
    // consistent pair; a poller in another process may see one mismatched pair and retries.
    let filesChanged = writeIfChanged(this.paths.keyFile, s.key, 0o600);
    filesChanged = writeIfChanged(this.paths.certFile, s.cert, 0o644) || filesChanged;
    filesChanged = writeIfChanged(this.paths.caFile as string, s.caCert, 0o644) || filesChanged;
    const rv = current.metadata?.resourceVersion ?? '';
    let webhooks: RoundResult['webhooks'];
    try {
      // Veto the patch when the Secret changed since it was read: a replica holding an older
      // Secret must never put an older bundle back over a newer one.
      webhooks = await this.#patcher.patch(b64(s.bundle), async () => (await this.#store.read())?.metadata?.resourceVersion === rv);
      if (webhooks !== 'vetoed' && (webhooks.mutating === 'patched' || webhooks.validating === 'patched')) {
        this.#log.info({ webhookConfiguration: this.#config.selfManagedCerts.webhookConfigurationName, ...webhooks }, 'caBundle patched');
      }
    } catch (err) {
      webhooks = 'failed';
      this.#log.warn({ err: (err as Error).message }, 'could not patch the caBundle of the webhook configurations; retrying at the next check');
    }
    return { wrote, reasons, filesChanged, webhooks, resourceVersion: rv, bundle: s.bundle };
  }

  async start(attempts: number): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        const r = await this.reconcile();
        if (r.webhooks === 'vetoed') await this.reconcile();
        break;
      } catch (err) {
        if (i >= attempts) throw err;
        this.#log.warn({ err: (err as Error).message, attempt: i }, 'self-managed certificates: start-up round failed; retrying');
        await sleep(1000 * 2 ** (i - 1));
      }
    }
    if (this.#stopped) return;
    this.#timer = setInterval(() => {
      this.reconcile().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'self-managed certificates: check failed; retrying at the next check'));
    }, this.#config.selfManagedCerts.checkIntervalSeconds * 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#chain;
  }
}

/**
 * Start self-managed certificates: ensure the Secret (creating or renewing it), write tls.crt,
 * tls.key and ca.crt into the certificate directory, patch the caBundle, and re-check every
 * selfManagedCerts.checkIntervalSeconds. Resolves once the files exist; rejects when the Secret
 * cannot be read or written after a few attempts.
 */
export async function startSelfManagedCerts(config: Config, kc: KubeConfig | undefined, log: ListWatchLog, o: ManagerOptions = {}): Promise<SelfManagedCerts> {
  const m = new Manager(config, kc, log, o);
  await m.start(o.startAttempts ?? 5);
  log.info({ certDir: m.paths.certFile, identity: `${hostname()}_${process.pid}` }, 'self-managed certificates ready');
  return m;
}
