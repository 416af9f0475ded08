// Self-signed CA and serving certificate (ECDSA P-256, SHA-256) with selfsigned.
import { X509Certificate, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';

export interface CertBundle {
  readonly caCert: string;
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
}

export const DAY_MS = 86_400_000;

export function defaultSans(namespace: string, service = 'meshguard'): string[] {
  return [
    'localhost',
    '127.0.0.1',
    '::1',
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

function altNames(sans: readonly string[]): { type: 2 | 7; value?: string; ip?: string }[] {
  return [...new Set(sans)].map((s) => (isIP(s) !== 0 ? { type: 7 as const, ip: s } : { type: 2 as const, value: s }));
}

export interface GenerateOptions {
  readonly sans: readonly string[];
  readonly caDays?: number;
  readonly leafDays?: number;
  readonly now?: Date;
  /** Reuse this CA instead of creating one (renewing only the leaf). */
  readonly ca?: { readonly cert: string; readonly key: string };
}

export function generateCA(days = 3650, now = new Date()): Promise<{ cert: string; key: string }> {
  return caWithName('meshguard-ca', days, now);
}

/**
 * A CA like generateCA's, but with a subject of its own: during a rollover two CAs are trusted at
 * once, and certificates carry no authority key identifier, so a client that looks issuers up by
 * name (OpenSSL, hence Node) would try the wrong one if both were "meshguard-ca".
 */
export function generateNamedCA(days: number, now: Date): Promise<{ cert: string; key: string }> {
  const serial = `${now.toISOString().replace(/[-:]|\.\d+Z$/g, '')}-${randomBytes(3).toString('hex')}`;
  return caWithName(`meshguard-ca-${serial}`, days, now);
}

async function caWithName(commonName: string, days: number, now: Date): Promise<{ cert: string; key: string }> {
  const ca = await generate([{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'meshguard' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 5 * 60_000),
    notAfterDate: new Date(now.getTime() + days * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

export async function generateBundle(opts: GenerateOptions): Promise<CertBundle> {
  const now = opts.now ?? new Date();
  const ca = opts.ca ?? (await generateCA(opts.caDays ?? 3650, now));
  const leaf = await generate([{ name: 'commonName', value: opts.sans[0] ?? 'meshguard' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 5 * 60_000),
    notAfterDate: new Date(now.getTime() + (opts.leafDays ?? 365) * DAY_MS),
    ca: { cert: ca.cert, key: ca.key },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: altNames(opts.sans) },
    ],
  });
  return { caCert: ca.cert, caKey: ca.key, cert: leaf.cert, key: leaf.private };
}

/** True when the PEM certificate covers every SAN and is valid for at least `minDays` more. */
export function certCovers(certPem: string, sans: readonly string[], minDays: number, now = new Date()): boolean {
  try {
    const x = new X509Certificate(certPem);
    if (new Date(x.validTo).getTime() - now.getTime() < minDays * DAY_MS) return false;
    return sans.every((s) => (isIP(s) !== 0 ? x.checkIP(s) !== undefined : x.checkHost(s) !== undefined));
  } catch {
    return false;
  }
}
