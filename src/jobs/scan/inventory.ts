// The scan's mesh-wide half: rules with an `inventory` check see everything the scan listed at
// once (a missing root PeerAuthentication, a RequestAuthentication without an
// AuthorizationPolicy that requires a principal, auto mTLS off without a root DestinationRule).
// Their findings get a mode like any other: the rule's pinned or default mode, else the
// namespace's meshguard.dev/mode label, else the global mode, applied by decide().
import type { KObject } from '../../core/request.ts';
import type { Config, Mode } from '../../config/types.ts';
import { decide, MODE_LABEL } from '../../core/decide.ts';
import { defaultModes } from '../../core/pipeline.ts';
import type { RuleSet } from '../../core/rule-set.ts';
import { results, type InventoryFinding, type Result } from '../../core/types.ts';
import type { ClusterView } from '../../core/cluster-view.ts';

export interface InventoryScanFinding {
  readonly finding: InventoryFinding;
  readonly result: Result;
  readonly action: 'deny' | 'warn';
}

function modeOf(v: unknown): Mode | undefined {
  return v === 'enforce' || v === 'audit' ? v : undefined;
}

/** Every enabled rule's inventory findings, with the action admission's decide would give them. */
export function inventoryFindings(
  objects: readonly KObject[],
  served: (group: string, resource: string) => boolean,
  state: ClusterView,
  config: Config,
  rules: RuleSet,
): { findings: InventoryScanFinding[]; errors: string[] } {
  const findings: InventoryScanFinding[] = [];
  const errors: string[] = [];
  for (const rule of rules.validating) {
    if (rule.inventory === undefined || config.rules[rule.id]?.enabled === false) continue;
    let found: readonly InventoryFinding[];
    try {
      found = rule.inventory({ objects, served, config });
    } catch (err) {
      errors.push(`${rule.id}: mesh-wide check failed (${err instanceof Error ? err.message : String(err)})`);
      continue;
    }
    for (const f of found) {
      const result = results.fail(rule.id, f.violation);
      const nsMode = modeOf(state.namespace(f.subject.namespace)?.labels[MODE_LABEL]) ?? config.mode;
      const verdict = decide([result], config, nsMode, defaultModes(rules));
      findings.push({ finding: f, result, action: verdict.denials.length > 0 ? 'deny' : 'warn' });
    }
  }
  return { findings, errors };
}
