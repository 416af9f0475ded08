// Judging listed objects, pure: each one as a CREATE of it now through the same validating
// pipeline admission runs, and the mesh-wide checks' results (inventory.ts), as findings.
import type { KObject, UserInfo } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { syntheticRequest } from '../../core/admission-chain.ts';
import { reviewValidate } from '../../core/pipeline.ts';
import type { RuleSet } from '../../core/rule-set.ts';
import type { ClusterView } from '../../core/cluster-view.ts';
import type { InventoryScanFinding } from './inventory.ts';
import { findingOf, scopeOf, type Finding } from './report.ts';

/**
 * Who the synthetic requests come from. The scan judges what an object is, not who wrote it: rules
 * about who may make a change (control-labels-admin-only) see an administrator, so an admin's
 * meshguard.dev/mode label counts, as it did when the admin set it.
 */
export function scanUser(config: Config): UserInfo {
  return { username: config.adminUsers[0] ?? 'meshguard:scan', groups: [...config.adminGroups] };
}

/** Judge one existing object as a CREATE of it now: validating rules only (it exists already, nothing would mutate it). */
export function evaluateObject(object: KObject, index: number, state: ClusterView, config: Config, rules: RuleSet): Finding[] {
  return judgeObject(object, index, state, config, rules).findings;
}

/** The findings, and how many rules the object passed. */
export function judgeObject(object: KObject, index: number, state: ClusterView, config: Config, rules: RuleSet): { findings: Finding[]; passed: number } {
  const req = syntheticRequest(object, { uid: `scan-${index}`, operation: 'CREATE', userInfo: scanUser(config) });
  const out = reviewValidate(req, config, state, rules);
  // Advisory warnings stand in at admission for what the mesh-wide checks judge here (inventory.ts).
  const warnings = out.warnings.filter((r) => r.violation?.advisory !== true);
  const failed = new Set([...out.denials, ...out.warnings].map((r) => r.ruleId));
  const passed = new Set(out.results.filter((r) => r.status === 'pass' && !failed.has(r.ruleId)).map((r) => r.ruleId)).size;
  const namespace = scopeOf(object);
  return {
    findings: [...out.denials.map((r) => findingOf(object, namespace, r, 'deny', rules.lookup)), ...warnings.map((r) => findingOf(object, namespace, r, 'warn', rules.lookup))],
    passed,
  };
}

/** A mesh-wide check's finding (inventory.ts) as a finding on its subject. */
export function inventoryFinding(meshWide: InventoryScanFinding, rules: RuleSet): Finding {
  const { kind, apiVersion, namespace, name } = meshWide.finding.subject;
  const subject: KObject = { kind, apiVersion, metadata: { name, namespace } };
  return findingOf(subject, scopeOf(subject), meshWide.result, meshWide.action, rules.lookup);
}
