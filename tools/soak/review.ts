// The CREATE AdmissionReview the soak probes send (overload-curve.ts, slow-body.ts), as the
// apiserver would for `object`: a fresh uid each time, no old object, not a dry run.
import { randomUUID } from 'node:crypto';

export interface CreateReview {
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  /** The plural resource, e.g. pods. */
  readonly resource: string;
  /** Left out for a cluster-scoped object. */
  readonly namespace?: string;
  readonly name: string;
  readonly userInfo: { readonly username: string; readonly groups: readonly string[] };
  readonly object: unknown;
}

export function createReview(review: CreateReview): string {
  const { group, version } = review.kind;
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: review.kind,
      resource: { group, version, resource: review.resource },
      ...(review.namespace !== undefined ? { namespace: review.namespace } : {}),
      name: review.name,
      operation: 'CREATE',
      userInfo: review.userInfo,
      object: review.object,
      oldObject: null,
      dryRun: false,
    },
  });
}
