// What a container runs through pilot-agent, Istio's agent binary (pilot/cmd/pilot-agent in the
// pinned istio.io/istio module): `pilot-agent proxy <type>` (the proxy of a sidecar, gateway or
// waypoint) or `pilot-agent istio-iptables <flags>` (what Istio's istio-init and istio-validation
// containers run). For istio-iptables, what it will do is read from the container's args and env
// the way its flag parser reads them (tools/istio-iptables/pkg/cmd/root.go): pflag syntax
// (`-p 15001`, `-p=15001`, `-p15001`, `--envoy-port=15001`, booleans as `--dry-run` or
// `--dry-run=true`), and every flag bound to an environment variable (the flag name upper-cased
// with dashes as underscores, plus the aliases ISTIO_META_DNS_CAPTURE, INVALID_DROP and
// ISTIO_DUAL_STACK). A flag on the command line wins over its environment variable. The settings
// read only from the environment are in tools/istio-iptables/pkg/constants/constants.go and
// tools/common/config/config.go. Pure: no I/O.
import { isRecord } from '../../core/objects.ts';

export type FlagKind = 'string' | 'bool';

interface FlagDef {
  readonly name: string;
  readonly short?: string;
  readonly kind: FlagKind;
  readonly env?: readonly string[];
}

function def(name: string, short: string | undefined, kind: FlagKind, bindEnv: boolean, extraEnv: readonly string[] = []): FlagDef {
  const env = bindEnv ? [name.toUpperCase().replaceAll('-', '_'), ...extraEnv] : extraEnv;
  return { name, kind, env, ...(short === undefined ? {} : { short }) };
}

/** Every flag of istio-iptables at the pinned Istio version. */
export const IPTABLES_FLAGS: readonly FlagDef[] = [
  def('envoy-port', 'p', 'string', false),
  def('inbound-capture-port', 'z', 'string', true),
  def('inbound-tunnel-port', 'e', 'string', true),
  def('proxy-uid', 'u', 'string', true),
  def('proxy-gid', 'g', 'string', true),
  def('istio-inbound-interception-mode', 'm', 'string', true),
  def('istio-inbound-ports', 'b', 'string', true),
  def('istio-local-exclude-ports', 'd', 'string', true),
  def('istio-exclude-interfaces', 'c', 'string', true),
  def('istio-service-cidr', 'i', 'string', true),
  def('istio-service-exclude-cidr', 'x', 'string', true),
  def('istio-outbound-ports', 'q', 'string', true),
  def('istio-local-outbound-ports-exclude', 'o', 'string', true),
  def('kube-virt-interfaces', 'k', 'string', true),
  def('istio-inbound-tproxy-mark', 't', 'string', true),
  def('istio-inbound-tproxy-route-table', 'r', 'string', true),
  def('dry-run', 'n', 'bool', true),
  def('iptables-probe-port', undefined, 'string', true),
  def('probe-timeout', undefined, 'string', true),
  def('skip-rule-apply', undefined, 'bool', true),
  def('run-validation', undefined, 'bool', true),
  def('redirect-dns', undefined, 'bool', true, ['ISTIO_META_DNS_CAPTURE']),
  def('drop-invalid', undefined, 'bool', true, ['INVALID_DROP']),
  def('dual-stack', undefined, 'bool', true, ['ISTIO_DUAL_STACK']),
  def('capture-all-dns', undefined, 'bool', true),
  def('network-namespace', undefined, 'string', true),
  def('cni-mode', undefined, 'bool', true),
  def('reconcile', undefined, 'bool', true),
  def('cleanup-only', undefined, 'bool', true),
  def('force-apply', undefined, 'bool', true),
  def('native-nftables', undefined, 'bool', true),
  def('force-iptables-binary', undefined, 'string', true),
];

/**
 * Environment-only settings of istio-iptables (env.Register, no flag), with the values that keep
 * full capture.
 */
export const ENV_ONLY_SETTINGS: Readonly<Record<string, readonly string[]>> = {
  ENVOY_USER: ['istio-proxy'],
  ISTIO_OUTBOUND_OWNER_GROUPS: ['*'],
  ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: [''],
  ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: ['127.0.0.1/32'],
  INBOUND_INTERCEPTION_MODE: ['', 'REDIRECT', 'TPROXY'],
};

/**
 * Every environment variable istio-iptables reads: the ones bound to its flags, the env-only
 * settings above, and INBOUND_TPROXY_MARK (env-only too, and not a capture setting).
 */
export const IPTABLES_ENV_NAMES: readonly string[] = [
  ...new Set([...IPTABLES_FLAGS.flatMap((f) => f.env ?? []), ...Object.keys(ENV_ONLY_SETTINGS), 'INBOUND_TPROXY_MARK']),
];

const BY_NAME = new Map(IPTABLES_FLAGS.map((f) => [f.name, f]));
const BY_SHORT = new Map(IPTABLES_FLAGS.filter((f) => f.short !== undefined).map((f) => [f.short as string, f]));
const BY_ENV = new Map(IPTABLES_FLAGS.flatMap((f) => (f.env ?? []).map((e) => [e, f] as const)));

/** Where a setting came from, for the violation's path. */
export interface Setting {
  readonly value: string;
  /** e.g. args[6] or env[2] (relative to the container). */
  readonly at: string;
}

export interface IptablesInvocation {
  /** The subcommand is istio-iptables (args[0], with pilot-agent as the image's entrypoint). */
  readonly isIstioIptables: boolean;
  /** Flag name → its effective value. Bool flags hold "true" or "false". */
  readonly flags: ReadonlyMap<string, Setting>;
  /** Arguments istio-iptables would reject or that are not flags (it fails, or we cannot tell). */
  readonly unknown: readonly Setting[];
  /** Environment variables bound to a flag whose value comes from elsewhere (valueFrom): unknowable here. */
  readonly opaqueEnv: readonly Setting[];
  /** Logging flags (--log_output_level and the like) are accepted and ignored. */
}

const LOG_FLAG = /^--log_[a-z_]+(=.*)?$/;
const LOG_FLAG_WITH_VALUE = /^--log_(output_level|stacktrace_level|caller|rotate|rotate_max_age|rotate_max_backups|rotate_max_size|target)$/;

/** Go's strconv.ParseBool, as "true" or "false"; undefined when Go would fail. */
export function parseBool(v: string): string | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return 'true';
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return 'false';
  return undefined;
}

const AGENT_PATH = /(^|\/)pilot-agent$/;

/** The path is Istio's agent binary (pilot-agent, by any directory). */
export function isAgentPath(path: string): boolean {
  return AGENT_PATH.test(path);
}

/** A container command that runs the agent: none (the proxyv2 image's entrypoint) or pilot-agent alone. */
export function isAgentCommand(command: unknown): boolean {
  if (command === undefined) return true;
  return Array.isArray(command) && command.length === 1 && typeof command[0] === 'string' && isAgentPath(command[0]);
}

/** The proxy type a container runs (`pilot-agent proxy <type>`), or undefined when it is not the agent. */
export function proxyType(container: Readonly<Record<string, unknown>>): string | undefined {
  if (!isAgentCommand(container['command'])) return undefined;
  const args = container['args'];
  return Array.isArray(args) && args[0] === 'proxy' && typeof args[1] === 'string' ? args[1] : undefined;
}

function strings(v: unknown): string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
}

/**
 * Reads a capture container's invocation: `command` (absent: the proxyv2 image's entrypoint,
 * pilot-agent) and `args` (istio-iptables, then flags), plus its env.
 */
export function readInvocation(container: Readonly<Record<string, unknown>>): IptablesInvocation {
  const flags = new Map<string, Setting>();
  const unknown: Setting[] = [];
  const opaqueEnv: Setting[] = [];
  const args = strings(container['args']) ?? [];
  const command = container['command'];
  // With a command, the args follow it; only pilot-agent itself runs the subcommand (a command
  // that is not a list is read as none).
  const isIstioIptables = (!Array.isArray(command) || isAgentCommand(command)) && args[0] === 'istio-iptables';
  // Environment first: the command line overrides it.
  const env = container['env'];
  if (Array.isArray(env)) {
    env.forEach((e: unknown, i) => {
      if (!isRecord(e) || typeof e['name'] !== 'string') return;
      const f = BY_ENV.get(e['name']);
      if (f === undefined) return;
      const at = `env[${i}]`;
      if (typeof e['value'] !== 'string') {
        if (e['valueFrom'] !== undefined) opaqueEnv.push({ value: e['name'], at });
        return;
      }
      const value = f.kind === 'bool' ? parseBool(e['value']) : e['value'];
      // An unparsable bool in the environment makes pflag fail, and istio-iptables exits.
      if (value === undefined) unknown.push({ value: `${e['name']}=${e['value']}`, at });
      else flags.set(f.name, { value, at });
    });
  }
  if (!isIstioIptables) return { isIstioIptables, flags, unknown, opaqueEnv };
  for (let i = 1; i < args.length; i++) {
    const arg = args[i] ?? '';
    const at = `args[${i}]`;
    if (arg.startsWith('--log_') && LOG_FLAG.test(arg)) {
      if (LOG_FLAG_WITH_VALUE.test(arg)) i++;
      continue;
    }
    let f: FlagDef | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      f = BY_NAME.get(eq < 0 ? arg.slice(2) : arg.slice(2, eq));
      if (eq >= 0) inline = arg.slice(eq + 1);
    } else if (arg.startsWith('-') && arg.length >= 2) {
      f = BY_SHORT.get(arg[1] as string);
      if (arg.length > 2) inline = arg[2] === '=' ? arg.slice(3) : arg.slice(2);
    }
    if (f === undefined) {
      unknown.push({ value: arg, at });
      continue;
    }
    if (f.kind === 'bool') {
      const v = inline === undefined ? 'true' : parseBool(inline);
      if (v === undefined) unknown.push({ value: arg, at });
      else flags.set(f.name, { value: v, at });
      continue;
    }
    if (inline !== undefined) {
      flags.set(f.name, { value: inline, at });
      continue;
    }
    if (i + 1 >= args.length) {
      unknown.push({ value: arg, at });
      continue;
    }
    i++;
    flags.set(f.name, { value: args[i] ?? '', at: `args[${i}]` });
  }
  return { isIstioIptables, flags, unknown, opaqueEnv };
}

/** "15090, 15021" → ["15090","15021"]; "" → []. */
export function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}
