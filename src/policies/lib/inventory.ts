// What the rules that judge listed objects (scan's inventory checks) share: the objects of one
// kind, a finding's subject, the request's object in the same shape as a listed one, and Istio's
// workload selectors (istio.io/api type/v1beta1 WorkloadSelector: matchLabels only, and no
// selector selects every workload of the namespace).
import type { AdmissionRequest, KObject } from '../../core/request.ts';
import type { InventoryFinding, Violation } from '../../core/types.ts';
import { at, str } from './json-read.ts';
import { isRecord } from '../../core/objects.ts';

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

export function subjectOf(obj: KObject): InventoryFinding['subject'] {
  return { kind: str(obj.kind), apiVersion: str(obj.apiVersion), namespace: str(obj.metadata?.namespace), name: str(obj.metadata?.name) };
}

export function finding(obj: KObject, violation: Violation): InventoryFinding {
  return { subject: subjectOf(obj), violation };
}

export function ofKind(objects: readonly KObject[], group: string, kind: string): KObject[] {
  return objects.filter((obj) => obj.kind === kind && (group === '' ? !str(obj.apiVersion).includes('/') : str(obj.apiVersion).startsWith(`${group}/`)));
}
