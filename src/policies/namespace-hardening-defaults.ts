// namespace-hardening-defaults: new namespaces get the injection label (first, and only when no
// mesh label is present) and the configured hardening labels and annotations. Never overwrites a
// value that is present; a second pass changes nothing.
import type { KObject, ObjectMeta } from '../core/request.ts';
import type { MutatingRule } from '../core/types.ts';
import { MESH_LABELS, injectionLabel } from './lib/mesh-enrollment.ts';
import { isRecord } from '../core/objects.ts';

function stringEntries(v: unknown): [string, string][] {
  return isRecord(v) ? (Object.entries(v).filter(([, x]) => typeof x === 'string') as [string, string][]) : [];
}

export const namespaceHardeningDefaults: MutatingRule = {
  id: 'namespace-hardening-defaults',
  type: 'mutating',
  title: 'New namespaces receive the mesh label and hardening labels and annotations',
  fix: 'nothing to fix: meshguard adds these on CREATE',
  match: { kinds: [{ group: '', kind: 'Namespace' }], operations: ['CREATE'] },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['namespaces'] }],
  mutate(ctx, draft: KObject) {
    const changes: string[] = [];
    if (!isRecord(draft.metadata)) draft.metadata = {};
    const meta: ObjectMeta = draft.metadata;
    // Labels and annotations of the wrong type are left alone (the apiserver rejects them).
    if (meta.labels !== undefined && !isRecord(meta.labels)) return changes;

    const labels = (meta.labels ?? {}) as Record<string, unknown>;
    const additions: [string, string][] = [];
    if (!MESH_LABELS.some((k) => Object.hasOwn(labels, k))) additions.push([...injectionLabel(ctx.config)]);
    for (const [k, v] of Object.entries(ctx.config.hardening.labels)) if (!Object.hasOwn(labels, k)) additions.push([k, v]);
    if (additions.length > 0) {
      // The injection label goes first; existing labels keep their values.
      meta.labels = Object.fromEntries([...additions, ...Object.entries(labels)]) as Record<string, string>;
      for (const [k, v] of additions) changes.push(`label ${k}=${v}`);
    }

    if (meta.annotations !== undefined && !isRecord(meta.annotations)) return changes;
    const annotations = (meta.annotations ?? {}) as Record<string, unknown>;
    const missing = stringEntries(ctx.config.hardening.annotations).filter(([k]) => !Object.hasOwn(annotations, k));
    if (missing.length > 0) {
      meta.annotations = { ...(annotations as Record<string, string>), ...Object.fromEntries(missing) };
      for (const [k, v] of missing) changes.push(`annotation ${k}=${v}`);
    }
    return changes;
  },
};
