// workload-proxy-uid: 1337 is the proxy's UID and GID. The sidecar's iptables rules let traffic
// of that identity out uncaptured (so the proxy's own connections are not looped back), so any
// other process running as 1337 skips the mesh: no mTLS, no policy, no REGISTRY_ONLY egress.
// Checked at pod level (runAsUser, runAsGroup, fsGroup, supplementalGroups) and for every
// container, init and ephemeral container, except Istio's own (istio-proxy, and istio-validation
// with the CNI) in an injected Pod with an allowed Istio image.
import type { Config } from '../config/types.ts';
import { isSkip, type ValidatingRule, type Violation } from '../engine/types.ts';
import { stringMap } from './lib/objects.ts';
import { containerLabel, EPHEMERAL_SUBRESOURCE, fieldPath, WORKLOAD_KIND_REFS, workloadWebhook, type ContainerRef, type PodTemplate } from './lib/pod-template.ts';
import { notIstioOwn, PROXY_ID, RESERVED_NAMES } from './lib/workload-istio.ts';
import { reviewedWorkload } from './lib/workload-review.ts';

const WHY = `${PROXY_ID} is the Istio proxy's identity, whose traffic the sidecar lets out uncaptured`;

function entries(v: unknown): [number, unknown][] {
  return Array.isArray(v) ? v.map((x: unknown, i): [number, unknown] => [i, x]) : [];
}

function podLevel(t: PodTemplate): Violation[] {
  const sc = stringMap(t.podSpec['securityContext']);
  const base = fieldPath(t, 'spec.securityContext');
  const out: Violation[] = [];
  for (const field of ['runAsUser', 'runAsGroup', 'fsGroup']) {
    if (sc[field] === PROXY_ID) out.push({ message: `pod securityContext.${field} is ${PROXY_ID}: ${WHY}`, path: `${base}.${field}`, value: String(PROXY_ID) });
  }
  for (const [i, g] of entries(sc['supplementalGroups'])) {
    if (g === PROXY_ID) out.push({ message: `pod securityContext.supplementalGroups contains ${PROXY_ID}: ${WHY}`, path: `${base}.supplementalGroups[${i}]`, value: String(PROXY_ID) });
  }
  return out;
}

function containerLevel(c: ContainerRef, t: PodTemplate, config: Config): Violation[] {
  const notOwn = RESERVED_NAMES.includes(c.name) ? notIstioOwn(c, t, config) : '';
  if (notOwn === undefined) return []; // Istio's own proxy or validation container
  const also = notOwn === '' ? '' : ` (it is not Istio's own: ${notOwn})`;
  const sc = stringMap(c.container['securityContext']);
  return ['runAsUser', 'runAsGroup']
    .filter((field) => sc[field] === PROXY_ID)
    .map((field) => ({ message: `${containerLabel(c)} runs with ${field} ${PROXY_ID}${also}: ${WHY}`, path: `${c.path}.securityContext.${field}`, value: String(PROXY_ID) }));
}

export const workloadProxyUid: ValidatingRule = {
  id: 'workload-proxy-uid',
  type: 'validating',
  title: "Workloads may not run with the Istio proxy's UID or GID 1337",
  fix: `use another UID/GID than ${PROXY_ID} (e.g. set runAsUser/runAsGroup to the image's own non-root user)`,
  match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'], subResources: ['', EPHEMERAL_SUBRESOURCE] },
  webhook: workloadWebhook({ ephemeral: true }),
  validate(ctx) {
    const w = reviewedWorkload(ctx.request);
    if (isSkip(w)) return w;
    const pod = w.scope === 'all' ? podLevel(w.template) : [];
    return [...pod, ...w.containers.flatMap((c) => containerLevel(c, w.template, ctx.config))];
  },
};
