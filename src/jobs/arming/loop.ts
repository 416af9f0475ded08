// Webhook arming's loop: on a timer (and on demand), read both webhook configurations and the
// Service's endpoints, plan (plan.ts), patch through the adapter, retrying when a concurrent
// writer got there first; on stop, one last pass so a draining replica disarms what it armed.
import type { ListWatchLog } from '../../kube/list-watch.ts';
import type { FailurePolicy } from '../../policies/webhook-config.ts';
import type { WebhookKind } from '../../kube/webhook-patch.ts';
import { statusCode } from '../../kube/errors.ts';
import type { ArmingCluster } from './adapter.ts';
import { armingPatch, bundleTrusts, desiredPolicy, serviceOf, serviceReady, type ArmingInput } from './plan.ts';

export interface ArmingOptions {
  readonly cluster: ArmingCluster;
  readonly armed: FailurePolicy;
  readonly followers: ReadonlySet<string>;
  /** This replica's pod name (its hostname in a pod). */
  readonly pod: string;
  /** This replica is ready to admit (readiness checks pass, not draining). */
  readonly selfReady: () => boolean;
  /** PEM of the certificate this replica serves now. */
  readonly servedCert: () => string;
  readonly intervalMs: number;
  readonly log: ListWatchLog;
  readonly onChange?: (kind: WebhookKind, armed: boolean) => void;
}

export interface WebhookArming {
  /** One pass: read, decide, patch. Returns whether the followers are armed afterwards. */
  syncNow(): Promise<boolean>;
  /** Stop the timer, then one last pass (this replica is no longer ready by then). */
  stop(): Promise<void>;
}

const KINDS: readonly WebhookKind[] = ['mutating', 'validating'];

export function startWebhookArming(options: ArmingOptions): WebhookArming {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let lastArmed: boolean | undefined;

  const pass = async (): Promise<boolean> => {
    const configs = await Promise.all(KINDS.map((k) => options.cluster.read(k)));
    const svc = serviceOf(configs, options.followers);
    const selfReady = !stopped && options.selfReady();
    // A URL clientConfig (development, tests) points at this process; a Service at every replica.
    const backendReady = svc === undefined ? selfReady : serviceReady(await options.cluster.endpoints(svc.namespace, svc.name), { pod: options.pod, ready: selfReady });
    const cert = options.servedCert();
    const input: ArmingInput = { armed: options.armed, followers: options.followers, backendReady, trusts: (b) => bundleTrusts(b, cert) };
    let armed = backendReady;
    for (const [n, kind] of KINDS.entries()) {
      for (let attempt = 1; ; attempt++) {
        const c = attempt === 1 ? configs[n] : await options.cluster.read(kind);
        if (c === undefined) break;
        const ops = armingPatch(c, input);
        armed &&= (c.webhooks ?? []).every((w) => w.name === undefined || !options.followers.has(w.name) || desiredPolicy(w, input) === options.armed);
        if (ops.length === 0) break;
        try {
          await options.cluster.patch(kind, ops);
          options.log.info({ kind, backendReady, ops: ops.filter((p) => p.op === 'add').length }, backendReady ? 'webhooks armed' : 'webhooks set to fail open: no ready meshguard answers');
          options.onChange?.(kind, backendReady);
          break;
        } catch (err) {
          // 422: a `test` failed (changed since read); 409: a conflict. Re-read and try again.
          const code = statusCode(err);
          if ((code !== 422 && code !== 409) || attempt >= 4) throw err;
        }
      }
    }
    if (armed !== lastArmed) options.log.info({ armed, backendReady }, armed ? `webhooks follow failurePolicy ${options.armed}` : 'webhooks fail open (Ignore)');
    lastArmed = armed;
    return armed;
  };

  const syncNow = (): Promise<boolean> => {
    running ??= pass().finally(() => (running = undefined));
    return running;
  };

  const tick = (): void => {
    if (stopped) return;
    syncNow()
      .catch((err: unknown) => options.log.warn({ err: (err as Error).message }, 'webhook arming: check failed; retrying'))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, options.intervalMs).unref();
      });
  };
  tick();

  return {
    syncNow,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running?.catch(() => undefined);
      try {
        await pass();
      } catch (err) {
        options.log.warn({ err: (err as Error).message }, 'webhook arming: last check on shutdown failed');
      }
    },
  };
}
