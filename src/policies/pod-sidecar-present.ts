// pod-sidecar-present: the final choke point. Validating webhooks run after every mutating webhook
// (also for --dry-run=server), so the Pod seen here is the Pod that will run. In a sidecar
// namespace it must arrive injected with a real proxy and full traffic capture, judged from what
// actually sets the capture up (lib/capture.ts: the istio-init container's istio-iptables flags and
// environment, or the CNI's validation container), not from names and the status annotation. If
// not, the injector is missing, failing open (istiod down), was skipped, or the workload's own
// istio-init/istio-proxy fields were merged over Istio's.
// In an ambient namespace ztunnel captures the pod unless the pod says it has a sidecar: the
// ambient CNI skips every pod carrying the sidecar status annotation (cni/pkg/util/
// enablement_selector.go), so such a pod must really have one; and ambient.istio.io/redirection
// is the CNI's own record (written through pods/status), which a workload may not set.
// Istio's gateways and waypoints (lib/gateway-pods.ts) need no capture: the proxy is their only
// process.
import { isSkip, skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { sidecarCaptureProblems } from './lib/capture.ts';
import { meshInjectorValues, StampedAnnotations } from './lib/install-values.ts';
import { meshStatus } from './lib/mesh-enrollment.ts';
import { fieldPath, podTemplate, POD, type PodTemplate } from './lib/pod-template.ts';
import { STATUS } from './lib/injector.ts';
import { reviewedGateway, reviewedWorkload } from './lib/workload-review.ts';

const FIX = "check that istiod's sidecar injector is running and selects this namespace, remove the workload's own istio-init/istio-proxy fields and capture overrides, then recreate the pod (e.g. kubectl rollout restart)";
export const AMBIENT_REDIRECTION = 'ambient.istio.io/redirection';

function annotationPath(t: PodTemplate, key: string): string {
  return fieldPath(t, `metadata.annotations[${JSON.stringify(key)}]`);
}

function redirectionForged(annotations: Readonly<Record<string, unknown>>, t: PodTemplate): Violation[] {
  if (annotations[AMBIENT_REDIRECTION] === undefined) return [];
  return [{
    message: `annotation ${AMBIENT_REDIRECTION} is the Istio CNI's record that it redirected the pod; set by the workload, the CNI takes the pod as already enrolled and may never redirect it`,
    path: annotationPath(t, AMBIENT_REDIRECTION),
    value: String(annotations[AMBIENT_REDIRECTION]),
    fix: `remove the annotation ${AMBIENT_REDIRECTION}`,
  }];
}

/** The rule, with the memo it owns (the mesh-wide stamped annotations per values object). */
export function podSidecarPresentRule(): ValidatingRule {
  const stamped = new StampedAnnotations();
  return {
    id: 'pod-sidecar-present',
    type: 'validating',
    title: 'Pods must run behind a real Istio proxy with full traffic capture (or be captured by ztunnel)',
    fix: FIX,
    match: { kinds: [{ group: POD.group, kind: POD.kind }], operations: ['CREATE', 'UPDATE'] },
    webhook: [{ apiGroup: POD.group, apiVersions: POD.versions, resources: [POD.resource] }],
    validate(ctx) {
      const { request: req, config, cluster } = ctx;
      const w = reviewedWorkload(ctx);
      // A Pod being deleted is skipped by the workload rules; read it as before.
      const template = isSkip(w) ? podTemplate(req.object, POD) : w.template;
      if (req.operation === 'UPDATE') {
        // Pod UPDATEs can change annotations: adding the CNI's record or a sidecar claim takes a
        // running ambient pod out of ztunnel's capture.
        if (isSkip(w)) return w;
        const out = redirectionForged(w.annotations, template);
        if (w.annotations[STATUS] !== undefined) {
          out.push({ message: `the ${STATUS} annotation may not be added or changed on a running pod: the ambient CNI skips pods that claim a sidecar`, path: annotationPath(template, STATUS), value: String(w.annotations[STATUS]), fix: `remove the change to ${STATUS}` });
        }
        return out;
      }
      const ns = cluster.namespace(req.namespace);
      if (ns === undefined) return skip(`namespace ${req.namespace} is unknown (workload-injection-opt-out judges it)`);
      if (reviewedGateway(ctx) !== undefined) return skip("one of Istio's gateways or waypoints: the proxy is the pod's only process");
      const dataplane = meshStatus(ns.labels, config, cluster.knownRevisions()).dataplane;
      if (dataplane === 'ambient') {
        const out = redirectionForged(template.annotations, template);
        if (template.annotations[STATUS] !== undefined) {
          // ztunnel skips the pod: it must really be a sidecar pod.
          for (const v of sidecarCaptureProblems(template, config, stamped.of(meshInjectorValues(cluster, config)))) {
            out.push({ ...v, message: `the pod claims a sidecar (${STATUS}), so ztunnel does not capture it, but ${v.message}` });
          }
        }
        return out.length === 0 && template.annotations[STATUS] === undefined ? skip('ambient namespace: ztunnel captures pods that claim no sidecar') : out;
      }
      if (dataplane !== 'sidecar') return skip('the namespace is not in the mesh (workload-injection-opt-out judges it)');
      return [...redirectionForged(template.annotations, template), ...sidecarCaptureProblems(template, config, stamped.of(meshInjectorValues(cluster, config)))];
    },
  };
}

export const podSidecarPresent: ValidatingRule = podSidecarPresentRule();
