// Every rule meshguard knows, in evaluation order. The id is the module's file name.
import { RuleSet } from '../core/rule-set.ts';
import type { MutatingRule, Rule, ValidatingRule } from '../core/types.ts';
import { controlLabelsAdminOnly } from './control-labels-admin-only.ts';
import { exceptionAdminOnly } from './exception-admin-only.ts';
import { namespaceHardeningDefaults } from './namespace-hardening-defaults.ts';
import { namespaceMeshEnrollment } from './namespace-mesh-enrollment.ts';
import { ISTIO_CONFIG_RULES } from './istio-config-rules.ts';
import { MESH_HARDENING_RULES } from './mesh-hardening-rules.ts';
import { WORKLOAD_RULES } from './workload-rules.ts';

export const RULES: readonly Rule[] = Object.freeze([
  namespaceHardeningDefaults,
  namespaceMeshEnrollment,
  controlLabelsAdminOnly,
  ...WORKLOAD_RULES,
  ...ISTIO_CONFIG_RULES,
  ...MESH_HARDENING_RULES,
  exceptionAdminOnly,
]);

export const RULE_IDS: readonly string[] = Object.freeze(RULES.map((r) => r.id));

export const VALIDATING_RULES: readonly ValidatingRule[] = Object.freeze(
  RULES.filter((r): r is ValidatingRule => r.type === 'validating'),
);

export const MUTATING_RULES: readonly MutatingRule[] = Object.freeze(
  RULES.filter((r): r is MutatingRule => r.type === 'mutating'),
);

const BY_ID = new Map(RULES.map((r) => [r.id, r]));

export function ruleById(id: string): Rule | undefined {
  return BY_ID.get(id);
}

/** The built-in rule set as the engine consumes it. */
export const BUILTIN_RULES = new RuleSet({
  validating: VALIDATING_RULES,
  mutating: MUTATING_RULES,
  lookup: ruleById,
});
