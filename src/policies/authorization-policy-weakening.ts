// authorization-policy-weakening: an AuthorizationPolicy that is not enforced (the istio.io/dry-run
// annotation) or that allows everything (an ALLOW policy with an empty rule `{}`, which overrides
// every default-deny policy for the workloads it selects). The catalog asks for a warning on
// allow-all; findings have no severity of their own, so it denies in enforce mode like every
// finding. A platform that wants it as a warning pins the rule to audit (rules.<id>.mode: audit).
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { annotationsOf, isTerminating } from '../core/objects.ts';
import { AUTHORIZATION_POLICY, exemptOutsideRoot, kindRef, webhookFor } from './lib/istio-kinds.ts';
import { at, isUnset, mapItems } from './lib/json-read.ts';

export const DRY_RUN = 'istio.io/dry-run';

/** The values Go's strconv.ParseBool reads as true; istiod parses the annotation with it. */
const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);

/** A rule with no from, to or when conditions (absent or empty) matches every request. */
function matchesEverything(rule: Readonly<Record<string, unknown>>): boolean {
  return ['from', 'to', 'when'].every((k) => isUnset(rule[k]) || (Array.isArray(rule[k]) && rule[k].length === 0));
}

export const authorizationPolicyWeakening: ValidatingRule = {
  id: 'authorization-policy-weakening',
  type: 'validating',
  title: 'AuthorizationPolicies must be enforced (no istio.io/dry-run) and must not allow everything',
  fix: 'remove the istio.io/dry-run annotation, and give every ALLOW rule from/to/when conditions',
  match: { kinds: [kindRef(AUTHORIZATION_POLICY)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(AUTHORIZATION_POLICY)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the AuthorizationPolicy is being deleted');
    const out: Violation[] = [];
    const dryRun = annotationsOf(req.object)[DRY_RUN];
    if (typeof dryRun === 'string' && GO_TRUE.has(dryRun)) {
      out.push({
        message: 'istio.io/dry-run makes istiod evaluate the policy without enforcing it',
        path: `metadata.annotations["${DRY_RUN}"]`,
        value: dryRun,
        fix: 'remove the istio.io/dry-run annotation once the policy is tested',
      });
    }
    const action = at(req.object, 'spec', 'action');
    if (!isUnset(action) && action !== 'ALLOW') return out;
    for (const [i, rule] of mapItems(at(req.object, 'spec', 'rules'))) {
      if (!matchesEverything(rule)) continue;
      out.push({
        message: 'an ALLOW rule without from, to or when conditions allows every request to the selected workloads',
        path: `spec.rules[${i}]`,
        value: JSON.stringify(rule),
        fix: 'give the rule from/to/when conditions, or delete the policy',
      });
    }
    return out;
  },
};
