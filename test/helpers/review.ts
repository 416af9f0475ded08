// Test helpers: AdmissionReviews from real manifests, fixture folders, a config builder.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AdmissionRequest, KObject, Operation } from '../../src/core/request.ts';
import { StaticClusterView, type NamespaceInfo } from '../../src/core/cluster-view.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';
import { syntheticRequest } from '../../src/core/admission-chain.ts';
import { reviewMutate, reviewValidate, type ReviewOutcome } from '../../src/core/pipeline.ts';
import { parseManifests } from '../../src/cli/manifests.ts';
import { encodeDecision, type AdmissionReviewV1Response } from '../../src/webhook/encode.ts';
import { BUILTIN_RULES, RULE_IDS } from '../../src/policies/registry.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const FIXTURES = join(ROOT, 'test/fixtures');

export const ADMIN = { username: 'admin', groups: ['system:masters', 'system:authenticated'] };
export const TENANT = { username: 'tenant', groups: ['tenants', 'system:authenticated'] };

/** A frozen config from overrides (dotted keys or nested), validated like the real one. */
export function config(overrides: Record<string, unknown> = {}): Config {
  return loadConfig({ overrides, ruleIds: RULE_IDS });
}

export interface ReviewOptions {
  readonly operation?: Operation;
  readonly oldObject?: KObject | null;
  readonly user?: { username: string; groups: string[] } | null;
  readonly subResource?: string;
  readonly dryRun?: boolean;
  readonly namespace?: string;
}

/** The AdmissionRequest the apiserver would send for this object. */
export function requestFor(object: KObject | null, opts: ReviewOptions = {}): AdmissionRequest {
  const base = syntheticRequest((object ?? opts.oldObject ?? {}) as KObject, {
    uid: randomUUID(),
    operation: opts.operation ?? 'CREATE',
    oldObject: opts.oldObject ?? null,
    userInfo: opts.user === undefined ? TENANT : opts.user,
    ...(opts.namespace !== undefined ? { defaultNamespace: opts.namespace } : {}),
  });
  return { ...base, object, subResource: opts.subResource ?? '', dryRun: opts.dryRun ?? false };
}

/** A full AdmissionReview body (for HTTP tests). */
export function reviewBody(object: KObject | null, opts: ReviewOptions = {}): { apiVersion: string; kind: string; request: AdmissionRequest } {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: requestFor(object, opts) };
}

export function state(namespaces: readonly NamespaceInfo[] = [], revisions: readonly string[] = []): StaticClusterView {
  return new StaticClusterView(namespaces, revisions);
}

export function ns(name: string, labels: Record<string, string> = {}): NamespaceInfo {
  return { name, labels };
}

/** An outcome with its decision encoded as the webhook sends it (src/webhook/encode.ts). */
export type Reviewed = ReviewOutcome & { readonly response: AdmissionReviewV1Response };

/** The outcome with its decision encoded for request `uid`, as the webhook sends it. */
export function encoded(outcome: ReviewOutcome, uid = 'uid'): Reviewed {
  return { ...outcome, response: encodeDecision(uid, outcome.decision) };
}

export function validate(object: KObject | null, opts: ReviewOptions & { config?: Config; state?: StaticClusterView } = {}): Reviewed {
  const c = opts.config ?? config();
  const req = requestFor(object, opts);
  return encoded(reviewValidate(req, c, opts.state ?? state([], c.revisions), BUILTIN_RULES), req.uid);
}

export function mutate(object: KObject | null, opts: ReviewOptions & { config?: Config; state?: StaticClusterView } = {}): Reviewed {
  const c = opts.config ?? config();
  const req = requestFor(object, opts);
  return encoded(reviewMutate(req, c, opts.state ?? state([], c.revisions), BUILTIN_RULES), req.uid);
}

/** Rule ids that failed (denied or warned) in an outcome. */
export function failedRules(o: ReviewOutcome): string[] {
  return [...new Set([...o.denials, ...o.warnings].map((r) => r.ruleId))].sort();
}

export function decodePatch(o: Reviewed): unknown[] {
  const p = o.response.response.patch;
  return p === undefined ? [] : (JSON.parse(Buffer.from(p, 'base64').toString('utf8')) as unknown[]);
}

/** All documents of a YAML/JSON file. */
export function loadYaml(path: string): KObject[] {
  const { manifests, errors } = parseManifests(path, readFileSync(path, 'utf8'));
  if (errors.length > 0) throw new Error(`${path}: ${errors.map((e) => e.message).join('; ')}`);
  return manifests.map((m) => m.object);
}

export interface Fixture {
  /** The file name without extension, as a sentence: "a pod with hostNetwork true is denied". */
  readonly name: string;
  readonly file: string;
  readonly expect: 'allow' | 'deny';
  /** The rule the folder belongs to (bad fixtures must be denied by it). */
  readonly rule: string;
  /** Namespace documents in the file: the cluster state. */
  readonly namespaces: readonly KObject[];
  /** Every other document: the objects under test. */
  readonly objects: readonly KObject[];
}

/**
 * Fixture folders: test/fixtures/rules/<rule-id>/{good,bad}/<sentence>.yaml. Each file holds the
 * object(s) under test and, optionally, the Namespace documents they live in. The same files
 * feed the unit tables, `meshguard check` and the real-apiserver suite.
 */
export function ruleFixtures(ruleId?: string): Fixture[] {
  const base = join(FIXTURES, 'rules');
  if (!existsSync(base)) return [];
  const out: Fixture[] = [];
  for (const rule of readdirSync(base).sort()) {
    if (ruleId !== undefined && rule !== ruleId) continue;
    for (const verdict of ['good', 'bad'] as const) {
      const dir = join(base, rule, verdict);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir).sort()) {
        if (!/\.ya?ml$/.test(f)) continue;
        const docs = loadYaml(join(dir, f));
        let namespaces = docs.filter((d) => d.kind === 'Namespace');
        let objects = docs.filter((d) => d.kind !== 'Namespace');
        // A file of Namespaces only tests its last Namespace; the others are context.
        if (objects.length === 0 && namespaces.length > 0) {
          objects = namespaces.slice(-1);
          namespaces = namespaces.slice(0, -1);
        }
        out.push({
          name: f.replace(/\.ya?ml$/, '').replaceAll('-', ' '),
          file: join(dir, f),
          expect: verdict === 'good' ? 'allow' : 'deny',
          rule,
          namespaces,
          objects,
        });
      }
    }
  }
  return out;
}
