// request-authentication-principal: a RequestAuthentication only rejects requests with an
// invalid token; a request without any token is admitted. Requiring a token takes an
// AuthorizationPolicy that demands a request principal for the same workloads: an ALLOW policy
// whose every rule has from.source.requestPrincipals, or a DENY policy with
// notRequestPrincipals ["*"]. Admission of the RequestAuthentication cannot see the
// AuthorizationPolicies, so it only warns (advisory, never a denial); scan judges the pair from
// the listed objects. Opinionated: audit by default.
import { skip, type ValidatingRule } from '../core/types.ts';
import type { KObject } from '../core/request.ts';
import { AUTHORIZATION_POLICY, exemptOutsideRoot, kindRef, REQUEST_AUTHENTICATION, ROOT_NAMESPACE, webhookFor } from './lib/istio-kinds.ts';
import { at, mapItems, stringItems } from './lib/json-read.ts';
import { covers, finding, ofKind, selectorLabels } from './lib/inventory.ts';
import { isTerminating } from '../core/objects.ts';


const MESSAGE = 'a RequestAuthentication rejects invalid tokens but admits requests without one';

function sources(rule: Readonly<Record<string, unknown>>): Record<string, unknown>[] {
  return mapItems(rule['from']).flatMap(([, f]) => mapItems([f['source']]).map(([, s]) => s));
}

/** Does this AuthorizationPolicy refuse requests without a request principal (for the workloads it selects)? */
export function requiresPrincipal(ap: KObject): boolean {
  const action = at(ap, 'spec', 'action') ?? 'ALLOW';
  const rules = mapItems(at(ap, 'spec', 'rules')).map(([, r]) => r);
  if (action === 'ALLOW') return rules.length > 0 && rules.every((r) => sources(r).some((s) => stringItems(s['requestPrincipals']).length > 0));
  if (action === 'DENY') return rules.some((r) => sources(r).some((s) => stringItems(s['notRequestPrincipals']).some(([, p]) => p === '*')));
  return false;
}

function sameTargets(a: KObject, b: KObject): boolean {
  return JSON.stringify(at(a, 'spec', 'targetRefs') ?? []) === JSON.stringify(at(b, 'spec', 'targetRefs') ?? []);
}

export const requestAuthenticationPrincipal: ValidatingRule = {
  id: 'request-authentication-principal',
  type: 'validating',
  title: 'A RequestAuthentication needs an AuthorizationPolicy that requires a request principal in its scope',
  fix: 'add an AuthorizationPolicy for the same workloads with rules[].from[].source.requestPrincipals: ["*"] (or the issuers you accept)',
  defaultMode: 'audit',
  match: { kinds: [kindRef(REQUEST_AUTHENTICATION)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(REQUEST_AUTHENTICATION), webhookFor(AUTHORIZATION_POLICY)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the RequestAuthentication is being deleted');
    return [{ message: `${MESSAGE}: pair it with an AuthorizationPolicy requiring requestPrincipals (scan checks; admission cannot see policies)`, path: 'spec', advisory: true }];
  },
  inventory({ objects, served }) {
    if (!served(AUTHORIZATION_POLICY.group, AUTHORIZATION_POLICY.resource)) return [];
    const requiring = ofKind(objects, AUTHORIZATION_POLICY.group, AUTHORIZATION_POLICY.kind).filter(requiresPrincipal);
    return ofKind(objects, REQUEST_AUTHENTICATION.group, REQUEST_AUTHENTICATION.kind).flatMap((ra) => {
      const ns = ra.metadata?.namespace;
      const raLabels = selectorLabels(ra['spec']);
      const covered = requiring.some((ap) => {
        const apNs = ap.metadata?.namespace;
        if (apNs !== ns && apNs !== ROOT_NAMESPACE) return false;
        if (at(ap, 'spec', 'targetRefs') !== undefined || at(ra, 'spec', 'targetRefs') !== undefined) return apNs === ns && sameTargets(ap, ra);
        return covers(selectorLabels(ap['spec']), raLabels);
      });
      return covered ? [] : [finding(ra, { message: `${MESSAGE}, and no AuthorizationPolicy requires a request principal for its workloads`, path: 'spec' })];
    });
  },
};
