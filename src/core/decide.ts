// Decide: turn results plus modes into a verdict. The only place that looks at the mode: which
// mode a request is judged under, what each finding does under it, and what a request that
// could not be evaluated gets.
import type { AdmissionRequest } from './request.ts';
import type { ClusterView } from './cluster-view.ts';
import type { Config, Mode } from '../config/types.ts';
import { subjectNamespace } from './match.ts';
import { allow, deny, type Decision } from './decision.ts';
import type { Result } from './types.ts';
import { isAdmin } from './users.ts';

/** The per-namespace override label; only admins may set it (control-labels-admin-only). */
export const MODE_LABEL = 'meshguard.dev/mode';

function modeOf(value: unknown): Mode | undefined {
  return value === 'enforce' || value === 'audit' ? value : undefined;
}

/**
 * The mode for this request's namespace: the global mode unless the namespace carries a trusted
 * `meshguard.dev/mode` label. For a Namespace request the label on the submitted object counts
 * only when an admin submits it; otherwise the stored one (oldObject, or the cache) counts, so a
 * tenant cannot switch its own namespace to audit in the same request that breaks a rule.
 */
export function namespaceMode(config: Config, req: AdmissionRequest, cluster: ClusterView): Mode {
  const ns = subjectNamespace(req);
  if (req.kind.group === '' && req.kind.kind === 'Namespace') {
    const fromObject = isAdmin(config, req) ? modeOf(req.object?.metadata?.labels?.[MODE_LABEL]) : undefined;
    // On CREATE nothing is stored yet (a cached namespace of that name is a deleted one).
    const stored =
      req.operation === 'CREATE'
        ? undefined
        : req.oldObject !== null
          ? req.oldObject.metadata?.labels?.[MODE_LABEL]
          : cluster.namespace(ns)?.labels[MODE_LABEL];
    return fromObject ?? modeOf(stored) ?? config.mode;
  }
  return modeOf(cluster.namespace(ns)?.labels[MODE_LABEL]) ?? config.mode;
}

/** The rule's own default mode (Rule.defaultMode), looked up by id. */
export type DefaultModes = (ruleId: string) => 'audit' | undefined;

/** Rules whose failures deny in every mode, because what they guard outlives the mode: a
 * meshguard.dev/mode=audit label or a MeshguardException a tenant wrote while the namespace (or
 * meshguard) was in audit would still apply once it enforces. */
export const ALWAYS_ENFORCED: ReadonlySet<string> = new Set(['control-labels-admin-only', 'exception-admin-only']);

/** Always enforced, else pinned in the configuration, else the rule's default mode, else the namespace's (or global) mode. */
export function ruleMode(config: Config, ruleId: string, nsMode: Mode, defaults?: DefaultModes): Mode {
  if (ALWAYS_ENFORCED.has(ruleId)) return 'enforce';
  const pinned = config.rules[ruleId]?.mode;
  if (pinned !== undefined && pinned !== 'inherit') return pinned;
  return defaults?.(ruleId) ?? nsMode;
}

export interface Verdict {
  readonly allowed: boolean;
  /** Enforced failures (and errors when onError is deny): they deny. */
  readonly denials: readonly Result[];
  /** Audited failures (and errors when onError is allow): allowed, but reported. */
  readonly warnings: readonly Result[];
}

export function decide(results: readonly Result[], config: Config, nsMode: Mode, defaults?: DefaultModes): Verdict {
  const denials: Result[] = [];
  const warnings: Result[] = [];
  for (const r of results) {
    if (r.status === 'fail') {
      const enforce = r.violation?.advisory !== true && ruleMode(config, r.ruleId, nsMode, defaults) === 'enforce';
      (enforce ? denials : warnings).push(r);
    } else if (r.status === 'error') {
      const enforce = ruleMode(config, r.ruleId, nsMode, defaults) === 'enforce' && config.onError === 'deny';
      (enforce ? denials : warnings).push(r);
    }
  }
  return { allowed: denials.length === 0, denials, warnings };
}

/** The verdict for a request's validation findings, under the mode of the request's namespace. */
export function decideRequest(results: readonly Result[], config: Config, req: AdmissionRequest, cluster: ClusterView, defaults?: DefaultModes): Verdict & { readonly mode: Mode } {
  const mode = namespaceMode(config, req, cluster);
  return { ...decide(results, config, mode, defaults), mode };
}

export interface Unevaluated {
  readonly decision: Decision;
  readonly verdict: 'denied' | 'warned';
  readonly mode: Mode;
}

/** The answer for a request that could not be evaluated (`why`) in its namespace's mode. */
export function decideUnevaluated(config: Config, req: AdmissionRequest, cluster: ClusterView, why: string): Unevaluated {
  return unevaluated(namespaceMode(config, req, cluster), why);
}

/** Enforce refuses a request that could not be evaluated (it can be retried); audit lets it
 * through with a warning. */
export function unevaluated(mode: Mode, why: string): Unevaluated {
  if (mode === 'enforce') return { decision: deny(`${why}; it was refused unevaluated, retry it`), verdict: 'denied', mode };
  return { decision: allow({ warnings: ['meshguard: overloaded; request allowed without evaluation (audit mode)'] }), verdict: 'warned', mode };
}
