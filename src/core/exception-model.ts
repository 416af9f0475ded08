// MeshguardException (meshguard.dev/v1alpha1, namespaced): an admin-approved, time-bound exception
// for named or selected objects of some kinds in one namespace, from some rules, optionally only
// for some offending values. Decoded once from the stored object into a small frozen model; a
// malformed object is reported with a reason and never applies.
export const EXCEPTION_GROUP = 'meshguard.dev';
export const EXCEPTION_VERSION = 'v1alpha1';
export const EXCEPTION_KIND = 'MeshguardException';
export const EXCEPTION_PLURAL = 'meshguardexceptions';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelSelectorRequirement[];
}

export interface ExceptedRule {
  readonly id: string;
  /** Only findings whose offending value is one of these are excepted; undefined: any value. */
  readonly values?: readonly string[];
}

export interface MeshguardException {
  readonly namespace: string;
  readonly name: string;
  /** Kinds as `Kind` (core group) or `group/Kind`. */
  readonly kinds: readonly { readonly group: string; readonly kind: string }[];
  readonly names: readonly string[];
  readonly selector?: LabelSelector;
  readonly rules: readonly ExceptedRule[];
  readonly reason: string;
  /** RFC 3339, as written. */
  readonly expires: string;
  readonly expiresMs: number;
}

export type Decoded = { readonly exception: MeshguardException } | { readonly error: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined);

function decodeSelector(v: unknown): LabelSelector | string {
  if (!isObj(v)) return 'spec.selector must be a label selector';
  const ml = v['matchLabels'] ?? {};
  if (!isObj(ml) || !Object.values(ml).every((x) => typeof x === 'string')) return 'spec.selector.matchLabels must map strings to strings';
  const exprs: LabelSelectorRequirement[] = [];
  const raw = v['matchExpressions'] ?? [];
  if (!Array.isArray(raw)) return 'spec.selector.matchExpressions must be a list';
  for (const e of raw) {
    if (!isObj(e) || typeof e['key'] !== 'string') return 'spec.selector.matchExpressions: each needs a key';
    const op = e['operator'];
    if (op !== 'In' && op !== 'NotIn' && op !== 'Exists' && op !== 'DoesNotExist') return `spec.selector.matchExpressions: unknown operator ${JSON.stringify(op)}`;
    const values = strings(e['values'] ?? []);
    if (values === undefined) return 'spec.selector.matchExpressions: values must be strings';
    exprs.push({ key: e['key'], operator: op, values });
  }
  if (Object.keys(ml).length === 0 && exprs.length === 0) return 'spec.selector selects everything: name the labels';
  return { matchLabels: ml as Record<string, string>, matchExpressions: exprs };
}

/** Decode a stored MeshguardException; `ruleIds`, when given, are the registered rules (the CRD's
 * schema lists them too, so the apiserver refuses an unknown id before meshguard sees it). */
export function decodeException(obj: unknown, ruleIds?: readonly string[]): Decoded {
  if (!isObj(obj) || !isObj(obj['metadata']) || !isObj(obj['spec'])) return { error: 'not a MeshguardException (metadata and spec required)' };
  const meta = obj['metadata'];
  const spec = obj['spec'];
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : '';
  const name = typeof meta['name'] === 'string' ? meta['name'] : '';
  const fail = (error: string): Decoded => ({ error: `MeshguardException ${namespace}/${name}: ${error}` });
  const kinds = strings(spec['kinds']);
  if (kinds === undefined || kinds.length === 0) return fail('spec.kinds must list at least one kind (Kind or group/Kind)');
  const names = strings(spec['names'] ?? []);
  if (names === undefined) return fail('spec.names must be a list of object names');
  let selector: LabelSelector | undefined;
  if (spec['selector'] !== undefined) {
    const s = decodeSelector(spec['selector']);
    if (typeof s === 'string') return fail(s);
    selector = s;
  }
  if (names.length === 0 && selector === undefined) return fail('spec.names or spec.selector must say which objects it covers');
  const rawRules = spec['rules'];
  if (!Array.isArray(rawRules) || rawRules.length === 0) return fail('spec.rules must list at least one rule');
  const rules: ExceptedRule[] = [];
  for (const r of rawRules) {
    if (!isObj(r) || typeof r['id'] !== 'string') return fail('spec.rules: each needs an id');
    if (ruleIds !== undefined && !ruleIds.includes(r['id'])) return fail(`spec.rules: no rule ${JSON.stringify(r['id'])} (rules: ${ruleIds.join(', ')})`);
    if (r['values'] === undefined) rules.push({ id: r['id'] });
    else {
      const values = strings(r['values']);
      if (values === undefined || values.length === 0) return fail(`spec.rules ${r['id']}: values must be a non-empty list of strings`);
      rules.push({ id: r['id'], values });
    }
  }
  const reason = spec['reason'];
  if (typeof reason !== 'string' || reason.trim() === '') return fail('spec.reason must say why');
  const expires = spec['expires'];
  const expiresMs = typeof expires === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(expires) ? Date.parse(expires) : NaN;
  if (typeof expires !== 'string' || Number.isNaN(expiresMs)) return fail('spec.expires must be an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)');
  const exception: MeshguardException = {
    namespace,
    name,
    kinds: kinds.map((k) => {
      const i = k.lastIndexOf('/');
      return i < 0 ? { group: '', kind: k } : { group: k.slice(0, i), kind: k.slice(i + 1) };
    }),
    names,
    ...(selector !== undefined ? { selector } : {}),
    rules,
    reason,
    expires,
    expiresMs,
  };
  return { exception };
}

export function selectorMatches(s: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(s.matchLabels)) if (labels[k] !== v) return false;
  for (const e of s.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    const v = labels[e.key];
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
    if (e.operator === 'In' && (v === undefined || !e.values.includes(v))) return false;
    if (e.operator === 'NotIn' && v !== undefined && e.values.includes(v)) return false;
  }
  return true;
}

/** The object an admission request is about, as exceptions match it. */
export interface ExceptionSubject {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Whether the exception covers this object (kind, namespace, name or selector); expiry aside. */
export function covers(e: MeshguardException, s: ExceptionSubject): boolean {
  if (e.namespace !== s.namespace) return false;
  if (!e.kinds.some((k) => k.kind === s.kind && k.group === s.group)) return false;
  return (s.name !== '' && e.names.includes(s.name)) || (e.selector !== undefined && selectorMatches(e.selector, s.labels));
}

export function isExpired(e: MeshguardException, nowMs: number): boolean {
  return e.expiresMs <= nowMs;
}
