// Where the serving certificate comes from (files, or generated into certDir), and hot reload:
// the files are polled; a new valid pair is handed to the server (setSecureContext keeps existing
// connections); a malformed pair keeps the old one in service and is reported.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError } from '../../config/validate.ts';
import { CERT_ERRORS, type CertErrorName } from '../../errors.ts';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certCovers, generateBundle } from './selfsigned.ts';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  /** The CA that signed cert, when known (for the expiry metric and the caBundle). */
  readonly ca: string | null;
}

export interface CertInfo {
  readonly leafNotAfter: Date;
  readonly caNotAfter: Date | null;
  readonly fingerprint256: string;
}

/** A serving certificate that cannot be used, with its code (src/errors.ts CERT_ERRORS). A
 * ConfigError: at start meshguard prints it and exits with code 2. */
export class CertificateError extends ConfigError {
  override name = 'CertificateError';
  readonly code: string;
  constructor(key: string, which: CertErrorName, detail: string) {
    super(key, `${CERT_ERRORS[which].code}: ${detail}`);
    this.code = CERT_ERRORS[which].code;
  }
}

export interface InspectOptions {
  /** DNS names and IPs the certificate must cover (server.certSans, or what it was generated for). */
  readonly names?: readonly string[];
  /** Clock (tests); default Date.now. */
  readonly nowMs?: number;
  /** Where the certificate came from, for the message. */
  readonly source?: string;
}

function uncovered(leaf: X509Certificate, names: readonly string[]): string[] {
  return names.filter((n) => (isIP(n) !== 0 ? leaf.checkIP(n) === undefined : leaf.checkHost(n) === undefined));
}

/** Throws a CertificateError (with its code) when the pair is not usable now. */
export function inspect(m: TlsMaterial, options: InspectOptions = {}): CertInfo {
  const key = 'server.certFile';
  const what = options.source === undefined ? 'the serving certificate' : `the serving certificate ${options.source}`;
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(m.cert);
  } catch (err) {
    throw new CertificateError(key, 'CERT_UNREADABLE', `${what} is not a PEM certificate (${(err as Error).message})`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(m.key));
  } catch (err) {
    throw new CertificateError(key, 'CERT_UNREADABLE', `the private key of ${what} is not a PEM key (${(err as Error).message})`);
  }
  if (!matches) throw new CertificateError(key, 'CERT_KEY_MISMATCH', `the private key does not match ${what}`);
  const now = options.nowMs ?? Date.now();
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notBefore.getTime() > now) throw new CertificateError(key, 'CERT_NOT_YET_VALID', `${what} is valid only from ${notBefore.toISOString()}`);
  if (notAfter.getTime() <= now) throw new CertificateError(key, 'CERT_EXPIRED', `${what} expired on ${notAfter.toISOString()}`);
  const missing = uncovered(leaf, options.names ?? []);
  if (missing.length > 0) {
    throw new CertificateError(key, 'CERT_NAMES', `${what} does not cover ${missing.join(', ')} (its names: ${leaf.subjectAltName ?? 'none'})`);
  }
  let caNotAfter: Date | null = null;
  if (m.ca !== null && m.ca.trim() !== '') {
    try {
      caNotAfter = new Date(new X509Certificate(m.ca).validTo);
    } catch (err) {
      throw new CertificateError('server.caFile', 'CERT_UNREADABLE', `the CA file is not a PEM certificate (${(err as Error).message})`);
    }
  }
  return { leafNotAfter: notAfter, caNotAfter, fingerprint256: leaf.fingerprint256 };
}

export interface FilePaths {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string | null;
}

function readMaterial(p: FilePaths): TlsMaterial {
  return {
    cert: readFileSync(p.certFile, 'utf8'),
    key: readFileSync(p.keyFile, 'utf8'),
    ca: p.caFile === null ? null : readFileSync(p.caFile, 'utf8'),
  };
}

/** tls.crt, tls.key and ca.crt in `dir` (the layout serve polls and the self-managed Secret fills). */
export function certPaths(dir: string): FilePaths & { readonly caFile: string } {
  return { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt') };
}

/** Write through a temporary file and a rename, so a reader never sees half a file. */
export function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/** Reuse certificates in `dir` when they cover the SANs for 30 more days; else generate them. */
export async function ensureGenerated(dir: string, sans: readonly string[]): Promise<FilePaths & { generated: boolean }> {
  const paths = certPaths(dir);
  try {
    const m = readMaterial(paths);
    inspect(m, { names: sans });
    if (certCovers(m.cert, sans, 30)) return { ...paths, generated: false };
  } catch {
    // missing or unusable: generate below
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const b = await generateBundle({ sans });
  writeAtomic(join(dir, 'ca.key'), b.caKey, 0o600);
  writeAtomic(paths.caFile, b.caCert, 0o644);
  writeAtomic(paths.keyFile, b.key, 0o600);
  writeAtomic(paths.certFile, b.cert, 0o644);
  return { ...paths, generated: true };
}

export interface ReloadEvents {
  onReload(m: TlsMaterial, info: CertInfo): void;
  onError(err: Error): void;
}

/** Serving material from files, polled for changes. A pair that is unreadable, mismatched, not
 * yet valid, expired or does not cover `names` is refused: at construction (start) with a
 * CertificateError; on a poll by keeping the pair in service and reporting the error. */
export class FileCertSource {
  readonly paths: FilePaths;
  readonly #names: readonly string[];
  readonly #now: () => number;
  #current: TlsMaterial;
  #info: CertInfo;
  #timer: NodeJS.Timeout | undefined;
  #failedFingerprint = '';

  constructor(paths: FilePaths, options: { readonly names?: readonly string[]; readonly now?: () => number } = {}) {
    this.paths = paths;
    this.#names = options.names ?? [];
    this.#now = options.now ?? Date.now;
    try {
      this.#current = readMaterial(paths);
    } catch (err) {
      throw new CertificateError('server.certFile', 'CERT_UNREADABLE', `cannot read ${paths.certFile} or ${paths.keyFile}: ${(err as Error).message}`);
    }
    this.#info = inspect(this.#current, this.#inspectOptions());
  }

  #inspectOptions(): InspectOptions {
    return { names: this.#names, nowMs: this.#now(), source: this.paths.certFile };
  }

  get material(): TlsMaterial {
    return this.#current;
  }

  get info(): CertInfo {
    return this.#info;
  }

  /** Why the certificate in service cannot be served now (readiness), or undefined. */
  problem(): string | undefined {
    if (this.#current.cert === '') return 'no certificate loaded';
    const now = this.#now();
    if (this.#info.leafNotAfter.getTime() <= now) return `${CERT_ERRORS.CERT_EXPIRED.code}: the serving certificate expired on ${this.#info.leafNotAfter.toISOString()}`;
    return undefined;
  }

  /** Check the files once; returns true when a new pair was taken into service. */
  poll(events: ReloadEvents): boolean {
    let next: TlsMaterial;
    try {
      next = readMaterial(this.paths);
    } catch (err) {
      return this.#fail(events, err as Error, 'unreadable');
    }
    if (next.cert === this.#current.cert && next.key === this.#current.key && next.ca === this.#current.ca) {
      if (this.#failedFingerprint === '') return false;
      // The files are back to the pair in service after a refused one: no longer failing.
      this.#failedFingerprint = '';
      events.onReload(next, this.#info);
      return true;
    }
    let info: CertInfo;
    try {
      info = inspect(next, this.#inspectOptions());
    } catch (err) {
      return this.#fail(events, err as Error, `${next.cert.length}:${next.key.length}:${next.cert.slice(-64)}`);
    }
    this.#current = next;
    this.#info = info;
    this.#failedFingerprint = '';
    events.onReload(next, info);
    return true;
  }

  #fail(events: ReloadEvents, err: Error, fingerprint: string): boolean {
    if (fingerprint !== this.#failedFingerprint) {
      this.#failedFingerprint = fingerprint; // report each bad version once
      events.onError(err);
    }
    return false;
  }

  watch(events: ReloadEvents, intervalMs: number): void {
    this.close();
    this.#timer = setInterval(() => this.poll(events), intervalMs);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
