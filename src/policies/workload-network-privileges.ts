// workload-network-privileges: a privileged container, or one that adds NET_ADMIN, NET_RAW or
// SYS_ADMIN (or ALL), can rewrite the pod's iptables and route around the sidecar. This covers
// app, init and ephemeral containers (kubectl debug --profile=netadmin adds NET_ADMIN and
// NET_RAW through the ephemeralcontainers subresource). Capabilities compare case-insensitively,
// with or without the CAP_ prefix. The one carve-out: Istio's own istio-init (and
// istio-validation) in an injected Pod, with an allowed Istio image, may add NET_ADMIN and
// NET_RAW, which it needs to set up the redirection; and Istio's own istio-proxy may add NET_ADMIN
// when the pod's interception mode is TPROXY (the injection template adds it: the proxy must set
// the original destination on its sockets). Nothing more.
import type { Config } from '../config/types.ts';
import type { ValidatingRule, Violation } from '../core/types.ts';
import { isRecord, stringMap } from '../core/objects.ts';
import { containerLabel, type ContainerRef, type PodTemplate } from './lib/pod-template.ts';
import { containerScope, judgeWorkload } from './lib/container-rules.ts';
import { interceptionMode } from './lib/capture.ts';
import { INIT, isIstioOwn, notIstioOwn, PROXY, VALIDATION } from './lib/injector.ts';
import { quote } from './lib/json-read.ts';

/** Capabilities that can change the pod's network stack. */
export const NETWORK_CAPABILITIES: ReadonlySet<string> = new Set(['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'ALL']);
/** What Istio's istio-init needs for istio-iptables. */
const ISTIO_INIT_CAPABILITIES: ReadonlySet<string> = new Set(['NET_ADMIN', 'NET_RAW']);

/** " cap_net_admin" → "NET_ADMIN". */
export function normalizeCapability(cap: string): string {
  const c = cap.trim().toUpperCase();
  return c.startsWith('CAP_') ? c.slice(4) : c;
}

function isIstioInit(c: ContainerRef, t: PodTemplate, config: Config): boolean {
  return (c.name === INIT || c.name === VALIDATION) && isIstioOwn(c, t, config);
}

/** The capabilities Istio's own container may add: istio-init's two, and NET_ADMIN for a TPROXY proxy. */
function istioCapabilities(c: ContainerRef, t: PodTemplate, config: Config): ReadonlySet<string> {
  if (isIstioInit(c, t, config)) return ISTIO_INIT_CAPABILITIES;
  if (c.name === PROXY && interceptionMode(t) === 'TPROXY' && isIstioOwn(c, t, config)) return TPROXY_CAPABILITIES;
  return NONE;
}
const TPROXY_CAPABILITIES: ReadonlySet<string> = new Set(['NET_ADMIN']);
const NONE: ReadonlySet<string> = new Set();

function reason(c: ContainerRef, t: PodTemplate, config: Config): string {
  if (c.name !== INIT && c.name !== VALIDATION) return '';
  const why = notIstioOwn(c, t, config);
  return why === undefined ? ` (Istio's ${c.name} may add only NET_ADMIN and NET_RAW)` : ` (it is not Istio's own ${c.name}: ${why})`;
}

function containerProblems(c: ContainerRef, t: PodTemplate, config: Config, out: Violation[]): void {
  const sc = c.container['securityContext'];
  if (!isRecord(sc)) return;
  if (sc['privileged'] === true) {
    out.push({ message: `${containerLabel(c)} is privileged: it can rewrite the pod's iptables and bypass the sidecar`, path: `${c.path}.securityContext.privileged`, value: 'true', fix: 'remove privileged: true' });
  }
  const add = stringMap(sc['capabilities'])['add'];
  if (!Array.isArray(add) || add.length === 0) return;
  // Whether this is Istio's own container is asked only of a container that adds capabilities.
  let istio: ReadonlySet<string> | undefined;
  for (let i = 0; i < add.length; i++) {
    const cap: unknown = add[i];
    if (typeof cap !== 'string') continue;
    // Already in canonical form (the usual case): nothing to normalize.
    const name = NETWORK_CAPABILITIES.has(cap) ? cap : normalizeCapability(cap);
    if (!NETWORK_CAPABILITIES.has(name)) continue;
    istio ??= istioCapabilities(c, t, config);
    if (istio.has(name)) continue;
    out.push({
      message: `${containerLabel(c)} adds capability ${quote(cap)}: it can rewrite the pod's iptables and bypass the sidecar${reason(c, t, config)}`,
      path: `${c.path}.securityContext.capabilities.add[${i}]`,
      value: cap,
      fix: `remove ${cap} from capabilities.add`,
    });
  }
}

export const workloadNetworkPrivileges: ValidatingRule = {
  id: 'workload-network-privileges',
  type: 'validating',
  title: 'Containers may not be privileged or add NET_ADMIN, NET_RAW or SYS_ADMIN',
  fix: 'remove privileged: true and the NET_ADMIN, NET_RAW, SYS_ADMIN or ALL capabilities',
  ...containerScope(),
  validate: (ctx) =>
    judgeWorkload(ctx, (w, out) => {
      for (const c of w.containers) containerProblems(c, w.template, ctx.config, out);
    }),
};
