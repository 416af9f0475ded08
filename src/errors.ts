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
  REQUEST_OBJECT_MISSING: spec('MG_REQUEST_OBJECT_MISSING', 400, 'request.object is null on a CREATE or UPDATE; the apiserver always sends the object'),
  CLIENT_CERT: spec('MG_CLIENT_CERT', 401, 'a client certificate signed by server.clientCaFile is required on /validate and /mutate'),
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

/** Why a serving certificate is refused, at start (meshguard exits with code 2) and on reload
 * (the certificate in service is kept and meshguard_certificate_reload_failing is 1). */
export const CERT_ERRORS = Object.freeze({
  CERT_UNREADABLE: Object.freeze({ code: 'MG_CERT_UNREADABLE', summary: 'the certificate or key file is missing or not PEM' }),
  CERT_KEY_MISMATCH: Object.freeze({ code: 'MG_CERT_KEY_MISMATCH', summary: 'the private key does not match the certificate' }),
  CERT_NOT_YET_VALID: Object.freeze({ code: 'MG_CERT_NOT_YET_VALID', summary: 'the certificate is not valid yet (notBefore is in the future)' }),
  CERT_EXPIRED: Object.freeze({ code: 'MG_CERT_EXPIRED', summary: 'the certificate has expired (notAfter is in the past)' }),
  CERT_NAMES: Object.freeze({ code: 'MG_CERT_NAMES', summary: 'the certificate\'s subject alternative names do not cover every configured name (server.certSans)' }),
});

export type CertErrorName = keyof typeof CERT_ERRORS;

/** A decode failure: a value, returned by the decoder, not thrown. */
export interface DecodeError {
  readonly name: ErrorName;
  readonly detail: string;
}

/** A refusal at the HTTP edge (src/webhook/guards.ts, body-reader.ts): handed to Fastify, which
 * passes it to the app's error handler, which answers errorBody(errorName, message). */
export class EdgeError extends Error {
  override name = 'EdgeError';
  readonly errorName: ErrorName;
  readonly statusCode: number;

  constructor(errorName: ErrorName, detail = '') {
    super(detail);
    this.errorName = errorName;
    this.statusCode = ERRORS[errorName].statusCode;
  }
}
