// How far a ServiceEntry (or a VirtualService's destinationSubnets) reaches outside the mesh,
// judged the way istiod builds a sidecar's outbound listeners (pilot/pkg/networking/core/
// listener.go, tls.go; pilot/pkg/serviceregistry/serviceentry/conversion.go):
// - addresses: the union of every IP and CIDR, per family, so two halves or any split into
//   prefixes count like the one range they add up to;
// - wildcard hosts: against the Public Suffix List, so `*.co.uk` or `*.github.io` count like
//   `*.com` (every name below is registered by someone else);
// - ports: resolution NONE without addresses makes a TCP (or unnamed) port a passthrough to every
//   destination, whatever the hosts say.
// Pure functions over plain values; the rule turns their answers into violations.
import ipaddr from 'ipaddr.js';
import { parse as parseDomain } from 'tldts';

export type IpFamily = 'IPv4' | 'IPv6';

const WIDTH: Readonly<Record<IpFamily, number>> = { IPv4: 32, IPv6: 128 };

/** A closed interval of addresses of one family, as integers. */
export interface AddressInterval {
  readonly family: IpFamily;
  readonly first: bigint;
  readonly last: bigint;
  /** IPv4 addresses named in IPv6 form (the part of an IPv6 range inside ::ffff:0:0/96). */
  readonly mapped?: true;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/;
// ::ffff:0:0/96: IPv4-mapped IPv6 addresses. A range over them is counted as IPv4 as well, so that
// `::ffff:0.0.0.0/96` cannot stand in for `0.0.0.0/0`.
const MAPPED_FIRST = 0xffffn << 32n;
const MAPPED_LAST = MAPPED_FIRST + 0xffffffffn;

function toBigInt(bytes: readonly number[]): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function interval(family: IpFamily, value: bigint, bits: number): AddressInterval {
  const host = BigInt(WIDTH[family] - bits);
  const first = (value >> host) << host;
  return { family, first, last: first + (1n << host) - 1n };
}

/** Dotted-quad IPv4 (the only IPv4 form istiod accepts), parsed here: ipaddr.parse tries every IPv4 and IPv6 form first and costs several times more. */
function ipv4Interval(s: string): AddressInterval | undefined {
  const m = IPV4.exec(s);
  if (m === null) return undefined;
  let value = 0;
  for (const octet of m.slice(1, 5)) {
    const v = Number(octet);
    if (v > 255) return undefined;
    value = value * 256 + v;
  }
  const bits = m[5] === undefined ? 32 : Number(m[5]);
  return bits > 32 ? undefined : interval('IPv4', BigInt(value), bits);
}

function ipv6Interval(s: string): AddressInterval | undefined {
  try {
    const [addr, bits] = s.includes('/') ? ipaddr.IPv6.parseCIDR(s) : [ipaddr.IPv6.parse(s), 128];
    return interval('IPv6', toBigInt(addr.toByteArray()), bits);
  } catch {
    return undefined;
  }
}

/**
 * The addresses a ServiceEntry address names: an IP (one address) or a CIDR (host bits are
 * ignored, as Envoy masks them). Only what istiod accepts (Go's netip: dotted-quad IPv4, any IPv6
 * form); anything else names nothing (istiod skips it) and gives [].
 */
export function addressIntervals(text: string): AddressInterval[] {
  const s = text.trim();
  if (!s.includes(':')) {
    const v4 = ipv4Interval(s);
    return v4 === undefined ? [] : [v4];
  }
  const v6 = ipv6Interval(s);
  if (v6 === undefined) return [];
  const { first, last } = v6;
  if (first > MAPPED_LAST || last < MAPPED_FIRST) return [v6];
  const lo = first > MAPPED_FIRST ? first : MAPPED_FIRST;
  const hi = last < MAPPED_LAST ? last : MAPPED_LAST;
  return [v6, { family: 'IPv4', first: lo - MAPPED_FIRST, last: hi - MAPPED_FIRST, mapped: true }];
}

/** How many addresses of one family the intervals cover together (overlaps counted once). */
export function unionSize(intervals: readonly AddressInterval[], family: IpFamily): bigint {
  const sorted = intervals.filter((i) => i.family === family).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  let total = 0n;
  let run: { first: bigint; last: bigint } | undefined;
  for (const { first, last } of sorted) {
    if (run !== undefined && first <= run.last + 1n) {
      if (last > run.last) run.last = last;
      continue;
    }
    if (run !== undefined) total += run.last - run.first + 1n;
    run = { first, last };
  }
  if (run !== undefined) total += run.last - run.first + 1n;
  return total;
}

/** The number of addresses in one prefix of this length. */
export function prefixSize(family: IpFamily, prefixLength: number): bigint {
  return 1n << BigInt(WIDTH[family] - prefixLength);
}

/** An address count for a message: exact below 2^48, else as a power of two. */
export function countText(count: bigint): string {
  if (count < 1n << 48n) return count.toLocaleString('en-US');
  const bits = count.toString(2).length - 1;
  return count === 1n << BigInt(bits) ? `2^${bits}` : `more than 2^${bits}`;
}

/** One address entry of an object: where it is and what it says. */
export interface AddressEntry {
  readonly path: string;
  readonly text: string;
}

/** A family whose entries together cover more addresses than the limit allows. */
export interface RangeExcess {
  readonly family: IpFamily;
  readonly size: bigint;
  readonly limitPrefix: number;
  /** The entries that cover addresses of this family, each once, in order. */
  readonly entries: readonly AddressEntry[];
  /** Some of the addresses were written as IPv4-mapped IPv6. */
  readonly mapped: boolean;
}

/**
 * The families whose entries, all united, cover more than one prefix of the limit's length.
 * IPv6 is judged first: a range it already reports is not reported again for the IPv4
 * addresses it maps.
 */
export function rangesOverLimit(entries: readonly AddressEntry[], limit: Readonly<Record<'ipv4' | 'ipv6', number>>): RangeExcess[] {
  const all = entries.flatMap((entry) => addressIntervals(entry.text).map((iv) => ({ entry, iv })));
  const out: RangeExcess[] = [];
  for (const family of ['IPv6', 'IPv4'] as const) {
    const mine = all.filter((x) => x.iv.family === family && !(out.length > 0 && x.iv.mapped === true));
    const limitPrefix = family === 'IPv4' ? limit.ipv4 : limit.ipv6;
    const size = unionSize(mine.map((x) => x.iv), family);
    if (size <= prefixSize(family, limitPrefix)) continue;
    out.push({ family, size, limitPrefix, entries: [...new Set(mine.map((x) => x.entry))], mapped: mine.some((x) => x.iv.mapped === true) });
  }
  return out;
}

/** A few entries for a message: an object may list thousands. */
export function listedTexts(entries: readonly AddressEntry[]): string {
  const texts = entries.map((x) => x.text);
  return texts.length <= 3 ? texts.join(', ') : `${texts.slice(0, 3).join(', ')} and ${texts.length - 3} more`;
}

/** "address X covers" / "addresses X, Y and 3 more together cover" ... "N IPv4 addresses, more than one /16 allows". */
export function excessText(e: RangeExcess, noun: readonly [one: string, many: string]): string {
  const listed = listedTexts(e.entries);
  const subject = e.entries.length === 1 ? `${noun[0]} ${listed} covers` : `${noun[1]} ${listed} together cover`;
  const reach = e.size === prefixSize(e.family, 0) ? `every ${e.family} address` : `${countText(e.size)} ${e.family} addresses`;
  return `${subject} ${reach}${e.mapped ? ' (as IPv4-mapped IPv6)' : ''}, more than one /${e.limitPrefix} allows`;
}

/** The unspecified address (0.0.0.0, ::, also written /32 or /128): istiod then binds the wildcard. */
export function isUnspecifiedAddress(text: string): boolean {
  const iv = addressIntervals(text)[0];
  return iv !== undefined && iv.first === 0n && iv.last === 0n;
}

/**
 * Why a wildcard host admits hosts of many unrelated owners, or undefined when it does not.
 * `*` and partial wildcards always do; `*.<suffix>` does when the suffix is a single label or a
 * public suffix of the Public Suffix List (tldts, which bundles the current list; a wildcard rule
 * such as `*.kawasaki.jp` makes its parent a public suffix too). The private section counts like
 * the ICANN section: `*.github.io` admits every GitHub Pages site as `*.co.uk` admits every UK
 * company. The list names delegated zones, not their parents: `*.amazonaws.com` is not found
 * broad, though `*.s3.amazonaws.com` is.
 */
export function wildcardBreadth(host: string): string | undefined {
  const h = host.trim().toLowerCase().replace(/\.$/, '');
  if (!h.includes('*')) return undefined;
  if (h === '*') return 'it matches every host';
  if (!h.startsWith('*.')) return 'the wildcard is not a whole leading label';
  const suffix = h.slice(2);
  if (suffix.includes('*')) return 'it has more than one wildcard';
  if (!suffix.includes('.')) return `it matches every name under the top-level domain ${suffix}`;
  const psl = parseDomain(suffix, PSL_OPTIONS);
  if (psl.publicSuffix !== suffix) return undefined;
  return `${suffix} is a public suffix (Public Suffix List${psl.isPrivate === true ? ', private section' : ''})`;
}

const PSL_OPTIONS = { allowPrivateDomains: true, detectIp: false } as const;

/** Istio's protocol names (pkg/config/protocol Parse, case-insensitive) that route by Host or SNI, or carry no TCP. */
const HOST_ROUTED = new Set(['http', 'http2', 'http_proxy', 'grpc', 'grpc-web', 'https', 'tls', 'udp']);

/**
 * A port that istiod turns into a passthrough for every destination: resolution NONE, no
 * addresses, no endpoints and no workload selector give the service the unspecified address, so
 * the sidecar gets a 0.0.0.0:<port> listener whose TCP filter chain matches any destination and
 * forwards to its original IP (an ORIGINAL_DST cluster). That holds for TCP, MONGO, MYSQL, REDIS
 * and unset or unknown protocols (sniffed: the TCP chain catches everything that is not HTTP).
 * HTTP and TLS ports route by Host or SNI instead; UDP gets no listener. (With resolution NONE
 * those still forward to whatever IP the client dialled, as long as it names a listed host in
 * Host or SNI: the client chooses both. Istio documents REGISTRY_ONLY as best effort for that
 * reason; a hard boundary needs an egress gateway and NetworkPolicy.)
 */
export function isPassthroughProtocol(protocol: unknown): boolean {
  return typeof protocol !== 'string' || !HOST_ROUTED.has(protocol.toLowerCase());
}

/** ServiceEntry resolution by name or protobuf number; unset is NONE (the enum default). */
const RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'] as const;

export function resolutionOf(v: unknown): string {
  if (v === undefined || v === null) return 'NONE';
  if (typeof v === 'number') return RESOLUTIONS[v] ?? String(v);
  return String(v).toUpperCase();
}
