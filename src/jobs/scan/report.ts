// The report model, pure: a finding (one rule's verdict on one object, the same value for
// `meshguard check` and the cluster scan), how findings are ordered, grouped and counted, and
// the scan report with the metrics derived from it.
import type { KObject } from '../../core/request.ts';
import type { Result } from '../../core/types.ts';
import type { RuleLookup } from '../../core/render.ts';

export interface Finding {
  readonly kind: string;
  readonly apiVersion: string;
  /** The scope the finding is reported under: for a scan the object's namespace, or a Namespace's
   * own name ('' for other cluster-scoped objects); check passes its own. */
  readonly namespace: string;
  readonly name: string;
  /** metadata.uid ('' when the object has none). */
  readonly uid: string;
  readonly rule: string;
  /** deny: admission would refuse it now; warn: admission would let it through with a warning (audit mode). */
  readonly action: 'deny' | 'warn';
  /** fail: the rule found a violation; error: the rule could not be evaluated. */
  readonly status: 'fail' | 'error' | 'pass' | 'skip';
  readonly message: string;
  readonly path?: string;
  readonly value?: string;
  readonly fix: string;
}

export function metaString(object: KObject, key: 'name' | 'namespace'): string {
  const v = object.metadata?.[key];
  return typeof v === 'string' ? v : '';
}

/** The namespace an object is judged in: its own, or a Namespace's own name. */
export function scopeOf(object: KObject): string {
  return object.kind === 'Namespace' ? metaString(object, 'name') : metaString(object, 'namespace');
}

/** A rule's result on an object as a finding, reported under `namespace`. */
export function findingOf(object: KObject, namespace: string, r: Result, action: 'deny' | 'warn', lookup: RuleLookup): Finding {
  const v = r.violation;
  const base = {
    kind: typeof object.kind === 'string' ? object.kind : '',
    apiVersion: typeof object.apiVersion === 'string' ? object.apiVersion : '',
    namespace,
    name: metaString(object, 'name'),
    uid: typeof object.metadata?.uid === 'string' ? object.metadata.uid : '',
    rule: r.ruleId,
    action,
    status: r.status,
    message: r.status === 'error' ? `rule could not be evaluated (${r.reason ?? ''})` : (v?.message ?? ''),
    fix: v?.fix ?? lookup(r.ruleId)?.fix ?? '',
  };
  return { ...base, ...(v?.path !== undefined ? { path: v.path } : {}), ...(v?.value !== undefined ? { value: v.value } : {}) };
}

/** ` (at PATH: "VALUE")`, or '' when the finding names no field. */
export function whereText(f: Pick<Finding, 'path' | 'value'>): string {
  return f.path === undefined ? '' : ` (at ${f.path}${f.value === undefined ? '' : `: ${JSON.stringify(f.value)}`})`;
}

export function compareFindings(a: Finding, b: Finding): number {
  return a.namespace.localeCompare(b.namespace) || a.rule.localeCompare(b.rule) || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name) || a.message.localeCompare(b.message);
}

export interface RuleGroup {
  readonly rule: string;
  readonly findings: readonly Finding[];
}

export interface NamespaceGroup {
  /** '' for cluster-scoped objects that are not Namespaces. */
  readonly namespace: string;
  readonly rules: readonly RuleGroup[];
}

/** Findings grouped by namespace, then rule, both sorted. */
export function groupFindings(findings: readonly Finding[]): NamespaceGroup[] {
  const byNs = new Map<string, Map<string, Finding[]>>();
  for (const f of [...findings].sort(compareFindings)) {
    const rules = byNs.get(f.namespace) ?? new Map<string, Finding[]>();
    rules.set(f.rule, [...(rules.get(f.rule) ?? []), f]);
    byNs.set(f.namespace, rules);
  }
  return [...byNs.entries()].map(([namespace, rules]) => ({ namespace, rules: [...rules.entries()].map(([rule, fs]) => ({ rule, findings: fs })) }));
}

export interface ViolationCount {
  readonly rule: string;
  readonly namespace: string;
  readonly count: number;
}

/** Counts by rule and namespace (the meshguard_scan_violations gauge). */
export function violationCounts(findings: readonly Finding[]): ViolationCount[] {
  return groupFindings(findings).flatMap((g) => g.rules.map((r) => ({ rule: r.rule, namespace: g.namespace, count: r.findings.length })));
}

// ---------------------------------------------------------------------------- the scan report ---

export interface KindReport {
  /** e.g. "peerauthentications.security.istio.io" */
  readonly resource: string;
  readonly version?: string;
  readonly objects: number;
  /** Why this kind could not be read (missing CRD, forbidden, ...). */
  readonly error?: string;
}

export interface ScanScope {
  readonly namespace: string;
  readonly objects: number;
  readonly passed: number;
}

export interface ScanReport {
  readonly startedAt: string;
  readonly completedAt: string;
  readonly objects: number;
  readonly kinds: readonly KindReport[];
  /** Sorted by namespace, rule, kind, name. */
  readonly findings: readonly Finding[];
  /** Problems that did not stop the scan but may make it less exact (e.g. revision discovery). */
  readonly notes: readonly string[];
  /** Per report scope (a namespace; '' for cluster-scoped objects, Namespaces included): the
   * objects judged and the (object, rule) pairs that passed. Every scope with objects is listed. */
  readonly scopes: readonly ScanScope[];
}

export interface ScanMetrics {
  readonly counts: readonly ViolationCount[];
  /** Unix seconds of the completed scan (meshguard_scan_last_completed_timestamp_seconds). */
  readonly completedAtSeconds: number;
  readonly objects: number;
  /** Kinds that could not be read. */
  readonly kindErrors: number;
}

export function scanMetrics(report: ScanReport): ScanMetrics {
  return {
    counts: violationCounts(report.findings),
    completedAtSeconds: Date.parse(report.completedAt) / 1000,
    objects: report.objects,
    kindErrors: report.kinds.filter((k) => k.error !== undefined).length,
  };
}
