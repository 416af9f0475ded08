// The NetworkPolicy set of one meshed namespace, as a pure function of the namespace and the
// configuration. The sidecar only controls traffic that goes through it; these policies close
// what escapes it (a container that bypasses capture, a compromised pod): ingress only from the
// configured sources, egress only to pods inside the cluster (the egress gateway among them),
// cluster DNS and istiod, and nowhere outside. NetworkPolicies are a union of allows, so the set
// is one isolating policy plus separate allow policies: a tuned or extra allow never has to
// restate the others.
import type { Config } from '../../config/types.ts';
import { ROOT_NAMESPACE } from '../../policies/lib/istio-kinds.ts';
import { isRecord } from '../../core/objects.ts';

/** Set by the API server on every namespace (Kubernetes 1.21 and later); tenants cannot change it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
/** Where cluster DNS runs and how its pods are labelled (kube-dns and CoreDNS alike). */
export const DNS_NAMESPACE = 'kube-system';
export const DNS_POD_LABELS: Readonly<Record<string, string>> = Object.freeze({ 'k8s-app': 'kube-dns' });
export const ISTIOD_POD_LABELS: Readonly<Record<string, string>> = Object.freeze({ app: 'istiod' });
/** What a proxy needs from istiod: xDS and certificates over TLS (15012) and plaintext xDS (15010). */
export const ISTIOD_PORTS: readonly number[] = Object.freeze([15010, 15012]);
/** HBONE: ambient's mTLS tunnel between ztunnels, waypoints and gateways. */
export const HBONE_PORT = 15008;
/** The addresses istio-cni SNATs kubelet probes to in ambient pods (HOST_PROBE_SNAT_IP, _IPV6). */
export const PROBE_SNAT_CIDRS: readonly string[] = Object.freeze(['169.254.7.127/32', 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128']);

type Json = Record<string, unknown>;

function namespacesNamed(names: readonly string[]): Json {
  return { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: 'In', values: [...names] }] };
}

/** The namespaces whose pods may open connections into a meshed namespace, besides its own. */
export function ingressSources(namespace: string, config: Config): string[] {
  const all = new Set([...config.gatewayNamespaces, ...config.reconciler.networkPolicies.monitoringNamespaces]);
  all.delete(namespace);
  return [...all].sort();
}

function sourcePeers(namespace: string, config: Config): Json[] {
  const others = ingressSources(namespace, config);
  return [{ podSelector: {} }, ...(others.length > 0 ? [{ namespaceSelector: namespacesNamed(others) }] : [])];
}

const tcp = (port: number): Json => ({ protocol: 'TCP', port });

/** Isolates every pod of the namespace in both directions; the allow policies open what is needed. */
export function defaultDenySpec(): Json {
  return { podSelector: {}, policyTypes: ['Ingress', 'Egress'] };
}

export function ingressSpec(namespace: string, config: Config): Json {
  return { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: sourcePeers(namespace, config) }] };
}

export function egressSpec(): Json {
  return {
    podSelector: {},
    policyTypes: ['Egress'],
    egress: [
      // Pods of every namespace: other services and the egress gateway. A pod selector never
      // matches an address outside the cluster, so the internet stays closed.
      { to: [{ namespaceSelector: {} }] },
      {
        to: [{ namespaceSelector: namespacesNamed([DNS_NAMESPACE]), podSelector: { matchLabels: { ...DNS_POD_LABELS } } }],
        ports: [{ protocol: 'UDP', port: 53 }, tcp(53)],
      },
      { to: [{ namespaceSelector: namespacesNamed([ROOT_NAMESPACE]), podSelector: { matchLabels: { ...ISTIOD_POD_LABELS } } }], ports: ISTIOD_PORTS.map(tcp) },
    ],
  };
}

/** Ambient: HBONE from the allowed sources, and kubelet probes, which istio-cni SNATs to a link-local address. */
export function ambientSpec(namespace: string, config: Config): Json {
  return {
    podSelector: {},
    policyTypes: ['Ingress'],
    ingress: [
      { from: PROBE_SNAT_CIDRS.map((cidr) => ({ ipBlock: { cidr } })) },
      { from: sourcePeers(namespace, config), ports: [tcp(HBONE_PORT)] },
    ],
  };
}

/**
 * A configured spec as the API server stores it (k8s.io/kubernetes pkg/apis/networking/v1
 * defaults.go): podSelector {} when absent, policyTypes Ingress plus Egress when there are egress
 * rules, a port without a protocol gets TCP. Without this, the stored object would differ from
 * the desired one on every pass and be "restored" forever.
 */
export function withServerDefaults(spec: Readonly<Json>): Json {
  const out = structuredClone(spec) as Json;
  if (out['podSelector'] === undefined) out['podSelector'] = {};
  const types = out['policyTypes'];
  if (!Array.isArray(types) || types.length === 0) {
    const egress = out['egress'];
    out['policyTypes'] = ['Ingress', ...(Array.isArray(egress) && egress.length > 0 ? ['Egress'] : [])];
  }
  for (const dir of ['ingress', 'egress']) {
    const rules = out[dir];
    if (!Array.isArray(rules)) continue;
    for (const rule of rules) {
      if (!isRecord(rule) || !Array.isArray(rule['ports'])) continue;
      for (const p of rule['ports']) if (isRecord(p) && p['protocol'] === undefined) p['protocol'] = 'TCP';
    }
  }
  return out;
}
