// Not Istio: which part of a Kubernetes NetworkPolicy ipBlock is public address space: the CIDR minus its `except` entries minus the
// ranges that are not globally reachable (IANA special-purpose registries: private, shared,
// loopback, link-local, documentation, benchmarking, multicast, reserved). Addresses are BigInt
// intervals, so IPv4 and IPv6 go through the same subtraction.

interface Range {
  readonly start: bigint;
  readonly end: bigint;
}

export interface Cidr extends Range {
  readonly v6: boolean;
}

function parseV4(ip: string): bigint | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    v = (v << 8n) | BigInt(p);
  }
  return v;
}

function parseV6(ip: string): bigint | undefined {
  const halves = ip.split('::');
  if (halves.length > 2) return undefined;
  const split = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(':'));
  let head = split(halves[0]);
  let tail = split(halves[1]);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
  const last = (halves.length === 2 ? tail : head).at(-1);
  if (last !== undefined && last.includes('.')) {
    const v4 = parseV4(last);
    if (v4 === undefined) return undefined;
    const groups = [(v4 >> 16n).toString(16), (v4 & 0xffffn).toString(16)];
    if (halves.length === 2) tail = [...tail.slice(0, -1), ...groups];
    else head = [...head.slice(0, -1), ...groups];
  }
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

/** A CIDR (or a bare address) as an interval; undefined when it is not one. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (m === null) return undefined;
  const ip = m[1] as string;
  const v6 = ip.includes(':');
  const value = v6 ? parseV6(ip) : parseV4(ip);
  if (value === undefined) return undefined;
  const width = v6 ? 128 : 32;
  const len = m[2] === undefined ? width : Number(m[2]);
  if (len > width) return undefined;
  const host = (1n << BigInt(width - len)) - 1n;
  const start = value & ~host & ((1n << BigInt(width)) - 1n);
  return { v6, start, end: start | host };
}

const NOT_PUBLIC_V4 = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24',
  '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
];
// IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96) addresses stand for IPv4 ones and count as public.
const NOT_PUBLIC_V6 = ['::/127', '100::/64', '2001:db8::/32', 'fc00::/7', 'fe80::/10', 'ff00::/8'];

const special = (list: readonly string[]): Cidr[] => list.map((c) => parseCidr(c) as Cidr);
const SPECIAL_V4 = special(NOT_PUBLIC_V4);
const SPECIAL_V6 = special(NOT_PUBLIC_V6);

function subtract(ranges: readonly Range[], cut: Range): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    if (cut.end < r.start || cut.start > r.end) {
      out.push(r);
      continue;
    }
    if (cut.start > r.start) out.push({ start: r.start, end: cut.start - 1n });
    if (cut.end < r.end) out.push({ start: cut.end + 1n, end: r.end });
  }
  return out;
}

/** The number of public addresses an ipBlock admits (0n: none). Unparseable except entries carve out nothing. */
export function publicAddresses(cidr: Cidr, except: readonly Cidr[]): bigint {
  let left: Range[] = [{ start: cidr.start, end: cidr.end }];
  for (const c of [...except.filter((e) => e.v6 === cidr.v6), ...(cidr.v6 ? SPECIAL_V6 : SPECIAL_V4)]) left = subtract(left, c);
  return left.reduce((n, r) => n + (r.end - r.start + 1n), 0n);
}

/** The whole address family (0.0.0.0/0, ::/0). */
export function isEverything(cidr: Cidr): boolean {
  return cidr.start === 0n && cidr.end === (cidr.v6 ? (1n << 128n) - 1n : (1n << 32n) - 1n);
}
