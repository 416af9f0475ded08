// Evaluate: run every validating rule against the request; a throwing rule is an error result.
import type { KObject } from './request.ts';
import { matchPlan, requestSkipReason, requestSubject, skipReason } from './match.ts';
import type { RuleSet } from './rule-set.ts';
import { isSkip, results, type MutatingRule, type Result, type RuleContext, type ValidatingRule } from './types.ts';

export function evaluate(set: RuleSet, ctx: RuleContext): Result[] {
  const rules = set.validating;
  const plan = matchPlan(set, ctx.request, ctx.config);
  const subject = requestSubject(ctx.request, ctx.config, ctx.cluster);
  const out: Result[] = [];
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as ValidatingRule;
    const skipped = plan[i];
    if (skipped !== undefined) {
      out.push(skipped);
      continue;
    }
    const reason = requestSkipReason(rule, subject);
    if (reason !== undefined) {
      out.push(results.skip(rule.id, reason));
      continue;
    }
    runRule(rule, ctx, out, set);
  }
  return out;
}

/** Run one rule that applies: its own skip, a pass, a fail per violation, or an error if it throws. */
export function runRule(rule: ValidatingRule, ctx: RuleContext, out: Result[], set?: RuleSet): void {
  try {
    const found = rule.validate(ctx);
    if (isSkip(found)) out.push(results.skip(rule.id, found.skip));
    else if (found.length === 0) out.push(set?.pass(rule.id) ?? results.pass(rule.id));
    else for (const v of found) out.push(results.fail(rule.id, v));
  } catch (err) {
    out.push(results.error(rule.id, err));
  }
}

export interface MutationOutcome {
  /** The mutated draft (a copy; the request object is untouched). */
  readonly draft: KObject;
  /** Per rule: what it changed, or the error it threw. */
  readonly changes: readonly { readonly ruleId: string; readonly description: string }[];
  readonly results: readonly Result[];
}

/** The metadata fields a mutating rule may edit: each draft has its own copies. */
const DRAFT_COPIED = ['labels', 'annotations'] as const;

/** A draft for mutating rules, which edit metadata's labels and annotations (see MutatingRule):
 * the object, its metadata and those two maps copied one level deep (they map strings to
 * strings, so that is the whole map), everything else shared with the received object. Nothing
 * is walked, so a deeply nested value anywhere in metadata, a malformed label's included, is
 * neither copied nor recursed into, here or in the diff, which skips what the draft shares.
 * Spreading keeps a "__proto__" key an own property. */
function metadataDraft(object: KObject): KObject {
  const draft: Record<string, unknown> = { ...(object as Record<string, unknown>) };
  const meta = draft['metadata'];
  if (!isPlainObject(meta)) return draft as KObject;
  const copy: Record<string, unknown> = { ...meta };
  for (const key of DRAFT_COPIED) {
    const map = copy[key];
    if (isPlainObject(map)) copy[key] = { ...map };
  }
  draft['metadata'] = copy;
  return draft as KObject;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Run mutating rules over one draft of the request object. A rule that throws leaves the
 * draft as it was before that rule (its partial edits are discarded). */
export function mutate(set: RuleSet, rules: readonly MutatingRule[], ctx: RuleContext, object: KObject): MutationOutcome {
  let draft = metadataDraft(object);
  const changes: { ruleId: string; description: string }[] = [];
  const out: Result[] = [];
  for (const rule of rules) {
    const reason = skipReason(rule, ctx.request, ctx.config, ctx.cluster);
    if (reason !== undefined) {
      out.push(results.skip(rule.id, reason));
      continue;
    }
    let attempt: KObject;
    try {
      attempt = metadataDraft(draft);
      const done = rule.mutate(ctx, attempt);
      if (isSkip(done)) {
        out.push(results.skip(rule.id, done.skip));
        continue;
      }
      draft = attempt;
      for (const description of done) changes.push({ ruleId: rule.id, description });
      out.push(set.pass(rule.id));
    } catch (err) {
      out.push(results.error(rule.id, err));
    }
  }
  return { draft, changes, results: out };
}
