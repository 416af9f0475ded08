// Render: verdicts into the words users read (denial message, kubectl warnings, audit
// annotations). Only here is text assembled.
import type { Result, Rule } from './types.ts';

/** kubectl shows warnings verbatim. The apiserver asks for 120 characters "if possible" and
 * truncates beyond 256; a warning that names the rule, the field and the fix rarely fits 120, so
 * the bound is 256 and the message is shortened first (the rule id, field and fix are kept). */
export const WARNING_MAX = 256;
/** The message keeps at least this much when the field and fix are long. */
const WARNING_MESSAGE_MIN = 40;
/** The apiserver caps the total size of warnings; stay well under it. */
export const WARNINGS_TOTAL_MAX = 4096;
/** Audit annotation keys: no '/', at most 63 characters (the apiserver prefixes the webhook name). */
export const AUDIT_KEY = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const AUDIT_VALUE_MAX = 1024;

/** At most `max` UTF-16 units, ending in "…" when cut; never cuts a surrogate pair in half (the
 * apiserver's decoder would turn the lone half into U+FFFD). */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const last = s.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // a high surrogate whose low half would be cut off
  return `${s.slice(0, end)}…`;
}

export type RuleLookup = (id: string) => Rule | undefined;

function detail(r: Result): string {
  if (r.status === 'error') return `rule could not be evaluated (${r.reason ?? 'unknown error'})`;
  return r.violation?.message ?? 'violated';
}

function fixOf(r: Result, lookup: RuleLookup): string {
  if (r.status === 'error') return 'report this to the platform team; the rule failed closed';
  return r.violation?.fix ?? lookup(r.ruleId)?.fix ?? '';
}

/** One line per finding: `[rule-id] what is wrong (at path: value). Fix: how.` */
export function denialMessage(subject: string, denials: readonly Result[], lookup: RuleLookup): string {
  const lines = denials.map((r) => {
    const where = r.violation?.path !== undefined ? ` (at ${r.violation.path}${r.violation.value !== undefined ? `: ${JSON.stringify(r.violation.value)}` : ''})` : '';
    const fix = fixOf(r, lookup);
    return `[${r.ruleId}] ${detail(r)}${where}${fix === '' ? '' : ` Fix: ${fix}`}`;
  });
  const n = denials.length;
  return `meshguard: ${subject} violates ${n} polic${n === 1 ? 'y' : 'ies'}:\n${lines.join('\n')}`;
}

/**
 * `policy <id>: <message> (at <field>) Fix: <fix>` within WARNING_MAX characters. When too long
 * the message is shortened first, then (only when the field and fix alone overflow) the fix: the
 * rule id and the field always stay.
 */
export function warningLine(r: Result, lookup?: RuleLookup): string {
  const head = `policy ${r.ruleId}: `;
  const where = r.violation?.path !== undefined ? ` (at ${r.violation.path})` : '';
  const fix = lookup === undefined && r.violation?.fix === undefined ? '' : fixOf(r, lookup ?? (() => undefined));
  const tail = fix === '' ? '' : ` Fix: ${fix}`;
  const message = detail(r);
  const full = `${head}${message}${where}${tail}`;
  if (full.length <= WARNING_MAX) return full;
  const room = WARNING_MAX - head.length - where.length - tail.length;
  if (room >= WARNING_MESSAGE_MIN) return `${head}${truncate(message, room)}${where}${tail}`;
  const short = `${head}${truncate(message, WARNING_MESSAGE_MIN)}${where}`;
  if (short.length + 8 >= WARNING_MAX) return truncate(short, WARNING_MAX);
  return truncate(`${short}${tail}`, WARNING_MAX);
}

/** One warning line per finding (warningLine), the total bounded. */
export function warningLines(findings: readonly Result[], lookup?: RuleLookup): string[] {
  const out: string[] = [];
  let total = 0;
  for (const r of findings) {
    const line = warningLine(r, lookup);
    if (total + line.length > WARNINGS_TOTAL_MAX) break;
    total += line.length;
    out.push(line);
  }
  return out;
}

/** One annotation per rule id (several findings of a rule are joined). */
export function auditAnnotations(findings: readonly Result[], prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of findings) {
    const key = truncate(`${prefix}${r.ruleId}`, 63).replace(/[^A-Za-z0-9]+$/, '');
    if (!AUDIT_KEY.test(key)) continue;
    const prev = out[key];
    out[key] = truncate(prev === undefined ? detail(r) : `${prev}; ${detail(r)}`, AUDIT_VALUE_MAX);
  }
  return out;
}

/** "Namespace team-a", "Pod team-a/web-0", "Deployment team-a/(generateName web-)" */
export function subjectOf(kind: string, namespace: string, name: string): string {
  return `${kind} ${namespace === '' ? '' : `${namespace}/`}${name === '' ? '(unnamed)' : name}`;
}

/** An admission an exception let through, in words: `policy <id>: excepted by MeshguardException
 * ns/name until <expiry>` (warning) and `excepted-<id>` audit annotations naming the exception,
 * its expiry, its reason and the finding. */
export function exceptionWarnings(excepted: readonly { readonly result: Result; readonly exception: { readonly namespace: string; readonly name: string; readonly expires: string } }[]): string[] {
  return excepted.map(({ result, exception: e }) => truncate(`policy ${result.ruleId}: excepted by MeshguardException ${e.namespace}/${e.name} until ${e.expires}`, WARNING_MAX));
}

export function exceptionAnnotations(excepted: readonly { readonly result: Result; readonly exception: { readonly namespace: string; readonly name: string; readonly expires: string; readonly reason: string } }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { result, exception: e } of excepted) {
    const key = truncate(`excepted-${result.ruleId}`, 63).replace(/[^A-Za-z0-9]+$/, '');
    if (!AUDIT_KEY.test(key)) continue;
    const text = `MeshguardException ${e.namespace}/${e.name} (expires ${e.expires}; reason: ${e.reason}): ${detail(result)}`;
    const prev = out[key];
    out[key] = truncate(prev === undefined ? text : `${prev}; ${text}`, AUDIT_VALUE_MAX);
  }
  return out;
}
