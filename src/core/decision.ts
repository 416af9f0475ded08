// What the core answers for one request, free of any wire format: allowed or denied, the
// message, the JSON Patch operations, the warnings and the audit annotations. The webhook edge
// encodes it as an AdmissionReview (src/webhook/encode.ts); check and scan read it as it is.
import type fastJsonPatch from 'fast-json-patch';

export type PatchOperation = fastJsonPatch.Operation;

export interface Decision {
  readonly allowed: boolean;
  /** Denied: the one message kubectl prints. */
  readonly message?: string;
  /** Allowed with changes: the JSON Patch (RFC 6902) over the object as received. */
  readonly patch?: readonly PatchOperation[];
  /** kubectl warnings, each `policy <id>: ...`. */
  readonly warnings: readonly string[];
  /** Audit annotations for the apiserver's audit log (keys without the webhook prefix). */
  readonly auditAnnotations: Readonly<Record<string, string>>;
}

export interface DecisionExtras {
  readonly warnings?: readonly string[];
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

const NO_WARNINGS: readonly string[] = Object.freeze([]);
const NO_ANNOTATIONS: Readonly<Record<string, string>> = Object.freeze({});

/** The plain allow, shared: nothing to say about the request. */
export const ALLOW: Decision = Object.freeze({ allowed: true, warnings: NO_WARNINGS, auditAnnotations: NO_ANNOTATIONS });

export function allow(extras?: DecisionExtras): Decision {
  if (extras === undefined) return ALLOW;
  return { allowed: true, warnings: extras.warnings ?? NO_WARNINGS, auditAnnotations: extras.auditAnnotations ?? NO_ANNOTATIONS };
}

export function deny(message: string, extras?: DecisionExtras): Decision {
  return { allowed: false, message, warnings: extras?.warnings ?? NO_WARNINGS, auditAnnotations: extras?.auditAnnotations ?? NO_ANNOTATIONS };
}

/** Allowed, with these changes (none: a plain allow with the extras). */
export function patch(operations: readonly PatchOperation[], extras?: DecisionExtras): Decision {
  if (operations.length === 0) return allow(extras);
  return { allowed: true, patch: operations, warnings: extras?.warnings ?? NO_WARNINGS, auditAnnotations: extras?.auditAnnotations ?? NO_ANNOTATIONS };
}
