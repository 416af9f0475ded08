// pod-sidecar-present: the final choke point for sidecar namespaces. Validating webhooks run after
// every mutating webhook (also for --dry-run=server), so a Pod CREATE in a sidecar-injected
// namespace must arrive injected: with Istio's sidecar.istio.io/status annotation and an
// istio-proxy container with an allowed Istio image, either in spec.containers or as a native
// sidecar (spec.initContainers with restartPolicy Always). If not, the injector is missing,
// failing open (istiod down), or was skipped. Ambient namespaces have no sidecar: skipped.
import { isSkip, skip, type ValidatingRule, type Violation } from '../engine/types.ts';
import { meshStatus } from './lib/mesh.ts';
import { podTemplate, POD, type ContainerRef, type PodTemplate } from './lib/pod-template.ts';
import { isIstioImage, isInjected, PROXY, STATUS } from './lib/workload-istio.ts';
import { reviewedWorkload } from './lib/workload-review.ts';

const FIX = "check that istiod's sidecar injector is running and selects this namespace, then recreate the pod (e.g. kubectl rollout restart)";

/** The proxy container: in containers, or a native sidecar in initContainers. */
function proxyOf(t: PodTemplate): ContainerRef | undefined {
  return t.containers.find(
    (c) => c.name === PROXY && (c.list === 'containers' || (c.list === 'initContainers' && c.container['restartPolicy'] === 'Always')),
  );
}

function problems(t: PodTemplate, imageAllowed: (image: string) => boolean): Violation[] {
  const out: Violation[] = [];
  if (!isInjected(t)) {
    out.push({ message: `the pod was not injected: it has no ${STATUS} annotation, so Istio's injector did not run or skipped it`, path: `metadata.annotations[${JSON.stringify(STATUS)}]` });
  }
  const proxy = proxyOf(t);
  if (proxy === undefined) {
    out.push({ message: `the pod has no ${PROXY} container (in spec.containers, or in spec.initContainers with restartPolicy Always)`, path: 'spec.containers', value: t.containers.filter((c) => c.list === 'containers').map((c) => c.name).join(',') });
  } else if (!imageAllowed(proxy.image)) {
    out.push({ message: `${PROXY} runs image ${JSON.stringify(proxy.image)}, which is not an allowed Istio proxy image (istioProxyImages)`, path: `${proxy.path}.image`, value: proxy.image });
  }
  return out;
}

export const podSidecarPresent: ValidatingRule = {
  id: 'pod-sidecar-present',
  type: 'validating',
  title: 'Pods in sidecar namespaces must be injected with the Istio proxy',
  fix: FIX,
  match: { kinds: [{ group: POD.group, kind: POD.kind }], operations: ['CREATE'] },
  webhook: [{ apiGroup: POD.group, apiVersions: POD.versions, resources: [POD.resource] }],
  validate(ctx) {
    const { request: req, config, cluster } = ctx;
    const ns = cluster.namespace(req.namespace);
    if (ns === undefined) return skip(`namespace ${req.namespace} is unknown (workload-injection-opt-out judges it)`);
    const dataplane = meshStatus(ns.labels, config, cluster.knownRevisions()).dataplane;
    if (dataplane === 'ambient') return skip('ambient namespace: pods have no sidecar');
    if (dataplane !== 'sidecar') return skip('the namespace is not sidecar-injected (workload-injection-opt-out judges it)');
    // The workload rules have already read this Pod's template for this request: use theirs (for a
    // Pod CREATE, the only request this rule matches, it is the whole Pod; a Pod being deleted is
    // skipped there and read here as before).
    const w = reviewedWorkload(req);
    const template = isSkip(w) ? podTemplate(req.object, POD) : w.template;
    return problems(template, (image) => isIstioImage(image, config));
  },
};
