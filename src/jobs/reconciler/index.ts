// The reconciler as serve runs it: leader election on a Lease in meshguard's namespace, and the
// reconciler working only while this replica leads. Every replica keeps serving admission.
import type { KubeConfig } from '@kubernetes/client-node';
import { defaultIdentity, kubeLeaseStore, LeaderElector } from '../../kube/leader.ts';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import type { Config } from '../../config/types.ts';
import { kubeReconcilerClient, type ReconcilerClient } from './adapter.ts';
import { Reconciler, type ReconcilerOptions } from './loop.ts';

export { desiredState, namespaceStatus, type DesiredState, type NamespaceSnapshot, type NamespaceStatus } from './desired.ts';
export { describeAction, planActions, type Action } from './diff.ts';
export { MANAGED_KINDS, MANAGED_LABELS, MANAGED_SELECTOR } from './resources.ts';
export { Reconciler, type ActionOutcome, type PassResult } from './loop.ts';

export interface StartReconcilerOptions {
  readonly config: Config;
  readonly kc: KubeConfig;
  readonly log: ListWatchLog;
  /** Lease holder identity; default hostname (the pod name in a cluster) and pid. */
  readonly identity?: string;
  /** Installed Istio revisions, e.g. () => clusterCache.knownRevisions(). */
  readonly knownRevisions?: () => ReadonlySet<string>;
  readonly onAction?: ReconcilerOptions['onAction'];
  /** Called when this replica starts (true) or stops (false) leading, e.g. for a gauge. */
  readonly onLeadingChange?: (leading: boolean) => void;
  /** Tests: replace the API client. */
  readonly client?: ReconcilerClient;
  readonly debounceMs?: number;
  readonly crdRecheckMs?: number;
  /** Objects per list request (default 500). */
  readonly pageSize?: number;
}

export interface ReconcilerHandle {
  readonly reconciler: Reconciler;
  readonly elector: LeaderElector;
  /** For /readyz and logs: undefined when fine. */
  problem(): string | undefined;
  isLeader(): boolean;
  /** Stop reconciling and release the Lease (a follower takes over at its next round). */
  stop(): Promise<void>;
}

export function startReconciler(o: StartReconcilerOptions): ReconcilerHandle {
  const r = o.config.reconciler;
  const client =
    o.client ??
    kubeReconcilerClient(o.kc, {
      resyncMs: r.resyncSeconds * 1000,
      staleAfterMs: o.config.cluster.staleAfterSeconds * 1000,
      log: o.log,
      ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
    });
  const reconciler = new Reconciler({
    config: o.config,
    client,
    log: o.log,
    ...(o.knownRevisions !== undefined ? { knownRevisions: o.knownRevisions } : {}),
    ...(o.onAction !== undefined ? { onAction: o.onAction } : {}),
    ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}),
    ...(o.crdRecheckMs !== undefined ? { crdRecheckMs: o.crdRecheckMs } : {}),
  });
  const elector = new LeaderElector({
    store: kubeLeaseStore(o.kc, o.config.meshguardNamespace, r.leaseName),
    identity: o.identity ?? defaultIdentity(),
    leaseDurationSeconds: r.leaseDurationSeconds,
    renewSeconds: r.renewSeconds,
    onStartedLeading: () => {
      o.onLeadingChange?.(true);
      void reconciler.setLeading(true);
    },
    onStoppedLeading: () => {
      o.onLeadingChange?.(false);
      void reconciler.setLeading(false);
    },
    log: o.log,
  });
  reconciler.start();
  elector.start();
  return {
    reconciler,
    elector,
    problem: () => reconciler.problem(),
    isLeader: () => elector.isLeader(),
    async stop() {
      await elector.stop();
      await reconciler.stop();
    },
  };
}
