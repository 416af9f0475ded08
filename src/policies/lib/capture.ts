// Effective capture: whether an injected sidecar Pod's traffic will really go through a real
// proxy, judged from what sets the redirection up (istio-iptables or the Istio CNI, as in
// cni/pkg/plugin and tools/istio-iptables of the pinned istio.io/istio module) rather than from
// names and annotations. Validation runs after every mutating
// webhook, so the Pod meshguard sees is the Pod that runs: Istio's injected containers with
// whatever the workload declared for them merged in (Istio's "customization").
//
// Two mechanisms set up capture, and the Pod tells which one Istio chose:
// - istio-init (no CNI): an init container running `pilot-agent istio-iptables <flags>`; its
//   flags and environment decide what is redirected. The Istio CNI skips every Pod that has an
//   istio-init container (cni/pkg/plugin/plugin.go), so this container alone decides.
// - the Istio CNI: the node plugin programs the redirection from the Pod's annotations
//   (cni/pkg/plugin/sidecar_redirect.go) when the Pod has an istio-proxy container of proxy type
//   sidecar, the sidecar status annotation, no DISABLE_ENVOY and no inject=false; an
//   istio-validation init container then checks that the redirection is in place. The
//   annotations themselves are judged by workload-capture-bypass.
// Full capture is what Istio's injector writes by default: REDIRECT or TPROXY, every outbound
// range and inbound port, only the proxy's own ports (15090, 15021, 15020) excluded inbound,
// nothing excluded outbound, the proxy's identity 1337 exempt. A narrower setting passes only
// when the platform allows that exact value (captureBypass.allow, keyed by the annotation that
// would set it) or the Pod carries it as an annotation (then workload-capture-bypass judges it).
import type { Config } from '../../config/types.ts';
import type { Violation } from '../../core/types.ts';
import { ENV_ONLY_SETTINGS, list, parseBool, proxyType, readInvocation, type IptablesInvocation, type Setting } from './pilot-agent.ts';
import { isRecord } from '../../core/objects.ts';
import { containerLabel, type ContainerRef, type PodTemplate } from './pod-template.ts';
import { INIT, INTERCEPTION_MODE_ANNOTATION, isIstioImage, PROXY, PROXY_ID, PROXY_PORTS, proxyOf, STATUS, VALIDATION } from './injector.ts';
import { quote } from './json-read.ts';

const CAPTURE_FIX = "let Istio's injector write the capture container (remove the workload's istio-init/istio-validation fields and capture overrides), or ask the platform team to allow the value (captureBypass.allow)";

/** Each narrowing flag, the annotation that would set it, and the value of full capture. */
interface Narrowing {
  readonly flag: string;
  readonly annotation: string;
  readonly what: string;
  /** Whether the value keeps full capture. */
  readonly full: (value: string) => boolean;
}

const NARROWING: readonly Narrowing[] = [
  {
    flag: 'istio-inbound-interception-mode',
    annotation: INTERCEPTION_MODE_ANNOTATION,
    what: 'the interception mode',
    full: (v) => v === 'REDIRECT' || v === 'TPROXY',
  },
  {
    flag: 'istio-service-cidr',
    annotation: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
    what: 'the outbound ranges captured',
    full: (v) => v === '*' || list(v).includes('*'),
  },
  {
    flag: 'istio-service-exclude-cidr',
    annotation: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
    what: 'the outbound ranges excluded',
    full: (v) => v === '' || list(v).length === 0,
  },
  {
    flag: 'istio-inbound-ports',
    annotation: 'traffic.sidecar.istio.io/includeInboundPorts',
    what: 'the inbound ports captured',
    full: (v) => v === '*' || list(v).includes('*'),
  },
  {
    flag: 'istio-local-exclude-ports',
    annotation: 'traffic.sidecar.istio.io/excludeInboundPorts',
    what: 'the inbound ports excluded',
    full: (v) => v === PROXY_PORTS.join(',') || list(v).every((p) => PROXY_PORTS.includes(p)),
  },
  {
    flag: 'istio-local-outbound-ports-exclude',
    annotation: 'traffic.sidecar.istio.io/excludeOutboundPorts',
    what: 'the outbound ports excluded',
    full: (v) => v === '' || list(v).length === 0,
  },
  {
    flag: 'istio-exclude-interfaces',
    annotation: 'traffic.sidecar.istio.io/excludeInterfaces',
    what: 'the interfaces excluded from capture',
    full: (v) => v === '' || list(v).length === 0,
  },
];

/** Flags that must not be set at all in istio-init: with them no rule is applied, or elsewhere. */
const FORBIDDEN_TRUE: Readonly<Record<string, string>> = {
  'dry-run': 'prints the rules instead of applying them',
  'skip-rule-apply': 'applies no rule',
  'cleanup-only': 'removes the rules instead of creating them',
  'cni-mode': 'programs the host network namespace instead of the pod',
};

const FORBIDDEN_TRUE_ENTRIES = Object.entries(FORBIDDEN_TRUE);

/** Flags whose default is the only value that keeps the proxy reachable and exempt. */
const FIXED: Readonly<Record<string, readonly string[]>> = {
  'envoy-port': ['15001'],
  'inbound-capture-port': ['15006'],
  'proxy-uid': [String(PROXY_ID)],
  'proxy-gid': [String(PROXY_ID)],
};

const FIXED_ENTRIES = Object.entries(FIXED);

/**
 * Whether the value of a narrowing setting is allowed for this Pod. `mesh` holds the annotations
 * the injector derives from the mesh-wide install values (lib/install-values.ts): a flag
 * equal to the mesh-wide value is the platform's setting, judged where it is set.
 */
function allowed(n: Narrowing, value: string, t: PodTemplate, config: Config, mesh: Readonly<Record<string, string>>): boolean {
  if (n.full(value)) return true;
  if (Object.hasOwn(mesh, n.annotation) && mesh[n.annotation] === value) return true;
  // The injector copied the Pod's own annotation into the flag: workload-capture-bypass judges it.
  if (t.annotations[n.annotation] === value) return true;
  const allow = Object.hasOwn(config.captureBypass.allow, n.annotation) ? config.captureBypass.allow[n.annotation] : undefined;
  return allow !== undefined && (allow.includes('*') || allow.includes(value));
}

/** Where a container's invocation is, and what it is, for a finding. */
function invocationAt(c: ContainerRef): { path: string; value: string } {
  const key = c.container['command'] === undefined ? 'args' : 'command';
  return { path: `${c.path}.${key}`, value: quote(c.container[key] ?? null) };
}

function at(c: ContainerRef, s: Setting): string {
  return `${c.path}.${s.at}`;
}

/** Findings for an istio-iptables invocation that sets up capture (istio-init). */
function initProblems(c: ContainerRef, inv: IptablesInvocation, t: PodTemplate, config: Config, mesh: Readonly<Record<string, string>>, out: Violation[]): void {
  const who = containerLabel(c);
  if (!inv.isIstioIptables) {
    out.push({
      message: `${who} does not run istio-iptables (its command or args were changed), so the pod's traffic is never redirected to the proxy`,
      ...invocationAt(c),
      fix: CAPTURE_FIX,
    });
    return;
  }
  for (const u of inv.unknown) {
    out.push({ message: `${who} passes ${quote(u.value)}, which istio-iptables does not accept as a capture setting`, path: at(c, u), value: u.value, fix: CAPTURE_FIX });
  }
  for (const e of inv.opaqueEnv) {
    out.push({ message: `${who} takes the capture setting ${e.value} from valueFrom, so what it captures cannot be known at admission`, path: at(c, e), value: e.value, fix: CAPTURE_FIX });
  }
  for (const [flag, effect] of FORBIDDEN_TRUE_ENTRIES) {
    const s = inv.flags.get(flag);
    if (s?.value === 'true') out.push({ message: `${who} sets --${flag}, which ${effect}: the pod's traffic bypasses the proxy`, path: at(c, s), value: flag, fix: CAPTURE_FIX });
  }
  const ns = inv.flags.get('network-namespace');
  if (ns !== undefined && ns.value !== '') {
    out.push({ message: `${who} applies its rules to network namespace ${quote(ns.value)} instead of the pod's`, path: at(c, ns), value: ns.value, fix: CAPTURE_FIX });
  }
  for (const [flag, values] of FIXED_ENTRIES) {
    const s = inv.flags.get(flag);
    if (s === undefined || values.includes(s.value)) continue;
    const msg = flag.startsWith('proxy-')
      ? `${who} exempts ${flag === 'proxy-uid' ? 'UID' : 'GID'} ${quote(s.value)} from capture instead of the proxy's ${PROXY_ID}: that identity's traffic leaves uncaptured`
      : `${who} redirects to port ${quote(s.value)} instead of the proxy's ${values[0]}`;
    out.push({ message: msg, path: at(c, s), value: s.value, fix: CAPTURE_FIX });
  }
  envOnly(c, out);
  for (const n of NARROWING) {
    const s = inv.flags.get(n.flag);
    // Absent: istio-iptables' defaults capture nothing outbound ("" for -i) and no inbound port
    // ("" for -b); the mode, the excludes and the interfaces default to full capture.
    const value = s?.value ?? (n.flag === 'istio-service-cidr' || n.flag === 'istio-inbound-ports' ? '' : undefined);
    if (value === undefined || allowed(n, value, t, config, mesh)) continue;
    out.push({
      message: `${who} narrows ${n.what} to ${quote(value)} (${n.flag}): traffic outside it bypasses the proxy`,
      path: s === undefined ? `${c.path}.args` : at(c, s),
      value,
      fix: `remove the override, or ask the platform team to allow this value (captureBypass.allow[${JSON.stringify(n.annotation)}])`,
    });
  }
}

function envOnly(c: ContainerRef, out: Violation[]): void {
  const env = c.container['env'];
  if (!Array.isArray(env)) return;
  env.forEach((e: unknown, i) => {
    if (!isRecord(e) || typeof e['name'] !== 'string' || !Object.hasOwn(ENV_ONLY_SETTINGS, e['name'])) return;
    const name = e['name'];
    const ok = typeof e['value'] === 'string' && (ENV_ONLY_SETTINGS[name] ?? []).includes(e['value']);
    if (ok) return;
    const shown = typeof e['value'] === 'string' ? `${name}=${quote(e['value'])}` : `${name} from valueFrom`;
    out.push({ message: `${containerLabel(c)} sets ${shown}, which changes whose traffic istio-iptables captures`, path: `${c.path}.env[${i}]`, value: name, fix: CAPTURE_FIX });
  });
}

/** Findings for the CNI's istio-validation container: it must run the real check. */
function validationProblems(c: ContainerRef, inv: IptablesInvocation, out: Violation[]): void {
  const real = inv.isIstioIptables && inv.flags.get('run-validation')?.value === 'true' && inv.unknown.length === 0;
  if (real) return;
  out.push({
    message: `${containerLabel(c)} does not run istio-iptables --run-validation, so a pod whose redirection the CNI failed to set up would start anyway`,
    ...invocationAt(c),
    fix: CAPTURE_FIX,
  });
}

function envTrue(c: ContainerRef, name: string): Setting | undefined {
  const env = c.container['env'];
  if (!Array.isArray(env)) return undefined;
  for (let i = 0; i < env.length; i++) {
    const e: unknown = env[i];
    if (isRecord(e) && e['name'] === name && typeof e['value'] === 'string' && parseBool(e['value']) === 'true') {
      return { value: e['value'], at: `env[${i}]` };
    }
  }
  return undefined;
}

/** Why the container is not the real sidecar proxy (findings), for an injected Pod. */
function proxyProblems(p: ContainerRef, config: Config, out: Violation[]): void {
  if (!isIstioImage(p.image, config)) {
    out.push({ message: `${PROXY} runs image ${quote(p.image)}, which is not an allowed Istio proxy image (istioProxyImages)`, path: `${p.path}.image`, value: p.image });
  }
  const type = proxyType(p.container);
  if (type !== 'sidecar') {
    out.push({
      message: type === undefined
        ? `${PROXY} does not run the Istio agent as a proxy (its command or args were changed): nothing proxies the captured traffic`
        : `${PROXY} runs proxy type ${quote(type)}, not sidecar: the CNI skips the pod and the proxy is not configured as a sidecar`,
      ...invocationAt(p),
      fix: CAPTURE_FIX,
    });
  }
  const disabled = envTrue(p, 'DISABLE_ENVOY');
  if (disabled !== undefined) {
    out.push({ message: `${PROXY} sets DISABLE_ENVOY: no Envoy runs and the CNI skips the pod's capture`, path: `${p.path}.${disabled.at}`, value: 'DISABLE_ENVOY', fix: CAPTURE_FIX });
  }
}

/**
 * Everything that keeps an injected sidecar Pod's traffic from going through a real proxy: the
 * proxy, the capture mechanism and its settings. Empty when capture is full. Call only for a Pod
 * (templates are injected later) that is meant to have a sidecar. `mesh`: the annotations the
 * injector stamps from the mesh-wide install values (StampedAnnotations).
 */
export function sidecarCaptureProblems(t: PodTemplate, config: Config, mesh: Readonly<Record<string, string>>): Violation[] {
  const out: Violation[] = [];
  const proxy = proxyOf(t);
  if (proxy === undefined) {
    out.push({
      message: `the pod has no ${PROXY} container (in spec.containers, or in spec.initContainers with restartPolicy Always)`,
      path: 'spec.containers',
      value: t.containers.filter((c) => c.list === 'containers').map((c) => c.name).join(','),
    });
  } else {
    proxyProblems(proxy, config, out);
  }
  const init = t.containers.find((c) => c.list === 'initContainers' && c.name === INIT);
  const validation = t.containers.find((c) => c.list === 'initContainers' && c.name === VALIDATION);
  if (init !== undefined) {
    // The CNI skips a pod with istio-init, so istio-init alone decides what is captured.
    if (!isIstioImage(init.image, config)) {
      out.push({ message: `${INIT} runs image ${quote(init.image)}, which is not an allowed Istio proxy image (istioProxyImages)`, path: `${init.path}.image`, value: init.image });
    }
    initProblems(init, readInvocation(init.container), t, config, mesh, out);
  } else if (validation !== undefined) {
    if (!isIstioImage(validation.image, config)) {
      out.push({ message: `${VALIDATION} runs image ${quote(validation.image)}, which is not an allowed Istio proxy image (istioProxyImages)`, path: `${validation.path}.image`, value: validation.image });
    }
    validationProblems(validation, readInvocation(validation.container), out);
  } else {
    out.push({
      message: `the pod has neither ${INIT} nor ${VALIDATION}: nothing sets up the redirection of its traffic to the proxy (interception mode NONE, or the injected init container was removed)`,
      path: 'spec.initContainers',
      value: t.containers.filter((c) => c.list === 'initContainers').map((c) => c.name).join(','),
      fix: CAPTURE_FIX,
    });
  }
  if (typeof t.annotations[STATUS] !== 'string' || t.annotations[STATUS] === '') {
    out.unshift({ message: `the pod was not injected: it has no ${STATUS} annotation, so Istio's injector did not run or skipped it`, path: `metadata.annotations[${JSON.stringify(STATUS)}]`, value: '' });
  }
  return out;
}

/**
 * The interception mode the pod's capture uses: istio-init's -m flag, else (CNI) the annotation the
 * injector stamps; REDIRECT when neither says.
 */
export function interceptionMode(t: PodTemplate): string {
  const init = t.containers.find((c) => c.list === 'initContainers' && c.name === INIT);
  if (init !== undefined) {
    const m = readInvocation(init.container).flags.get('istio-inbound-interception-mode');
    if (m !== undefined) return m.value;
  }
  const a = t.annotations[INTERCEPTION_MODE_ANNOTATION];
  return typeof a === 'string' ? a : 'REDIRECT';
}
