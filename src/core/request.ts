// The slice of admission.k8s.io/v1 that meshguard reads and writes, and the small internal
// model every rule sees. Kubernetes objects stay plain JSON values (`KObject`).

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
export const OPERATIONS: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface GroupVersionResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
}

export interface UserInfo {
  readonly username: string;
  readonly groups: readonly string[];
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  managedFields?: unknown;
  [key: string]: unknown;
}

/** A Kubernetes object as JSON. Rules read it defensively: nothing about its shape is trusted. */
export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [key: string]: unknown;
}

/** The decoded request: what every rule, decision and renderer works from. */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource: GroupVersionResource;
  /** '' for the main resource, else e.g. 'status', 'finalize', 'ephemeralcontainers'. */
  readonly subResource: string;
  readonly operation: Operation;
  /** Namespace of the request ('' for cluster-scoped objects such as Namespace). */
  readonly namespace: string;
  readonly name: string;
  readonly object: KObject | null;
  readonly oldObject: KObject | null;
  readonly userInfo: UserInfo | null;
  readonly dryRun: boolean;
}

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
