// Every coded error meshguard answers with, in one place. HTTP errors carry a stable code that
// says what is wrong; they never carry a stack trace. Tests keep this list, the docs and the
// server's behaviour in sync.

export interface CodedErrorSpec {
  readonly code: string;
  readonly statusCode: number;
  readonly summary: string;
}

function spec(code: string, statusCode: number, summary: string): CodedErrorSpec {
  return Object.freeze({ code, statusCode, summary });
}

export const ERRORS = Object.freeze({
  BODY_MISSING: spec('MG_BODY_MISSING', 400, 'the request body is empty; send an AdmissionReview'),
  BODY_NOT_JSON: spec('MG_BODY_NOT_JSON', 400, 'the request body is not valid JSON'),
  BODY_POISONED: spec('MG_BODY_POISONED', 400, 'the body contains a forbidden __proto__ or constructor key'),
  BODY_TOO_LARGE: spec('MG_BODY_TOO_LARGE', 413, 'the request body exceeds the configured limit'),
  CONTENT_TYPE: spec('MG_CONTENT_TYPE', 415, 'the Content-Type must be application/json'),
  REVIEW_NOT_OBJECT: spec('MG_REVIEW_NOT_OBJECT', 400, 'the body must be a JSON object (an AdmissionReview)'),
  REVIEW_API_VERSION: spec('MG_REVIEW_API_VERSION', 400, 'only admission.k8s.io/v1 AdmissionReview is supported'),
  REVIEW_KIND: spec('MG_REVIEW_KIND', 400, 'kind must be AdmissionReview'),
  REQUEST_MISSING: spec('MG_REQUEST_MISSING', 400, 'the AdmissionReview has no request'),
  REQUEST_UID: spec('MG_REQUEST_UID', 400, 'request.uid must be a non-empty string'),
  REQUEST_INVALID: spec('MG_REQUEST_INVALID', 400, 'a required request field is missing or has the wrong type'),
  NOT_FOUND: spec('MG_NOT_FOUND', 404, 'no such route'),
  METHOD: spec('MG_METHOD', 405, 'method not allowed on this route'),
  TIMEOUT: spec('MG_TIMEOUT', 408, 'the request was not received in time'),
  OVERLOADED: spec('MG_OVERLOADED', 503, 'meshguard is overloaded; the apiserver applies the failure policy'),
  SHUTTING_DOWN: spec('MG_SHUTTING_DOWN', 503, 'meshguard is shutting down'),
  INTERNAL: spec('MG_INTERNAL', 500, 'internal error'),
  CACHE_STALE: spec('MG_CACHE_STALE', 503, "meshguard's copy of the cluster state is not current (the apiserver watch is down or stalled); the apiserver applies the failure policy"),
});

export type ErrorName = keyof typeof ERRORS;

/** The body of every error answer. */
export interface ErrorBody {
  readonly statusCode: number;
  readonly code: string;
  readonly error: string;
  readonly message: string;
}

export function errorBody(name: ErrorName, detail?: string): ErrorBody {
  const e = ERRORS[name];
  return {
    statusCode: e.statusCode,
    code: e.code,
    error: e.summary,
    message: detail === undefined || detail === '' ? e.summary : `${e.summary}: ${detail}`,
  };
}

/** A decode failure: a value, returned by the decoder, not thrown. */
export interface DecodeError {
  readonly name: ErrorName;
  readonly detail: string;
}
