// control-labels-admin-only: only configured admin groups/users may add, change or remove
// meshguard's own labels and annotations (meshguard.dev/*), such as the per-namespace mode.
// The hardening annotations the mutation adds with their configured values are not a change
// by the user.
import type { AdmissionRequest } from '../core/request.ts';
import { isAdmin } from '../core/users.ts';
import type { ValidatingRule, Violation } from '../core/types.ts';
import { annotationsOf, labelsOf } from '../core/objects.ts';

export const CONTROL_PREFIX = 'meshguard.dev/';

function changedKeys(
  kind: 'label' | 'annotation',
  now: Readonly<Record<string, unknown>>,
  before: Readonly<Record<string, unknown>>,
  defaults: Readonly<Record<string, string>>,
): Violation[] {
  const out: Violation[] = [];
  const keys = new Set([...Object.keys(now), ...Object.keys(before)]);
  for (const k of keys) {
    if (!k.startsWith(CONTROL_PREFIX) || now[k] === before[k]) continue;
    if (now[k] !== undefined && now[k] === defaults[k]) continue; // the configured hardening value
    const verb = before[k] === undefined ? 'add' : now[k] === undefined ? 'remove' : 'change';
    out.push({
      message: `only meshguard administrators may ${verb} the ${kind} ${k}`,
      path: `metadata.${kind}s["${k}"]`,
      value: String(now[k] ?? before[k]),
      fix: `leave ${k} as it was, or ask a platform administrator to set it`,
    });
  }
  return out;
}

function requester(req: AdmissionRequest): string {
  return req.userInfo === null ? 'an unknown user' : req.userInfo.username;
}

export const controlLabelsAdminOnly: ValidatingRule = {
  id: 'control-labels-admin-only',
  type: 'validating',
  title: "Only administrators may set meshguard's own labels and annotations",
  fix: 'ask a platform administrator (a configured admin group or user) to make this change',
  match: {
    kinds: [{ group: '', kind: 'Namespace' }],
    operations: ['CREATE', 'UPDATE'],
    subResources: ['', 'status', 'finalize'],
    exemptions: 'none',
  },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['namespaces', 'namespaces/status', 'namespaces/finalize'] }],
  validate(ctx) {
    const { request: req, config } = ctx;
    if (isAdmin(config, req)) return [];
    const found = [
      ...changedKeys('label', labelsOf(req.object), labelsOf(req.oldObject), config.hardening.labels),
      ...changedKeys('annotation', annotationsOf(req.object), annotationsOf(req.oldObject), config.hardening.annotations),
    ];
    return found.map((v) => ({ ...v, message: `${v.message} (requested by ${requester(req)})` }));
  },
};
