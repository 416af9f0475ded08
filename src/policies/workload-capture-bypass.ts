// workload-capture-bypass: pod annotations that let traffic skip the proxy, or that replace what
// the injector puts in the pod. Names from istio/api annotation/annotations.yaml (and the 1.25
// release notes for istio.io/reroute-virtual-interfaces and ambient.istio.io/dns-capture).
// Every traffic.sidecar.istio.io/* annotation counts, including ones Istio adds later. Each
// annotation can be allowed per value in configuration (captureBypass.allow; "*" allows any
// value), e.g. excludeOutboundPorts "5432" for a database the mesh cannot proxy.
// proxy.istio.io/config is read as Istio reads it (a ProxyConfig, lib/proxy-config.ts) and judged
// field by field (proxyConfig.allow, proxyConfig.unknownFields). A traffic annotation equal to
// what the injector stamps from the mesh-wide values (the Istio CNI copies
// values.global.proxy.* onto every pod) is Istio's own and not reported.
import type { Config } from '../config/types.ts';
import { isSkip, type ValidatingRule, type Violation } from '../core/types.ts';
import { meshInjectorValues, StampedAnnotations } from './lib/install-values.ts';
import { quote, show } from './lib/json-read.ts';
import { fieldPath, WORKLOAD_KIND_REFS, workloadWebhook, type PodTemplate } from './lib/pod-template.ts';
import { CLASS_EFFECT } from './lib/proxy-config-fields.ts';
import { ProxyConfigJudge } from './lib/proxy-config.ts';
import { INJECT_TEMPLATES, INTERCEPTION_MODE_ANNOTATION, PROXY_IMAGE_TYPES } from './lib/injector.ts';
import { reviewedGateway, reviewedWorkload } from './lib/workload-review.ts';

export const TRAFFIC_PREFIX = 'traffic.sidecar.istio.io/';

const CAPTURE = 'changes which traffic the mesh captures';
const PROXY = 'changes the injected proxy (image, bootstrap, control plane, volumes or configuration)';

/** Annotations judged by exact name, with what they do. */
export const BYPASS_ANNOTATIONS: Readonly<Record<string, string>> = {
  'istio.io/reroute-virtual-interfaces': CAPTURE,
  [INTERCEPTION_MODE_ANNOTATION]: CAPTURE,
  'ambient.istio.io/bypass-inbound-capture': CAPTURE,
  'ambient.istio.io/dns-capture': CAPTURE,
  'proxy.istio.io/config': PROXY,
  'sidecar.istio.io/proxyImage': PROXY,
  'sidecar.istio.io/proxyImageType': PROXY,
  'sidecar.istio.io/bootstrapOverride': PROXY,
  'sidecar.istio.io/discoveryAddress': PROXY,
  'sidecar.istio.io/userVolume': PROXY,
  'sidecar.istio.io/userVolumeMount': PROXY,
  [INJECT_TEMPLATES]: `${PROXY}; only the default "sidecar" template is allowed`,
  'status.sidecar.istio.io/port': `${PROXY}; "0" removes the proxy's status port and readiness probe`,
};

/**
 * Values that keep full capture and Istio's own proxy. With the Istio CNI, the injector itself writes the capture
 * settings onto every injected Pod (interceptionMode REDIRECT, include ranges and inbound ports
 * "*", and the status port 15020 excluded inbound, which the proxy binds anyway), so these values
 * are Istio's defaults, not a bypass. Also the default inject template and DNS capture turned on.
 */
export const FULL_CAPTURE: Readonly<Record<string, readonly string[]>> = {
  'traffic.sidecar.istio.io/includeOutboundIPRanges': ['*'],
  'traffic.sidecar.istio.io/includeInboundPorts': ['*'],
  'traffic.sidecar.istio.io/excludeInboundPorts': ['15020'],
  [INJECT_TEMPLATES]: ['sidecar'],
  'ambient.istio.io/dns-capture': ['true'],
  // TPROXY captures everything too (it keeps the client's source address).
  [INTERCEPTION_MODE_ANNOTATION]: ['REDIRECT', 'TPROXY'],
  // The image variants Istio publishes: the same proxy, built on another base image.
  'sidecar.istio.io/proxyImageType': PROXY_IMAGE_TYPES,
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

export const PROXY_CONFIG = 'proxy.istio.io/config';

/** At most this many findings per annotation: one denial stays readable (the last one counts the rest). */
const MAX_FINDINGS = 20;

function proxyConfigViolations(judge: ProxyConfigJudge, value: unknown, template: PodTemplate, config: Config): Violation[] {
  const path = fieldPath(template, `metadata.annotations[${JSON.stringify(PROXY_CONFIG)}]`);
  if (typeof value !== 'string') {
    return [{ message: `annotation ${PROXY_CONFIG} is not a string but ${quote(value)}`, path, value: show(value), fix: `make ${PROXY_CONFIG} a YAML or JSON ProxyConfig` }];
  }
  const verdict = judge.judge(value, config.proxyConfig);
  if ('error' in verdict) {
    return [{ message: `annotation ${PROXY_CONFIG} does not parse as a ProxyConfig: ${verdict.error}`, path, value: show(value), fix: `make ${PROXY_CONFIG} a valid YAML or JSON ProxyConfig (istio.io/api mesh/v1alpha1 ProxyConfig)` }];
  }
  const shown = verdict.findings.length > MAX_FINDINGS ? verdict.findings.slice(0, MAX_FINDINGS - 1) : verdict.findings;
  const out: Violation[] = shown.map((f) => ({
    message: `annotation ${PROXY_CONFIG} sets ${f.field} ${f.value}, which ${CLASS_EFFECT[f.class]}; the value is not on the proxy-config allow-list`,
    path: `${path} > ${f.field}`,
    value: f.value,
    fix: `remove ${f.field} from the annotation, or ask the platform team to allow this value (proxyConfig.allow[${JSON.stringify(f.field)}]${f.class === 'unknown' ? ' or proxyConfig.unknownFields: allow' : ''})`,
  }));
  if (shown.length < verdict.findings.length) {
    const rest = verdict.findings.slice(shown.length).map((f) => f.field);
    out.push({
      message: `annotation ${PROXY_CONFIG} sets ${rest.length} more fields that are not on the proxy-config allow-list: ${rest.slice(0, 5).join(', ')}${rest.length > 5 ? ', ...' : ''}`,
      path,
      value: `${rest.length} more fields`,
      fix: `remove the fields from the annotation, or ask the platform team to allow them (proxyConfig.allow)`,
    });
  }
  return out;
}

/** The rule, with the memo tables it owns (verdicts per annotation text, stamped annotations per values object). */
export function workloadCaptureBypassRule(): ValidatingRule {
  const judge = new ProxyConfigJudge();
  const stamped = new StampedAnnotations();
  return {
    id: 'workload-capture-bypass',
    type: 'validating',
    title: 'Workloads may not narrow traffic capture or replace the injected proxy through annotations',
    fix: 'remove the annotation, or ask the platform team to allow this value (captureBypass.allow)',
    match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'] },
    webhook: workloadWebhook({ ephemeral: false }),
    validate(ctx) {
      const w = reviewedWorkload(ctx);
      if (isSkip(w)) return w;
      const out: Violation[] = [];
      // Istio's gateways are injected with the gateway template (lib/gateway-pods.ts checks their shape).
      const gateway = w.annotations[INJECT_TEMPLATES] === 'gateway' && reviewedGateway(ctx) !== undefined;
      // for...in over the parsed annotations (own keys: JSON objects inherit nothing enumerable),
      // without building an entries array for every request.
      for (const key in w.annotations) {
        if (!Object.hasOwn(w.annotations, key)) continue;
        const value = w.annotations[key];
        const effect = bypassEffect(key, value);
        if (effect === undefined || allowListed(ctx.config, key, value) || (gateway && key === INJECT_TEMPLATES)) continue;
        if (key === PROXY_CONFIG) {
          out.push(...proxyConfigViolations(judge, value, w.template, ctx.config));
          continue;
        }
        if (key.startsWith(TRAFFIC_PREFIX)) {
          const mesh = stamped.of(meshInjectorValues(ctx.cluster, ctx.config));
          if (Object.hasOwn(mesh, key) && mesh[key] === value) continue;
        }
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
}

export const workloadCaptureBypass: ValidatingRule = workloadCaptureBypassRule();
