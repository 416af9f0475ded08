// The pure decision path for one request: evaluate, decide by mode, render. It returns a Decision
// value; the shell (the webhook, check, scan) decodes, calls this, writes the audit record and
// encodes the answer in its own format.
import fastJsonPatch from 'fast-json-patch';
import type { AdmissionRequest, KObject } from './request.ts';
import type { ClusterView } from './cluster-view.ts';
import type { Config, Mode } from '../config/types.ts';
import { decideRequest, namespaceMode, type DefaultModes } from './decide.ts';
import { ALLOW, allow, deny, patch as patched, type Decision } from './decision.ts';
import { evaluate, mutate } from './evaluate.ts';
import type { RuleSet } from './rule-set.ts';
import { subjectNamespace } from './match.ts';
import { applyExceptions, exceptionSubject, type Excepted } from './exceptions.ts';
import { auditAnnotations, denialMessage, exceptionAnnotations, exceptionWarnings, subjectOf, warningLines } from './render.ts';
import type { Result, RuleContext } from './types.ts';

export type Endpoint = 'validate' | 'mutate';
export type VerdictLabel = 'allowed' | 'denied' | 'warned' | 'patched';

export interface AuditRecord {
  readonly audit: true;
  readonly uid: string;
  readonly user: string;
  readonly operation: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly endpoint: Endpoint;
  readonly mode: Mode;
  readonly verdict: VerdictLabel;
  readonly dryRun: boolean;
  readonly rules: readonly string[];
  readonly findings: readonly { readonly rule: string; readonly status: string; readonly message: string }[];
  /** Findings a MeshguardException let through (absent when none). */
  readonly exceptions?: readonly { readonly rule: string; readonly exception: string; readonly expires: string; readonly message: string }[];
}

export interface ReviewOutcome {
  readonly decision: Decision;
  readonly verdict: VerdictLabel;
  /** Present when anything was found (denied, warned, or a mutation reported in audit mode). */
  readonly audit?: AuditRecord;
  readonly results: readonly Result[];
  /** The namespace's mode the request was judged in (validate only; absent when nothing was evaluated). */
  readonly mode?: Mode;
  /** Findings that denied (validate only). */
  readonly denials: readonly Result[];
  /** Findings reported but allowed (audit mode, errors with onError allow, audit-mode mutations). */
  readonly warnings: readonly Result[];
}

const NONE: readonly Result[] = Object.freeze([]);

/** Rule.defaultMode by id, from the rule set. */
export function defaultModes(rules: RuleSet): DefaultModes {
  return (id) => rules.defaultMode(id);
}

function displayName(req: AdmissionRequest): string {
  const meta = req.object?.metadata ?? req.oldObject?.metadata;
  if (req.name !== '') return req.name;
  if (typeof meta?.name === 'string' && meta.name !== '') return meta.name;
  if (typeof meta?.generateName === 'string') return `${meta.generateName}*`;
  return '';
}

function auditRecord(req: AdmissionRequest, endpoint: Endpoint, mode: Mode, verdict: VerdictLabel, findings: readonly Result[], messages: readonly string[]): AuditRecord {
  return {
    audit: true,
    uid: req.uid,
    user: req.userInfo?.username ?? '',
    operation: req.operation,
    kind: req.kind.kind,
    namespace: subjectNamespace(req),
    name: displayName(req),
    endpoint,
    mode,
    verdict,
    dryRun: req.dryRun,
    rules: [...new Set(findings.map((f) => f.ruleId))],
    findings: findings.map((f, i) => ({ rule: f.ruleId, status: f.status, message: messages[i] ?? '' })),
  };
}

function findingText(r: Result): string {
  return r.status === 'error' ? `error: ${r.reason ?? ''}` : (r.violation?.message ?? '');
}

function withExceptions(record: AuditRecord, excepted: readonly Excepted[]): AuditRecord {
  if (excepted.length === 0) return record;
  return { ...record, exceptions: excepted.map((x) => ({ rule: x.result.ruleId, exception: `${x.exception.namespace}/${x.exception.name}`, expires: x.exception.expires, message: findingText(x.result) })) };
}

export function reviewValidate(req: AdmissionRequest, config: Config, cluster: ClusterView, rules: RuleSet): ReviewOutcome {
  if (req.object === null) return { decision: ALLOW, verdict: 'allowed', results: NONE, denials: NONE, warnings: NONE };
  const ctx: RuleContext = { request: req, config, cluster, memo: rules.memo };
  const evaluated = evaluate(rules, ctx);
  // Exceptions: after evaluation, before decide (src/core/exceptions.ts).
  const exceptions = cluster.exceptions?.(subjectNamespace(req)) ?? [];
  const { results, excepted } = exceptions.length === 0 ? { results: evaluated, excepted: [] as Excepted[] } : applyExceptions(evaluated, exceptionSubject(req), exceptions, Date.now());
  const verdict = decideRequest(results, config, req, cluster, defaultModes(rules));
  const mode = verdict.mode;
  // Nothing to report: the plain answer, without building empty warnings and annotations.
  if (verdict.allowed && verdict.warnings.length === 0 && excepted.length === 0) return { decision: ALLOW, verdict: 'allowed', results: evaluated, mode, denials: NONE, warnings: NONE };
  const extras = {
    warnings: [...warningLines(verdict.warnings, rules.lookup), ...exceptionWarnings(excepted)],
    auditAnnotations: { ...auditAnnotations(verdict.warnings, ''), ...exceptionAnnotations(excepted) },
  };
  if (!verdict.allowed) {
    // The apiserver sets request.namespace to the name for a Namespace: "Namespace x", not "x/x".
    const isNamespace = req.kind.group === '' && req.kind.kind === 'Namespace';
    const message = denialMessage(subjectOf(req.kind.kind, isNamespace ? '' : req.namespace, displayName(req)), verdict.denials, rules.lookup);
    const all = [...verdict.denials, ...verdict.warnings];
    return {
      decision: deny(message, extras),
      verdict: 'denied',
      audit: withExceptions(auditRecord(req, 'validate', mode, 'denied', all, all.map(findingText)), excepted),
      results: evaluated,
      mode,
      denials: verdict.denials,
      warnings: verdict.warnings,
    };
  }
  return {
    decision: allow(extras),
    verdict: 'warned',
    audit: withExceptions(auditRecord(req, 'validate', mode, 'warned', verdict.warnings, verdict.warnings.map(findingText)), excepted),
    results: evaluated,
    mode,
    denials: NONE,
    warnings: verdict.warnings,
  };
}

/**
 * Mutation is its own setting, not the mode (docs/adr/0002): with `mutation: apply` (default) the
 * mutating rules edit one draft and the patch is the diff of the draft against the object as
 * received, in both modes; with `mutation: report` they run on a throwaway copy and are only
 * reported. A mutating rule that throws is reported as a warning and applies nothing: validation
 * still judges the object.
 */
/** The injection label is the first change a namespace receives: label operations go first. */
function labelsFirst(ops: fastJsonPatch.Operation[]): fastJsonPatch.Operation[] {
  const isLabel = (op: fastJsonPatch.Operation): boolean => op.path.startsWith('/metadata/labels');
  return [...ops.filter(isLabel), ...ops.filter((op) => !isLabel(op))];
}

function metadataOnly(o: KObject): Record<string, unknown> {
  const m = (o as Record<string, unknown>)['metadata'];
  return m === undefined ? {} : { metadata: m };
}

export function reviewMutate(req: AdmissionRequest, config: Config, cluster: ClusterView, rules: RuleSet): ReviewOutcome {
  if (req.object === null) return { decision: ALLOW, verdict: 'allowed', results: NONE, denials: NONE, warnings: NONE };
  const ctx: RuleContext = { request: req, config, cluster, memo: rules.memo };
  // Mutation does not depend on the mode; the audit record says which mode the namespace is in.
  const mode = namespaceMode(config, req, cluster);
  const apply = config.mutation === 'apply';
  const applied = mutate(rules, apply ? rules.mutating : [], ctx, req.object);
  const reported = apply ? undefined : mutate(rules, rules.mutating, ctx, req.object);
  // Mutating rules edit metadata only: the diff of metadata alone is the whole patch.
  const patch = applied.changes.length > 0 ? labelsFirst(fastJsonPatch.compare(metadataOnly(req.object), metadataOnly(applied.draft))) : [];

  const notes: { result: Result; text: string }[] = [];
  for (const c of reported?.changes ?? []) {
    notes.push({ result: { ruleId: c.ruleId, status: 'fail', violation: { message: `would add ${c.description} (mutation: report; not applied)` } }, text: `would add ${c.description}` });
  }
  for (const r of [...applied.results, ...(reported?.results ?? [])]) {
    if (r.status === 'error') notes.push({ result: r, text: findingText(r) });
  }
  const results = [...applied.results, ...(reported?.results ?? [])];
  const findings = notes.map((n) => n.result);
  const extras = { warnings: warningLines(findings, rules.lookup), auditAnnotations: auditAnnotations(findings, '') };
  const verdict: VerdictLabel = patch.length > 0 ? 'patched' : findings.length > 0 ? 'warned' : 'allowed';
  const outcome: ReviewOutcome = { decision: patched(patch, extras), verdict, results, denials: NONE, warnings: findings };
  if (findings.length === 0) return outcome;
  return { ...outcome, audit: auditRecord(req, 'mutate', mode, verdict, findings, notes.map((n) => n.text)) };
}

export function reviewRequest(endpoint: Endpoint, req: AdmissionRequest, config: Config, cluster: ClusterView, rules: RuleSet): ReviewOutcome {
  return endpoint === 'validate' ? reviewValidate(req, config, cluster, rules) : reviewMutate(req, config, cluster, rules);
}
