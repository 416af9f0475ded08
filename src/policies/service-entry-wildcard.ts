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
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import type { Config } from '../config/types.ts';
import {
  addressIntervals,
  excessText,
  isPassthroughProtocol,
  isUnspecifiedAddress,
  listedTexts,
  prefixSize,
  rangesOverLimit,
  resolutionOf,
  wildcardBreadth,
  type AddressEntry,
} from './lib/egress-reach.ts';
import { exemptOutsideRoot, kindRef, SERVICE_ENTRY, webhookFor } from './lib/istio-kinds.ts';
import { at, show, stringItems } from './lib/json-read.ts';
import { isRecord as isMap, isTerminating } from '../core/objects.ts';

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

function addressProblems(addresses: readonly [number, string][], limit: Config['serviceEntries']['addressLimit']): Violation[] {
  const out: Violation[] = [];
  const ranged: AddressEntry[] = [];
  for (const [index, text] of addresses) {
    const path = `spec.addresses[${index}]`;
    if (!isUnspecifiedAddress(text)) {
      ranged.push({ path, text });
      continue;
    }
    out.push({
      message: `address ${text} is the unspecified address: istiod binds the listener to it, so the ServiceEntry matches every destination on its ports`,
      path,
      value: text,
      fix: ADDRESS_FIX,
    });
  }
  for (const e of rangesOverLimit(ranged, limit)) {
    const single = e.entries.length === 1 ? e.entries[0] : undefined;
    out.push({
      message: `${excessText(e, ['address', 'addresses'])} (serviceEntries.addressLimit.${e.family === 'IPv4' ? 'ipv4' : 'ipv6'})`,
      path: single?.path ?? 'spec.addresses',
      value: listedTexts(e.entries),
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
