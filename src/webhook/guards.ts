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
// Guards 1-3 read only the headers, in an onRequest hook of the two admission routes (after the
// global onRequest hooks: drain, deadline, client certificate, load shedding; before Fastify looks
// at the body, so they run in this order whatever Fastify would check first). The body is read and
// decoded in the body parser, the one place Fastify hands it over. The route receives the decoded
// AdmissionRequest as req.body.
//
// Per request this costs one hook call and a cached parser lookup: a route-level hook adds no
// preParsing stage (Fastify binds a function per request for one), and 'application/json' has
// its own parser entry, which Fastify caches by header value (a catch-all alone makes it parse the
// Content-Type header of every request).
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
  if (contentType === 'application/json') return true;
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

/** Methods whose requests Fastify hands to a body parser. */
const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'QUERY', 'SEARCH', 'PROPFIND', 'PROPPATCH', 'LOCK', 'REPORT', 'MKCALENDAR']);

function methodsOf(method: string | readonly string[]): readonly string[] {
  return typeof method === 'string' ? [method] : method;
}

/** Install the guards: an onRequest hook on the admission routes (1-3) and the only body parser
 * (the read, 1 and 4). Registered before the routes. */
export function registerEdgeGuards(app: FastifyInstance, options: GuardOptions): void {
  if (!(options.bodyLimitBytes >= 1)) throw new Error(`bodyLimitBytes must be at least 1, got ${options.bodyLimitBytes}`);
  for (const url of ADMISSION_PATHS) {
    if (app.hasRoute({ method: 'POST', url })) throw new Error(`POST ${url} was registered before the edge guards and would run without them`);
  }
  const guard = function meshguardEdgeGuards(req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void {
    const refused = headerGuards(req.headers, options.bodyLimitBytes);
    if (refused !== undefined) done(refused);
    else done();
  };
  app.addHook('onRoute', function meshguardGuardedRoutes(route) {
    const methods = methodsOf(route.method);
    const admission = ADMISSION_PATHS.has(route.url) && methods.length === 1 && methods[0] === 'POST';
    if (admission) {
      const own = route.onRequest;
      route.onRequest = own === undefined ? [guard] : [...(Array.isArray(own) ? own : [own]), guard];
      return;
    }
    // The body parser below reads admission reviews: a route that takes a body would be handed one.
    if (methods.some((m) => BODY_METHODS.has(m.toUpperCase()))) throw new Error(`${methods.join(',')} ${route.url}: only POST /validate and POST /mutate take a body`);
  });
  // Every media type reaches these parsers (the content type was judged by guard 3): Fastify's own
  // parsers (JSON, and text/plain) are removed.
  app.removeAllContentTypeParsers();
  const parse = function meshguardBody(req: FastifyRequest, payload: NodeJS.ReadableStream, done: (err: FastifyError | null, body?: unknown) => void): void {
    // Only the admission routes read a body (no other route takes one, see onRoute): anything else
    // POSTed is a 404, answered unread.
    if (req.is404) {
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
  };
  app.addContentTypeParser('application/json', parse);
  app.addContentTypeParser('*', parse);
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
