// Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles, every replica
// serves admission. Each round reads the Lease and decides (a pure function of the Lease, the
// identity and the clock) whether to create it, renew it, take it over (released, or expired:
// renewTime + leaseDurationSeconds < now) or follow its holder. Writes carry the resourceVersion
// that was read, so two candidates racing for the same Lease cannot both win: the API server
// answers the loser with 409 Conflict. A leader that cannot renew within the renew deadline
// stops leading before the Lease expires for the others; on stop it clears the holder so that a
// follower takes over at its next round instead of waiting for expiry.
import { hostname } from 'node:os';
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { ListWatchLog } from './list-watch.ts';
import { statusCode } from './errors.ts';
import { sleep } from './sleep.ts';

/** The fields of a Lease that election reads and writes. Times are Unix milliseconds. */
export interface LeaseRecord {
  /** '' when nobody holds it (released). */
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  readonly acquireTimeMs: number | undefined;
  readonly renewTimeMs: number | undefined;
  readonly leaseTransitions: number;
}

export interface StoredLease extends LeaseRecord {
  readonly resourceVersion: string;
}

export type LeaseDecision =
  | { readonly action: 'create' }
  | { readonly action: 'renew' }
  | { readonly action: 'acquire'; readonly reason: 'released' | 'expired' }
  | { readonly action: 'follow'; readonly holder: string; readonly expiresAtMs: number };

/** When the current holder's claim runs out. */
export function leaseExpiry(lease: LeaseRecord): number {
  return (lease.renewTimeMs ?? lease.acquireTimeMs ?? 0) + lease.leaseDurationSeconds * 1000;
}

/** What this candidate should do with the Lease it just read (undefined: there is none). */
export function leaseDecision(lease: LeaseRecord | undefined, identity: string, nowMs: number): LeaseDecision {
  if (lease === undefined) return { action: 'create' };
  if (lease.holderIdentity === identity) return { action: 'renew' };
  if (lease.holderIdentity === '') return { action: 'acquire', reason: 'released' };
  const expiresAtMs = leaseExpiry(lease);
  if (expiresAtMs < nowMs) return { action: 'acquire', reason: 'expired' };
  return { action: 'follow', holder: lease.holderIdentity, expiresAtMs };
}

/** The Lease to write for a create, renew or acquire decision. */
export function nextLease(decision: LeaseDecision, lease: LeaseRecord | undefined, identity: string, nowMs: number, durationSeconds: number): LeaseRecord {
  const taking = decision.action === 'create' || decision.action === 'acquire';
  return {
    holderIdentity: identity,
    leaseDurationSeconds: durationSeconds,
    acquireTimeMs: taking ? nowMs : (lease?.acquireTimeMs ?? nowMs),
    renewTimeMs: nowMs,
    leaseTransitions: (lease?.leaseTransitions ?? 0) + (decision.action === 'acquire' ? 1 : 0),
  };
}

/** The Lease a leader writes when it steps down: no holder, so a follower takes it at once. */
export function releasedLease(lease: LeaseRecord, nowMs: number): LeaseRecord {
  return { ...lease, holderIdentity: '', leaseDurationSeconds: 1, renewTimeMs: nowMs };
}

/**
 * How long a leader keeps leading without a successful renewal: two thirds of the lease
 * duration (client-go's 10 s of 15 s), at least one renew period, at most the lease duration.
 * Followers wait for the full duration, so the old leader has stopped before anyone takes over.
 */
export function renewDeadlineMs(durationSeconds: number, renewSeconds: number): number {
  return Math.min(durationSeconds * 1000, Math.max(renewSeconds * 1000, Math.round((durationSeconds * 1000 * 2) / 3)));
}

export function shouldStepDown(lastRenewMs: number, nowMs: number, deadlineMs: number): boolean {
  return nowMs - lastRenewMs >= deadlineMs;
}

/** Pod name in a cluster (the hostname of a pod is its name), plus the pid to tell processes apart. */
export function defaultIdentity(): string {
  return `${hostname()}_${process.pid}`;
}

// ------------------------------------------------------------------------------- storage ---

/** Someone else wrote the Lease between our read and our write (409 Conflict or 409 AlreadyExists). */
export class LeaseConflict extends Error {
  override name = 'LeaseConflict';
}

export interface LeaseStore {
  /** The Lease, or undefined when it does not exist. */
  get(): Promise<StoredLease | undefined>;
  create(r: LeaseRecord): Promise<StoredLease>;
  /** Replace the Lease if it still has this resourceVersion; LeaseConflict otherwise. */
  update(r: LeaseRecord, resourceVersion: string): Promise<StoredLease>;
  /** For messages: namespace/name. */
  readonly where: string;
}


function millis(t: unknown): number | undefined {
  if (t instanceof Date) return t.getTime();
  if (typeof t === 'string' && t !== '') {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

function fromLease(l: V1Lease): StoredLease {
  const s = l.spec ?? {};
  return {
    holderIdentity: s.holderIdentity ?? '',
    leaseDurationSeconds: s.leaseDurationSeconds ?? 0,
    acquireTimeMs: millis(s.acquireTime),
    renewTimeMs: millis(s.renewTime),
    leaseTransitions: s.leaseTransitions ?? 0,
    resourceVersion: l.metadata?.resourceVersion ?? '',
  };
}

function toSpec(r: LeaseRecord): NonNullable<V1Lease['spec']> {
  // MicroTime: the API server wants RFC 3339 with exactly six fractional digits.
  return {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    ...(r.acquireTimeMs !== undefined ? { acquireTime: new V1MicroTime(r.acquireTimeMs) } : {}),
    ...(r.renewTimeMs !== undefined ? { renewTime: new V1MicroTime(r.renewTimeMs) } : {}),
    leaseTransitions: r.leaseTransitions,
  };
}

export function kubeLeaseStore(kc: KubeConfig, namespace: string, name: string): LeaseStore {
  const api = kc.makeApiClient(CoordinationV1Api);
  const conflictOr = (err: unknown): never => {
    if (statusCode(err) === 409) throw new LeaseConflict(`lease ${namespace}/${name} was changed by another candidate`);
    throw err;
  };
  return {
    where: `${namespace}/${name}`,
    async get() {
      try {
        return fromLease(await api.readNamespacedLease({ name, namespace }));
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async create(r) {
      try {
        return fromLease(await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: toSpec(r) } }));
      } catch (err) {
        return conflictOr(err);
      }
    },
    async update(r, resourceVersion) {
      try {
        return fromLease(await api.replaceNamespacedLease({ name, namespace, body: { metadata: { name, namespace, resourceVersion }, spec: toSpec(r) } }));
      } catch (err) {
        return conflictOr(err);
      }
    },
  };
}

// ------------------------------------------------------------------------------ elector ---

export interface LeaderElectorOptions {
  readonly store: LeaseStore;
  readonly identity: string;
  readonly leaseDurationSeconds: number;
  readonly renewSeconds: number;
  readonly onStartedLeading: () => void;
  readonly onStoppedLeading: () => void;
  readonly log: ListWatchLog;
  readonly now?: () => number;
}

export class LeaderElector {
  readonly #options: LeaderElectorOptions;
  readonly #now: () => number;
  readonly #deadlineMs: number;
  #leading = false;
  #lastRenewMs = 0;
  #lease: StoredLease | undefined;
  #lastHolder: string | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  readonly #stopSignal = new AbortController();
  /** Counters for tests and metrics. */
  readonly stats = { rounds: 0, conflicts: 0, errors: 0, transitions: 0 };

  constructor(options: LeaderElectorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#deadlineMs = renewDeadlineMs(options.leaseDurationSeconds, options.renewSeconds);
  }

  get identity(): string {
    return this.#options.identity;
  }

  isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stop campaigning; a leader clears the holder so a follower takes over at its next round. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopSignal.abort();
    await this.#loop;
    if (!this.#leading) return;
    const lease = this.#lease;
    this.#setLeading(false, 'stopping');
    if (lease === undefined) return;
    try {
      await this.#options.store.update(releasedLease(lease, this.#now()), lease.resourceVersion);
      this.#options.log.info({ lease: this.#options.store.where, identity: this.#options.identity }, 'leader election: released the lease');
    } catch (err) {
      // Someone already took it, or the API is unreachable: the lease then simply expires.
      this.#options.log.warn({ lease: this.#options.store.where, err: (err as Error).message }, 'leader election: could not release the lease; it will expire');
    }
  }

  /** One round: read, decide, write. Exported for tests; the loop calls it every renewSeconds. */
  async round(): Promise<void> {
    this.stats.rounds++;
    const now = this.#now();
    try {
      const lease = await this.#options.store.get();
      const d = leaseDecision(lease, this.#options.identity, now);
      if (d.action === 'follow') {
        this.#lease = lease;
        if (this.#leading) this.#setLeading(false, `the lease is held by ${d.holder}`);
        if (d.holder !== this.#lastHolder) {
          this.#lastHolder = d.holder;
          this.#options.log.info({ lease: this.#options.store.where, leader: d.holder, identity: this.#options.identity }, 'leader election: following');
        }
        return;
      }
      const next = nextLease(d, lease, this.#options.identity, now, this.#options.leaseDurationSeconds);
      this.#lease = lease === undefined ? await this.#options.store.create(next) : await this.#options.store.update(next, lease.resourceVersion);
      this.#lastRenewMs = now;
      this.#lastHolder = this.#options.identity;
      if (!this.#leading) this.#setLeading(true, d.action === 'acquire' ? `the lease was ${d.reason}` : d.action === 'create' ? 'created the lease' : 'renewed');
    } catch (err) {
      if (err instanceof LeaseConflict) this.stats.conflicts++;
      else {
        this.stats.errors++;
        this.#options.log.warn({ lease: this.#options.store.where, err: (err as Error).message }, 'leader election: lease read or write failed');
      }
      if (this.#leading && shouldStepDown(this.#lastRenewMs, now, this.#deadlineMs)) {
        this.#setLeading(false, `not renewed for ${Math.round((now - this.#lastRenewMs) / 1000)} s`);
      }
    }
  }

  #setLeading(leading: boolean, why: string): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    this.stats.transitions++;
    this.#options.log.info({ lease: this.#options.store.where, identity: this.#options.identity, why }, leading ? 'leader election: became the leader' : 'leader election: stopped leading');
    try {
      if (leading) this.#options.onStartedLeading();
      else this.#options.onStoppedLeading();
    } catch (err) {
      this.#options.log.warn({ err: (err as Error).message }, 'leader election: callback failed');
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.round();
      if (this.#stopped) break;
      await sleep(this.#options.renewSeconds * 1000, this.#stopSignal.signal);
    }
  }
}
