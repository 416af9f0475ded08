// The workload rules (Pods, pod templates of the eight controller kinds), in evaluation order.
import type { Rule } from '../core/types.ts';
import { podSidecarPresent } from './pod-sidecar-present.ts';
import { workloadCaptureBypass } from './workload-capture-bypass.ts';
import { workloadHostNetwork } from './workload-host-network.ts';
import { workloadInjectionOptOut } from './workload-injection-opt-out.ts';
import { workloadNetworkPrivileges } from './workload-network-privileges.ts';
import { workloadProxyUid } from './workload-proxy-uid.ts';
import { workloadReservedContainerNames } from './workload-reserved-container-names.ts';

export const WORKLOAD_RULES: readonly Rule[] = [
  workloadInjectionOptOut,
  workloadHostNetwork,
  workloadCaptureBypass,
  workloadProxyUid,
  workloadReservedContainerNames,
  workloadNetworkPrivileges,
  podSidecarPresent,
];
