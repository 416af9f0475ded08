// Who is asking: meshguard's administrators (config adminUsers and adminGroups) may set the
// control labels, write exceptions and widen reconciled NetworkPolicies.
import type { AdmissionRequest } from './request.ts';
import type { Config } from '../config/types.ts';

export function isAdmin(config: Config, req: AdmissionRequest): boolean {
  const u = req.userInfo;
  if (u === null) return false;
  return config.adminUsers.includes(u.username) || u.groups.some((g) => config.adminGroups.includes(g));
}
