// virtual-service-destination-subnets: a VirtualService's tcp and tls routes may match on
// `destinationSubnets`, and istiod then uses those ranges instead of the destination
// ServiceEntry's own addresses for the filter chain (pilot/pkg/networking/core/tls.go,
// buildSidecarOutboundTCPFilterChainOpts and the TLS twin). Routed to a ServiceEntry with
// resolution NONE, whose cluster forwards to the original destination, `0.0.0.0/0` there reopens
// egress to every IP on that port, however narrow the ServiceEntry's addresses are. So the
// subnets of one VirtualService, all united per family, get the same limit as a ServiceEntry's
// addresses (serviceEntries.addressLimit). Everything else a VirtualService does stays among
// registered hosts and is not judged.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { excessText, listedTexts, rangesOverLimit, type AddressEntry } from './lib/egress-reach.ts';
import { exemptOutsideRoot, kindRef, VIRTUAL_SERVICE, webhookFor } from './lib/istio-kinds.ts';
import { at, mapItems, stringItems } from './lib/json-read.ts';
import { isTerminating } from '../core/objects.ts';

const FIX = 'match only the subnets the route is for, no wider than serviceEntries.addressLimit, or remove destinationSubnets';

/** Every destinationSubnets entry of the tcp and tls routes, with its path. */
export function destinationSubnets(spec: unknown): AddressEntry[] {
  const out: AddressEntry[] = [];
  for (const section of ['tcp', 'tls'] as const) {
    for (const [i, route] of mapItems(at(spec, section))) {
      for (const [j, match] of mapItems(route.match)) {
        for (const [k, text] of stringItems(match.destinationSubnets)) out.push({ path: `spec.${section}[${i}].match[${j}].destinationSubnets[${k}]`, text });
      }
    }
  }
  return out;
}

export const virtualServiceDestinationSubnets: ValidatingRule = {
  id: 'virtual-service-destination-subnets',
  type: 'validating',
  title: 'VirtualService tcp/tls destinationSubnets must not widen egress past the address limit',
  fix: FIX,
  match: { kinds: [kindRef(VIRTUAL_SERVICE)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(VIRTUAL_SERVICE)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the VirtualService is being deleted');
    const subnets = destinationSubnets(at(req.object, 'spec'));
    if (subnets.length === 0) return [];
    return rangesOverLimit(subnets, config.serviceEntries.addressLimit).map(
      (e): Violation => ({
        message: `${excessText(e, ['destination subnet', 'destination subnets'])} (serviceEntries.addressLimit.${e.family === 'IPv4' ? 'ipv4' : 'ipv6'}): routed to a resolution NONE ServiceEntry, that reaches every such address`,
        path: e.entries[0]?.path ?? 'spec',
        value: listedTexts(e.entries),
        fix: FIX,
      }),
    );
  },
};
