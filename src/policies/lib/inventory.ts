// What the mesh-wide hardening rules share: the mesh config as a request or a listed object
// carries it (the `istio` / `istio-<revision>` ConfigMaps in the root namespace, parsed with
// parseMeshData; an IstioOperator's spec.meshConfig), selectors, and the subject of an
// inventory finding.
import type { AdmissionRequest, KObject } from '../../core/request.ts';
import type { InventoryFinding, Violation } from '../../core/types.ts';
import { at, ISTIO_OPERATOR, ROOT_NAMESPACE } from './istio-kinds.ts';
import { parseMeshData } from './mesh-config.ts';
import { isRecord } from '../../core/objects.ts';

export interface MeshConfigSource {
  readonly mesh: Readonly<Record<string, unknown>>;
  /** How a field is named for the user: data.mesh > enableAutoMtls, spec.meshConfig.enableAutoMtls. */
  path(field: string): string;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/**
 * The mesh config an object carries, or undefined (not a mesh config, or unreadable: the mesh
 * config rule reports that). A ConfigMap counts when it is named istio or istio-* in the root
 * namespace and has a mesh key.
 */
export function meshConfigOf(o: KObject | null): MeshConfigSource | undefined {
  if (o === null) return undefined;
  if (o.kind === 'ConfigMap') {
    const name = str(o.metadata?.name);
    if (str(o.metadata?.namespace) !== ROOT_NAMESPACE || !(name === 'istio' || name.startsWith('istio-'))) return undefined;
    const text = at(o, 'data', 'mesh');
    if (text === undefined) return undefined;
    const parsed = parseMeshData(text);
    return 'problem' in parsed ? undefined : { mesh: parsed.mesh, path: (f) => `data.mesh > ${f}` };
  }
  if (o.kind === ISTIO_OPERATOR.kind) {
    const top = at(o, 'spec', 'meshConfig');
    if (isRecord(top)) return { mesh: top, path: (f) => `spec.meshConfig.${f}` };
    const values = at(o, 'spec', 'values', 'meshConfig');
    if (isRecord(values)) return { mesh: values, path: (f) => `spec.values.meshConfig.${f}` };
    return { mesh: {}, path: (f) => `spec.meshConfig.${f}` };
  }
  return undefined;
}

/** The request's object with its kind (the apiserver leaves nothing out, a synthetic request may). */
export function requestObject(req: AdmissionRequest): KObject | null {
  return req.object === null ? null : { ...req.object, kind: req.object.kind ?? req.kind.kind, metadata: { ...req.object.metadata, namespace: req.namespace } };
}

/** matchLabels of a workload selector ({} when absent: every workload of the namespace). */
export function selectorLabels(spec: unknown): Readonly<Record<string, unknown>> {
  const m = at(spec, 'selector', 'matchLabels');
  return isRecord(m) ? m : {};
}

/** Does a policy with selector `outer` select every workload a policy with selector `inner` selects? */
export function covers(outer: Readonly<Record<string, unknown>>, inner: Readonly<Record<string, unknown>>): boolean {
  return Object.entries(outer).every(([k, v]) => inner[k] === v);
}

export function subjectOf(o: KObject): InventoryFinding['subject'] {
  return { kind: str(o.kind), apiVersion: str(o.apiVersion), namespace: str(o.metadata?.namespace), name: str(o.metadata?.name) };
}

export function finding(o: KObject, violation: Violation): InventoryFinding {
  return { subject: subjectOf(o), violation };
}

export function ofKind(objects: readonly KObject[], group: string, kind: string): KObject[] {
  return objects.filter((o) => o.kind === kind && (group === '' ? !str(o.apiVersion).includes('/') : str(o.apiVersion).startsWith(`${group}/`)));
}
