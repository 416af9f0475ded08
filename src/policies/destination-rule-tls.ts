// destination-rule-tls: a DestinationRule must not turn TLS off towards its host, at any level:
// the traffic policy, its port-level settings, and every subset's policy and port-level settings
// (Kyverno's enforce-tls-hosts-host-subnets checks only the top level). A `tls` block without a
// mode counts as DISABLE: that is the protobuf default (ClientTLSSettings.TLSmode DISABLE = 0),
// and a user-supplied tls block also switches auto mTLS off.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { DESTINATION_RULE, exemptOutsideRoot, kindRef, webhookFor } from './lib/istio-kinds.ts';
import { at, isUnset, mapItems } from './lib/json-read.ts';
import { isRecord, isTerminating } from '../core/objects.ts';

function tlsProblem(tls: unknown, path: string): Violation | undefined {
  if (!isRecord(tls)) return undefined;
  const mode = tls['mode'];
  if (isUnset(mode)) return { message: 'tls has no mode, and the default mode is DISABLE: traffic to the host is plaintext', path: `${path}.mode` };
  if (mode !== 'DISABLE') return undefined;
  return { message: 'tls mode DISABLE sends traffic to the host in plaintext, without mutual TLS', path: `${path}.mode`, value: 'DISABLE' };
}

/** A TrafficPolicy's own tls and each of its portLevelSettings' tls. */
function policyProblems(policy: unknown, base: string): Violation[] {
  const out: Violation[] = [];
  const top = tlsProblem(at(policy, 'tls'), `${base}.tls`);
  if (top !== undefined) out.push(top);
  for (const [i, port] of mapItems(at(policy, 'portLevelSettings'))) {
    const p = tlsProblem(port['tls'], `${base}.portLevelSettings[${i}].tls`);
    if (p !== undefined) out.push(p);
  }
  return out;
}

export const destinationRuleTls: ValidatingRule = {
  id: 'destination-rule-tls',
  type: 'validating',
  title: 'DestinationRules must not disable TLS (traffic policy, port-level settings or subsets)',
  fix: 'set tls.mode to ISTIO_MUTUAL (or SIMPLE/MUTUAL for external hosts), or remove the tls block to let auto mTLS decide',
  match: { kinds: [kindRef(DESTINATION_RULE)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(DESTINATION_RULE)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the DestinationRule is being deleted');
    const spec = at(req.object, 'spec');
    const out = policyProblems(at(spec, 'trafficPolicy'), 'spec.trafficPolicy');
    for (const [i, subset] of mapItems(at(spec, 'subsets'))) {
      out.push(...policyProblems(subset['trafficPolicy'], `spec.subsets[${i}].trafficPolicy`));
    }
    return out;
  },
};
