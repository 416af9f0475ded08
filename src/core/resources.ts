// The API resource behind each kind meshguard handles: what the apiserver puts in an
// AdmissionRequest's `resource` (the plural it serves the kind as) and whether objects of the kind
// live in a namespace. Offline (check, scan, send-review) the request is built from a manifest,
// which names only apiVersion and kind, so the resource comes from here; a plural is never guessed
// from the kind (Istio serves ServiceEntry as serviceentries, AuthorizationPolicy as
// authorizationpolicies). test/unit/resource-table.test.ts holds the table to the rules' webhook
// resources and to the plurals of Istio's and meshguard's CRDs.
import { EXCEPTION_GROUP, EXCEPTION_KIND, EXCEPTION_PLURAL } from './exception-model.ts';

export interface KindResource {
  readonly group: string;
  readonly kind: string;
  readonly resource: string;
  readonly namespaced: boolean;
}

const entry = (group: string, kind: string, resource: string, namespaced = true): KindResource => ({ group, kind, resource, namespaced });

const ISTIO_NETWORKING = 'networking.istio.io';
const ISTIO_SECURITY = 'security.istio.io';
const ISTIO_EXTENSIONS = 'extensions.istio.io';

export const KIND_RESOURCES: readonly KindResource[] = Object.freeze([
  // Kubernetes kinds the rules read.
  entry('', 'Namespace', 'namespaces', false),
  entry('', 'Pod', 'pods'),
  entry('', 'ReplicationController', 'replicationcontrollers'),
  entry('', 'ConfigMap', 'configmaps'),
  entry('', 'Service', 'services'),
  entry('apps', 'Deployment', 'deployments'),
  entry('apps', 'StatefulSet', 'statefulsets'),
  entry('apps', 'DaemonSet', 'daemonsets'),
  entry('apps', 'ReplicaSet', 'replicasets'),
  entry('batch', 'Job', 'jobs'),
  entry('batch', 'CronJob', 'cronjobs'),
  entry('networking.k8s.io', 'NetworkPolicy', 'networkpolicies'),
  entry(EXCEPTION_GROUP, EXCEPTION_KIND, EXCEPTION_PLURAL),
  // Cluster-scoped kinds a manifest set often carries: known so that they get no namespace.
  entry('', 'Node', 'nodes', false),
  entry('', 'PersistentVolume', 'persistentvolumes', false),
  entry('rbac.authorization.k8s.io', 'ClusterRole', 'clusterroles', false),
  entry('rbac.authorization.k8s.io', 'ClusterRoleBinding', 'clusterrolebindings', false),
  entry('apiextensions.k8s.io', 'CustomResourceDefinition', 'customresourcedefinitions', false),
  entry('admissionregistration.k8s.io', 'MutatingWebhookConfiguration', 'mutatingwebhookconfigurations', false),
  entry('admissionregistration.k8s.io', 'ValidatingWebhookConfiguration', 'validatingwebhookconfigurations', false),
  entry('storage.k8s.io', 'StorageClass', 'storageclasses', false),
  entry('scheduling.k8s.io', 'PriorityClass', 'priorityclasses', false),
  // Istio's kinds (its CRD set), and IstioOperator (istioctl's input; no CRD in an install).
  entry(ISTIO_NETWORKING, 'Sidecar', 'sidecars'),
  entry(ISTIO_NETWORKING, 'ServiceEntry', 'serviceentries'),
  entry(ISTIO_NETWORKING, 'VirtualService', 'virtualservices'),
  entry(ISTIO_NETWORKING, 'DestinationRule', 'destinationrules'),
  entry(ISTIO_NETWORKING, 'EnvoyFilter', 'envoyfilters'),
  entry(ISTIO_NETWORKING, 'ProxyConfig', 'proxyconfigs'),
  entry(ISTIO_NETWORKING, 'Gateway', 'gateways'),
  entry(ISTIO_NETWORKING, 'WorkloadEntry', 'workloadentries'),
  entry(ISTIO_NETWORKING, 'WorkloadGroup', 'workloadgroups'),
  entry(ISTIO_SECURITY, 'PeerAuthentication', 'peerauthentications'),
  entry(ISTIO_SECURITY, 'AuthorizationPolicy', 'authorizationpolicies'),
  entry(ISTIO_SECURITY, 'RequestAuthentication', 'requestauthentications'),
  entry(ISTIO_EXTENSIONS, 'WasmPlugin', 'wasmplugins'),
  entry(ISTIO_EXTENSIONS, 'TrafficExtension', 'trafficextensions'),
  entry('telemetry.istio.io', 'Telemetry', 'telemetries'),
  entry('install.istio.io', 'IstioOperator', 'istiooperators'),
]);

const BY_GROUP_KIND = new Map(KIND_RESOURCES.map((k) => [`${k.kind}.${k.group}`, k]));
const CLUSTER_SCOPED = new Set(KIND_RESOURCES.filter((k) => !k.namespaced).map((k) => k.kind));

/** The resource of a group and kind; undefined when the kind is not in the table. */
export function kindResource(group: string, kind: string): KindResource | undefined {
  return BY_GROUP_KIND.get(`${kind}.${group}`);
}

/** Cluster-scoped kinds the rules see (by kind alone, as a manifest's namespace is read);
 * every other kind is treated as namespaced. */
export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}
