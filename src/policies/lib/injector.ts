// What istiod's sidecar injector writes into a Pod and what it reads there, from pkg/kube/inject
// (inject.go, webhook.go) and its template (manifests/charts/istio-control/istio-discovery/files/
// injection-template.yaml) in the pinned istio.io/istio module: the injection annotations and
// labels, the containers it adds and where, the proxy's identity and ports, and when a container
// is Istio's own. Validation runs after Istio's injector, so an injected Pod legitimately has
// istio-proxy and istio-init (or istio-validation with the CNI). A container counts as Istio's own
// only when all of these hold: it is in a Pod (templates are never injected), the Pod carries
// sidecar.istio.io/status, the name is reserved and in the list Istio injects it into, and the
// image is an allowed Istio proxy image (config.istioProxyImages). A name alone proves nothing:
// anyone can call a container istio-init (Kyverno's service-mesh-disallow-capabilities bad02).
import type { Config } from '../../config/types.ts';
import type { ContainerList, ContainerRef, PodTemplate } from './pod-template.ts';

export const INJECT = 'sidecar.istio.io/inject';
export const STATUS = 'sidecar.istio.io/status';
/** The injection templates to render; Istio's gateways ask for `gateway` (lib/gateway-pods.ts). */
export const INJECT_TEMPLATES = 'inject.istio.io/templates';
/** The pod's interception mode; with the CNI the injector stamps it from the mesh config. */
export const INTERCEPTION_MODE_ANNOTATION = 'sidecar.istio.io/interceptionMode';

export const PROXY = 'istio-proxy';
export const INIT = 'istio-init';
export const VALIDATION = 'istio-validation';
export const RESERVED_NAMES: readonly string[] = [PROXY, INIT, VALIDATION];

/** The proxy's UID and GID: iptables lets traffic of this identity out uncaptured. */
export const PROXY_ID = 1337;

/** The proxy's own inbound ports (Prometheus, health, status), which the injector excludes from inbound capture. */
export const PROXY_PORTS: readonly string[] = ['15090', '15021', '15020'];

/** The proxy image variants Istio publishes (sidecar.istio.io/proxyImageType, ProxyConfig image.imageType). */
export const PROXY_IMAGE_TYPES: readonly string[] = ['default', 'debug', 'distroless'];

/** Where Istio injects each of its containers (istio-proxy is a native sidecar in initContainers on newer clusters). */
const INJECTED_INTO: Readonly<Record<string, readonly ContainerList[]>> = {
  [PROXY]: ['containers', 'initContainers'],
  [INIT]: ['initContainers'],
  [VALIDATION]: ['initContainers'],
};

/** A Pod that Istio's injector has processed (the annotation is Istio's record of it). */
export function isInjected(t: PodTemplate): boolean {
  const status = t.annotations[STATUS];
  return t.isPod && typeof status === 'string' && status !== '';
}

/** Per configuration: the compiled istioProxyImages, and the answers for images already seen
 * (the same few images come in every request; at most IMAGE_MEMO of them are kept). */
const imageCache = new WeakMap<Config, { readonly patterns: readonly RegExp[]; readonly seen: Map<string, boolean> }>();
const IMAGE_MEMO = 1024;

function compile(pattern: string): RegExp | undefined {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch {
    return undefined; // an invalid pattern allows nothing (fail closed)
  }
}

/** The image is one of Istio's proxy images (config.istioProxyImages, matched against the whole image). */
export function isIstioImage(image: string, config: Config): boolean {
  if (image === '') return false;
  let c = imageCache.get(config);
  if (c === undefined) {
    c = { patterns: config.istioProxyImages.map(compile).filter((r): r is RegExp => r !== undefined), seen: new Map() };
    imageCache.set(config, c);
  }
  let answer = c.seen.get(image);
  if (answer === undefined) {
    answer = c.patterns.some((r) => r.test(image));
    if (c.seen.size >= IMAGE_MEMO) c.seen.clear();
    c.seen.set(image, answer);
  }
  return answer;
}

/**
 * The containers Istio's injector records in the status annotation. When it injects a pod that
 * already carries the annotation (the output of `istioctl kube-inject`), it first removes these
 * containers and then injects its own, so in a pod template they are placeholders, not merges.
 */
export function statusContainers(t: PodTemplate): ReadonlySet<string> {
  const raw = t.annotations[STATUS];
  if (typeof raw !== 'string' || raw === '') return EMPTY;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return EMPTY;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return EMPTY;
  const out = new Set<string>();
  for (const key of ['containers', 'initContainers']) {
    const v: unknown = (parsed as Record<string, unknown>)[key];
    if (Array.isArray(v)) for (const n of v) if (typeof n === 'string') out.add(n);
  }
  return out;
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * Why a container with a reserved name is not Istio's own; undefined when it is. `gatewayProxy`
 * is the proxy of one of Istio's gateways or waypoints (lib/gateway-pods.ts), which is Istio's
 * own although nothing injects it.
 */
export function notIstioOwn(c: ContainerRef, t: PodTemplate, config: Config, gatewayProxy?: ContainerRef): string | undefined {
  if (gatewayProxy !== undefined && c === gatewayProxy) return undefined;
  const lists = INJECTED_INTO[c.name];
  if (lists === undefined) return `${c.name} is not a container Istio injects`;
  if (!lists.includes(c.list)) return `Istio injects ${c.name} into ${lists.join(' or ')}, not ${c.list}`;
  if (!t.isPod) {
    // istioctl kube-inject output: the injector replaces these containers when it injects the pod.
    if (statusContainers(t).has(c.name)) return undefined;
    return `the pod template is not injected (its ${STATUS} annotation does not list ${c.name}), so Istio merges this container into the one it injects`;
  }
  if (!isInjected(t)) return `the pod has no ${STATUS} annotation, so Istio did not inject it`;
  if (!isIstioImage(c.image, config)) return `image ${JSON.stringify(c.image)} is not an allowed Istio proxy image (istioProxyImages)`;
  return undefined;
}

export function isIstioOwn(c: ContainerRef, t: PodTemplate, config: Config, gatewayProxy?: ContainerRef): boolean {
  return notIstioOwn(c, t, config, gatewayProxy) === undefined;
}

/** The proxy container: in containers, or a native sidecar in initContainers. */
export function proxyOf(t: PodTemplate): ContainerRef | undefined {
  return t.containers.find(
    (c) => c.name === PROXY && (c.list === 'containers' || (c.list === 'initContainers' && c.container['restartPolicy'] === 'Always')),
  );
}
