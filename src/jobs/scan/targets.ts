// What the scan reads, pure: every (group, resource) the enabled validating rules register for
// (derived from the rules' webhook resources, never a fixed list), the versions to try, and which
// listed objects the API server would send to meshguard at all.
import type { KObject } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { isExempt } from '../../core/match.ts';
import type { ValidatingRule, WebhookResource } from '../../core/types.ts';
import { ALWAYS_EXCLUDED, MESH_CONFIG_NAMESPACE } from '../../policies/webhook-config.ts';
import { metaString, scopeOf } from './report.ts';

export type Placement = NonNullable<WebhookResource['placement']>;

/** One resource to read: a group and resource, the versions to try, and the webhooks that carry it. */
export interface ScanTarget {
  readonly group: string;
  /** Served versions to try, most preferred first (GA before beta before alpha). */
  readonly versions: readonly string[];
  readonly resource: string;
  readonly placements: readonly Placement[];
}

const VERSION = /^v(\d+)(?:(alpha|beta)(\d+))?$/;

/** Kubernetes version priority: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else. */
export function compareVersions(a: string, b: string): number {
  const rank = (v: string): [number, number, number] => {
    const m = VERSION.exec(v);
    if (m === null) return [0, 0, 0];
    const stability = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stability, Number(m[1]), Number(m[3] ?? 0)];
  };
  const [sa, ma, na] = rank(a);
  const [sb, mb, nb] = rank(b);
  return sb - sa || mb - ma || nb - na || a.localeCompare(b);
}

export function targetName(t: { readonly group: string; readonly resource: string }): string {
  return t.group === '' ? t.resource : `${t.resource}.${t.group}`;
}

/** Every (group, resource) an enabled validating rule registers for; subresources are skipped. */
export function scanTargets(rules: readonly ValidatingRule[], config: Config): ScanTarget[] {
  const merged = new Map<string, { group: string; resource: string; versions: Set<string>; placements: Set<Placement> }>();
  for (const rule of rules) {
    if (config.rules[rule.id]?.enabled === false) continue;
    for (const w of rule.webhook) {
      for (const resource of w.resources) {
        if (resource.includes('/')) continue;
        const key = `${w.apiGroup}/${resource}`;
        const e = merged.get(key) ?? { group: w.apiGroup, resource, versions: new Set<string>(), placements: new Set<Placement>() };
        for (const v of w.apiVersions) e.versions.add(v);
        e.placements.add(w.placement ?? 'default');
        merged.set(key, e);
      }
    }
  }
  return [...merged.values()]
    .map((e) => ({ group: e.group, resource: e.resource, versions: [...e.versions].sort(compareVersions), placements: [...e.placements].sort() }))
    .sort((a, b) => (a.group === '' && a.resource === 'namespaces' ? -1 : b.group === '' && b.resource === 'namespaces' ? 1 : targetName(a).localeCompare(targetName(b))));
}

/** A target only the mesh-config webhook carries: read from the mesh-config namespace alone. */
export function onlyMeshConfig(target: ScanTarget): boolean {
  return target.placements.length === 1 && target.placements[0] === 'mesh-config';
}

/**
 * Would the API server send this object to meshguard? The same namespace exclusions as the
 * generated webhook configurations (a Namespace is judged by its own name).
 */
export function inScope(placements: readonly Placement[], object: KObject, config: Config): boolean {
  const ns = scopeOf(object);
  const never = (ALWAYS_EXCLUDED as readonly string[]).includes(ns) || ns === config.meshguardNamespace;
  return placements.some((p) => {
    if (p === 'mesh-config') {
      const name = metaString(object, 'name');
      return ns === MESH_CONFIG_NAMESPACE && (name === 'istio' || name.startsWith('istio-'));
    }
    if (never) return false;
    return p === 'all-namespaces' || !isExempt(config, ns);
  });
}
