// Decode an AdmissionReview once, at the boundary, into the internal model. Returns a value
// (ok or a coded error); never throws on any input.
import type { DecodeError } from '../errors.ts';
import { isRecord } from '../core/objects.ts';
import { kindResource } from '../core/resources.ts';
import {
  ADMISSION_API_VERSION,
  OPERATIONS,
  type AdmissionRequest,
  type GroupVersionKind,
  type GroupVersionResource,
  type KObject,
  type Operation,
  type UserInfo,
} from '../core/request.ts';

export type DecodeResult =
  | { readonly ok: true; readonly request: AdmissionRequest }
  | { readonly ok: false; readonly error: DecodeError };

function fail(name: DecodeError['name'], detail: string): DecodeResult {
  return { ok: false, error: { name, detail } };
}

function optionalString(v: unknown): string | undefined | null {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : null;
}

function decodeGVK(v: unknown): GroupVersionKind | undefined {
  if (!isRecord(v)) return undefined;
  const group = optionalString(v['group']) ?? '';
  const { version, kind } = v;
  if (group === null || typeof version !== 'string' || typeof kind !== 'string' || kind === '') return undefined;
  return { group, version, kind };
}

function decodeGVR(v: unknown, kind: GroupVersionKind): GroupVersionResource | undefined {
  if (v === undefined || v === null) {
    // The apiserver always sends the resource; a hand-written review without one gets the plural
    // the kind is served as (empty for a kind meshguard does not know), never a guessed one.
    return { group: kind.group, version: kind.version, resource: kindResource(kind.group, kind.kind)?.resource ?? '' };
  }
  if (!isRecord(v)) return undefined;
  const group = optionalString(v['group']) ?? '';
  const { version, resource } = v;
  if (group === null || typeof version !== 'string' || typeof resource !== 'string') return undefined;
  return { group, version, resource };
}

function decodeUserInfo(v: unknown): UserInfo | null | undefined {
  if (v === undefined || v === null) return null;
  if (!isRecord(v)) return undefined;
  const username = optionalString(v['username']) ?? '';
  const groups = v['groups'] ?? [];
  if (username === null || !Array.isArray(groups)) return undefined;
  for (let i = 0; i < groups.length; i++) if (typeof groups[i] !== 'string') return undefined;
  return { username, groups: groups as string[] };
}

/** `object`/`oldObject`: an object, or null/absent. managedFields are dropped: no rule reads them
 * and they are the largest, costliest part of big objects. */
function decodeObject(v: unknown): KObject | null | undefined {
  if (v === undefined || v === null) return null;
  if (!isRecord(v)) return undefined;
  const meta = v['metadata'];
  if (isRecord(meta) && 'managedFields' in meta) delete meta['managedFields'];
  return v as KObject;
}

const OPERATION_SET = new Set<string>(OPERATIONS);

export function decodeReview(body: unknown): DecodeResult {
  if (!isRecord(body)) return fail('REVIEW_NOT_OBJECT', `got ${Array.isArray(body) ? 'an array' : typeof body}`);
  if (body['apiVersion'] !== ADMISSION_API_VERSION) {
    return fail('REVIEW_API_VERSION', `got apiVersion ${JSON.stringify(body['apiVersion'] ?? null)}`);
  }
  if (body['kind'] !== 'AdmissionReview') return fail('REVIEW_KIND', `got kind ${JSON.stringify(body['kind'] ?? null)}`);
  const r = body['request'];
  if (r === undefined || r === null) return fail('REQUEST_MISSING', 'request is absent');
  if (!isRecord(r)) return fail('REQUEST_MISSING', 'request is not an object');
  const uid = r['uid'];
  if (typeof uid !== 'string' || uid === '') return fail('REQUEST_UID', 'request.uid is absent or empty');

  const kind = decodeGVK(r['kind']);
  if (kind === undefined) return fail('REQUEST_INVALID', 'request.kind must be {group, version, kind}');
  const resource = decodeGVR(r['resource'], kind);
  if (resource === undefined) return fail('REQUEST_INVALID', 'request.resource must be {group, version, resource}');
  const operation = r['operation'];
  if (typeof operation !== 'string' || !OPERATION_SET.has(operation)) {
    return fail('REQUEST_INVALID', `request.operation must be one of ${OPERATIONS.join(', ')}`);
  }
  const subResource = optionalString(r['subResource']);
  const namespace = optionalString(r['namespace']);
  const name = optionalString(r['name']);
  if (subResource === null || namespace === null || name === null) {
    return fail('REQUEST_INVALID', 'request.subResource, namespace and name must be strings when present');
  }
  const object = decodeObject(r['object']);
  const oldObject = decodeObject(r['oldObject']);
  if (object === undefined || oldObject === undefined) {
    return fail('REQUEST_INVALID', 'request.object and request.oldObject must be objects or null');
  }
  // The apiserver always sends the object on CREATE and UPDATE; without it no rule can judge the
  // request, and allowing it unjudged would let a forged or broken review through in enforce mode.
  if (object === null && (operation === 'CREATE' || operation === 'UPDATE')) {
    return fail('REQUEST_OBJECT_MISSING', `request.object is null on ${operation}`);
  }
  const userInfo = decodeUserInfo(r['userInfo']);
  if (userInfo === undefined) return fail('REQUEST_INVALID', 'request.userInfo must be {username, groups[]}');
  const dryRun = r['dryRun'];
  if (dryRun !== undefined && dryRun !== null && typeof dryRun !== 'boolean') {
    return fail('REQUEST_INVALID', 'request.dryRun must be a boolean');
  }
  return {
    ok: true,
    request: {
      uid,
      kind,
      resource,
      subResource: subResource ?? '',
      operation: operation as Operation,
      namespace: namespace ?? '',
      name: name ?? '',
      object,
      oldObject,
      userInfo,
      dryRun: dryRun === true,
    },
  };
}
