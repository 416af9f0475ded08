// The diff, as a pure function: desired objects against the managed objects the API server has,
// into the actions that make them equal. Objects without the managed label never reach it (the
// watches select on the label), and it never plans anything for them: a name taken by such an
// object is a conflict, reported and left alone.
import type { DesiredState, NamespaceStatus } from './desired.ts';
import { isManaged, NAMES, objectKey, type DesiredObject, type ObservedObject } from './resources.ts';
import { isRecord } from '../../core/objects.ts';

export type Action =
  | { readonly type: 'create'; readonly desired: DesiredObject }
  | { readonly type: 'update'; readonly desired: DesiredObject; readonly observed: ObservedObject; readonly changes: readonly string[] }
  | { readonly type: 'delete'; readonly observed: ObservedObject; readonly reason: string }
  | { readonly type: 'conflict'; readonly desired: DesiredObject };

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isRecord(a) && isRecord(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

const SHOW_MAX = 80;
function show(v: unknown): string {
  if (v === undefined) return 'absent';
  const s = JSON.stringify(v);
  return s.length <= SHOW_MAX ? s : `${s.slice(0, SHOW_MAX - 1)}…`;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
function child(path: string, key: string): string {
  return IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** What differs between two JSON values, one line per leaf: `spec.mtls.mode: "PERMISSIVE" -> "STRICT"`. */
export function valueChanges(before: unknown, after: unknown, path: string): string[] {
  if (deepEqual(before, after)) return [];
  if (isRecord(before) && isRecord(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => valueChanges(before[k], after[k], child(path, k)));
  }
  return [`${path}: ${show(before)} -> ${show(after)}`];
}

/** What a hand edit changed, as the lines an update restores. Extra labels are the user's and kept. */
export function objectChanges(observed: ObservedObject, desired: DesiredObject): string[] {
  const labels = Object.entries(desired.labels)
    .filter(([k, v]) => observed.labels[k] !== v)
    .map(([k, v]) => `metadata.labels[${JSON.stringify(k)}]: ${show(observed.labels[k])} -> ${show(v)}`);
  // An absent spec and an empty one are the same object to Istio (and to the API server).
  const spec = valueChanges(observed.spec ?? {}, desired.spec, 'spec');
  return [...labels, ...spec];
}

/**
 * Apply order inside a namespace, so traffic is never cut by a half-applied plan: ServiceEntries
 * before the REGISTRY_ONLY Sidecar that needs them, allow policies before default-deny (Istio's and
 * the NetworkPolicies alike). Deletions
 * run in the reverse order.
 */
export function priority(o: { readonly kind: string; readonly name: string }): number {
  if (o.kind === 'ServiceEntry') return 0;
  if (o.kind === 'AuthorizationPolicy') return o.name === NAMES.defaultDeny ? 4 : 1;
  if (o.kind === 'NetworkPolicy') return o.name === NAMES.netpolDefaultDeny ? 4 : 1;
  if (o.kind === 'PeerAuthentication') return 2;
  return 3;
}

function deleteReason(o: ObservedObject, namespaces: ReadonlyMap<string, NamespaceStatus>): string {
  const status = namespaces.get(o.namespace);
  if (status === undefined) return `namespace ${o.namespace} no longer exists`;
  if (status !== 'managed') return `namespace ${o.namespace} is ${status}`;
  return 'no longer in the configuration';
}

/**
 * The actions that turn `observed` into `desired`, in the order to apply them: conflicts (no API
 * call), then creates and updates by priority, then deletions by reverse priority.
 * `conflicts` holds the keys of names known to be taken by objects meshguard does not manage.
 */
export function planActions(desired: DesiredState, observed: Iterable<ObservedObject>, conflicts: ReadonlySet<string> = new Set()): Action[] {
  const have = new Map<string, ObservedObject>();
  for (const o of observed) if (isManaged(o.labels)) have.set(objectKey(o), o);
  const conflicting: Action[] = [];
  const writes: { action: Action; d: DesiredObject }[] = [];
  const wanted = new Set<string>();
  for (const d of desired.objects) {
    const key = objectKey(d);
    wanted.add(key);
    const o = have.get(key);
    if (o === undefined) {
      if (conflicts.has(key)) conflicting.push({ type: 'conflict', desired: d });
      else writes.push({ action: { type: 'create', desired: d }, d });
      continue;
    }
    const changes = objectChanges(o, d);
    if (changes.length > 0) writes.push({ action: { type: 'update', desired: d, observed: o, changes }, d });
  }
  const deletes = [...have.entries()]
    .filter(([key]) => !wanted.has(key))
    .map(([, o]) => o)
    .sort((a, b) => priority(b) - priority(a) || objectKey(a).localeCompare(objectKey(b)))
    .map((o): Action => ({ type: 'delete', observed: o, reason: deleteReason(o, desired.namespaces) }));
  writes.sort((a, b) => priority(a.d) - priority(b.d) || objectKey(a.d).localeCompare(objectKey(b.d)));
  return [...conflicting, ...writes.map((w) => w.action), ...deletes];
}

/** One line per action, as logged and printed in dry-run. */
export function describeAction(a: Action): string {
  switch (a.type) {
    case 'create':
      return `create ${a.desired.kind} ${a.desired.namespace}/${a.desired.name} (${a.desired.source})`;
    case 'update':
      return `restore ${a.desired.kind} ${a.desired.namespace}/${a.desired.name}: ${a.changes.join('; ')}`;
    case 'delete':
      return `delete ${a.observed.kind} ${a.observed.namespace}/${a.observed.name} (${a.reason})`;
    case 'conflict':
      return `leave ${a.desired.kind} ${a.desired.namespace}/${a.desired.name} alone: it exists without the label app.kubernetes.io/managed-by=meshguard`;
  }
}
