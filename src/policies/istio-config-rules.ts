// The Istio configuration rules (Sidecar, mesh config, ServiceEntry, VirtualService,
// PeerAuthentication, DestinationRule, restricted kinds, AuthorizationPolicy), in evaluation order.
import type { Rule } from '../core/types.ts';
import { authorizationPolicyWeakening } from './authorization-policy-weakening.ts';
import { destinationRuleTls } from './destination-rule-tls.ts';
import { meshConfigOutboundPolicy } from './mesh-config-outbound-policy.ts';
import { peerAuthenticationStrict } from './peer-authentication-strict.ts';
import { restrictedIstioKinds } from './restricted-istio-kinds.ts';
import { serviceEntryWildcard } from './service-entry-wildcard.ts';
import { sidecarOutboundAllowAny } from './sidecar-outbound-allow-any.ts';
import { virtualServiceDestinationSubnets } from './virtual-service-destination-subnets.ts';

export const ISTIO_CONFIG_RULES: readonly Rule[] = [
  sidecarOutboundAllowAny,
  meshConfigOutboundPolicy,
  serviceEntryWildcard,
  virtualServiceDestinationSubnets,
  peerAuthenticationStrict,
  destinationRuleTls,
  restrictedIstioKinds,
  authorizationPolicyWeakening,
];
