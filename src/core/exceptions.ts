// Exceptions are applied after evaluation and before decide: a pure function over the results and
// the MeshguardExceptions of the request's namespace. A failed finding is excepted when an
// unexpired exception covers the object, lists the rule and (when it names values) the finding's
// offending value. Rules never see exceptions; errors are never excepted (a rule that could not
// be evaluated has no value to compare).
import type { AdmissionRequest } from './request.ts';
import { covers, isExpired, type ExceptionSubject, type MeshguardException } from './exception-model.ts';
import { subjectNamespace } from './match.ts';
import type { Result } from './types.ts';

export interface Excepted {
  readonly result: Result;
  readonly exception: MeshguardException;
}

export interface ExceptionOutcome {
  /** The results decide sees: everything but the excepted failures. */
  readonly results: readonly Result[];
  readonly excepted: readonly Excepted[];
}

export function exceptionSubject(req: AdmissionRequest): ExceptionSubject {
  const meta = req.object?.metadata ?? req.oldObject?.metadata;
  const labels = meta?.labels;
  return {
    group: req.kind.group,
    kind: req.kind.kind,
    namespace: subjectNamespace(req),
    name: req.name !== '' ? req.name : typeof meta?.name === 'string' ? meta.name : '',
    labels: typeof labels === 'object' && labels !== null ? (labels as Record<string, string>) : {},
  };
}

function excepting(r: Result, applicable: readonly MeshguardException[]): MeshguardException | undefined {
  if (r.status !== 'fail') return undefined;
  return applicable.find((e) =>
    e.rules.some((x) => x.id === r.ruleId && (x.values === undefined || (r.violation?.value !== undefined && x.values.includes(r.violation.value)))),
  );
}

export function applyExceptions(results: readonly Result[], subject: ExceptionSubject, exceptions: readonly MeshguardException[], nowMs: number): ExceptionOutcome {
  const applicable = exceptions.filter((e) => !isExpired(e, nowMs) && covers(e, subject));
  if (applicable.length === 0) return { results, excepted: [] };
  const kept: Result[] = [];
  const excepted: Excepted[] = [];
  for (const r of results) {
    const e = excepting(r, applicable);
    if (e === undefined) kept.push(r);
    else excepted.push({ result: r, exception: e });
  }
  return { results: kept, excepted };
}
