// Decide: turn results plus modes into a verdict. The only place that looks at the mode.
import type { AdmissionRequest } from './request.ts';
import type { ClusterState } from './cluster-view.ts';
import type { Config, Mode } from '../config/types.ts';
import { subjectNamespace } from './match.ts';
import type { Result } from './types.ts';

/** The per-namespace override label; only admins may set it (control-labels-admin-only). */
export const MODE_LABEL = 'meshguard.dev/mode';

export function isAdmin(config: Config, req: AdmissionRequest): boolean {
  const u = req.userInfo;
  if (u === null) return false;
  return config.adminUsers.includes(u.username) || u.groups.some((g) => config.adminGroups.includes(g));
}

function modeOf(value: unknown): Mode | undefined {
  return value === 'enforce' || value === 'audit' ? value : undefined;
}

/**
 * The mode for this request's namespace: the global mode unless the namespace carries a trusted
 * `meshguard.dev/mode` label. For a Namespace request the label on the submitted object counts
 * only when an admin submits it; otherwise the stored one (oldObject, or the cache) counts, so a
 * tenant cannot switch its own namespace to audit in the same request that breaks a rule.
 */
export function namespaceMode(config: Config, req: AdmissionRequest, cluster: ClusterState): Mode {
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
