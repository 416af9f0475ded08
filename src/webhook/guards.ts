// The edge guards of POST /validate and POST /mutate, in one place and in one fixed order (as
// controller-runtime's pkg/webhook/admission/http.go). The first that fails answers; each answers
// with its coded error (src/errors.ts):
//  1. body present: a request with neither Content-Length (or Content-Length: 0) nor
//     Transfer-Encoding, or whose body turns out empty, is 400 MG_BODY_MISSING;
//  2. size cap: a declared Content-Length over server.bodyLimitBytes is 413 MG_BODY_TOO_LARGE
//     before a byte is read; a body without one (chunked) is counted as it arrives and cut at the
//     cap (body-reader.ts), never buffered past it;
//  3. content type: application/json (any parameters) only, else 415 MG_CONTENT_TYPE; a body of
//     another type is never read;
//  4. decode: JSON (400 MG_BODY_NOT_JSON) without __proto__ or constructor.prototype keys
//     (json-body.ts, 400 MG_BODY_POISONED), not null (MG_BODY_MISSING), and an
//     admission.k8s.io/v1 AdmissionReview (decode.ts, 400 MG_REVIEW_* and MG_REQUEST_*).
// Guards 1-3 read only the headers (a preParsing hook, so they run in this order whatever
// Fastify would check first); the body is read and decoded in the body parser, the one place
// Fastify hands it over. The route receives the decoded AdmissionRequest as req.body.
//
// Why the cap is 6 MiB by default: an UPDATE review carries two objects (object and oldObject) of
// up to about 1.5 MiB each (the apiserver caps a request at 3 MiB), and the apiserver's JSON
// encoding (escapes, the review envelope, userInfo) can roughly double that; the number lives with
// its schema entry, server.bodyLimitBytes (src/config/schema.ts).
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { EdgeError, type ErrorName } from '../errors.ts';
import { readBody } from './body-reader.ts';
import { decodeReview } from './decode.ts';
import { parseJsonBody, PoisonedBodyError } from './json-body.ts';
import type { LoadGauge } from './load-gauge.ts';

/** The paths the guards protect (the admission endpoints); other routes take no body. */
export const ADMISSION_PATHS: ReadonlySet<string> = new Set(['/validate', '/mutate']);

export interface GuardOptions {
  /** server.bodyLimitBytes. */
  readonly bodyLimitBytes: number;
  /** The load gauge the body's bytes are counted into as they arrive. */
  readonly gauge: LoadGauge;
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const semicolon = contentType.indexOf(';');
  const media = semicolon < 0 ? contentType : contentType.slice(0, semicolon);
  return media.trim().toLowerCase() === 'application/json';
}

/** Guards 1-3, from the headers alone: the refusal, or undefined to read the body. */
export function headerGuards(headers: IncomingHttpHeaders, bodyLimitBytes: number): EdgeError | undefined {
  const length = headers['content-length'];
  if (headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return new EdgeError('BODY_MISSING');
  if (Number(length) > bodyLimitBytes) return new EdgeError('BODY_TOO_LARGE', 'Request body is too large');
  if (!isJson(headers['content-type'])) return new EdgeError('CONTENT_TYPE', 'Unsupported Media Type');
  return undefined;
}

/** Guard 1 (an empty body) and guard 4, on the body as received. */
export function decodeBody(text: string | undefined): unknown {
  if (text === '' || text === undefined) throw new EdgeError('BODY_MISSING');
  let value: unknown;
  try {
    value = parseJsonBody(text);
  } catch (err) {
    throw new EdgeError(err instanceof PoisonedBodyError ? 'BODY_POISONED' : 'BODY_NOT_JSON', (err as Error).message);
  }
  if (value === null) throw new EdgeError('BODY_MISSING');
  const decoded = decodeReview(value);
  if (!decoded.ok) throw new EdgeError(decoded.error.name, decoded.error.detail);
  return decoded.request;
}

function isAdmission(req: FastifyRequest): boolean {
  return req.method === 'POST' && ADMISSION_PATHS.has(req.routeOptions.url ?? '');
}

/** Install the guards: a preParsing hook (1-3) and the only body parser (the read, 1 and 4). */
export function registerEdgeGuards(app: FastifyInstance, options: GuardOptions): void {
  if (!(options.bodyLimitBytes >= 1)) throw new Error(`bodyLimitBytes must be at least 1, got ${options.bodyLimitBytes}`);
  app.addHook('preParsing', function meshguardEdgeGuards(req: FastifyRequest, _reply: FastifyReply, payload, done) {
    const refused = isAdmission(req) ? headerGuards(req.headers, options.bodyLimitBytes) : undefined;
    if (refused !== undefined) done(refused);
    else done(null, payload);
  });
  // Every media type reaches this parser (the content type was judged by guard 3): Fastify's own
  // parsers (JSON, and text/plain) are removed.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', function meshguardBody(req, payload, done) {
    // Only the admission routes read a body; anything else POSTed is a 404, answered unread.
    if (!isAdmission(req)) {
      done(null, undefined);
      return;
    }
    readBody(req.raw, payload, options.gauge, options.bodyLimitBytes, (err, text) => {
      if (err !== null) {
        done(err as FastifyError, undefined);
        return;
      }
      try {
        done(null, decodeBody(text));
      } catch (refused) {
        done(refused as FastifyError, undefined);
      }
    });
  });
}

/** The coded error an error handed to Fastify answers with: the edge guards' own, or by status
 * for Fastify's (a Content-Type header it cannot parse is its 415, after guard 3). */
export function errorNameOf(err: FastifyError): ErrorName {
  if (err instanceof EdgeError) return err.errorName;
  if (err instanceof SyntaxError || err.statusCode === 400) return 'BODY_NOT_JSON';
  if (err.statusCode === 413) return 'BODY_TOO_LARGE';
  if (err.statusCode === 415) return 'CONTENT_TYPE';
  if (err.statusCode === 408) return 'TIMEOUT';
  return 'INTERNAL';
}
