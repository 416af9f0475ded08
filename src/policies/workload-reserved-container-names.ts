// workload-reserved-container-names: istio-proxy, istio-init and istio-validation are the names of
// the containers Istio injects. A submitted container with one of these names is merged into the
// injected one (Istio's "customization": the user's fields win, e.g. image, command or
// securityContext), so it can replace the proxy or the iptables setup. Validation runs after
// injection: in an injected Pod these containers are Istio's own when their name, list and image
// say so (whether they still capture everything is pod-sidecar-present's question); in a pod
// template they are a violation unless the template's status annotation lists them (istioctl
// kube-inject output: the injector replaces them). The proxy of one of Istio's gateways or
// waypoints (lib/gateway-pods.ts) is Istio's own.
import type { ValidatingRule } from '../core/types.ts';
import { containerLabel, type ContainerRef } from './lib/pod-template.ts';
import { containerScope, judgeWorkload } from './lib/container-rules.ts';
import { notIstioOwn, RESERVED_NAMES } from './lib/injector.ts';
import { reviewedGateway } from './lib/workload-review.ts';

export const workloadReservedContainerNames: ValidatingRule = {
  id: 'workload-reserved-container-names',
  type: 'validating',
  title: 'Workloads may not define containers named istio-proxy, istio-init or istio-validation',
  fix: 'rename the container; to tune the injected proxy use the supported annotations (e.g. sidecar.istio.io/proxyCPU)',
  ...containerScope(),
  validate: (ctx) =>
    judgeWorkload(ctx, (w, out) => {
      let gatewayProxy: ContainerRef | undefined | null = null;
      for (const c of w.containers) {
        if (!RESERVED_NAMES.includes(c.name)) continue;
        if (gatewayProxy === null) gatewayProxy = reviewedGateway(ctx)?.proxy;
        const why = notIstioOwn(c, w.template, ctx.config, gatewayProxy);
        if (why === undefined) continue;
        out.push({
          message: w.template.isPod
            ? `${containerLabel(c)} uses a name reserved for Istio's injected containers but is not Istio's own: ${why}`
            : `${containerLabel(c)} in a pod template uses a name reserved for Istio: ${why}, so it overrides the proxy or its iptables setup`,
          path: `${c.path}.name`,
          value: c.name,
        });
      }
    }),
};
