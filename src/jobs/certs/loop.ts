// Self-managed certificates in the cluster: a CA and a serving certificate kept in a Secret that
// meshguard owns, written to the certificate directory that serve polls (so renewals swap the
// serving context without dropping connections), and a caBundle patched into meshguard's own
// webhook configurations.
//
// Each round reads the Secret, plans (plan.ts, pure), generates what the plan asks for, writes the
// Secret with the resourceVersion that was read (the loser of a race re-reads and adopts the
// winner's CA), syncs the files and patches the caBundle (adapter.ts). Rounds run one at a time:
// at start-up (with retries), every checkIntervalSeconds, and on request.
import { X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { KubeConfig, V1Secret } from '@kubernetes/client-node';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import type { PatchOutcome, WebhookKind, WebhookPatcher } from '../../kube/webhook-patch.ts';
import type { Config } from '../../config/types.ts';
import { certsAdapter, patchCaBundle, SecretConflict, webhooksCarry, writeCertFiles, type CertsAdapter, type SecretStore } from './adapter.ts';
import { nextStored, planRenewal, renewalPolicy, type Generated, type PlanInput, type RenewalPlan, type RenewalPolicy, type StoredCerts } from './plan.ts';
import { secretFor, storedFrom } from './secret.ts';
import { DAY_MS, generateBundle, generateNamedCA } from './selfsigned.ts';
import { certPaths, type FilePaths } from './source.ts';

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
  renewNow(options?: { readonly ca?: boolean }): Promise<RoundResult>;
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The CAs and the serving certificate the plan asks to be generated. */
async function generateFor(plan: RenewalPlan, s: StoredCerts, sans: readonly string[], certs: Config['selfManagedCerts'], now: Date): Promise<Generated> {
  const ca = plan.ca === 'new' ? await generateNamedCA(certs.caDays, now) : undefined;
  const nextCa = plan.nextCa === 'new' ? await generateNamedCA(certs.caDays, now) : undefined;
  if (plan.leaf !== 'new') return { ...(ca !== undefined ? { ca } : {}), ...(nextCa !== undefined ? { nextCa } : {}) };
  const signer = ca ?? (plan.ca === 'promote' ? { cert: s.nextCaCert ?? '', key: s.nextCaKey ?? '' } : { cert: s.caCert ?? '', key: s.caKey ?? '' });
  // Never outlive the signing CA (a leaf valid after its CA expires is not valid at all).
  const caLeftDays = (Date.parse(new X509Certificate(signer.cert).validTo) - now.getTime()) / DAY_MS;
  const b = await generateBundle({ sans, ca: signer, leafDays: Math.min(certs.leafDays, caLeftDays), now });
  return { ...(ca !== undefined ? { ca } : {}), ...(nextCa !== undefined ? { nextCa } : {}), leaf: { cert: b.cert, key: b.key } };
}

class Manager implements SelfManagedCerts {
  readonly paths: FilePaths & { readonly caFile: string };
  readonly #config: Config;
  readonly #log: ListWatchLog;
  readonly #adapter: CertsAdapter;
  readonly #now: () => number;
  readonly #policy: RenewalPolicy;
  #chain: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(config: Config, kc: KubeConfig | undefined, log: ListWatchLog, options: ManagerOptions) {
    this.#config = config;
    this.#log = log;
    this.paths = certPaths(resolve(options.certDir ?? config.server.certDir));
    this.#adapter = certsAdapter(config, kc, {
      ...(options.store !== undefined ? { store: options.store } : {}),
      ...(options.patcher !== undefined ? { patcher: options.patcher } : {}),
    });
    this.#now = options.now ?? Date.now;
    this.#policy = renewalPolicy(config, options.caSettleMs);
  }

  reconcile(): Promise<RoundResult> {
    return this.#serial(() => this.#round(undefined));
  }

  renewNow(options: { readonly ca?: boolean } = {}): Promise<RoundResult> {
    return this.#serial(() => this.#round({ leaf: true, ca: options.ca === true }));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /** Read, plan and (when the plan says so) write the Secret until a write wins or nothing is due. */
  async #settleSecret(force: PlanInput['force']): Promise<{ current: V1Secret | undefined; wrote: boolean; reasons: readonly string[] }> {
    const store = this.#adapter.store;
    let f = force;
    for (let attempt = 1; ; attempt++) {
      const read = await store.read();
      const stored = read === undefined ? undefined : storedFrom(read);
      const inSync = stored?.nextCaCert !== undefined && stored.bundle !== undefined ? await webhooksCarry(this.#adapter, stored.bundle) : true;
      const plan = planRenewal({ stored, nowMs: this.#now(), policy: this.#policy, webhooksInSync: inSync, force: f });
      if (!plan.write) return { current: read, wrote: false, reasons: [] };
      const generated = await generateFor(plan, stored ?? {}, this.#policy.sans, this.#config.selfManagedCerts, new Date(this.#now()));
      const next = nextStored(plan, stored ?? {}, generated, this.#now());
      try {
        const where = { name: this.#config.selfManagedCerts.secretName, namespace: this.#config.meshguardNamespace, resourceVersion: read?.metadata?.resourceVersion };
        const current = await store.write(secretFor(next, where));
        this.#log.info({ secret: store.where, reasons: plan.reasons, ca: plan.ca, nextCa: plan.nextCa, leaf: plan.leaf }, 'self-managed certificates written');
        return { current, wrote: true, reasons: plan.reasons };
      } catch (err) {
        if (!(err instanceof SecretConflict) || attempt >= 5) throw err;
        // Someone else renewed first: theirs is fresh, so a forced renewal is done too.
        this.#log.info({ secret: store.where }, 'another replica wrote the certificate Secret first; adopting it');
        f = undefined;
      }
    }
  }

  async #round(force: PlanInput['force']): Promise<RoundResult> {
    const where = this.#adapter.store.where;
    const { current, wrote, reasons } = await this.#settleSecret(force);
    if (current === undefined) throw new Error(`Secret ${where} could not be read`);
    const s = storedFrom(current);
    if (s.cert === undefined || s.key === undefined || s.caCert === undefined || s.bundle === undefined) {
      throw new Error(`Secret ${where} lacks tls.crt, tls.key, ca.crt or ca-bundle.crt`);
    }
    const filesChanged = writeCertFiles(this.paths, { cert: s.cert, key: s.key, caCert: s.caCert });
    const rv = current.metadata?.resourceVersion ?? '';
    let webhooks: RoundResult['webhooks'];
    try {
      webhooks = await patchCaBundle(this.#adapter, s.bundle, rv);
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
export async function startSelfManagedCerts(config: Config, kc: KubeConfig | undefined, log: ListWatchLog, options: ManagerOptions = {}): Promise<SelfManagedCerts> {
  const m = new Manager(config, kc, log, options);
  await m.start(options.startAttempts ?? 5);
  log.info({ certDir: m.paths.certFile, identity: `${hostname()}_${process.pid}` }, 'self-managed certificates ready');
  return m;
}
