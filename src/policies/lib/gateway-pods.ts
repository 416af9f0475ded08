// Istio's own gateways and waypoints, recognised as proxy-only pods (from the pinned istio.io/istio
// module: the istio/gateway chart in manifests/charts/gateway, and istiod's deployment controller
// in pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go with its kube-gateway and
// waypoint templates). Istio deploys them in three ways, all of which the sidecar rules would
// otherwise deny:
// - the istio/gateway Helm chart: a Deployment whose template asks for the `gateway` injection
//   template (inject.istio.io/templates: gateway) with an istio-proxy container of image "auto";
//   the injector fills it in and the Pod carries the sidecar status annotation.
// - istiod's gateway deployment controller, for a Gateway API Gateway of class istio
//   (gateway.istio.io/managed: istio.io-gateway-controller) or istio-waypoint
//   (istio.io-mesh-controller): a Deployment owned by the Gateway, rendered from istiod's
//   kube-gateway or waypoint template, with a complete istio-proxy running as 1337 and
//   sidecar.istio.io/inject: "false" (the pod is its own proxy; nothing is injected).
// A gateway has no traffic capture because it needs none: the proxy is the only process in the
// pod, so everything the pod sends goes through it. That is what is checked: exactly one
// container, istio-proxy, running the Istio agent as a router or waypoint with an allowed proxy
// image, and no command of the workload's own (container command, exec hooks or exec probes).
// Labels prove nothing; for istiod's uninjected form the request must also come from istiod
// (the Deployment) or from the controllers that turn it into ReplicaSets and Pods, with the
// matching controller ownerReference.
import type { AdmissionRequest } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { isAgentPath, proxyType } from './pilot-agent.ts';
import { isRecord } from '../../core/objects.ts';
import type { ContainerRef, PodTemplate } from './pod-template.ts';
import { INJECT, INJECT_TEMPLATES, isIstioImage, PROXY, STATUS } from './injector.ts';

export const MANAGED = 'gateway.istio.io/managed';
/** The gateway.istio.io/managed values of istiod's two deployment controllers. */
export const ISTIOD_CONTROLLERS: readonly string[] = ['istio.io-gateway-controller', 'istio.io-mesh-controller'];
const PROXY_TYPES: readonly string[] = ['router', 'waypoint'];

export type GatewayOrigin = 'gateway-template' | 'istiod';

export interface ProxyOnly {
  readonly origin: GatewayOrigin;
  readonly proxy: ContainerRef;
}

function commandsOnlyAgent(v: unknown): boolean {
  // Any exec handler (lifecycle hook or probe) anywhere in the container: only pilot-agent may run.
  if (Array.isArray(v)) return v.every(commandsOnlyAgent);
  if (!isRecord(v)) return true;
  for (const [k, x] of Object.entries(v)) {
    if (k === 'exec') {
      const cmd = isRecord(x) ? x['command'] : undefined;
      if (!Array.isArray(cmd) || typeof cmd[0] !== 'string' || !isAgentPath(cmd[0])) return false;
    } else if (!commandsOnlyAgent(x)) return false;
  }
  return true;
}

function noOwnCommands(c: ContainerRef): boolean {
  const { lifecycle, livenessProbe, readinessProbe, startupProbe } = c.container;
  return commandsOnlyAgent([lifecycle, livenessProbe, readinessProbe, startupProbe]);
}

function controllerOwner(req: AdmissionRequest): { kind: string; apiVersion: string } | undefined {
  const refs = req.object?.metadata?.ownerReferences;
  if (!Array.isArray(refs)) return undefined;
  for (const r of refs) {
    if (isRecord(r) && r['controller'] === true && typeof r['kind'] === 'string' && typeof r['apiVersion'] === 'string') {
      return { kind: r['kind'], apiVersion: r['apiVersion'] };
    }
  }
  // istiod's rendered Deployment names its Gateway as owner without the controller flag.
  for (const r of refs) {
    if (isRecord(r) && r['kind'] === 'Gateway' && typeof r['apiVersion'] === 'string' && r['apiVersion'].startsWith('gateway.networking.k8s.io/')) {
      return { kind: 'Gateway', apiVersion: r['apiVersion'] };
    }
  }
  return undefined;
}

/** The request comes from istiod or the controller one step down the chain Gateway → Deployment → ReplicaSet → Pod. */
export function fromIstiodChain(req: AdmissionRequest, config: Config): boolean {
  const user = req.userInfo?.username ?? '';
  const owner = controllerOwner(req);
  if (owner === undefined) return false;
  switch (req.kind.kind) {
    case 'Deployment':
      return owner.kind === 'Gateway' && owner.apiVersion.startsWith('gateway.networking.k8s.io/') && config.istiodUsers.includes(user);
    case 'ReplicaSet':
      return owner.kind === 'Deployment' && owner.apiVersion === 'apps/v1' && config.controllerUsers.includes(user);
    case 'Pod':
      return owner.kind === 'ReplicaSet' && owner.apiVersion === 'apps/v1' && config.controllerUsers.includes(user);
    default:
      return false;
  }
}

/**
 * The workload when it is one of Istio's gateways or waypoints (a pod whose only process is the
 * Istio proxy), else undefined. `req` is the admission request the template came from.
 */
export function proxyOnlyWorkload(t: PodTemplate, req: AdmissionRequest, config: Config): ProxyOnly | undefined {
  if (t.containers.length !== 1) return undefined;
  const proxy = t.containers[0];
  if (proxy === undefined || proxy.name !== PROXY || proxy.list !== 'containers' || !noOwnCommands(proxy)) return undefined;
  const injectedAsGateway = t.annotations[INJECT_TEMPLATES] === 'gateway';
  if (injectedAsGateway) {
    // The chart's form: in a template the injector still has to fill in image "auto" and the args.
    if (!t.isPod && t.labels[INJECT] === 'true' && proxy.image === 'auto' && proxy.container['command'] === undefined && proxy.container['args'] === undefined) {
      return { origin: 'gateway-template', proxy };
    }
    if (t.isPod && typeof t.annotations[STATUS] === 'string' && isRealProxy(proxy, config)) return { origin: 'gateway-template', proxy };
    return undefined;
  }
  const managed = t.labels[MANAGED];
  if (typeof managed !== 'string' || !ISTIOD_CONTROLLERS.includes(managed)) return undefined;
  if (!isRealProxy(proxy, config) || !fromIstiodChain(req, config)) return undefined;
  return { origin: 'istiod', proxy };
}

function isRealProxy(proxy: ContainerRef, config: Config): boolean {
  const type = proxyType(proxy.container);
  return type !== undefined && PROXY_TYPES.includes(type) && isIstioImage(proxy.image, config);
}
