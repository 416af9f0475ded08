// Webhook arming, the pure plan (docs/adr/0005-webhooks-fail-open-until-ready.md): the chart
// renders every webhook with failurePolicy Ignore; meshguard switches the webhooks that follow the
// mode to their configured policy (Fail in enforce mode) only while a ready meshguard answers
// behind them and their caBundle trusts the certificate meshguard serves, and switches them back
// to Ignore when none does (the last replica draining, every replica unready). A configuration
// that nothing answers therefore never fails closed because of an install, an image that never
// pulls or a scale-down; a crash-loop after arming stays fail-closed by design (the ADR says why).
//
// This file decides which webhooks get which policy; adapter.ts reads and patches the webhook
// configurations and EndpointSlices, loop.ts re-checks on a timer.
import { X509Certificate } from 'node:crypto';
import { webhookConfigurations, type FailurePolicy } from '../../policies/webhook-config.ts';
import type { JsonPatchOp } from '../../kube/webhook-patch.ts';

export interface ArmableWebhook {
  readonly name?: string | undefined;
  readonly failurePolicy?: string | undefined;
  readonly clientConfig?: { readonly caBundle?: string | undefined; readonly url?: string | undefined; readonly service?: { readonly namespace?: string; readonly name?: string } | undefined } | undefined;
}

export interface ArmableConfiguration {
  readonly webhooks?: readonly ArmableWebhook[] | undefined;
}

export interface ArmingInput {
  /** The policy of an armed webhook (Fail in enforce mode). */
  readonly armed: FailurePolicy;
  /** Names of the webhooks that follow the mode; the others (the mesh-config webhook) stay as rendered. */
  readonly followers: ReadonlySet<string>;
  /** A ready meshguard answers calls to these webhooks. */
  readonly backendReady: boolean;
  /** Whether a webhook's caBundle (base64 PEM) trusts the certificate meshguard serves. */
  readonly trusts: (caBundleBase64: string | undefined) => boolean;
}

/** The failurePolicy a follower webhook should have now. */
export function desiredPolicy(w: ArmableWebhook, i: ArmingInput): FailurePolicy {
  return i.backendReady && i.trusts(w.clientConfig?.caBundle) ? i.armed : 'Ignore';
}

/**
 * JSON patch setting each follower's failurePolicy where it differs; each change first tests the
 * webhook's name and its policy as read, so a concurrent writer (another replica, helm upgrade)
 * makes the patch fail instead of landing on the wrong element. Empty: nothing to change.
 */
export function armingPatch(config: ArmableConfiguration, i: ArmingInput): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  (config.webhooks ?? []).forEach((w, n) => {
    if (w.name === undefined || !i.followers.has(w.name)) return;
    const want = desiredPolicy(w, i);
    if (w.failurePolicy === want) return;
    ops.push({ op: 'test', path: `/webhooks/${n}/name`, value: w.name });
    if (w.failurePolicy !== undefined) ops.push({ op: 'test', path: `/webhooks/${n}/failurePolicy`, value: w.failurePolicy });
    ops.push({ op: 'add', path: `/webhooks/${n}/failurePolicy`, value: want });
  });
  return ops;
}

/** The Service the webhooks call (the first follower with a service clientConfig), if any. */
export function serviceOf(configs: readonly (ArmableConfiguration | undefined)[], followers: ReadonlySet<string>): { namespace: string; name: string } | undefined {
  for (const c of configs) {
    for (const w of c?.webhooks ?? []) {
      const s = w.clientConfig?.service;
      if (w.name !== undefined && followers.has(w.name) && s?.namespace !== undefined && s.name !== undefined) return { namespace: s.namespace, name: s.name };
    }
  }
  return undefined;
}

export interface EndpointLike {
  readonly ready: boolean;
  /** Pod name (targetRef.name), when the endpoint is a pod. */
  readonly pod?: string | undefined;
}

/**
 * Whether a ready meshguard answers through the Service: an endpoint the Service routes to that is
 * ready, counting this replica's own endpoint only while this replica is ready itself (a draining
 * replica is still listed ready until the endpoints controller catches up).
 */
export function serviceReady(endpoints: readonly EndpointLike[], self: { readonly pod: string; readonly ready: boolean }): boolean {
  return endpoints.some((e) => e.ready && (e.pod !== self.pod || self.ready));
}

/** Whether a base64 PEM bundle holds a CA that issued `servedCertPem`. */
export function bundleTrusts(caBundleBase64: string | undefined, servedCertPem: string): boolean {
  if (caBundleBase64 === undefined || caBundleBase64 === '' || servedCertPem === '') return false;
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(servedCertPem);
  } catch {
    return false;
  }
  const pems = Buffer.from(caBundleBase64, 'base64').toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems.some((p) => {
    try {
      const ca = new X509Certificate(p);
      return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
}

/** Names of the webhooks whose failurePolicy follows the mode (found by generating both ways). */
export function followingWebhooks(rules: Parameters<typeof webhookConfigurations>[0]['rules']): Set<string> {
  const base = { client: { url: 'https://x' }, timeoutSeconds: 5, exemptNamespaces: [], meshguardNamespace: 'x', rules };
  const names = (p: FailurePolicy): Map<string, string> => {
    const c = webhookConfigurations({ ...base, failurePolicy: p });
    return new Map([c.mutating, c.validating].flatMap((x) => (x['webhooks'] as { name: string; failurePolicy: string }[]).map((w) => [w.name, w.failurePolicy])));
  };
  const fail = names('Fail');
  const ignore = names('Ignore');
  return new Set([...fail.keys()].filter((n) => fail.get(n) !== ignore.get(n)));
}
