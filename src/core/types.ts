// The common interface of every rule, and the values evaluation produces.
import type { AdmissionRequest, KObject, Operation } from './request.ts';
import type { ClusterView } from './cluster-view.ts';
import type { Config } from '../config/types.ts';
import type { RequestMemo } from './rule-set.ts';

export type ResultStatus = 'pass' | 'fail' | 'skip' | 'error';

/** One thing a rule found wrong: what, where, and how to fix it. */
export interface Violation {
  /** Short, self-contained sentence (it becomes a kubectl warning). */
  readonly message: string;
  /** The offending field, e.g. metadata.labels["istio-injection"]. */
  readonly path?: string;
  /** The offending value, as text. */
  readonly value?: string;
  /** What to change; the rule's general fix is used when absent. */
  readonly fix?: string;
  /**
   * A reminder the rule cannot settle from the request alone (it would need cluster objects that
   * admission does not see): always a warning, never a denial, whatever the mode. The scan,
   * which sees those objects, judges the real finding.
   */
  readonly advisory?: true;
}

export interface Result {
  readonly ruleId: string;
  readonly status: ResultStatus;
  /** fail: what is wrong. */
  readonly violation?: Violation;
  /** skip: why the rule did not apply; error: what went wrong. */
  readonly reason?: string;
}

export interface RuleContext {
  readonly request: AdmissionRequest;
  readonly config: Config;
  readonly cluster: ClusterView;
  /** Answers about this request that several rules ask for, kept by the rule set. */
  readonly memo: RequestMemo;
}

export interface KindRef {
  readonly group: string;
  readonly kind: string;
}

export interface Match {
  readonly kinds: readonly KindRef[];
  readonly operations: readonly Operation[];
  /** Subresources this rule also sees ('' is the main resource). Default: only ''. */
  readonly subResources?: readonly string[];
  /** 'namespaces' (default): exempt namespaces are skipped. 'none': applies everywhere. */
  readonly exemptions?: 'namespaces' | 'none';
}

/** The resources a rule needs in the webhook configuration (for docs, Helm and the e2e suite). */
export interface WebhookResource {
  /**
   * Which registered webhook carries the resource: 'default' (system and exempt namespaces
   * excluded by namespaceSelector), 'all-namespaces' (only kube-system, kube-public and
   * kube-node-lease and meshguard's namespace excluded, e.g. Sidecars in the istio-system root
   * namespace), 'mesh-config' (ConfigMaps istio/istio-<rev> in istio-system only, fail open).
   * Default 'default'.
   */
  readonly placement?: 'default' | 'all-namespaces' | 'mesh-config';
  readonly apiGroup: string;
  readonly apiVersions: readonly string[];
  readonly resources: readonly string[];
}

interface RuleBase {
  readonly id: string;
  readonly title: string;
  /** The general fix, used when a violation carries none. */
  readonly fix: string;
  readonly match: Match;
  readonly webhook: readonly WebhookResource[];
  /**
   * The mode when the configuration says `inherit` (rules.<id>.mode): opinionated rules report
   * (audit) unless the platform pins them to enforce. Absent: the global or namespace mode.
   */
  readonly defaultMode?: 'audit';
}

/** What scan listed, for mesh-wide checks that need several objects at once. */
export interface Inventory {
  /** Every listed object in scan's scope (kind and apiVersion set), Namespaces included. */
  readonly objects: readonly KObject[];
  /** Whether a resource could be listed (absent objects of an unlisted kind prove nothing). */
  served(group: string, resource: string): boolean;
  readonly config: Config;
}

/** A mesh-wide finding: the object it is about (or the one that is missing) and what is wrong. */
export interface InventoryFinding {
  readonly subject: { readonly kind: string; readonly apiVersion: string; readonly namespace: string; readonly name: string };
  readonly violation: Violation;
}

/** A validating rule: returns what it found wrong (empty: pass) or a skip reason. Never sees the mode. */
export interface ValidatingRule extends RuleBase {
  readonly type: 'validating';
  validate(ctx: RuleContext): readonly Violation[] | Skip;
  /**
   * Mesh-wide check over everything scan listed (a missing object, or a relation between
   * objects that admission of one object cannot see). Pure; run by scan only.
   */
  inventory?(inv: Inventory): readonly InventoryFinding[];
}

/** A mutating rule edits the draft in place and returns one description per change. */
export interface MutatingRule extends RuleBase {
  readonly type: 'mutating';
  /** Edit the keys of `draft.metadata.labels` and `draft.metadata.annotations`, or set metadata
   * fields to new values; never edit a nested value in place. The draft has its own one-level
   * copies of the metadata object and of those two maps, and shares everything else with the
   * request object. The patch is computed over metadata alone and skips what is shared, so a
   * huge or deeply nested spec or metadata value is never copied or walked. */
  mutate(ctx: RuleContext, draft: KObject): readonly string[] | Skip;
}

export type Rule = ValidatingRule | MutatingRule;

export interface Skip {
  readonly skip: string;
}

export function skip(reason: string): Skip {
  return { skip: reason };
}

export function isSkip(v: unknown): v is Skip {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as Skip).skip === 'string';
}

// Result factories: the only way results are built.
export const results = {
  /** A fresh pass (the pipeline uses its rule set's shared ones, RuleSet.pass). */
  pass: (ruleId: string): Result => ({ ruleId, status: 'pass' }),
  fail: (ruleId: string, violation: Violation): Result => ({ ruleId, status: 'fail', violation }),
  skip: (ruleId: string, reason: string): Result => ({ ruleId, status: 'skip', reason }),
  error: (ruleId: string, err: unknown): Result => ({
    ruleId,
    status: 'error',
    reason: err instanceof Error ? `${err.name}: ${err.message}` : `thrown ${typeof err}: ${String(err)}`,
  }),
};
