// service-entry-wildcard: a ServiceEntry adds hosts to the registry that REGISTRY_ONLY allows.
// A broad wildcard (`*`, `*.com`, `*.*`) or an address range covering everything turns the
// registry back into ALLOW_ANY, and DYNAMIC_DNS behind any wildcard forwards to whatever host a
// request names. Wildcard hosts the platform allow-lists (serviceEntries.allowedWildcardHosts) are
// never findings. Missing `exportTo: ["."]` is not reported yet (it is advice, not a violation).
import { skip, type ValidatingRule, type Violation } from '../engine/types.ts';
import { at, exemptOutsideRoot, kindRef, SERVICE_ENTRY, stringItems, webhookFor } from './lib/istio.ts';
import { isTerminating } from './lib/objects.ts';

const HOST_FIX = 'list the exact external hosts, or ask the platform team to allow-list the wildcard (serviceEntries.allowedWildcardHosts)';

/** A wildcard that is not `*.` followed by at least two plain labels (e.g. `*.example.com`). */
export function isBroadWildcard(host: string): boolean {
  if (!host.startsWith('*.')) return true;
  const suffix = host.slice(2);
  return suffix.includes('*') || suffix.split('.').filter((l) => l !== '').length < 2;
}

/** An address range that covers every IPv4 or IPv6 address, or the unspecified address. */
export function isUnboundedAddress(address: string): boolean {
  const [ip = '', prefix] = address.trim().split('/');
  const unspecified = ip === '0.0.0.0' || (ip.includes(':') && /^[0:]+$/.test(ip));
  return (prefix !== undefined && /^0+$/.test(prefix)) || unspecified;
}

function hostProblem(host: string, path: string, dynamicDns: boolean, allowed: ReadonlySet<string>): Violation | undefined {
  const h = host.trim().toLowerCase().replace(/\.$/, '');
  if (!h.includes('*') || allowed.has(h)) return undefined;
  if (isBroadWildcard(h)) {
    return { message: `host ${host} is a broad wildcard: it admits egress to almost any host`, path, value: host, fix: HOST_FIX };
  }
  if (!dynamicDns) return undefined;
  return {
    message: `resolution DYNAMIC_DNS with wildcard host ${host} forwards to any host the request names under it`,
    path,
    value: host,
    fix: `use exact hosts with resolution DNS, or ask the platform team to allow-list ${host}`,
  };
}

export const serviceEntryWildcard: ValidatingRule = {
  id: 'service-entry-wildcard',
  type: 'validating',
  title: 'ServiceEntries must not use broad wildcard hosts, catch-all addresses or DYNAMIC_DNS wildcards',
  fix: HOST_FIX,
  match: { kinds: [kindRef(SERVICE_ENTRY)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(SERVICE_ENTRY)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the ServiceEntry is being deleted');
    const spec = at(req.object, 'spec');
    const dynamicDns = at(spec, 'resolution') === 'DYNAMIC_DNS';
    const allowed = new Set(config.serviceEntries.allowedWildcardHosts.map((h) => h.trim().toLowerCase().replace(/\.$/, '')));
    const out: Violation[] = [];
    for (const [i, host] of stringItems(at(spec, 'hosts'))) {
      const p = hostProblem(host, `spec.hosts[${i}]`, dynamicDns, allowed);
      if (p !== undefined) out.push(p);
    }
    for (const [i, address] of stringItems(at(spec, 'addresses'))) {
      if (!isUnboundedAddress(address)) continue;
      out.push({
        message: `address ${address} covers every destination: it admits egress to any IP`,
        path: `spec.addresses[${i}]`,
        value: address,
        fix: 'list the exact external address ranges',
      });
    }
    return out;
  },
};
