// sidecar-outbound-allow-any: a Sidecar's outboundTrafficPolicy replaces the mesh-wide
// REGISTRY_ONLY for the workloads it selects. ALLOW_ANY, and an egressProxy (which Istio honours
// only with ALLOW_ANY), send traffic for unknown hosts out of the mesh. A selector-less Sidecar in
// the root namespace applies mesh-wide, so no namespace is exempt from this rule.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { kindRef, ROOT_NAMESPACE, SIDECAR, webhookFor } from './lib/istio-kinds.ts';
import { at, isUnset, show } from './lib/json-read.ts';
import { isRecord, isTerminating } from '../core/objects.ts';

const FIX = 'remove spec.outboundTrafficPolicy (the mesh REGISTRY_ONLY policy then applies) and declare external hosts with ServiceEntries';

export const sidecarOutboundAllowAny: ValidatingRule = {
  id: 'sidecar-outbound-allow-any',
  type: 'validating',
  title: 'Sidecars must not open egress to unknown destinations (outboundTrafficPolicy ALLOW_ANY or egressProxy)',
  fix: FIX,
  match: { kinds: [kindRef(SIDECAR)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(SIDECAR)],
  validate({ request: req }) {
    if (isTerminating(req.object)) return skip('the Sidecar is being deleted');
    const policy = at(req.object, 'spec', 'outboundTrafficPolicy');
    if (!isRecord(policy)) return [];
    const meshWide = req.namespace === ROOT_NAMESPACE && isUnset(at(req.object, 'spec', 'workloadSelector'));
    const scope = meshWide ? ' for the whole mesh (selector-less Sidecar in the root namespace)' : '';
    const out: Violation[] = [];
    // Only REGISTRY_ONLY keeps egress closed: ALLOW_ANY, ALLOW_ANY_DYNAMIC_DNS (mesh-only, but
    // defence in depth) and anything Istio might decode differently (e.g. the enum number 1).
    if (!isUnset(policy['mode']) && policy['mode'] !== 'REGISTRY_ONLY') {
      out.push({
        message: `outboundTrafficPolicy mode ${show(policy['mode'])} lets workloads reach hosts outside the service registry${scope}`,
        path: 'spec.outboundTrafficPolicy.mode',
        value: show(policy['mode']),
        fix: 'set mode REGISTRY_ONLY or remove it, and declare external hosts with ServiceEntries',
      });
    }
    if (!isUnset(policy['egressProxy'])) {
      out.push({
        message: `outboundTrafficPolicy egressProxy forwards traffic for unknown hosts out of the mesh${scope}`,
        path: 'spec.outboundTrafficPolicy.egressProxy',
        value: show(policy['egressProxy']),
        fix: 'remove egressProxy; route external hosts through ServiceEntries and an egress gateway',
      });
    }
    return out;
  },
};
