// workload-capture-bypass: pod annotations that let traffic skip the proxy, or that replace what
// the injector puts in the pod. Names from istio/api annotation/annotations.yaml (and the 1.25
// release notes for istio.io/reroute-virtual-interfaces and ambient.istio.io/dns-capture).
// Every traffic.sidecar.istio.io/* annotation counts, including ones Istio adds later. Each
// annotation can be allowed per value in configuration (captureBypass.allow; "*" allows any
// value), e.g. excludeOutboundPorts "5432" for a database the mesh cannot proxy.
import type { Config } from '../config/types.ts';
import { isSkip, type ValidatingRule, type Violation } from '../engine/types.ts';
import { show } from './lib/istio.ts';
import { fieldPath, WORKLOAD_KIND_REFS, workloadWebhook } from './lib/pod-template.ts';
import { quote } from './lib/workload-istio.ts';
import { INJECT_TEMPLATES as GATEWAY_TEMPLATE_KEY } from './lib/istio-gateway.ts';
import { reviewedGateway, reviewedWorkload } from './lib/workload-review.ts';

export const TRAFFIC_PREFIX = 'traffic.sidecar.istio.io/';

const CAPTURE = 'changes which traffic the mesh captures';
const PROXY = 'changes the injected proxy (image, bootstrap, control plane, volumes or configuration)';

/** Annotations judged by exact name, with what they do. */
export const BYPASS_ANNOTATIONS: Readonly<Record<string, string>> = {
  'istio.io/reroute-virtual-interfaces': CAPTURE,
  'sidecar.istio.io/interceptionMode': CAPTURE,
  'ambient.istio.io/bypass-inbound-capture': CAPTURE,
  'ambient.istio.io/dns-capture': CAPTURE,
  'proxy.istio.io/config': `${PROXY}; it can carry interceptionMode: NONE`,
  'sidecar.istio.io/proxyImage': PROXY,
  'sidecar.istio.io/proxyImageType': PROXY,
  'sidecar.istio.io/bootstrapOverride': PROXY,
  'sidecar.istio.io/discoveryAddress': PROXY,
  'sidecar.istio.io/userVolume': PROXY,
  'sidecar.istio.io/userVolumeMount': PROXY,
  'inject.istio.io/templates': `${PROXY}; only the default "sidecar" template is allowed`,
  'status.sidecar.istio.io/port': `${PROXY}; "0" removes the proxy's status port and readiness probe`,
};

/**
 * Values that keep full capture. With the Istio CNI, the injector itself writes the capture
 * settings onto every injected Pod (interceptionMode REDIRECT, include ranges and inbound ports
 * "*", and the status port 15020 excluded inbound, which the proxy binds anyway), so these values
 * are Istio's defaults, not a bypass. Also the default inject template and DNS capture turned on.
 */
export const FULL_CAPTURE: Readonly<Record<string, readonly string[]>> = {
  'sidecar.istio.io/interceptionMode': ['REDIRECT'],
  'traffic.sidecar.istio.io/includeOutboundIPRanges': ['*'],
  'traffic.sidecar.istio.io/includeInboundPorts': ['*'],
  'traffic.sidecar.istio.io/excludeInboundPorts': ['15020'],
  'inject.istio.io/templates': ['sidecar'],
  'ambient.istio.io/dns-capture': ['true'],
};

/** What the annotation does, or undefined when it is not a capture bypass. */
export function bypassEffect(key: string, value: unknown): string | undefined {
  // Keys come from the object: look them up as own properties only ("constructor" is a key too).
  if (typeof value === 'string' && Object.hasOwn(FULL_CAPTURE, key) && FULL_CAPTURE[key]?.includes(value) === true) return undefined;
  if (key.startsWith(TRAFFIC_PREFIX)) return CAPTURE;
  return Object.hasOwn(BYPASS_ANNOTATIONS, key) ? BYPASS_ANNOTATIONS[key] : undefined;
}

function allowListed(config: Config, key: string, value: unknown): boolean {
  if (!Object.hasOwn(config.captureBypass.allow, key)) return false;
  const allowed = config.captureBypass.allow[key];
  if (allowed === undefined) return false;
  return allowed.includes('*') || (typeof value === 'string' && allowed.includes(value));
}

export const workloadCaptureBypass: ValidatingRule = {
  id: 'workload-capture-bypass',
  type: 'validating',
  title: 'Workloads may not narrow traffic capture or replace the injected proxy through annotations',
  fix: 'remove the annotation, or ask the platform team to allow this value (captureBypass.allow)',
  match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'] },
  webhook: workloadWebhook({ ephemeral: false }),
  validate(ctx) {
    const w = reviewedWorkload(ctx.request);
    if (isSkip(w)) return w;
    const out: Violation[] = [];
    // Istio's gateways are injected with the gateway template (lib/istio-gateway.ts checks their shape).
    const gateway = w.annotations[GATEWAY_TEMPLATE_KEY] === 'gateway' && reviewedGateway(ctx.request, ctx.config) !== undefined;
    // for...in over the parsed annotations (own keys: JSON objects inherit nothing enumerable),
    // without building an entries array for every request.
    for (const key in w.annotations) {
      if (!Object.hasOwn(w.annotations, key)) continue;
      const value = w.annotations[key];
      const effect = bypassEffect(key, value);
      if (effect === undefined || allowListed(ctx.config, key, value) || (gateway && key === GATEWAY_TEMPLATE_KEY)) continue;
      out.push({
        message: `annotation ${key} ${effect}; the value ${quote(value)} is not on the capture-bypass allow-list`,
        path: fieldPath(w.template, `metadata.annotations[${JSON.stringify(key)}]`),
        value: show(value),
        fix: `remove the annotation, or ask the platform team to allow this value (captureBypass.allow[${JSON.stringify(key)}])`,
      });
    }
    return out;
  },
};
