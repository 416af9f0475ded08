// The apiserver's pipeline, offline: mutate (apply the patch) then validate, over one object.
// Used by `meshguard check` and by the cluster scan, so they share every rule with admission.
import fastJsonPatch from 'fast-json-patch';
import type { AdmissionRequest, KObject, Operation, UserInfo } from '../admission/types.ts';
import type { ClusterState } from '../cluster/state.ts';
import type { Config } from '../config/types.ts';
import { reviewMutate, reviewValidate, type ReviewOutcome, type RuleSet } from './review.ts';

/** Cluster-scoped kinds the rules see; every other kind is treated as namespaced. */
const CLUSTER_SCOPED = new Set(['Namespace', 'Node', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration', 'PersistentVolume', 'StorageClass', 'PriorityClass']);

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}

export interface SyntheticOptions {
  readonly uid: string;
  readonly operation?: Operation;
  readonly oldObject?: KObject | null;
  readonly userInfo?: UserInfo | null;
  readonly defaultNamespace?: string;
}

/** An AdmissionRequest for a manifest, as the apiserver would send it for `kubectl create`. */
export function syntheticRequest(object: KObject, opts: SyntheticOptions): AdmissionRequest {
  const { group, version } = splitApiVersion(typeof object.apiVersion === 'string' ? object.apiVersion : '');
  const kind = typeof object.kind === 'string' ? object.kind : '';
  const meta = object.metadata;
  const namespace = isClusterScoped(kind) ? '' : typeof meta?.namespace === 'string' && meta.namespace !== '' ? meta.namespace : (opts.defaultNamespace ?? 'default');
  return {
    uid: opts.uid,
    kind: { group, version, kind },
    resource: { group, version, resource: `${kind.toLowerCase()}s` },
    subResource: '',
    operation: opts.operation ?? 'CREATE',
    namespace,
    name: typeof meta?.name === 'string' ? meta.name : '',
    object,
    oldObject: opts.oldObject ?? null,
    userInfo: opts.userInfo ?? null,
    dryRun: true,
  };
}

export interface PipelineResult {
  /** The object after meshguard's own mutation (what the apiserver would store). */
  readonly object: KObject;
  readonly mutation: ReviewOutcome;
  readonly validation: ReviewOutcome;
}

export function runPipeline(object: KObject, opts: SyntheticOptions, config: Config, cluster: ClusterState, rules: RuleSet): PipelineResult {
  const req = syntheticRequest(object, opts);
  const mutation = reviewMutate(req, config, cluster, rules);
  let mutated = object;
  const patch = mutation.response.response.patch;
  if (patch !== undefined) {
    const ops = JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as fastJsonPatch.Operation[];
    mutated = fastJsonPatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
  }
  const validation = reviewValidate({ ...req, object: mutated }, config, cluster, rules);
  return { object: mutated, mutation, validation };
}
