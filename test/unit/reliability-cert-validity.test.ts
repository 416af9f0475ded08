// Invalid serving certificates (issue 18 item 3): an expired or not-yet-valid certificate, or one
// whose SANs do not cover the configured names (server.certSans), is refused at start with its
// code (exit 2); on reload the pair in service is kept and meshguard_certificate_reload_failing
// is 1; readiness fails once the certificate in service has expired. Real certificates from the
// project's generator, real `meshguard serve` processes, real TLS.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateBundle, type CertBundle } from '../../src/jobs/certs/selfsigned.ts';
import { FileCertSource, inspect } from '../../src/jobs/certs/source.ts';
import { CERT_ERRORS } from '../../src/errors.ts';
import { startServe } from '../helpers/process.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'meshguard-cert-validity-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** How long `meshguard serve` may take to start (a busy machine loads TypeScript slowly). */
const START_MS = 180_000;

const good = (): Promise<CertBundle> => generateBundle({ sans: ['localhost', '127.0.0.1'] });
const expired = (): Promise<CertBundle> => generateBundle({ sans: ['localhost', '127.0.0.1'], now: new Date(Date.now() - 10 * DAY), leafDays: 1 });
const notYetValid = (): Promise<CertBundle> => generateBundle({ sans: ['localhost', '127.0.0.1'], now: new Date(Date.now() + 10 * DAY) });
const wrongNames = (): Promise<CertBundle> => generateBundle({ sans: ['elsewhere.example', '10.9.9.9'] });

let n = 0;
/** Write a pair (atomically, as a mounted Secret changes) and return the file paths. */
function write(b: CertBundle, where = join(dir, `pair-${++n}`)): { certFile: string; keyFile: string } {
  const certFile = `${where}.crt`;
  const keyFile = `${where}.key`;
  writeFileSync(`${keyFile}.tmp`, b.key, { mode: 0o600 });
  writeFileSync(`${certFile}.tmp`, b.cert);
  renameSync(`${keyFile}.tmp`, keyFile);
  renameSync(`${certFile}.tmp`, certFile);
  return { certFile, keyFile };
}

const configFile = join(dir, 'config.json');
writeFileSync(configFile, JSON.stringify({ server: { certSans: ['localhost', '127.0.0.1'] } }));
const serveArgs = (p: { certFile: string; keyFile: string }): string[] => [
  '--port', '0', '--config', configFile, '--cert-file', p.certFile, '--key-file', p.keyFile, '--log-level', 'error', '--audit-log', join(dir, 'audit.jsonl'),
];

t.test('inspect refuses each invalid certificate with its code', async (t) => {
  for (const [name, make, code] of [
    ['an expired certificate', expired, CERT_ERRORS.CERT_EXPIRED.code],
    ['a certificate not valid yet', notYetValid, CERT_ERRORS.CERT_NOT_YET_VALID.code],
    ['a certificate that does not cover localhost and 127.0.0.1', wrongNames, CERT_ERRORS.CERT_NAMES.code],
  ] as const) {
    const b = await make();
    t.throws(() => inspect({ cert: b.cert, key: b.key, ca: null }, { names: ['localhost', '127.0.0.1'] }), { code }, `${name}: ${code}`);
  }
  const other = await good();
  const b = await good();
  t.throws(() => inspect({ cert: b.cert, key: other.key, ca: null }), { code: CERT_ERRORS.CERT_KEY_MISMATCH.code }, 'a key of another certificate: MG_CERT_KEY_MISMATCH');
  t.throws(() => inspect({ cert: 'not a certificate', key: b.key, ca: null }), { code: CERT_ERRORS.CERT_UNREADABLE.code }, 'garbage: MG_CERT_UNREADABLE');
  t.doesNotThrow(() => inspect({ cert: b.cert, key: b.key, ca: b.caCert }, { names: ['localhost', '127.0.0.1'] }), 'a valid pair covering the names is accepted');
});

t.test('a certificate source reports a problem once the certificate in service has expired', async (t) => {
  const b = await good();
  let now = Date.now();
  const src = new FileCertSource({ ...write(b), caFile: null }, { names: ['localhost'], now: () => now });
  t.equal(src.problem(), undefined, 'valid now: no problem');
  now = new Date(new X509Certificate(b.cert).validTo).getTime() + 1000;
  t.match(src.problem(), CERT_ERRORS.CERT_EXPIRED.code, 'past notAfter: MG_CERT_EXPIRED');
});

t.test('meshguard serve refuses to start with an invalid certificate, with the code', async (t) => {
  for (const [name, make, code] of [
    ['expired', expired, CERT_ERRORS.CERT_EXPIRED.code],
    ['not yet valid', notYetValid, CERT_ERRORS.CERT_NOT_YET_VALID.code],
    ['not covering server.certSans', wrongNames, CERT_ERRORS.CERT_NAMES.code],
  ] as const) {
    const started = await startServe(serveArgs(write(await make())), { timeoutMs: START_MS }).then(
      async (s) => {
        await s.stop('SIGKILL');
        return 'started';
      },
      (err: Error) => err.message,
    );
    t.match(started, new RegExp(`exited with 2:[\\s\\S]*${code}`), `${name}: exit code 2 and ${code} on stderr`);
  }
});

function metric(url: string, ca: string, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/metrics', url), { ca, servername: 'localhost' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The fingerprint of the certificate a new handshake is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }, () => {
      resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '');
      s.destroy();
    });
    s.on('error', reject);
  });
}

t.test('on reload an invalid pair is refused: the old pair stays in service and reload_failing is 1', async (t) => {
  const first = await good();
  const where = join(dir, 'served');
  const paths = write(first, where);
  const s = await startServe(serveArgs(paths), { timeoutMs: START_MS });
  t.teardown(() => s.stop('SIGKILL'));
  const fp = new X509Certificate(first.cert).fingerprint256;
  t.equal(await servedFingerprint(s.port), fp, 'the first pair is served');
  t.equal(await metric(s.url, first.caCert, 'meshguard_certificate_reload_failing'), 0, 'reload_failing 0 at start');
  for (const [name, make] of [
    ['an expired pair', expired],
    ['a pair not valid yet', notYetValid],
    ['a pair not covering server.certSans', wrongNames],
  ] as const) {
    write(await make(), where);
    let failing = 0;
    for (let i = 0; i < 240 && failing !== 1; i++) {
      await sleep(250);
      failing = await metric(s.url, first.caCert, 'meshguard_certificate_reload_failing');
    }
    t.equal(failing, 1, `${name}: reload_failing is 1`);
    t.equal(await servedFingerprint(s.port), fp, `${name}: the old pair is still served`);
    t.match(s.stderr(), /not usable; keeping the current certificate/, 'and the refusal is logged (the log is on stderr; stdout carries audit records)');
    write(first, where);
    for (let i = 0; i < 240 && failing !== 0; i++) {
      await sleep(250);
      failing = await metric(s.url, first.caCert, 'meshguard_certificate_reload_failing');
    }
    t.equal(failing, 0, `back to a valid pair: reload_failing is 0 again`);
  }
});

function readyz(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // The kubelet does not verify a probe's certificate; neither does this (it has expired).
    const req = request({ host: '127.0.0.1', port, path: '/readyz', rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('readiness fails once the certificate in service has expired', async (t) => {
  // Start with a long-lived pair (however slow the start), then swap in one valid for 20 more
  // seconds: it is taken into service, and then it expires while being served.
  const where = join(dir, 'expiring');
  const s = await startServe(serveArgs(write(await good(), where)), { timeoutMs: START_MS });
  t.teardown(() => s.stop('SIGKILL'));
  const b = await generateBundle({ sans: ['localhost', '127.0.0.1'], now: new Date(Date.now() - 5 * 60_000 + 20_000), leafDays: 5 / (24 * 60) });
  write(b, where);
  const fp = new X509Certificate(b.cert).fingerprint256;
  let served = '';
  for (let i = 0; i < 240 && served !== fp; i++) {
    await sleep(250);
    served = await servedFingerprint(s.port);
  }
  t.equal(served, fp, 'the short-lived pair is taken into service');
  let after = await readyz(s.port);
  for (let i = 0; i < 240 && after.status !== 503; i++) {
    await sleep(250);
    after = await readyz(s.port);
  }
  t.equal(after.status, 503, 'not ready once it has expired');
  t.match(after.body, /"certificates":"MG_CERT_EXPIRED/, 'the failing check names the certificate and the code');
});
