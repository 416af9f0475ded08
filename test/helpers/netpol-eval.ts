// A small evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics, for tests: does
// a set of policies let a connection from a source to a destination on a port through? It follows
// the API reference:
// - a pod is isolated for a direction only when some policy that applies to that direction
//   selects it (podSelector in the policy's namespace); otherwise that direction is open;
// - policyTypes, when absent or empty: Ingress always, Egress when the policy has egress rules;
// - an isolated pod's traffic is allowed when any rule of any selecting policy allows it (the
//   union); a connection needs the source's egress and the destination's ingress to allow it;
// - a rule with no (or empty) from/to matches every peer; with no (or empty) ports every port;
// - peers: podSelector alone (pods of the policy's namespace), namespaceSelector alone (every pod
//   of the selected namespaces), both (the selected pods of the selected namespaces), ipBlock
//   (cidr minus except);
// - ports: protocol defaults to TCP; a numeric port with endPort is a range; a named port matches
//   the destination pod's container port of that name; a port-less entry is every port.
// It is written independently of src/ so that the reconciler's output is checked, not assumed.

export type Labels = Readonly<Record<string, string>>;

export interface Pod {
  readonly kind: 'pod';
  readonly namespace: string;
  readonly labels: Labels;
  readonly ip: string;
  /** Named container ports (for named NetworkPolicy ports). */
  readonly namedPorts?: Readonly<Record<string, number>>;
}

/** Anything that is not a pod: the internet, a node (host network), a link-local probe address. */
export interface Address {
  readonly kind: 'address';
  readonly ip: string;
}

export type Endpoint = Pod | Address;

export interface Policy {
  readonly namespace: string;
  readonly name: string;
  readonly spec: Readonly<Record<string, unknown>>;
}

export interface Cluster {
  /** Namespace name to labels (kubernetes.io/metadata.name is added automatically). */
  readonly namespaces: Readonly<Record<string, Labels>>;
  readonly policies: readonly Policy[];
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

// --------------------------------------------------------------------------- addresses ---

interface Net {
  readonly v6: boolean;
  readonly start: bigint;
  readonly end: bigint;
}

function parseIp(ip: string): { v6: boolean; value: bigint } {
  if (ip.includes(':')) {
    const [head = '', tail] = ip.split('::');
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':');
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
    if (groups.length !== 8) throw new Error(`bad IPv6 address ${ip}`);
    return { v6: true, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad IPv4 address ${ip}`);
  return { v6: false, value: parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n) };
}

export function parseCidr(cidr: string): Net {
  const [ip = '', bits] = cidr.split('/');
  const { v6, value } = parseIp(ip);
  const width = v6 ? 128 : 32;
  const len = bits === undefined ? width : Number(bits);
  const host = (1n << BigInt(width - len)) - 1n;
  const start = value & ~host & ((1n << BigInt(width)) - 1n);
  return { v6, start, end: start | host };
}

export function inCidr(ip: string, cidr: string): boolean {
  const a = parseIp(ip);
  const n = parseCidr(cidr);
  return a.v6 === n.v6 && a.value >= n.start && a.value <= n.end;
}

// --------------------------------------------------------------------------- selectors ---

export function selects(selector: unknown, labels: Labels): boolean {
  if (!isRecord(selector)) return false;
  for (const [k, v] of Object.entries(isRecord(selector['matchLabels']) ? selector['matchLabels'] : {})) if (labels[k] !== v) return false;
  for (const e of list(selector['matchExpressions'])) {
    if (!isRecord(e)) return false;
    const key = String(e['key']);
    const values = list(e['values']).map(String);
    const has = Object.hasOwn(labels, key);
    switch (e['operator']) {
      case 'In':
        if (!has || !values.includes(labels[key] as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[key] as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

// ------------------------------------------------------------------------------ policies ---

type Direction = 'Ingress' | 'Egress';

// As the API server defaults it (pkg/apis/networking/v1 defaults.go): an absent or empty list
// becomes Ingress, plus Egress when the egress list is non-empty.
function policyTypes(spec: Readonly<Json>): Direction[] {
  const declared = spec['policyTypes'];
  if (Array.isArray(declared) && declared.length > 0) return declared.filter((d): d is Direction => d === 'Ingress' || d === 'Egress');
  return ['Ingress', ...(list(spec['egress']).length > 0 ? (['Egress'] as const) : [])];
}

function namespaceLabels(cluster: Cluster, name: string): Labels {
  return { ...(cluster.namespaces[name] ?? {}), 'kubernetes.io/metadata.name': name };
}

/** The policies that isolate a pod for a direction. */
function isolating(cluster: Cluster, pod: Pod, dir: Direction): Policy[] {
  return cluster.policies.filter((p) => p.namespace === pod.namespace && policyTypes(p.spec).includes(dir) && selects(p.spec['podSelector'] ?? {}, pod.labels));
}

function peerMatches(cluster: Cluster, policy: Policy, peer: unknown, other: Endpoint): boolean {
  if (!isRecord(peer)) return false;
  const block = peer['ipBlock'];
  if (isRecord(block)) {
    const cidr = String(block['cidr']);
    if (!inCidr(other.ip, cidr)) return false;
    return !list(block['except']).some((e) => inCidr(other.ip, String(e)));
  }
  if (other.kind !== 'pod') return false;
  const ns = peer['namespaceSelector'];
  const pods = peer['podSelector'];
  if (ns === undefined && pods === undefined) return false;
  const nsOk = ns === undefined ? other.namespace === policy.namespace : selects(ns, namespaceLabels(cluster, other.namespace));
  return nsOk && (pods === undefined || selects(pods, other.labels));
}

function portMatches(entry: unknown, port: number, protocol: Protocol, dst: Endpoint): boolean {
  if (!isRecord(entry)) return false;
  if ((entry['protocol'] ?? 'TCP') !== protocol) return false;
  const p = entry['port'];
  if (p === undefined) return true;
  if (typeof p === 'string') return dst.kind === 'pod' && dst.namedPorts?.[p] === port;
  if (typeof p !== 'number') return false;
  const end = typeof entry['endPort'] === 'number' ? entry['endPort'] : p;
  return port >= p && port <= end;
}

function ruleAllows(cluster: Cluster, policy: Policy, rule: unknown, dir: Direction, other: Endpoint, port: number, protocol: Protocol, dst: Endpoint): boolean {
  if (!isRecord(rule)) return false;
  const peers = list(rule[dir === 'Ingress' ? 'from' : 'to']);
  const ports = list(rule['ports']);
  const peerOk = peers.length === 0 || peers.some((p) => peerMatches(cluster, policy, p, other));
  const portOk = ports.length === 0 || ports.some((e) => portMatches(e, port, protocol, dst));
  return peerOk && portOk;
}

function directionAllows(cluster: Cluster, pod: Pod, dir: Direction, other: Endpoint, port: number, protocol: Protocol, dst: Endpoint): boolean {
  const policies = isolating(cluster, pod, dir);
  if (policies.length === 0) return true;
  const key = dir === 'Ingress' ? 'ingress' : 'egress';
  return policies.some((p) => list(p.spec[key]).some((r) => ruleAllows(cluster, p, r, dir, other, port, protocol, dst)));
}

export interface Verdict {
  readonly allowed: boolean;
  /** Which side refused: the source's egress or the destination's ingress. */
  readonly deniedBy?: 'egress' | 'ingress';
}

/** Would a connection from src to dst:port/protocol be let through? */
export function connection(cluster: Cluster, src: Endpoint, dst: Endpoint, port: number, protocol: Protocol = 'TCP'): Verdict {
  if (src.kind === 'pod' && !directionAllows(cluster, src, 'Egress', dst, port, protocol, dst)) return { allowed: false, deniedBy: 'egress' };
  if (dst.kind === 'pod' && !directionAllows(cluster, dst, 'Ingress', src, port, protocol, dst)) return { allowed: false, deniedBy: 'ingress' };
  return { allowed: true };
}
