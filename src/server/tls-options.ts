// TLS settings for the HTTPS server: TLS 1.2 minimum, AEAD-only ciphers for 1.2 (1.3 suites are
// all AEAD), server cipher preference.
import type { SecureContextOptions } from 'node:tls';
import type { TlsMaterial } from '../certs/source.ts';

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
