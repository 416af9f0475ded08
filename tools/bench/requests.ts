// The benchmark's AdmissionReviews, shaped like the apiserver's (admission.k8s.io/v1, with
// requestKind, requestResource, options, userInfo of the real caller), built from the fixtures in
// ./fixtures (defaulted objects from a real apiserver's dry-run).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

type Json = Record<string, unknown>;

function fixture(name: string): Json {
  return JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8')) as Json;
}

function meta(o: Json): Json {
  return o['metadata'] as Json;
}

/** The request kinds of issue 7's mix. */
export const KINDS = ['pod-create', 'deployment-update', 'namespace-create', 'pod-denied'] as const;
export type Kind = (typeof KINDS)[number];
export type Expect = 'allowed' | 'denied' | 'patched';

export interface BenchRequest {
  readonly kind: string;
  readonly path: '/validate' | '/mutate';
  readonly uid: string;
  readonly body: string;
  /** meshguard's expected verdict (the floor always answers allowed). */
  readonly expect: Expect;
}

const REPLICASET_CONTROLLER = {
  username: 'system:serviceaccount:kube-system:replicaset-controller',
  uid: '9b0f0b7e-2f7c-4f59-9a55-5d0c3f2c1a11',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
};
const DEVELOPER = { username: 'alice@example.com', groups: ['developers', 'system:authenticated'] };
const PIPELINE = {
  username: 'system:serviceaccount:ci:deployer',
  uid: '0a5c9e61-6d55-4f4b-8f1b-7e1b1d2b3c44',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:ci', 'system:authenticated'],
};

interface Gvk {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly resource: string;
}
const POD: Gvk = { group: '', version: 'v1', kind: 'Pod', resource: 'pods' };
const DEPLOYMENT: Gvk = { group: 'apps', version: 'v1', kind: 'Deployment', resource: 'deployments' };
const NAMESPACE: Gvk = { group: '', version: 'v1', kind: 'Namespace', resource: 'namespaces' };

function review(g: Gvk, operation: 'CREATE' | 'UPDATE', fields: {
  uid: string;
  name: string;
  namespace?: string;
  object: Json;
  oldObject?: Json | null;
  userInfo: object;
}): string {
  const kind = { group: g.group, version: g.version, kind: g.kind };
  const resource = { group: g.group, version: g.version, resource: g.resource };
  return JSON.stringify({
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: fields.uid,
      kind,
      resource,
      requestKind: kind,
      requestResource: resource,
      name: fields.name,
      ...(fields.namespace !== undefined ? { namespace: fields.namespace } : {}),
      operation,
      userInfo: fields.userInfo,
      object: fields.object,
      oldObject: fields.oldObject ?? null,
      dryRun: false,
      options: { kind: operation === 'CREATE' ? 'CreateOptions' : 'UpdateOptions', apiVersion: 'meta.k8s.io/v1', ...(operation === 'CREATE' ? {} : { fieldManager: 'kubectl-client-side-apply' }) },
    },
  });
}

function suffix(i: number): string {
  return (i * 2654435761 >>> 0).toString(36).slice(-5).padStart(5, 'x');
}

/** An injected Pod as a ReplicaSet creates it, in namespace `ns`. */
export function podObject(ns: string, i: number): Json {
  const pod = fixture('pod-injected.json');
  const m = meta(pod);
  m['name'] = `checkout-7d4b9c8f6d-${suffix(i)}`;
  m['namespace'] = ns;
  m['uid'] = randomUUID();
  return pod;
}

/** Denied: hostNetwork (workload-host-network) and an interception bypass for every outbound
 * address (workload-capture-bypass): a denial with two findings to render and audit. */
export function deniedPodObject(ns: string, i: number): Json {
  const pod = podObject(ns, i);
  (meta(pod)['annotations'] as Json)['traffic.sidecar.istio.io/excludeOutboundIPRanges'] = '0.0.0.0/0';
  (pod['spec'] as Json)['hostNetwork'] = true;
  return pod;
}

/** A Deployment update (new image, generation 8) with the stored object as oldObject. */
export function deploymentUpdate(ns: string): { object: Json; oldObject: Json } {
  const object = fixture('deployment.json');
  const oldObject = fixture('deployment.json');
  for (const o of [object, oldObject]) {
    meta(o)['namespace'] = ns;
    for (const f of (meta(o)['managedFields'] as Json[] | undefined) ?? []) f['time'] = '2026-01-12T09:30:00Z';
  }
  meta(oldObject)['generation'] = 7;
  meta(oldObject)['resourceVersion'] = '918273';
  oldObject['status'] = {
    observedGeneration: 7,
    replicas: 3,
    updatedReplicas: 3,
    readyReplicas: 3,
    availableReplicas: 3,
    conditions: [
      { type: 'Available', status: 'True', lastUpdateTime: '2026-01-10T08:00:00Z', lastTransitionTime: '2026-01-10T08:00:00Z', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' },
      { type: 'Progressing', status: 'True', lastUpdateTime: '2026-01-10T08:01:00Z', lastTransitionTime: '2026-01-10T08:00:00Z', reason: 'NewReplicaSetAvailable', message: 'ReplicaSet "checkout-7d4b9c8f6d" has successfully progressed.' },
    ],
  };
  meta(object)['generation'] = 8;
  meta(object)['resourceVersion'] = '918273';
  object['status'] = oldObject['status'];
  const tpl = ((object['spec'] as Json)['template'] as Json)['spec'] as Json;
  ((tpl['containers'] as Json[])[0] as Json)['image'] = 'registry.example.com/shop/checkout:3.15.0';
  return { object, oldObject };
}

export function namespaceObject(name: string): Json {
  const o = fixture('namespace.json');
  meta(o)['name'] = name;
  meta(o)['labels'] = { 'kubernetes.io/metadata.name': name };
  meta(o)['uid'] = randomUUID();
  return o;
}

/**
 * `count` distinct requests of one kind (distinct uids and names), spread over `namespaces`
 * (which must exist and be sidecar-injected for the allowed kinds).
 */
export function buildRequests(kind: Kind, namespaces: readonly string[], count: number): BenchRequest[] {
  const out: BenchRequest[] = [];
  for (let i = 0; i < count; i++) {
    const ns = namespaces[i % namespaces.length] ?? 'default';
    const uid = randomUUID();
    switch (kind) {
      case 'pod-create': {
        const object = podObject(ns, i);
        out.push({ kind, path: '/validate', uid, expect: 'allowed', body: review(POD, 'CREATE', { uid, name: meta(object)['name'] as string, namespace: ns, object, userInfo: REPLICASET_CONTROLLER }) });
        break;
      }
      case 'pod-denied': {
        const object = deniedPodObject(ns, i);
        out.push({ kind, path: '/validate', uid, expect: 'denied', body: review(POD, 'CREATE', { uid, name: meta(object)['name'] as string, namespace: ns, object, userInfo: REPLICASET_CONTROLLER }) });
        break;
      }
      case 'deployment-update': {
        const { object, oldObject } = deploymentUpdate(ns);
        out.push({ kind, path: '/validate', uid, expect: 'allowed', body: review(DEPLOYMENT, 'UPDATE', { uid, name: 'checkout', namespace: ns, object, oldObject, userInfo: PIPELINE }) });
        break;
      }
      case 'namespace-create': {
        const name = `team-${suffix(i)}-${i}`;
        out.push({ kind, path: '/mutate', uid, expect: 'patched', body: review(NAMESPACE, 'CREATE', { uid, name, object: namespaceObject(name), userInfo: DEVELOPER }) });
        break;
      }
    }
  }
  return out;
}

/** The four kinds interleaved (one of each in turn). */
export function buildMix(namespaces: readonly string[], perKind: number): BenchRequest[] {
  const lists = KINDS.map((k) => buildRequests(k, namespaces, perKind));
  const out: BenchRequest[] = [];
  for (let i = 0; i < perKind; i++) for (const l of lists) out.push({ ...(l[i] as BenchRequest), kind: 'mix' });
  return out;
}

/**
 * A Deployment CREATE whose object is about `bytes` of JSON: the fixture without managedFields,
 * grown with environment variables in its container (many small objects, the shape that big
 * workloads have), for the size-scaling table.
 */
export function sizedRequest(ns: string, bytes: number): BenchRequest & { objectBytes: number } {
  const object = fixture('deployment.json');
  delete meta(object)['managedFields'];
  meta(object)['namespace'] = ns;
  const tpl = ((object['spec'] as Json)['template'] as Json)['spec'] as Json;
  const container = (tpl['containers'] as Json[])[0] as Json;
  const env = container['env'] as Json[];
  const base = JSON.stringify(object).length;
  // Each entry {"name":"SETTING_00000","value":"..."} is about 64 bytes with a 32-byte value.
  const entry = JSON.stringify({ name: 'SETTING_00000', value: 'x'.repeat(32) }).length + 1;
  const n = Math.max(0, Math.ceil((bytes - base) / entry));
  for (let i = 0; i < n; i++) env.push({ name: `SETTING_${String(i).padStart(5, '0')}`, value: `v${i.toString(16).padStart(31, '0')}` });
  const uid = randomUUID();
  return {
    kind: `deployment-create-${bytes}`,
    path: '/validate',
    uid,
    expect: 'allowed',
    objectBytes: JSON.stringify(object).length,
    body: review(DEPLOYMENT, 'CREATE', { uid, name: 'checkout', namespace: ns, object, userInfo: PIPELINE }),
  };
}
