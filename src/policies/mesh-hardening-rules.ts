// NetworkPolicy admission and the mesh-wide hardening checks (docs/defense-in-depth.md), in
// evaluation order. The opinionated ones report by default (defaultMode audit).
import type { Rule } from '../core/types.ts';
import { meshAutoMtls } from './mesh-auto-mtls.ts';
import { meshDistrolessProxy } from './mesh-distroless-proxy.ts';
import { meshIstioCni } from './mesh-istio-cni.ts';
import { meshProtocolSniffing } from './mesh-protocol-sniffing.ts';
import { meshRootStrictMtls } from './mesh-root-strict-mtls.ts';
import { networkPolicyWidening } from './network-policy-widening.ts';
import { requestAuthenticationPrincipal } from './request-authentication-principal.ts';

export const MESH_HARDENING_RULES: readonly Rule[] = [
  networkPolicyWidening,
  meshRootStrictMtls,
  meshAutoMtls,
  meshProtocolSniffing,
  meshIstioCni,
  meshDistrolessProxy,
  requestAuthenticationPrincipal,
];
