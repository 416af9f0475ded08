// The Istio kinds meshguard reads, answered from Istio's CRD set (manifests/charts/base/files/
// crd-all.gen.yaml of the pinned istio.io/istio module): each kind with every API version the
// apiserver serves it in (a rule matches group+kind, so each version gets the same verdict), what
// meshguard does about each kind a tenant namespace can hold, the webhook resources for a kind,
// and the root namespace (meshConfig.rootNamespace), where configuration applies mesh-wide.
import type { AdmissionRequest } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { isExempt } from '../../core/match.ts';
import type { KindRef, WebhookResource } from '../../core/types.ts';

/**
 * Istio's root namespace (meshConfig.rootNamespace, default istio-system): configuration there
 * applies to the whole mesh (a selector-less Sidecar, PeerAuthentication or AuthorizationPolicy,
 * and DestinationRules and ServiceEntries exported everywhere).
 */
export const ROOT_NAMESPACE = 'istio-system';

export interface IstioKind extends KindRef {
  readonly resource: string;
  readonly versions: readonly string[];
}

const NETWORKING = ['v1', 'v1beta1', 'v1alpha3'] as const;
const SECURITY = ['v1', 'v1beta1'] as const;

export const SIDECAR: IstioKind = { group: 'networking.istio.io', kind: 'Sidecar', resource: 'sidecars', versions: NETWORKING };
export const SERVICE_ENTRY: IstioKind = { group: 'networking.istio.io', kind: 'ServiceEntry', resource: 'serviceentries', versions: NETWORKING };
export const DESTINATION_RULE: IstioKind = { group: 'networking.istio.io', kind: 'DestinationRule', resource: 'destinationrules', versions: NETWORKING };
export const ENVOY_FILTER: IstioKind = { group: 'networking.istio.io', kind: 'EnvoyFilter', resource: 'envoyfilters', versions: ['v1alpha3'] };
export const PROXY_CONFIG: IstioKind = { group: 'networking.istio.io', kind: 'ProxyConfig', resource: 'proxyconfigs', versions: ['v1beta1'] };
export const PEER_AUTHENTICATION: IstioKind = { group: 'security.istio.io', kind: 'PeerAuthentication', resource: 'peerauthentications', versions: SECURITY };
export const AUTHORIZATION_POLICY: IstioKind = { group: 'security.istio.io', kind: 'AuthorizationPolicy', resource: 'authorizationpolicies', versions: SECURITY };
export const WASM_PLUGIN: IstioKind = { group: 'extensions.istio.io', kind: 'WasmPlugin', resource: 'wasmplugins', versions: ['v1alpha1'] };
export const VIRTUAL_SERVICE: IstioKind = { group: 'networking.istio.io', kind: 'VirtualService', resource: 'virtualservices', versions: NETWORKING };
export const TRAFFIC_EXTENSION: IstioKind = { group: 'extensions.istio.io', kind: 'TrafficExtension', resource: 'trafficextensions', versions: ['v1alpha1'] };
export const ISTIO_OPERATOR: IstioKind = { group: 'install.istio.io', kind: 'IstioOperator', resource: 'istiooperators', versions: ['v1alpha1'] };

/** Every Istio kind a rule reads, with its served versions (tests iterate over this). */
export const ISTIO_KINDS: readonly IstioKind[] = [SIDECAR, SERVICE_ENTRY, VIRTUAL_SERVICE, DESTINATION_RULE, ENVOY_FILTER, PROXY_CONFIG, PEER_AUTHENTICATION, AUTHORIZATION_POLICY, WASM_PLUGIN, TRAFFIC_EXTENSION, ISTIO_OPERATOR];

// The Istio kinds no rule reads, for the decision table below.
const GATEWAY: IstioKind = { group: 'networking.istio.io', kind: 'Gateway', resource: 'gateways', versions: NETWORKING };
const WORKLOAD_ENTRY: IstioKind = { group: 'networking.istio.io', kind: 'WorkloadEntry', resource: 'workloadentries', versions: NETWORKING };
const WORKLOAD_GROUP: IstioKind = { group: 'networking.istio.io', kind: 'WorkloadGroup', resource: 'workloadgroups', versions: NETWORKING };
export const REQUEST_AUTHENTICATION: IstioKind = { group: 'security.istio.io', kind: 'RequestAuthentication', resource: 'requestauthentications', versions: SECURITY };
const TELEMETRY: IstioKind = { group: 'telemetry.istio.io', kind: 'Telemetry', resource: 'telemetries', versions: ['v1', 'v1alpha1'] };

/**
 * What meshguard does about each Istio kind a tenant namespace can hold: `covered` (rules judge
 * what it changes), `restricted` (only in istioAdminNamespaces) or `allowed` (deliberately not
 * judged, with the reason). Every kind of Istio's CRD set (manifests/charts/base/files/
 * crd-all.gen.yaml of the pinned module) is here; a unit test compares the two, and docs/rules.md
 * is generated from this table.
 */
export interface IstioKindDecision {
  readonly kind: IstioKind;
  readonly decision: 'covered' | 'restricted' | 'allowed';
  /** The rules that judge it (empty when allowed). */
  readonly rules: readonly string[];
  readonly reason: string;
  /** false: not a CRD of the Istio install (read offline only). */
  readonly crd?: false;
}

const RESTRICTED = 'restricted-istio-kinds';

export const ISTIO_KIND_DECISIONS: readonly IstioKindDecision[] = [
  { kind: SIDECAR, decision: 'covered', rules: ['sidecar-outbound-allow-any'], reason: 'its outboundTrafficPolicy replaces the mesh REGISTRY_ONLY (ALLOW_ANY, egressProxy); its egress hosts and ports only narrow what the proxy sees' },
  { kind: SERVICE_ENTRY, decision: 'covered', rules: ['service-entry-wildcard'], reason: 'it adds destinations to the registry REGISTRY_ONLY allows: judged by reach (address unions, Public Suffix List, NONE passthrough ports, DYNAMIC_DNS wildcards). Not judged: with resolution NONE, HTTP and TLS ports forward to any IP the client dials with a listed host in Host or SNI (REGISTRY_ONLY is best effort; a hard boundary needs an egress gateway and NetworkPolicy)' },
  { kind: VIRTUAL_SERVICE, decision: 'covered', rules: ['virtual-service-destination-subnets'], reason: 'routes among hosts in the registry (a route to an unregistered host gets no cluster), except that tcp/tls match destinationSubnets replace a ServiceEntry’s own addresses in the match: routed to a resolution NONE ServiceEntry, 0.0.0.0/0 there reaches every IP. Hosts, headers and weights are not judged' },
  { kind: DESTINATION_RULE, decision: 'covered', rules: ['destination-rule-tls'], reason: 'tls.mode DISABLE turns mutual TLS off; its other settings (load balancing, pools, outlier detection, subsets) choose among registered endpoints' },
  { kind: ENVOY_FILTER, decision: 'restricted', rules: [RESTRICTED], reason: 'patches the generated Envoy configuration directly: it can add a passthrough listener or cluster (unlimited egress) or remove filters' },
  { kind: PROXY_CONFIG, decision: 'restricted', rules: [RESTRICTED], reason: 'sets proxy bootstrap settings (concurrency, environment, image) for selected workloads' },
  { kind: WASM_PLUGIN, decision: 'restricted', rules: [RESTRICTED], reason: 'runs fetched Wasm code inside the proxy on every request of the selected workloads' },
  { kind: TRAFFIC_EXTENSION, decision: 'restricted', rules: [RESTRICTED], reason: 'runs inline Lua or Wasm inside the proxy on the selected workloads’ traffic: it can rewrite requests and call any cluster the proxy knows, like an EnvoyFilter' },
  { kind: PEER_AUTHENTICATION, decision: 'covered', rules: ['peer-authentication-strict', 'mesh-root-strict-mtls'], reason: 'mtls and portLevelMtls modes PERMISSIVE or DISABLE accept plaintext; the mesh needs a STRICT one in the root namespace' },
  { kind: AUTHORIZATION_POLICY, decision: 'covered', rules: ['authorization-policy-weakening'], reason: 'istio.io/dry-run leaves a policy unenforced; an ALLOW rule with no conditions allows everyone' },
  { kind: ISTIO_OPERATOR, decision: 'covered', rules: ['mesh-config-outbound-policy', 'mesh-auto-mtls'], crd: false, reason: 'istioctl install input (no CRD in the Istio install): its meshConfig is judged offline like the mesh ConfigMap' },
  { kind: GATEWAY, decision: 'allowed', rules: [], reason: 'listeners on gateway proxies (ingress); what they route to must still be in the registry. Which gateway pods a tenant Gateway may select is Istio’s setting (PILOT_SCOPE_GATEWAY_TO_NAMESPACE)' },
  { kind: WORKLOAD_ENTRY, decision: 'allowed', rules: [], reason: 'registers one address (IP, hostname or unix socket) as an endpoint of the Services and ServiceEntries of its own namespace: the reach of one ServiceEntry endpoint or EndpointSlice entry, which tenants may already create; its identity is a service account of its own namespace' },
  { kind: WORKLOAD_GROUP, decision: 'allowed', rules: [], reason: 'a template for WorkloadEntries that VMs register themselves; a VM needs a token for a service account of that namespace, and each entry reaches one address' },
  { kind: REQUEST_AUTHENTICATION, decision: 'covered', rules: ['request-authentication-principal'], reason: 'validates JWTs and rejects invalid ones, but admits requests without a token unless an AuthorizationPolicy requires a request principal (reported, audit by default); its jwksUri is fetched by istiod, a control-plane egress outside the tenant’s proxy' },
  { kind: TELEMETRY, decision: 'allowed', rules: [], reason: 'metrics, access logs and tracing of the namespace’s workloads, to providers defined only in the mesh config; it routes nothing' },
];

export function kindRef(k: IstioKind): KindRef {
  return { group: k.group, kind: k.kind };
}

/** Istio configuration is read in every namespace but the control plane's own (see ROOT_NAMESPACE). */
export function webhookFor(k: IstioKind): WebhookResource {
  return { placement: 'all-namespaces', apiGroup: k.group, apiVersions: k.versions, resources: [k.resource] };
}

/**
 * For rules that see every namespace (exemptions 'none'): the exempt namespaces stay exempt,
 * except the root namespace, where a weakening applies mesh-wide. undefined when the rule applies.
 */
export function exemptOutsideRoot(req: AdmissionRequest, config: Config): string | undefined {
  if (req.namespace === ROOT_NAMESPACE || !isExempt(config, req.namespace)) return undefined;
  return `namespace ${req.namespace} is exempt`;
}
