// The reconciler's shell: keep local copies of namespaces and managed objects current (watches),
// and on every change, on a periodic resync and after failures, compute the desired state and
// the diff (pure functions) and apply the actions. Only the leader applies anything; dry-run logs
// the plan and writes nothing. Without Istio's CRDs it stays idle and says so in problem().
import type { ListWatchLog } from '../../kube/list-watch.ts';
import type { Config } from '../../config/types.ts';
import { apiErrorText as errorText, statusCode } from '../../kube/errors.ts';
import type { ReconcilerClient, Watcher } from './adapter.ts';
import { desiredState, type NamespaceSnapshot } from './desired.ts';
import { describeAction, planActions, type Action } from './diff.ts';
import { describeObject, isManaged, kindInfo, manifestOf, objectKey, reconciledKinds, type ManagedKind, type ObservedObject } from './resources.ts';

export type ActionOutcome = 'applied' | 'failed' | 'dry-run' | 'skipped';

export interface ReconcilerOptions {
  readonly config: Config;
  readonly client: ReconcilerClient;
  readonly log: ListWatchLog;
  /** Installed Istio revisions (for istio.io/rev namespaces); default: config.revisions. */
  readonly knownRevisions?: () => ReadonlySet<string>;
  /** Coalesce bursts of watch events into one pass (default 200 ms). */
  readonly debounceMs?: number;
  /** How often to look for the Istio CRDs again while they are missing (default 30 s). */
  readonly crdRecheckMs?: number;
  /** Retry delay after a failed action (default 5 s). */
  readonly retryMs?: number;
  /** Called once per planned action with its outcome (metrics). */
  readonly onAction?: (action: Action, outcome: ActionOutcome) => void;
}

export interface PassResult {
  /** Why nothing was planned (not leading, CRDs missing, lists not complete). */
  readonly skipped?: string;
  readonly actions: readonly Action[];
  readonly failed: number;
}

const CRD_HINT = 'install Istio (or its CRDs): meshguard looks again every 30 s and then starts reconciling; admission is not affected';

export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #namespaces = new Map<string, NamespaceSnapshot>();
  readonly #observed = new Map<string, ObservedObject>();
  /** Names taken by objects meshguard does not manage (cleared at each full resync). */
  readonly #conflicts = new Set<string>();
  readonly #reportedConflicts = new Set<string>();
  #watchers: Watcher[] = [];
  #leading = false;
  #stopped = false;
  #missing: readonly ManagedKind[] | undefined;
  #crdError: string | undefined;
  #loggedMissing = '';
  #crdTimer: NodeJS.Timeout | undefined;
  #passTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #running: Promise<PassResult> | undefined;
  #dirty = false;
  #lastDryRunPlan = '';
  /** Counters for tests and metrics. */
  readonly stats = { passes: 0, applied: 0, failed: 0 };
  /** The most recent pass (tests, dry-run output). */
  last: PassResult | undefined;

  constructor(options: ReconcilerOptions) {
    this.#options = options;
  }

  /** Begin looking for the CRDs. Nothing is reconciled until setLeading(true). */
  start(): void {
    void this.#checkCrds();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#crdTimer);
    await this.setLeading(false);
  }

  /** undefined when fine (or idle as a follower); otherwise what is wrong, for /readyz and logs. */
  problem(): string | undefined {
    if (this.#crdError !== undefined) return `reconciler: cannot tell whether Istio's CRDs are installed: ${this.#crdError}`;
    if (this.#missing !== undefined && this.#missing.length > 0) {
      const names = this.#missing.map((k) => `${kindInfo(k).plural}.${kindInfo(k).group}`).join(', ');
      return `reconciler: Istio CRDs not installed (${names}); no hardening resources are reconciled`;
    }
    if (!this.#leading) return undefined;
    return this.#watchers.map((w) => w.problem()).find((p) => p !== undefined);
  }

  isLeading(): boolean {
    return this.#leading;
  }

  async setLeading(leading: boolean): Promise<void> {
    if (leading === this.#leading) return;
    this.#leading = leading;
    if (leading) {
      this.#options.log.info({ dryRun: this.#options.config.reconciler.dryRun }, 'reconciler: leading; reconciling hardening resources');
      this.#startWatching();
      return;
    }
    clearTimeout(this.#passTimer);
    clearInterval(this.#resyncTimer);
    this.#passTimer = undefined;
    const watchers = this.#watchers;
    this.#watchers = [];
    await Promise.all(watchers.map((w) => w.stop()));
    await this.#running;
    this.#namespaces.clear();
    this.#observed.clear();
    this.#lastDryRunPlan = '';
  }

  async #checkCrds(): Promise<void> {
    if (this.#stopped) return;
    try {
      const missing = await this.#options.client.missingKinds();
      const wasMissing = this.#missing === undefined || this.#missing.length > 0 || this.#crdError !== undefined;
      this.#missing = missing;
      this.#crdError = undefined;
      // Logged when the set of missing CRDs changes, not on every re-check.
      const text = missing.join(',');
      if (missing.length > 0) {
        if (text !== this.#loggedMissing) this.#options.log.warn({ missing, hint: CRD_HINT }, this.problem() ?? 'reconciler: Istio CRDs not installed');
      } else if (wasMissing) {
        this.#options.log.info({}, 'reconciler: Istio CRDs found');
        this.#startWatching();
      }
      this.#loggedMissing = text;
    } catch (err) {
      this.#crdError = errorText(err);
      this.#options.log.warn({ err: this.#crdError }, 'reconciler: cannot look up the Istio CRDs; retrying');
    }
    if (this.#missing === undefined || this.#missing.length > 0 || this.#crdError !== undefined) {
      this.#crdTimer = setTimeout(() => void this.#checkCrds(), this.#options.crdRecheckMs ?? 30_000);
      this.#crdTimer.unref();
    }
  }

  #ready(): boolean {
    return this.#missing !== undefined && this.#missing.length === 0 && this.#crdError === undefined;
  }

  #startWatching(): void {
    if (!this.#leading || !this.#ready() || this.#watchers.length > 0 || this.#stopped) return;
    const changed = (): void => this.#schedule();
    this.#watchers.push(
      this.#options.client.watchNamespaces({
        replace: (items) => {
          this.#namespaces.clear();
          for (const n of items) this.#namespaces.set(n.name, n);
          changed();
        },
        upsert: (n) => {
          this.#namespaces.set(n.name, n);
          changed();
        },
        remove: (n) => {
          this.#namespaces.delete(n.name);
          changed();
        },
      }),
    );
    for (const kind of reconciledKinds(this.#options.config.reconciler.networkPolicies.enabled)) {
      this.#watchers.push(
        this.#options.client.watchManaged(kind, {
          replace: (items) => {
            for (const [key, o] of this.#observed) if (o.kind === kind.kind) this.#observed.delete(key);
            for (const o of items) this.#observed.set(objectKey(o), o);
            changed();
          },
          upsert: (o) => {
            this.#observed.set(objectKey(o), o);
            changed();
          },
          remove: (o) => {
            this.#observed.delete(objectKey(o));
            changed();
          },
        }),
      );
    }
    for (const w of this.#watchers) w.start();
    const resyncMs = this.#options.config.reconciler.resyncSeconds * 1000;
    this.#resyncTimer = setInterval(() => {
      this.#conflicts.clear();
      this.#schedule(0);
    }, resyncMs);
    this.#resyncTimer.unref();
  }

  #schedule(delayMs = this.#options.debounceMs ?? 200): void {
    if (!this.#leading || this.#passTimer !== undefined) return;
    this.#passTimer = setTimeout(() => {
      this.#passTimer = undefined;
      void this.reconcile();
    }, delayMs);
    this.#passTimer.unref();
  }

  /** One pass now (or right after the running one). Exported for tests. */
  async reconcile(): Promise<PassResult> {
    if (this.#running !== undefined) {
      this.#dirty = true;
      return this.#running;
    }
    this.#running = this.#pass();
    try {
      return await this.#running;
    } finally {
      this.#running = undefined;
      if (this.#dirty) {
        this.#dirty = false;
        this.#schedule(0);
      }
    }
  }

  async #pass(): Promise<PassResult> {
    const skip = (why: string): PassResult => (this.last = { skipped: why, actions: [], failed: 0 });
    if (!this.#leading) return skip('not the leader');
    if (!this.#ready()) return skip(this.problem() ?? 'waiting for the CRD check');
    if (this.#watchers.length === 0 || !this.#watchers.every((w) => w.synced())) return skip('waiting for the initial lists');
    this.stats.passes++;
    const revisions = this.#options.knownRevisions?.() ?? new Set(this.#options.config.revisions);
    const desired = desiredState(this.#namespaces.values(), this.#options.config, revisions);
    const actions = planActions(desired, this.#observed.values(), this.#conflicts);
    if (this.#options.config.reconciler.dryRun) {
      const plan = actions.map(describeAction).join('\n');
      if (plan !== this.#lastDryRunPlan) {
        this.#lastDryRunPlan = plan;
        for (const a of actions) {
          this.#options.log.info({ dryRun: true, action: a.type }, `reconciler (dry-run): would ${describeAction(a)}`);
          this.#options.onAction?.(a, 'dry-run');
        }
        if (actions.length === 0) this.#options.log.info({ dryRun: true }, 'reconciler (dry-run): nothing to change');
      }
      return (this.last = { actions, failed: 0 });
    }
    let failed = 0;
    for (const a of actions) {
      if (!this.#leading) break;
      const outcome = await this.#apply(a);
      if (outcome === 'failed') failed++;
      this.#options.onAction?.(a, outcome);
    }
    this.stats.failed += failed;
    if (failed > 0) {
      const t = setTimeout(() => this.#schedule(0), this.#options.retryMs ?? 5000);
      t.unref();
    }
    return (this.last = { actions, failed });
  }

  async #apply(a: Action): Promise<ActionOutcome> {
    const c = this.#options.client;
    const subject = a.type === 'delete' ? a.observed : a.desired;
    const kind = kindInfo(subject.kind);
    const key = objectKey(subject);
    const fields = { kind: subject.kind, namespace: subject.namespace, name: subject.name };
    try {
      switch (a.type) {
        case 'conflict':
          if (!this.#reportedConflicts.has(key)) {
            this.#reportedConflicts.add(key);
            this.#options.log.warn(fields, `reconciler: conflict: ${describeAction(a)}`);
          }
          return 'skipped';
        case 'create': {
          const stored = await c.create(kind, a.desired.namespace, manifestOf(a.desired));
          if (stored !== undefined) this.#observed.set(key, stored);
          this.#reportedConflicts.delete(key);
          this.#options.log.info({ ...fields, source: a.desired.source }, `reconciler: created ${describeObject(a.desired)}`);
          break;
        }
        case 'update': {
          const raw = a.observed.raw as { metadata?: Record<string, unknown> };
          const body = {
            ...a.observed.raw,
            metadata: { ...raw.metadata, labels: { ...a.observed.labels, ...a.desired.labels } },
            spec: structuredClone(a.desired.spec),
          };
          const stored = await c.replace(kind, a.desired.namespace, a.desired.name, body);
          if (stored !== undefined) this.#observed.set(key, stored);
          this.#options.log.warn({ ...fields, changes: a.changes }, `reconciler: restored ${describeObject(a.desired)}, which was changed by hand: ${a.changes.join('; ')}`);
          break;
        }
        case 'delete':
          await c.delete(kind, a.observed);
          this.#observed.delete(key);
          this.#options.log.info({ ...fields, reason: a.reason }, `reconciler: deleted ${describeObject(a.observed)} (${a.reason})`);
          break;
      }
      this.stats.applied++;
      return 'applied';
    } catch (err) {
      return this.#failed(a, key, fields, err);
    }
  }

  async #failed(a: Action, key: string, fields: Record<string, string>, err: unknown): Promise<ActionOutcome> {
    const code = statusCode(err);
    if (a.type === 'create' && code === 409) {
      // The name is taken. By our own object (the watch has not told us yet): nothing to do. By
      // someone else's: leave it alone and say so, once.
      const existing = await this.#options.client.get(kindInfo(a.desired.kind), a.desired.namespace, a.desired.name).catch(() => undefined);
      if (existing !== undefined && isManaged(existing.labels)) {
        this.#observed.set(key, existing);
        return 'skipped';
      }
      this.#conflicts.add(key);
      if (!this.#reportedConflicts.has(key)) {
        this.#reportedConflicts.add(key);
        this.#options.log.warn(fields, `reconciler: conflict: ${describeAction({ type: 'conflict', desired: a.desired })}`);
      }
      return 'skipped';
    }
    if (code === 409) return 'skipped'; // changed meanwhile: the watch brings the new version and another pass
    if (a.type === 'delete' && code === 404) {
      this.#observed.delete(key);
      return 'skipped';
    }
    if (code === 403 && /being terminated/.test(errorText(err))) return 'skipped';
    if (code === 404 && a.type !== 'delete') return 'skipped'; // the namespace (or the object) went away meanwhile
    this.#options.log.warn({ ...fields, action: a.type, err: errorText(err) }, `reconciler: could not ${describeAction(a)}; retrying`);
    return 'failed';
  }
}
