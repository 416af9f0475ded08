// service-entry-wildcard: a ServiceEntry adds destinations to the registry that REGISTRY_ONLY
// allows, so its reach decides how much egress it reopens (lib/egress-reach.ts says how istiod
// reads each field):
// - a wildcard host that admits names of unrelated owners (`*`, `*.com`, `*.co.uk`, `*.github.io`);
// - addresses whose union covers more than serviceEntries.addressLimit (per family: two halves or
//   a split into many prefixes count like one big range), or the unspecified address;
// - a TCP or unnamed port with resolution NONE and no addresses: a passthrough to every IP;
// - DYNAMIC_DNS behind any wildcard: forwards to whatever host a request names.
// Wildcard hosts the platform allow-lists (serviceEntries.allowedWildcardHosts) are never findings.
// The rule sees one object: ranges are united within one ServiceEntry, not across objects.
// Missing `exportTo: ["."]` is not reported (it is advice, not a violation).
import { skip, type ValidatingRule, type Violation } from '../engine/types.ts';
import {
  addressIntervals,
  countText,
  isPassthroughProtocol,
  isUnspecifiedAddress,
  prefixSize,
  resolutionOf,
  unionSize,
  wildcardBreadth,
  type AddressInterval,
  type IpFamily,
} from './lib/egress-reach.ts';
import { at, exemptOutsideRoot, kindRef, SERVICE_ENTRY, show, stringItems, webhookFor } from './lib/istio.ts';
import { isRecord as isMap, isTerminating } from './lib/objects.ts';

const HOST_FIX = 'list the exact external hosts, or ask the platform team to allow-list the wildcard (serviceEntries.allowedWildcardHosts)';
const ADDRESS_FIX = 'list only the external addresses the service uses';

/** A wildcard host that admits names of unrelated owners (see wildcardBreadth). */
export function isBroadWildcard(host: string): boolean {
  return wildcardBreadth(host) !== undefined;
}

/** An address range that covers every IPv4 or IPv6 address, or the unspecified address. */
export function isUnboundedAddress(address: string): boolean {
  const iv = addressIntervals(address)[0];
  return iv !== undefined && (isUnspecifiedAddress(address) || iv.last - iv.first + 1n === prefixSize(iv.family, 0));
}

function normalHost(host: string): string {
  return host.trim().toLowerCase().replace(/\.$/, '');
}

function hostProblem(host: string, path: string, dynamicDns: boolean, allowed: ReadonlySet<string>): Violation | undefined {
  const h = normalHost(host);
  if (!h.includes('*') || allowed.has(h)) return undefined;
  const broad = wildcardBreadth(h);
  if (broad !== undefined) {
    return { message: `host ${host} is a broad wildcard that admits egress to hosts of unrelated owners: ${broad}`, path, value: host, fix: HOST_FIX };
  }
  if (!dynamicDns) return undefined;
  return {
    message: `resolution DYNAMIC_DNS with wildcard host ${host} forwards to any host the request names under it`,
    path,
    value: host,
    fix: `use exact hosts with resolution DNS, or ask the platform team to allow-list ${host}`,
  };
}

/** A few of the addresses, for a message: a ServiceEntry may list up to 4096. */
function listed(values: readonly string[]): string {
  return values.length <= 3 ? values.join(', ') : `${values.slice(0, 3).join(', ')} and ${values.length - 3} more`;
}

function addressProblems(addresses: readonly [number, string][], limit: Readonly<Record<'ipv4' | 'ipv6', number>>): Violation[] {
  const out: Violation[] = [];
  const intervals: { index: number; text: string; iv: AddressInterval }[] = [];
  for (const [index, text] of addresses) {
    if (isUnspecifiedAddress(text)) {
      out.push({
        message: `address ${text} is the unspecified address: istiod binds the listener to it, so the ServiceEntry matches every destination on its ports`,
        path: `spec.addresses[${index}]`,
        value: text,
        fix: ADDRESS_FIX,
      });
      continue;
    }
    for (const iv of addressIntervals(text)) intervals.push({ index, text, iv });
  }
  // IPv6 first: a range it already reports is not reported again for the IPv4 addresses it maps.
  let ipv6Reported = false;
  for (const family of ['IPv6', 'IPv4'] as const satisfies readonly IpFamily[]) {
    const mine = intervals.filter((x) => x.iv.family === family && !(ipv6Reported && x.iv.mapped === true));
    const limitPrefix = family === 'IPv4' ? limit.ipv4 : limit.ipv6;
    const size = unionSize(mine.map((x) => x.iv), family);
    if (size <= prefixSize(family, limitPrefix)) continue;
    if (family === 'IPv6') ipv6Reported = true;
    const entries = [...new Map(mine.map((x) => [x.index, x.text])).entries()];
    const values = entries.map(([, text]) => text);
    const single = entries.length === 1 ? entries[0] : undefined;
    const subject = single === undefined ? `addresses ${listed(values)} together cover` : `address ${single[1]} covers`;
    const reach = size === prefixSize(family, 0) ? `every ${family} address` : `${countText(size)} ${family} addresses`;
    const mapped = mine.some((x) => x.iv.mapped === true) ? ' (as IPv4-mapped IPv6)' : '';
    out.push({
      message: `${subject} ${reach}${mapped}, more than one /${limitPrefix} allows (serviceEntries.addressLimit.${family === 'IPv4' ? 'ipv4' : 'ipv6'})`,
      path: single === undefined ? 'spec.addresses' : `spec.addresses[${single[0]}]`,
      value: single === undefined ? listed(values) : single[1],
      fix: ADDRESS_FIX,
    });
  }
  return out;
}

/** Ports that pass every connection to its original destination (see isPassthroughProtocol). */
function passthroughProblems(spec: unknown): Violation[] {
  if (resolutionOf(at(spec, 'resolution')) !== 'NONE') return [];
  const nonEmpty = (v: unknown): boolean => Array.isArray(v) && v.length > 0;
  if (nonEmpty(at(spec, 'addresses')) || nonEmpty(at(spec, 'endpoints'))) return [];
  const labels = at(spec, 'workloadSelector', 'labels');
  if (isMap(labels) && Object.keys(labels).length > 0) return [];
  const ports = at(spec, 'ports');
  if (!Array.isArray(ports)) return [];
  const out: Violation[] = [];
  ports.forEach((port: unknown, i) => {
    if (!isMap(port) || !isPassthroughProtocol(port.protocol)) return;
    const number = show(port.number);
    const protocol = typeof port.protocol === 'string' ? port.protocol : 'unset';
    out.push({
      message: `port ${number} (protocol ${protocol}) with resolution NONE and no addresses is a passthrough: the sidecar forwards every connection to port ${number} to its original destination, whatever the hosts`,
      path: `spec.ports[${i}]`,
      value: `${number}/${protocol}`,
      fix: 'add the external service’s addresses (spec.addresses), or use resolution DNS with exact hosts (or protocol TLS/HTTP, which route by SNI or Host)',
    });
  });
  return out;
}

export const serviceEntryWildcard: ValidatingRule = {
  id: 'service-entry-wildcard',
  type: 'validating',
  title: 'ServiceEntries must not reach past named destinations: broad or public-suffix wildcards, address ranges over the limit, NONE passthrough ports, DYNAMIC_DNS wildcards',
  fix: HOST_FIX,
  match: { kinds: [kindRef(SERVICE_ENTRY)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(SERVICE_ENTRY)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the ServiceEntry is being deleted');
    const spec = at(req.object, 'spec');
    const settings = config.serviceEntries;
    const dynamicDns = resolutionOf(at(spec, 'resolution')) === 'DYNAMIC_DNS';
    const allowed = new Set(settings.allowedWildcardHosts.map(normalHost));
    const out: Violation[] = [];
    for (const [i, host] of stringItems(at(spec, 'hosts'))) {
      const p = hostProblem(host, `spec.hosts[${i}]`, dynamicDns, allowed);
      if (p !== undefined) out.push(p);
    }
    out.push(...addressProblems(stringItems(at(spec, 'addresses')), settings.addressLimit));
    out.push(...passthroughProblems(spec));
    return out;
  },
};
