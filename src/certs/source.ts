// Where the serving certificate comes from (files, or generated into certDir), and hot reload:
// the files are polled; a new valid pair is handed to the server (setSecureContext keeps existing
// connections); a malformed pair keeps the old one in service and is reported.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certCovers, generateBundle } from './generate.ts';

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

/** Throws a readable error when the pair is not usable. */
export function inspect(m: TlsMaterial): CertInfo {
  const leaf = new X509Certificate(m.cert);
  if (!leaf.checkPrivateKey(createPrivateKey(m.key))) throw new Error('the private key does not match the certificate');
  let caNotAfter: Date | null = null;
  if (m.ca !== null && m.ca.trim() !== '') caNotAfter = new Date(new X509Certificate(m.ca).validTo);
  return { leafNotAfter: new Date(leaf.validTo), caNotAfter, fingerprint256: leaf.fingerprint256 };
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

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/** Reuse certificates in `dir` when they cover the SANs for 30 more days; else generate them. */
export async function ensureGenerated(dir: string, sans: readonly string[]): Promise<FilePaths & { generated: boolean }> {
  const paths = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt') };
  try {
    const m = readMaterial(paths);
    inspect(m);
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

/** Serving material from files, polled for changes. */
export class FileCertSource {
  readonly paths: FilePaths;
  #current: TlsMaterial;
  #info: CertInfo;
  #timer: NodeJS.Timeout | undefined;
  #failedFingerprint = '';

  constructor(paths: FilePaths) {
    this.paths = paths;
    this.#current = readMaterial(paths);
    this.#info = inspect(this.#current);
  }

  get material(): TlsMaterial {
    return this.#current;
  }

  get info(): CertInfo {
    return this.#info;
  }

  /** Check the files once; returns true when a new pair was taken into service. */
  poll(events: ReloadEvents): boolean {
    let next: TlsMaterial;
    try {
      next = readMaterial(this.paths);
    } catch (err) {
      return this.#fail(events, err as Error, 'unreadable');
    }
    if (next.cert === this.#current.cert && next.key === this.#current.key && next.ca === this.#current.ca) return false;
    let info: CertInfo;
    try {
      info = inspect(next);
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
