// network-policy-widening: a tenant NetworkPolicy in a meshed namespace must not reopen what the
// reconciled set closes. NetworkPolicies are a union of allows: one policy that allows more wins
// over every default-deny, so an egress rule without `to` (any destination), an ipBlock that
// covers public address space (even one address: direct egress that bypasses the egress
// gateway), or an ingress rule without `from` / with a public ipBlock (reachable from anywhere)
// undoes the isolation. Administrators may (config.adminGroups/adminUsers), and so may meshguard's
// own reconciler writing its managed policies. Only networking.k8s.io/v1 NetworkPolicy is read:
// CNI-specific kinds (Calico, Cilium) are out of scope.
import type { AdmissionRequest } from '../core/request.ts';
import type { Config } from '../config/types.ts';
import { isAdmin } from '../core/users.ts';
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { at, mapItems, show } from './lib/json-read.ts';
import { meshStatus } from './lib/mesh-enrollment.ts';
import { isEverything, parseCidr, publicAddresses, type Cidr } from './lib/network-policy-cidr.ts';
import { labelsOf, isTerminating } from '../core/objects.ts';

export const NETWORK_POLICY = { group: 'networking.k8s.io', kind: 'NetworkPolicy' } as const;
const MANAGED_BY = 'app.kubernetes.io/managed-by';

type Direction = 'ingress' | 'egress';

const ADDITIVE = 'NetworkPolicies are additive, so this reopens what the default-deny closes';

/**
 * The directions the policy affects: policyTypes, or when absent (or empty) what the API server
 * defaults it to: Ingress, plus Egress when there are egress rules.
 */
function directions(spec: unknown): Direction[] {
  const types = at(spec, 'policyTypes');
  if (Array.isArray(types) && types.length > 0) return (['ingress', 'egress'] as const).filter((d) => types.includes(d === 'ingress' ? 'Ingress' : 'Egress'));
  const egress = at(spec, 'egress');
  return ['ingress', ...(Array.isArray(egress) && egress.length > 0 ? (['egress'] as const) : [])];
}

function peersKey(d: Direction): 'from' | 'to' {
  return d === 'ingress' ? 'from' : 'to';
}

function blockProblem(block: unknown, path: string, d: Direction): Violation | undefined {
  const text = at(block, 'cidr');
  const cidr = typeof text === 'string' ? parseCidr(text) : undefined;
  // The API server rejects a malformed cidr; nothing to judge.
  if (cidr === undefined) return undefined;
  const except = (Array.isArray(at(block, 'except')) ? (at(block, 'except') as unknown[]) : [])
    .map((e) => (typeof e === 'string' ? parseCidr(e) : undefined))
    .filter((e): e is Cidr => e !== undefined);
  if (publicAddresses(cidr, except) === 0n) return undefined;
  const what = isEverything(cidr) ? 'every address' : 'public address space';
  const message =
    d === 'egress'
      ? `ipBlock ${show(text)} allows direct egress to ${what}, bypassing the egress gateway; ${ADDITIVE}`
      : `ipBlock ${show(text)} admits connections from ${what} straight to the pods, bypassing the ingress gateway; ${ADDITIVE}`;
  return {
    message,
    path: `${path}.ipBlock.cidr`,
    value: show(text),
    fix:
      d === 'egress'
        ? 'reach external hosts through a ServiceEntry and the egress gateway, or ask an administrator to add the ipBlock (reconciler.networkPolicies.extra)'
        : 'expose the workload through the ingress gateway, or limit the ipBlock to private address ranges',
  };
}

function ruleProblems(rule: Record<string, unknown>, path: string, d: Direction): Violation[] {
  const key = peersKey(d);
  const peers = rule[key];
  if (peers === undefined || peers === null || (Array.isArray(peers) && peers.length === 0)) {
    const message =
      d === 'egress'
        ? `an egress rule without "to" allows every destination, the internet included; ${ADDITIVE}`
        : `an ingress rule without "from" admits every source, outside the cluster included; ${ADDITIVE}`;
    return [{ message, path: `${path}.${key}`, fix: d === 'egress' ? 'list the destinations in "to" (namespaceSelector/podSelector)' : 'list the sources in "from" (namespaceSelector/podSelector)' }];
  }
  const out: Violation[] = [];
  for (const [i, peer] of mapItems(peers)) {
    const p = blockProblem(peer['ipBlock'], `${path}.${key}[${i}]`, d);
    if (p !== undefined) out.push(p);
  }
  return out;
}

/** meshguard's reconciler writing its own managed policy: the managed label, from a service account of meshguard's namespace. */
function isMeshguardOwn(req: AdmissionRequest, config: Config): boolean {
  const user = req.userInfo?.username ?? '';
  return labelsOf(req.object)[MANAGED_BY] === 'meshguard' && user.startsWith(`system:serviceaccount:${config.meshguardNamespace}:`);
}

/** Policies widen only what meshguard closes: in meshed namespaces, and in unknown ones unless unknownNamespace is allow. */
function notMeshed(req: AdmissionRequest, config: Config, info: { labels: unknown } | undefined, revisions: ReadonlySet<string>): string | undefined {
  if (info === undefined) return config.unknownNamespace === 'allow' ? `namespace ${req.namespace} is not known` : undefined;
  return meshStatus(info.labels, config, revisions).dataplane === 'none' ? `namespace ${req.namespace} is not in the mesh` : undefined;
}

export const networkPolicyWidening: ValidatingRule = {
  id: 'network-policy-widening',
  type: 'validating',
  title: 'Tenant NetworkPolicies in meshed namespaces must not reopen external egress or ingress from everywhere',
  fix: 'allow only in-cluster peers (namespaceSelector/podSelector) and private ipBlocks; external hosts go through the egress gateway',
  match: { kinds: [NETWORK_POLICY], operations: ['CREATE', 'UPDATE'] },
  webhook: [{ apiGroup: NETWORK_POLICY.group, apiVersions: ['v1'], resources: ['networkpolicies'] }],
  validate({ request: req, config, cluster }) {
    if (isTerminating(req.object)) return skip('the NetworkPolicy is being deleted');
    const reason = notMeshed(req, config, cluster.namespace(req.namespace), cluster.knownRevisions());
    if (reason !== undefined) return skip(reason);
    if (isAdmin(config, req)) return skip('requested by a meshguard administrator');
    if (isMeshguardOwn(req, config)) return skip("meshguard's own managed policy");
    const spec = at(req.object, 'spec');
    const out: Violation[] = [];
    for (const d of directions(spec)) {
      for (const [i, rule] of mapItems(at(spec, d))) out.push(...ruleProblems(rule, `spec.${d}[${i}]`, d));
    }
    return out;
  },
};
