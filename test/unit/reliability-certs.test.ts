// Certificate rotation under load (issue 8 item 6; checklist C18-C20), beyond test/unit/cli.test.ts:
// the files live in a directory laid out like a mounted Secret (kubelet's atomic writer: files are
// symlinks through `..data`, which is swapped in one rename), `meshguard serve` gets --cert-file,
// --key-file and --ca-file, and 40 concurrent clients (20 opening a new TLS connection per request,
// 20 on kept connections) send reviews through five swaps: four new leaves from one CA, then a CA
// rollover (clients trust both CAs, as a caBundle does during a rollover). Must hold: zero failed
// requests, each new certificate seen by new handshakes, kept connections keep working, and both
// expiry metrics (CA and leaf) follow the files.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { generateBundle, type CertBundle } from '../../src/jobs/certs/selfsigned.ts';
import { startServe } from '../helpers/process.ts';
import { reviewBody } from '../helpers/review.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshguard-certs-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const SANS = ['localhost', '127.0.0.1'];
let generation = 0;

/** Publish a bundle the way kubelet updates a Secret volume: new dir, then one atomic rename. */
function publish(b: { cert: string; key: string; caCert: string }): void {
  const gen = `..gen_${++generation}`;
  mkdirSync(join(dir, gen));
  writeFileSync(join(dir, gen, 'tls.crt'), b.cert);
  writeFileSync(join(dir, gen, 'tls.key'), b.key, { mode: 0o600 });
  writeFileSync(join(dir, gen, 'ca.crt'), b.caCert);
  symlinkSync(gen, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  if (generation === 1) for (const f of ['tls.crt', 'tls.key', 'ca.crt']) symlinkSync(join('..data', f), join(dir, f));
}

/** A CA with a subject of its own: during a rollover both CAs are trusted, and OpenSSL looks
 * issuers up by name (the generated certificates carry no authority key identifier). */
async function namedCA(cn: string, days: number): Promise<{ cert: string; key: string }> {
  const ca = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 5 * 60_000),
    notAfterDate: new Date(Date.now() + days * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

const epoch = (pem: string): number => Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000);
const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('five swaps (four leaves, then a CA rollover) under 40 concurrent clients: zero failures, CA and leaf expiry exposed', async (t) => {
  const ca1 = await namedCA('meshguard-test-ca-1', 3650);
  const ca2 = await namedCA('meshguard-test-ca-2', 1000);
  const leaves: CertBundle[] = [];
  for (const days of [365, 30, 60, 90, 45]) leaves.push(await generateBundle({ sans: SANS, ca: ca1, leafDays: days }));
  leaves.push(await generateBundle({ sans: SANS, ca: ca2, leafDays: 120 }));
  const first = leaves[0] as CertBundle;
  publish(first);
  const s = await startServe(['--port', '0', '--cert-file', join(dir, 'tls.crt'), '--key-file', join(dir, 'tls.key'), '--ca-file', join(dir, 'ca.crt'), '--log-level', 'warn']);
  t.teardown(() => s.stop('SIGKILL'));
  // Trust both CAs, as the webhook's caBundle does while a CA rollover is under way.
  const trust = [ca1.cert, ca2.cert];

  const metric = async (): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request(new URL('/metrics', s.url), { ca: trust, agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
  const expiry = (text: string, cert: 'ca' | 'leaf'): number => Number(new RegExp(`meshguard_certificate_expiry_timestamp_seconds\\{cert="${cert}"\\} (\\S+)`).exec(text)?.[1] ?? Number.NaN);

  const m0 = await metric();
  t.equal(expiry(m0, 'leaf'), epoch(first.cert), 'leaf expiry is exposed (notAfter of tls.crt)');
  t.equal(expiry(m0, 'ca'), epoch(ca1.cert), 'CA expiry is exposed too when --ca-file is given (notAfter of ca.crt)');

  // Load: 20 clients with a new connection per request, 20 on kept connections.
  const kept = new Agent({ keepAlive: true, maxSockets: 10 });
  t.teardown(() => kept.destroy());
  let running = true;
  let ok = 0;
  let keptOk = 0;
  const keptSockets = new Set<object>();
  const failures: string[] = [];
  const seen = new Set<string>();
  const one = (agent: Agent | false): Promise<void> =>
    new Promise((resolve) => {
      const body = JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } }));
      const req = request(new URL('/validate', s.url), { method: 'POST', ca: trust, agent, headers: { 'content-type': 'application/json' } }, (res) => {
        if (agent === false) seen.add((res.socket as TLSSocket).getPeerCertificate().fingerprint256);
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) {
            ok++;
            if (agent !== false) keptOk++;
          } else failures.push(`HTTP ${res.statusCode}`);
          resolve();
        });
      });
      if (agent !== false) req.on('socket', (sock) => keptSockets.add(sock));
      req.on('error', (e: NodeJS.ErrnoException) => {
        failures.push(`${e.code ?? ''} ${e.message}`);
        resolve();
      });
      req.end(body);
    });
  const loop = async (agent: Agent | false): Promise<void> => {
    while (running) await one(agent);
  };
  const loops = [...Array.from({ length: 20 }, () => loop(false)), ...Array.from({ length: 20 }, () => loop(kept))];

  await sleep(500);
  for (const [i, next] of leaves.slice(1).entries()) {
    const rollover = next.caCert !== first.caCert;
    publish(next);
    const want = fingerprint(next.cert);
    for (let k = 0; k < 100 && !seen.has(want); k++) await sleep(50);
    t.ok(seen.has(want), `swap ${i + 1}${rollover ? ' (new CA)' : ''}: new handshakes present the new certificate`);
    const m = await metric();
    t.equal(expiry(m, 'leaf'), epoch(next.cert), `swap ${i + 1}: leaf expiry follows (${new X509Certificate(next.cert).validTo})`);
    t.equal(expiry(m, 'ca'), epoch(next.caCert), `swap ${i + 1}: CA expiry follows (${new X509Certificate(next.caCert).validTo})`);
    await sleep(700);
  }
  running = false;
  await Promise.all(loops);

  t.same(failures, [], `zero failed requests across five swaps (${ok} answered, ${keptOk} of them on kept connections)`);
  t.ok(keptOk > 100 && keptSockets.size <= 10, `connections opened before the swaps kept working through them (${keptOk} requests over ${keptSockets.size} connections)`);
  const final = await metric();
  t.match(final, 'meshguard_certificate_reload_failing 0', 'no reload failure was raised');
  t.match(final, /meshguard_certificate_reloads_total\{result="success"\} 5\b/, 'five reloads counted, the CA rollover included');
});
