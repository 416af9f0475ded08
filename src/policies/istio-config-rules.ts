// The Istio configuration rules (Sidecar, mesh config, ServiceEntry, PeerAuthentication,
// DestinationRule, restricted kinds, AuthorizationPolicy), in evaluation order.
import type { Rule } from '../engine/types.ts';

export const ISTIO_CONFIG_RULES: readonly Rule[] = [];
