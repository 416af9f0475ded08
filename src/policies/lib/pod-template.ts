// The pod inside every workload shape: a Pod itself, and the pod template of Deployment,
// StatefulSet, DaemonSet, ReplicaSet (apps/v1), ReplicationController (v1), Job (batch/v1,
// spec.template) and CronJob (batch/v1, spec.jobTemplate.spec.template). One extractor gives the
// pod spec, the pod metadata, the field path prefix and every container with its path, so each
// workload rule reads the eight shapes the same way. Every reader is defensive: any field may
// have any type, and a missing part is an empty map.
import type { KindRef, WebhookResource } from '../../core/types.ts';
import { at } from './json-read.ts';
import { isRecord, stringMap } from '../../core/objects.ts';

type Json = Readonly<Record<string, unknown>>;

export interface WorkloadKind extends KindRef {
  readonly resource: string;
  readonly versions: readonly string[];
  /** The keys from the object to its pod template ({metadata, spec}); empty for a Pod. */
  readonly template: readonly string[];
}

const TEMPLATE = ['spec', 'template'] as const;

export const POD: WorkloadKind = { group: '', kind: 'Pod', resource: 'pods', versions: ['v1'], template: [] };

/** The eight shapes. apps and batch serve only v1 today (matchPolicy Equivalent converts older versions). */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  POD,
  { group: 'apps', kind: 'Deployment', resource: 'deployments', versions: ['v1'], template: TEMPLATE },
  { group: 'apps', kind: 'StatefulSet', resource: 'statefulsets', versions: ['v1'], template: TEMPLATE },
  { group: 'apps', kind: 'DaemonSet', resource: 'daemonsets', versions: ['v1'], template: TEMPLATE },
  { group: 'apps', kind: 'ReplicaSet', resource: 'replicasets', versions: ['v1'], template: TEMPLATE },
  { group: '', kind: 'ReplicationController', resource: 'replicationcontrollers', versions: ['v1'], template: TEMPLATE },
  { group: 'batch', kind: 'Job', resource: 'jobs', versions: ['v1'], template: TEMPLATE },
  { group: 'batch', kind: 'CronJob', resource: 'cronjobs', versions: ['v1'], template: ['spec', 'jobTemplate', 'spec', 'template'] },
];

export const WORKLOAD_KIND_REFS: readonly KindRef[] = WORKLOAD_KINDS.map(({ group, kind }) => ({ group, kind }));

/** The subresource through which containers are added to a running Pod (kubectl debug). */
export const EPHEMERAL_SUBRESOURCE = 'ephemeralcontainers';

/**
 * The webhook resources of the workload rules: every shape (CREATE and UPDATE come from the rule's
 * match), plus pods/ephemeralcontainers for rules that judge containers.
 */
export function workloadWebhook(opts: { readonly ephemeral: boolean }): WebhookResource[] {
  const groups = new Map<string, WebhookResource>();
  for (const k of WORKLOAD_KINDS) {
    const resources = k === POD && opts.ephemeral ? [k.resource, `${k.resource}/${EPHEMERAL_SUBRESOURCE}`] : [k.resource];
    const prev = groups.get(k.group);
    groups.set(k.group, { apiGroup: k.group, apiVersions: k.versions, resources: [...(prev?.resources ?? []), ...resources] });
  }
  return [...groups.values()];
}

export function workloadKind(group: string, kind: string): WorkloadKind | undefined {
  return WORKLOAD_KINDS.find((k) => k.group === group && k.kind === kind);
}

export type ContainerList = 'initContainers' | 'containers' | 'ephemeralContainers';
export const CONTAINER_LISTS: readonly ContainerList[] = ['initContainers', 'containers', 'ephemeralContainers'];

export interface ContainerRef {
  readonly list: ContainerList;
  readonly index: number;
  /** e.g. spec.template.spec.containers[0] */
  readonly path: string;
  /** '' when not a string. */
  readonly name: string;
  /** '' when not a string. */
  readonly image: string;
  readonly container: Json;
}

export interface PodTemplate {
  readonly kind: WorkloadKind;
  /** A Pod (what runs) rather than a controller's template (what will be created). */
  readonly isPod: boolean;
  /** '' for a Pod, 'spec.template', or 'spec.jobTemplate.spec.template'. */
  readonly basePath: string;
  readonly podSpec: Json;
  readonly labels: Json;
  readonly annotations: Json;
  readonly containers: readonly ContainerRef[];
}

const LIST_WORDS: Readonly<Record<ContainerList, string>> = {
  initContainers: 'init container',
  containers: 'container',
  ephemeralContainers: 'ephemeral container',
};

/** "init container istio-init", "container #2" (for messages). */
export function containerLabel(c: ContainerRef): string {
  return `${LIST_WORDS[c.list]} ${c.name === '' ? `#${c.index}` : c.name}`;
}

/** A field path under the pod: fieldPath(t, 'spec.hostNetwork') is spec.template.spec.hostNetwork for a Deployment. */
export function fieldPath(t: PodTemplate, rest: string): string {
  return t.basePath === '' ? rest : `${t.basePath}.${rest}`;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** Every container of the three lists, in order; entries that are not objects are skipped (their
 * index still counts). Plain loops: this runs once per reviewed workload, on every request. */
function containersOf(podSpec: Json, specPath: string): ContainerRef[] {
  const out: ContainerRef[] = [];
  for (const list of CONTAINER_LISTS) {
    const items = podSpec[list];
    if (!Array.isArray(items)) continue;
    for (let index = 0; index < items.length; index++) {
      const container: unknown = items[index];
      if (!isRecord(container)) continue;
      out.push({ list, index, path: `${specPath}.${list}[${index}]`, name: text(container['name']), image: text(container['image']), container });
    }
  }
  return out;
}

/** The pod template { metadata, spec } of an object of this kind (the object itself for a Pod). */
export function rawTemplate(object: unknown, kind: WorkloadKind): unknown {
  return kind.template.length === 0 ? object : at(object, ...kind.template);
}

/** The pod of a workload object, read defensively: absent or mistyped parts are empty. */
export function podTemplate(object: unknown, kind: WorkloadKind): PodTemplate {
  const tmpl = rawTemplate(object, kind);
  const meta = at(tmpl, 'metadata');
  const basePath = kind.template.join('.');
  const podSpec = stringMap(at(tmpl, 'spec'));
  return {
    kind,
    isPod: kind === POD,
    basePath,
    podSpec,
    labels: stringMap(at(meta, 'labels')),
    annotations: stringMap(at(meta, 'annotations')),
    containers: containersOf(podSpec, basePath === '' ? 'spec' : `${basePath}.spec`),
  };
}

/** Structural equality of JSON values (key order does not matter). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  if (!isRecord(a) || !isRecord(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}
