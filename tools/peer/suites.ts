// Where the peer comparison finds Kyverno's Istio policies and their own test resources: a copy
// kept beside the repository (../shared/peer-suites/kyverno-istio), or MESHGUARD_PEER_SUITES
// (the folder that holds kyverno-istio). Only the peer comparison (npm run peer) reads it; the
// test suite never does, so `npm test` passes from the repository alone.
import { join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const PEER_SUITES = process.env.MESHGUARD_PEER_SUITES ?? join(ROOT, '..', 'shared', 'peer-suites');
export const PEER = join(PEER_SUITES, 'kyverno-istio');
