// What the install values say about capture: values.global.proxy.* in the Helm values, with the
// chart defaults of manifests/charts/istio-control/istio-discovery/values.yaml
// (in an IstioOperator's spec.values, or the `values` key of the istio-sidecar-injector ConfigMap
// that istiod's injector renders every pod with). Istio's injection template
// (manifests/charts/istio-control/istio-discovery/files/injection-template.yaml) passes them to
// istio-iptables (-i, -x, -b, -d, -q, -o) and, with the Istio CNI, stamps them on every pod as
// traffic.sidecar.istio.io/* annotations: such an annotation, equal to the mesh-wide value, is the
// injector's copy and no tenant's bypass.
import type { Config } from '../../config/types.ts';
import type { Violation } from '../../core/types.ts';
import { show } from './json-read.ts';
import { isRecord } from '../../core/objects.ts';

/** The values.global.proxy settings that decide capture, with Istio's chart defaults (values.yaml). */
export const CAPTURE_VALUE_DEFAULTS = {
  includeIPRanges: '*',
  excludeIPRanges: '',
  includeInboundPorts: '*',
  excludeInboundPorts: '',
  includeOutboundPorts: '',
  excludeOutboundPorts: '',
  statusPort: '15020',
} as const;

export type CaptureValues = { readonly [K in keyof typeof CAPTURE_VALUE_DEFAULTS]: string };

/** What each narrowing setting does; includeOutboundPorts only adds capture and is not here. */
export const NARROWING: Readonly<Partial<Record<keyof CaptureValues, { readonly full: string; readonly effect: string }>>> = {
  includeIPRanges: { full: '*', effect: 'limits outbound capture to these ranges: traffic to any other address leaves uncaptured' },
  excludeIPRanges: { full: '', effect: 'lets outbound traffic to these ranges leave uncaptured' },
  includeInboundPorts: { full: '*', effect: 'limits inbound capture to these ports' },
  excludeInboundPorts: { full: '', effect: 'lets inbound traffic to these ports reach the application uncaptured' },
  excludeOutboundPorts: { full: '', effect: 'lets outbound traffic to these ports leave uncaptured' },
};

function text(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** values.global.proxy's capture settings, Istio's defaults where unset. */
export function captureValues(values: unknown): CaptureValues {
  const proxy = isRecord(values) && isRecord(values['global']) && isRecord(values['global']['proxy']) ? values['global']['proxy'] : {};
  const out: Record<string, string> = {};
  for (const [k, dflt] of Object.entries(CAPTURE_VALUE_DEFAULTS)) out[k] = text(proxy[k]) ?? dflt;
  return out as CaptureValues;
}

/** The template's excludeInboundPort: the status port is appended unless listed or "0". */
function withStatusPort(statusPort: string, excluded: string): string {
  const port = statusPort.trim();
  if (port === '' || port === '0') return excluded;
  const ports = excluded.split(',');
  if (ports.includes(port)) return excluded;
  return [...ports.map((p) => p.trim()).filter((p) => p !== ''), port].join(',');
}

/**
 * The traffic.sidecar.istio.io annotations the injector stamps on a pod with these mesh-wide values
 * (CNI mode, a pod that does not set them itself), by annotation name. With Istio's defaults this
 * is includeOutboundIPRanges "*", includeInboundPorts "*" and excludeInboundPorts "15020".
 */
export function stampedAnnotations(v: CaptureValues): Readonly<Record<string, string>> {
  const out: Record<string, string> = {
    'traffic.sidecar.istio.io/includeInboundPorts': v.includeInboundPorts,
    'traffic.sidecar.istio.io/excludeInboundPorts': withStatusPort(v.statusPort, v.excludeInboundPorts),
  };
  if (v.includeIPRanges !== '') out['traffic.sidecar.istio.io/includeOutboundIPRanges'] = v.includeIPRanges;
  if (v.excludeIPRanges !== '') out['traffic.sidecar.istio.io/excludeOutboundIPRanges'] = v.excludeIPRanges;
  if (v.includeOutboundPorts !== '') out['traffic.sidecar.istio.io/includeOutboundPorts'] = v.includeOutboundPorts;
  if (v.excludeOutboundPorts !== '') out['traffic.sidecar.istio.io/excludeOutboundPorts'] = v.excludeOutboundPorts;
  return out;
}

/** The mesh-wide injector values: the cluster view's (discovered), else the configured ones. */
export function meshInjectorValues(cluster: { injectorValues?(): Readonly<Record<string, unknown>> | undefined }, config: Config): unknown {
  return cluster.injectorValues?.() ?? config.istioInstall.injectorValues;
}

/**
 * The stamped annotations for a values object, memoised on that object (the configuration's
 * frozen injectorValues, or the cluster view's current snapshot): one entry, replaced when the
 * object changes.
 */
export class StampedAnnotations {
  #values: unknown = Symbol('none');
  #stamped: Readonly<Record<string, string>> = {};

  of(values: unknown): Readonly<Record<string, string>> {
    if (values !== this.#values) {
      this.#values = values;
      this.#stamped = stampedAnnotations(captureValues(values));
    }
    return this.#stamped;
  }
}

/**
 * Settings in Helm values that narrow capture for every pod of the mesh. `path(key)` names the
 * field for the user (e.g. `spec.values.global.proxy.excludeIPRanges`); `allow` is
 * config.istioInstall.allow, by path under the values (`global.proxy.excludeIPRanges`).
 */
export function narrowingProblems(values: unknown, allow: Readonly<Record<string, readonly string[]>>, path: (key: string) => string): Violation[] {
  const v = captureValues(values);
  const out: Violation[] = [];
  for (const [key, n] of Object.entries(NARROWING)) {
    const value = v[key as keyof CaptureValues];
    if (n === undefined || value === n.full) continue;
    const allowPath = `global.proxy.${key}`;
    const list = Object.hasOwn(allow, allowPath) ? (allow[allowPath] ?? []) : [];
    if (list.includes('*') || list.includes(value)) continue;
    out.push({
      message: `values.global.proxy.${key} ${JSON.stringify(value)} ${n.effect}, for every pod in the mesh`,
      path: path(allowPath),
      value: show(value),
      fix: `set global.proxy.${key} to ${JSON.stringify(n.full)} (Istio's default), or ask the platform team to allow this value (istioInstall.allow[${JSON.stringify(allowPath)}])`,
    });
  }
  return out;
}
