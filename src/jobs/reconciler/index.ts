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

export function startReconciler(options: StartReconcilerOptions): ReconcilerHandle {
  const r = options.config.reconciler;
  const client =
    options.client ??
    kubeReconcilerClient(options.kc, {
      resyncMs: r.resyncSeconds * 1000,
      staleAfterMs: options.config.cluster.staleAfterSeconds * 1000,
      log: options.log,
      ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
    });
  const reconciler = new Reconciler({
    config: options.config,
    client,
    log: options.log,
    ...(options.knownRevisions !== undefined ? { knownRevisions: options.knownRevisions } : {}),
    ...(options.onAction !== undefined ? { onAction: options.onAction } : {}),
    ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
    ...(options.crdRecheckMs !== undefined ? { crdRecheckMs: options.crdRecheckMs } : {}),
  });
  const elector = new LeaderElector({
    store: kubeLeaseStore(options.kc, options.config.meshguardNamespace, r.leaseName),
    identity: options.identity ?? defaultIdentity(),
    leaseDurationSeconds: r.leaseDurationSeconds,
    renewSeconds: r.renewSeconds,
    onStartedLeading: () => {
      options.onLeadingChange?.(true);
      void reconciler.setLeading(true);
    },
    onStoppedLeading: () => {
      options.onLeadingChange?.(false);
      void reconciler.setLeading(false);
    },
    log: options.log,
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
