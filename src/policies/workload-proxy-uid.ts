// workload-proxy-uid: 1337 is the proxy's UID and GID. The sidecar's iptables rules let traffic
// of that identity out uncaptured (so the proxy's own connections are not looped back), so any
// other process running as 1337 skips the mesh: no mTLS, no policy, no REGISTRY_ONLY egress.
// Checked at pod level (runAsUser, runAsGroup, fsGroup, supplementalGroups) and for every
// container, init and ephemeral container, except Istio's own (istio-proxy, and istio-validation
// with the CNI) in an injected Pod with an allowed Istio image, and the proxy of one of Istio's
// gateways or waypoints.
import type { Config } from '../config/types.ts';
import type { ValidatingRule, Violation } from '../core/types.ts';
import { isRecord } from '../core/objects.ts';
import { containerLabel, fieldPath, type ContainerRef, type PodTemplate } from './lib/pod-template.ts';
import { containerScope, judgeWorkload } from './lib/container-rules.ts';
import { notIstioOwn, PROXY_ID, RESERVED_NAMES } from './lib/injector.ts';
import { reviewedGateway } from './lib/workload-review.ts';

const WHY = `${PROXY_ID} is the Istio proxy's identity, whose traffic the sidecar lets out uncaptured`;

const POD_FIELDS = ['runAsUser', 'runAsGroup', 'fsGroup'] as const;
const CONTAINER_FIELDS = ['runAsUser', 'runAsGroup'] as const;

function podLevel(t: PodTemplate, out: Violation[]): void {
  const sc = t.podSpec['securityContext'];
  if (!isRecord(sc)) return;
  for (const field of POD_FIELDS) {
    if (sc[field] === PROXY_ID) out.push({ message: `pod securityContext.${field} is ${PROXY_ID}: ${WHY}`, path: fieldPath(t, `spec.securityContext.${field}`), value: String(PROXY_ID) });
  }
  const groups = sc['supplementalGroups'];
  if (!Array.isArray(groups)) return;
  for (let i = 0; i < groups.length; i++) {
    if (groups[i] === PROXY_ID) out.push({ message: `pod securityContext.supplementalGroups contains ${PROXY_ID}: ${WHY}`, path: fieldPath(t, `spec.securityContext.supplementalGroups[${i}]`), value: String(PROXY_ID) });
  }
}

function containerLevel(c: ContainerRef, t: PodTemplate, config: Config, gatewayProxy: () => ContainerRef | undefined, out: Violation[]): void {
  const sc = c.container['securityContext'];
  if (!isRecord(sc) || (sc['runAsUser'] !== PROXY_ID && sc['runAsGroup'] !== PROXY_ID)) return;
  // Only a container that runs as 1337 is asked whether it is Istio's own.
  const notOwn = RESERVED_NAMES.includes(c.name) ? notIstioOwn(c, t, config, gatewayProxy()) : '';
  if (notOwn === undefined) return; // Istio's own proxy or validation container
  const also = notOwn === '' ? '' : ` (it is not Istio's own: ${notOwn})`;
  for (const field of CONTAINER_FIELDS) {
    if (sc[field] === PROXY_ID) out.push({ message: `${containerLabel(c)} runs with ${field} ${PROXY_ID}${also}: ${WHY}`, path: `${c.path}.securityContext.${field}`, value: String(PROXY_ID) });
  }
}

export const workloadProxyUid: ValidatingRule = {
  id: 'workload-proxy-uid',
  type: 'validating',
  title: "Workloads may not run with the Istio proxy's UID or GID 1337",
  fix: `use another UID/GID than ${PROXY_ID} (e.g. set runAsUser/runAsGroup to the image's own non-root user)`,
  ...containerScope(),
  validate: (ctx) =>
    judgeWorkload(ctx, (w, out) => {
      if (w.scope === 'all') podLevel(w.template, out);
      // Asked only of a reserved-name container running as 1337 (rare).
      const gatewayProxy = () => reviewedGateway(ctx)?.proxy;
      for (const c of w.containers) containerLevel(c, w.template, ctx.config, gatewayProxy, out);
    }),
};
