// exception-admin-only: only configured admin groups/users may create or change a
// MeshguardException (meshguard.dev/v1alpha1), and even theirs must be well formed (covers named
// or selected objects, names its rules, a reason and an expiry). The chart's RBAC keeps tenants
// from writing them too; this rule holds where RBAC is broader (a tenant with a wildcard role).
// decide enforces it in every mode: an exception outlives the mode it was written in.
import { isAdmin } from '../core/users.ts';
import type { ValidatingRule } from '../core/types.ts';
import { decodeException, EXCEPTION_GROUP, EXCEPTION_KIND, EXCEPTION_PLURAL } from '../core/exception-model.ts';

export const exceptionAdminOnly: ValidatingRule = {
  id: 'exception-admin-only',
  type: 'validating',
  title: 'Only administrators may create or change MeshguardExceptions',
  fix: 'ask a platform administrator (a configured admin group or user) to grant the exception',
  match: { kinds: [{ group: EXCEPTION_GROUP, kind: EXCEPTION_KIND }], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [{ placement: 'all-namespaces', apiGroup: EXCEPTION_GROUP, apiVersions: ['v1alpha1'], resources: [EXCEPTION_PLURAL] }],
  validate(ctx) {
    const { request: req, config } = ctx;
    if (!isAdmin(config, req)) {
      return [{ message: `only meshguard administrators may ${req.operation === 'CREATE' ? 'create' : 'change'} a MeshguardException (requested by ${req.userInfo?.username ?? 'an unknown user'})`, path: 'metadata.name', value: req.name }];
    }
    const d = decodeException(req.object);
    return 'error' in d ? [{ message: d.error, fix: 'see docs/exceptions.md for the fields' }] : [];
  },
};
