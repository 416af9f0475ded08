// A rule set: the rules the pipeline runs, in order, and the caches that belong to them. Every
// memo the core keeps lives here, owned by one set, instead of in module-level variables: two
// sets (the built-in one and a test's or `scan --rule`'s subset) never share an answer, and
// dropping a set drops its caches.
import type { AdmissionRequest } from './request.ts';
import type { Config } from '../config/types.ts';
import type { RuleLookup } from './render.ts';
import type { MutatingRule, Result, Rule, ValidatingRule } from './types.ts';

/** Per rule, in order: the skip Result when the rule does not apply to requests of this shape
 * (frozen, shared between requests), undefined when it may apply. */
export type MatchPlan = readonly (Result | undefined)[];

interface Shape {
  readonly group: string;
  readonly operation: string;
  readonly subResource: string;
  readonly plan: MatchPlan;
}

/** The match plans of one configuration, by kind, then scanned for (group, operation,
 * subresource): no key string is built per request. */
export interface MatchPlans {
  readonly byKind: Map<string, Shape[]>;
  size: number;
}

/** A key for an answer several rules ask for about the same request (see RequestMemo), made
 * once per module; the key's identity is what counts. */
export interface MemoKey<T> {
  readonly name: string;
  /** Phantom: ties the key to its value type. */
  readonly _type?: T;
}

export function memoKey<T>(name: string): MemoKey<T> {
  return Object.freeze({ name });
}

/** What a memoized answer is computed from. */
export interface MemoSubject {
  readonly request: AdmissionRequest;
  readonly config: Config;
}

/**
 * Answers about the request under review that several rules of the set ask for (six workload
 * rules need the same pod template; a controller UPDATE compares two whole pod templates). Rules run
 * synchronously one request at a time, so the set keeps the answers for the last request and
 * configuration only. A request allocates nothing here: a new request bumps a generation number,
 * and a slot stamped with an older one is stale. (A WeakMap per request costs more than it saves:
 * every entry is an ephemeron the scavenger has to process.)
 */
export class RequestMemo {
  #request: AdmissionRequest | undefined;
  #config: Config | undefined;
  #generation = 0;
  /** The keys asked for so far (a handful), each owning the slot at its index. */
  readonly #keys: MemoKey<unknown>[] = [];
  readonly #stamps: number[] = [];
  readonly #values: unknown[] = [];

  /** The answer for `key` about this request, computed once per request and configuration. */
  get<T, S extends MemoSubject>(key: MemoKey<T>, subject: S, compute: (subject: S) => T): T {
    if (subject.request !== this.#request || subject.config !== this.#config) {
      this.#generation++;
      this.#request = subject.request;
      this.#config = subject.config;
    }
    let slot = this.#keys.indexOf(key);
    if (slot < 0) slot = this.#keys.push(key) - 1;
    if (this.#stamps[slot] === this.#generation) return this.#values[slot] as T;
    const value = compute(subject);
    this.#stamps[slot] = this.#generation;
    this.#values[slot] = value;
    return value;
  }
}

/** Past this many distinct shapes per configuration, plans are built afresh (the apiserver only
 * sends the kinds the webhook registered; a client of the offline paths may send anything). */
export const PLAN_LIMIT = 256;

export class RuleSet {
  readonly validating: readonly ValidatingRule[];
  readonly mutating: readonly MutatingRule[];
  readonly lookup: RuleLookup;
  /** Answers about the request under review shared by the set's rules. */
  readonly memo = new RequestMemo();
  /** A pass carries nothing but the rule id: one frozen result per rule, so a request that
   * passes every rule allocates none. */
  readonly #passes: ReadonlyMap<string, Result>;
  /** The validating rules' match plans, per configuration. */
  readonly #plans = new WeakMap<Config, MatchPlans>();

  constructor(rules: { readonly validating: readonly ValidatingRule[]; readonly mutating: readonly MutatingRule[]; readonly lookup: RuleLookup }) {
    this.validating = Object.freeze([...rules.validating]);
    this.mutating = Object.freeze([...rules.mutating]);
    this.lookup = rules.lookup;
    const all: readonly Rule[] = [...this.validating, ...this.mutating];
    this.#passes = new Map(all.map((r) => [r.id, Object.freeze({ ruleId: r.id, status: 'pass' }) as Result]));
  }

  /** The same lookup and mutating rules with only these validating rules (fresh caches). */
  withValidating(validating: readonly ValidatingRule[]): RuleSet {
    return new RuleSet({ validating, mutating: this.mutating, lookup: this.lookup });
  }

  /** Rule.defaultMode by id. */
  defaultMode(id: string): 'audit' | undefined {
    return this.lookup(id)?.defaultMode;
  }

  /** The shared pass result of a rule of this set (a fresh one for an id the set does not hold). */
  pass(ruleId: string): Result {
    return this.#passes.get(ruleId) ?? { ruleId, status: 'pass' };
  }

  /** The match plans of the validating rules under this configuration. */
  plans(config: Config): MatchPlans {
    let known = this.#plans.get(config);
    if (known === undefined) {
      known = { byKind: new Map(), size: 0 };
      this.#plans.set(config, known);
    }
    return known;
  }
}
