// Self-managed certificates, the pure part: what the certificate Secret holds, what to renew, and
// the next content of the Secret. PEM strings, a clock and a policy in; a plan out. No API calls and
// no files (secret.ts is the Secret's codec, adapter.ts the side effects, loop.ts the schedule).
//
// The caBundle is a stored value (the Secret's ca-bundle.crt), never recomputed per replica, so
// every replica patches the same bytes. A CA is replaced in two steps so that the apiserver trusts
// a new CA before any certificate signed by it is served: first the next CA is added to the bundle
// (staged) while the old CA keeps signing; a later round (once the webhooks carry the bundle and
// `caSettleMs` has passed) promotes it, issues a new serving certificate from it, and keeps the old
// CA in the bundle until it expires, so replicas still serving the old certificate stay trusted.
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import type { Config } from '../../config/types.ts';
import { DAY_MS, defaultSans } from './selfsigned.ts';

/** Default time between staging a new CA in the bundle and signing with it. */
export const DEFAULT_CA_SETTLE_MS = 60_000;

/** What the Secret holds, as PEM strings (any of them may be missing or garbage). */
export interface StoredCerts {
  readonly caCert?: string;
  readonly caKey?: string;
  readonly cert?: string;
  readonly key?: string;
  /** PEM certificates the webhooks trust (the caBundle, before base64). */
  readonly bundle?: string;
  /** A CA added to the bundle ahead of signing with it. */
  readonly nextCaCert?: string;
  readonly nextCaKey?: string;
  readonly nextCaStagedAtMs?: number;
}

interface CertFacts {
  readonly pem: string;
  readonly x: X509Certificate;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

function parseCert(pem: string | undefined): CertFacts | undefined {
  if (pem === undefined || pem.trim() === '') return undefined;
  try {
    const x = new X509Certificate(pem);
    return { pem: splitPems(pem)[0] ?? pem, x, notBeforeMs: Date.parse(x.validFrom), notAfterMs: Date.parse(x.validTo) };
  } catch {
    return undefined;
  }
}

function keyMatches(c: CertFacts, keyPem: string | undefined): boolean {
  if (keyPem === undefined) return false;
  try {
    return c.x.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

function signedBy(leaf: CertFacts, ca: CertFacts): boolean {
  try {
    return leaf.x.checkIssued(ca.x) && leaf.x.verify(createPublicKey(ca.pem));
  } catch {
    return false;
  }
}

function covers(c: CertFacts, sans: readonly string[]): boolean {
  return sans.every((s) => (/^[\d.]+$|:/.test(s) ? c.x.checkIP(s) !== undefined : c.x.checkHost(s) !== undefined));
}

/** The PEM certificates in a bundle, in order, each with LF line ends and one trailing newline. */
export function splitPems(bundle: string | undefined): string[] {
  return [...(bundle ?? '').matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0].replace(/\r\n/g, '\n')}\n`);
}

/** How long before expiry a certificate is renewed: renewBefore, but at most a third of its lifetime. */
export function renewalWindowMs(c: { readonly notBeforeMs: number; readonly notAfterMs: number }, renewBeforeMs: number): number {
  return Math.min(renewBeforeMs, (c.notAfterMs - c.notBeforeMs) / 3);
}

function inWindow(c: CertFacts, nowMs: number, renewBeforeMs: number): boolean {
  return c.notAfterMs - nowMs < renewalWindowMs(c, renewBeforeMs);
}

/** A CA that can sign: parses, its key matches, valid now. */
function usableCa(cert: string | undefined, key: string | undefined, nowMs: number): CertFacts | undefined {
  const c = parseCert(cert);
  if (c === undefined || !keyMatches(c, key) || c.notBeforeMs > nowMs || c.notAfterMs <= nowMs) return undefined;
  return c;
}

export interface RenewalPolicy {
  /** DNS names and IPs the serving certificate must cover. */
  readonly sans: readonly string[];
  readonly renewBeforeMs: number;
  /** How long a staged CA sits in the bundle before it signs (and the webhooks must carry it). */
  readonly caSettleMs: number;
}

export interface PlanInput {
  readonly stored: StoredCerts | undefined;
  readonly nowMs: number;
  readonly policy: RenewalPolicy;
  /** Every existing webhook carries the stored bundle (or none exists). */
  readonly webhooksInSync: boolean;
  /** Renew regardless of expiry: the serving certificate, and/or start a CA rollover. */
  readonly force?: { readonly leaf?: boolean; readonly ca?: boolean } | undefined;
}

export interface RenewalPlan {
  /** False: the Secret is fine as stored. */
  readonly write: boolean;
  /** reuse the stored CA, create a new one (nothing usable), or promote the staged next CA. */
  readonly ca: 'reuse' | 'new' | 'promote';
  /** none: no staged CA afterwards; keep the staged one; stage a new one. */
  readonly nextCa: 'none' | 'keep' | 'new';
  readonly leaf: 'reuse' | 'new';
  /** Other CAs that stay in the bundle (unexpired entries of the stored bundle, the replaced CA). */
  readonly keepTrusted: readonly string[];
  readonly reasons: readonly string[];
}

/** Why the stored serving certificate cannot be kept (whatever its expiry), or undefined. */
function leafProblem(leaf: CertFacts | undefined, key: string | undefined, ca: CertFacts, sans: readonly string[], nowMs: number): string | undefined {
  if (leaf === undefined || !keyMatches(leaf, key)) return 'the serving certificate is missing or does not match its key';
  if (!signedBy(leaf, ca)) return 'the serving certificate was not signed by the stored CA';
  if (!covers(leaf, sans)) return 'the serving certificate does not cover every name';
  if (leaf.notAfterMs <= nowMs) return 'the serving certificate has expired';
  return undefined;
}

/** Decide what to renew. Pure: the Secret as read, the clock and the policy in; a plan out. */
export function planRenewal(input: PlanInput): RenewalPlan {
  const s = input.stored ?? {};
  const now = input.nowMs;
  const before = input.policy.renewBeforeMs;
  const reasons: string[] = [];
  const unexpired = (pems: readonly string[]): string[] => pems.filter((p) => (parseCert(p)?.notAfterMs ?? 0) > now);
  const storedBundle = splitPems(s.bundle);

  const ca = usableCa(s.caCert, s.caKey, now);
  if (ca === undefined) {
    reasons.push(input.stored === undefined ? 'no Secret yet' : 'the stored CA is missing, unreadable, expired or does not match its key');
    return { write: true, ca: 'new', nextCa: 'none', leaf: 'new', keepTrusted: unexpired(storedBundle), reasons };
  }

  const leaf = parseCert(s.cert);
  const problem = leafProblem(leaf, s.key, ca, input.policy.sans, now);
  const leafDue = problem === undefined && leaf !== undefined && inWindow(leaf, now, before);
  // A certificate running to the CA's own expiry cannot be extended by the same CA; the CA
  // rollover (due no later: a shorter lifetime never has a longer window) renews it.
  const leafCapped = leaf !== undefined && leaf.notAfterMs >= ca.notAfterMs - 60_000;
  const caDue = inWindow(ca, now, before);

  let caAction: RenewalPlan['ca'] = 'reuse';
  let nextCa: RenewalPlan['nextCa'] = 'none';
  const next = usableCa(s.nextCaCert, s.nextCaKey, now);
  if (next !== undefined && !inWindow(next, now, before)) {
    const settled = s.nextCaStagedAtMs !== undefined && now - s.nextCaStagedAtMs >= input.policy.caSettleMs && input.webhooksInSync && storedBundle.includes(next.pem);
    if (settled) {
      caAction = 'promote';
      reasons.push('the staged CA has been trusted long enough: it signs from now on');
    } else {
      nextCa = 'keep';
    }
  } else if (caDue || input.force?.ca === true) {
    nextCa = 'new';
    reasons.push(caDue ? `the CA expires ${new Date(ca.notAfterMs).toISOString()}, within the renewal window: staging the next CA` : 'CA rollover requested: staging the next CA');
  } else if (s.nextCaCert !== undefined) {
    reasons.push('dropping an unusable staged CA');
  }

  let leafAction: RenewalPlan['leaf'] = 'new';
  if (caAction === 'promote') reasons.push('a new serving certificate from the promoted CA');
  else if (problem !== undefined) reasons.push(problem);
  else if (leafDue && !leafCapped) reasons.push(`the serving certificate expires ${new Date(leaf?.notAfterMs ?? 0).toISOString()}, within the renewal window`);
  else if (input.force?.leaf === true) reasons.push('renewal requested');
  else leafAction = 'reuse';

  const keepTrusted = unexpired([...storedBundle, ...(caAction === 'promote' ? [ca.pem] : [])]);
  const plan: RenewalPlan = { write: true, ca: caAction, nextCa, leaf: leafAction, keepTrusted, reasons };
  if (caAction !== 'reuse' || leafAction === 'new' || nextCa === 'new' || (s.nextCaCert !== undefined && nextCa === 'none')) return plan;
  // Nothing to generate; the bundle may still lack the current or staged CA, or hold expired ones.
  const wanted = bundleFor(ca.pem, nextCa === 'keep' ? next?.pem : undefined, keepTrusted);
  if (wanted !== storedBundle.join('')) return { ...plan, reasons: [...reasons, 'the trusted CA bundle is out of date'] };
  return { ...plan, write: false };
}

/** The caBundle: the signing CA, the staged CA, then the other still-trusted CAs, without repeats. */
export function bundleFor(caPem: string, nextCaPem: string | undefined, keepTrusted: readonly string[]): string {
  const out: string[] = [];
  for (const p of [...splitPems(caPem), ...splitPems(nextCaPem), ...keepTrusted.flatMap((k) => splitPems(k))]) if (!out.includes(p)) out.push(p);
  return out.join('');
}

export interface Generated {
  readonly ca?: { readonly cert: string; readonly key: string };
  readonly nextCa?: { readonly cert: string; readonly key: string };
  readonly leaf?: { readonly cert: string; readonly key: string };
}

/** The next content of the Secret from the plan, the stored content and what was generated. */
export function nextStored(plan: RenewalPlan, s: StoredCerts, g: Generated, nowMs: number): StoredCerts {
  const pick = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`internal: the plan needs ${what}`);
    return v;
  };
  const ca =
    plan.ca === 'reuse'
      ? { cert: pick(s.caCert, 'the stored CA'), key: pick(s.caKey, 'the stored CA key') }
      : plan.ca === 'promote'
        ? { cert: pick(s.nextCaCert, 'the staged CA'), key: pick(s.nextCaKey, 'the staged CA key') }
        : pick(g.ca, 'a new CA');
  const leaf = plan.leaf === 'new' ? pick(g.leaf, 'a new serving certificate') : { cert: pick(s.cert, 'the stored certificate'), key: pick(s.key, 'the stored key') };
  const next =
    plan.nextCa === 'new'
      ? { ...pick(g.nextCa, 'a new staged CA'), stagedAtMs: nowMs }
      : plan.nextCa === 'keep'
        ? { cert: pick(s.nextCaCert, 'the staged CA'), key: pick(s.nextCaKey, 'the staged CA key'), stagedAtMs: s.nextCaStagedAtMs ?? nowMs }
        : undefined;
  return {
    caCert: ca.cert,
    caKey: ca.key,
    cert: leaf.cert,
    key: leaf.key,
    bundle: bundleFor(ca.cert, next?.cert, plan.keepTrusted),
    ...(next !== undefined ? { nextCaCert: next.cert, nextCaKey: next.key, nextCaStagedAtMs: next.stagedAtMs } : {}),
  };
}

/** Names the serving certificate covers: the Service's DNS names, loopback, and server.certSans. */
export function servingSans(config: Config): string[] {
  return [...new Set([...defaultSans(config.meshguardNamespace, config.selfManagedCerts.serviceName), ...config.server.certSans])];
}

/** The renewal policy from the configuration. */
export function renewalPolicy(config: Config, caSettleMs = DEFAULT_CA_SETTLE_MS): RenewalPolicy {
  return { sans: servingSans(config), renewBeforeMs: config.selfManagedCerts.renewBeforeDays * DAY_MS, caSettleMs };
}
