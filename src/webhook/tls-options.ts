// TLS settings for the HTTPS server: TLS 1.2 minimum, AEAD-only ciphers for 1.2 (1.3 suites are
// all AEAD), server cipher preference.
import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpsOptions } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import { ConfigError } from '../config/validate.ts';
import type { TlsMaterial } from '../jobs/certs/source.ts';

export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export function secureContextOptions(m: TlsMaterial, minVersion: 'TLSv1.2' | 'TLSv1.3'): SecureContextOptions {
  return { key: m.key, cert: m.cert, minVersion, ciphers: TLS12_CIPHERS, honorCipherOrder: true };
}

/** The client CA file's PEM certificates; a ConfigError when it holds none. */
export function readClientCa(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('server.clientCaFile', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('server.clientCaFile', `${file} holds no PEM certificate`);
  return text;
}

/**
 * The HTTPS server's options. With a client CA, every client is asked for a certificate
 * (requestCert) but the handshake does not fail without one (rejectUnauthorized false): the
 * kubelet's probes and metrics scrapers present none. The admission routes refuse a connection
 * that is not authorized (app.ts, 401 MG_CLIENT_CERT).
 */
export function serverTlsOptions(m: TlsMaterial, minVersion: 'TLSv1.2' | 'TLSv1.3', clientCa: string | null): HttpsOptions {
  const base: HttpsOptions = secureContextOptions(m, minVersion);
  if (clientCa === null) return base;
  return { ...base, ca: clientCa, requestCert: true, rejectUnauthorized: false };
}
