// The only constructors of AdmissionReview answers: the core's Decision, or the edge's own errors,
// in admission.k8s.io/v1 form. Validating answers never carry a patch; a patch always comes with
// patchType JSONPatch.
import type { Decision, DecisionExtras } from '../core/decision.ts';

export interface StatusV1 {
  code?: number;
  reason?: string;
  message?: string;
  status?: 'Success' | 'Failure';
}

export interface AdmissionResponseV1 {
  uid: string;
  allowed: boolean;
  status?: StatusV1;
  patch?: string;
  patchType?: 'JSONPatch';
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
}

export interface AdmissionReviewV1Response {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponseV1;
}

export type Extras = DecisionExtras;

function review(response: AdmissionResponseV1): AdmissionReviewV1Response {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

function withExtras(r: AdmissionResponseV1, extras: Extras | undefined): AdmissionResponseV1 {
  if (extras?.warnings !== undefined && extras.warnings.length > 0) r.warnings = [...extras.warnings];
  if (extras?.auditAnnotations !== undefined && Object.keys(extras.auditAnnotations).length > 0) {
    r.auditAnnotations = { ...extras.auditAnnotations };
  }
  return r;
}

export function allowed(uid: string, extras?: Extras): AdmissionReviewV1Response {
  return review(withExtras({ uid, allowed: true }, extras));
}

/** A denial: HTTP 200 with allowed=false, status 403 Forbidden and one message. */
export function denied(uid: string, message: string, extras?: Extras): AdmissionReviewV1Response {
  return review(
    withExtras({ uid, allowed: false, status: { code: 403, reason: 'Forbidden', message, status: 'Failure' } }, extras),
  );
}

/** An allowed answer carrying a JSON Patch (RFC 6902), base64 encoded as the apiserver expects. */
export function patched(uid: string, patch: readonly unknown[], extras?: Extras): AdmissionReviewV1Response {
  if (patch.length === 0) return allowed(uid, extras);
  const r: AdmissionResponseV1 = {
    uid,
    allowed: true,
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    patchType: 'JSONPatch',
  };
  return review(withExtras(r, extras));
}

/** The core's decision for request `uid`, as the apiserver reads it. */
export function encodeDecision(uid: string, decision: Decision): AdmissionReviewV1Response {
  const extras: Extras = { warnings: decision.warnings, auditAnnotations: decision.auditAnnotations };
  if (!decision.allowed) return denied(uid, decision.message ?? 'denied by meshguard', extras);
  if (decision.patch !== undefined) return patched(uid, decision.patch, extras);
  return allowed(uid, extras);
}

/** Evaluation could not produce a verdict and configuration says deny (fail closed). */
export function errored(uid: string, message: string, extras?: Extras): AdmissionReviewV1Response {
  return review(
    withExtras(
      { uid, allowed: false, status: { code: 500, reason: 'InternalError', message, status: 'Failure' } },
      extras,
    ),
  );
}

const ALLOWED_HEAD = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":';
const ALLOWED_TAIL = ',"allowed":true}}';

/**
 * The answer as the bytes sent: exactly JSON.stringify(review). The most common answer (allowed,
 * nothing else) is assembled around the JSON-encoded uid without walking the object.
 */
export function encodeReview(review: AdmissionReviewV1Response): string {
  const r = review.response;
  if (r.allowed === true && review.apiVersion === 'admission.k8s.io/v1' && review.kind === 'AdmissionReview' && typeof r.uid === 'string' && isPlain(review)) {
    return ALLOWED_HEAD + JSON.stringify(r.uid) + ALLOWED_TAIL;
  }
  return JSON.stringify(review);
}

const REVIEW_KEYS: readonly string[] = ['apiVersion', 'kind', 'response'];

/** The review has exactly apiVersion, kind and response, and the response exactly uid then allowed
 * (own enumerable keys, in JSON.stringify's order). Counted with for...in, which allocates no key
 * array; a key from the prototype chain would be counted too and send the review the slow way. */
function isPlain(review: AdmissionReviewV1Response): boolean {
  let n = 0;
  for (const k in review.response) {
    if ((n === 0 && k !== 'uid') || (n === 1 && k !== 'allowed') || n === 2) return false;
    n++;
  }
  if (n !== 2) return false;
  n = 0;
  for (const k in review) {
    if (k !== REVIEW_KEYS[n]) return false;
    n++;
  }
  return n === 3;
}
