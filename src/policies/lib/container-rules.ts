// What the rules that judge each container share (workload-network-privileges,
// workload-reserved-container-names, workload-proxy-uid): they match every workload kind on CREATE
// and UPDATE and the pods/ephemeralcontainers subresource too (kubectl debug adds a container
// through it, not through an update of the pod), and they judge the reviewed workload's
// containers, or skip for the reason reviewedWorkload gives.
import { isSkip, type RuleContext, type Skip, type ValidatingRule, type Violation } from '../../core/types.ts';
import { EPHEMERAL_SUBRESOURCE, WORKLOAD_KIND_REFS, workloadWebhook } from './pod-template.ts';
import { reviewedWorkload, type Workload } from './workload-review.ts';

/** The match and webhook resources of a rule that judges containers, ephemeral ones included. */
export function containerScope(): Pick<ValidatingRule, 'match' | 'webhook'> {
  return {
    match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'], subResources: ['', EPHEMERAL_SUBRESOURCE] },
    webhook: workloadWebhook({ ephemeral: true }),
  };
}

/** The violations `judge` finds in the reviewed workload, or the skip when there is none to judge. */
export function judgeWorkload(ctx: RuleContext, judge: (w: Workload, out: Violation[]) => void): readonly Violation[] | Skip {
  const w = reviewedWorkload(ctx);
  if (isSkip(w)) return w;
  const out: Violation[] = [];
  judge(w, out);
  return out;
}
