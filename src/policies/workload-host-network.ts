// workload-host-network: a pod on the node's network namespace is outside the mesh. Istio never
// injects a hostNetwork pod (its iptables rules would rewrite the node's routing) and ambient
// never captures one, so its traffic skips mTLS, policy and REGISTRY_ONLY egress.
import { isSkip, skip, type ValidatingRule } from '../core/types.ts';
import { fieldPath, WORKLOAD_KIND_REFS, workloadWebhook } from './lib/pod-template.ts';
import { reviewedWorkload } from './lib/workload-review.ts';

export const workloadHostNetwork: ValidatingRule = {
  id: 'workload-host-network',
  type: 'validating',
  title: 'Workloads may not use the host network',
  fix: 'remove spec.hostNetwork (or set it to false); expose the pod through a Service instead',
  match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'] },
  webhook: workloadWebhook({ ephemeral: false }),
  validate(ctx) {
    const w = reviewedWorkload(ctx);
    if (isSkip(w)) return w;
    if (w.scope !== 'all') return skip('a Pod UPDATE cannot change hostNetwork');
    if (w.template.podSpec['hostNetwork'] !== true) return [];
    return [{
      message: 'hostNetwork: true runs the pod in the node\'s network namespace: Istio never injects it and ambient never captures it',
      path: fieldPath(w.template, 'spec.hostNetwork'),
      value: 'true',
    }];
  },
};
