import t from 'tap';
import { connect } from 'node:tls';
import { ERRORS } from '../../src/errors.ts';
import { ADMIN, reviewBody } from '../helpers/review.ts';
import { captureLog, get, post, startServer } from '../helpers/server.ts';

const server = await startServer();
t.teardown(() => server.close());

const ns = (labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels } });

t.test('bad input gets a coded 4xx or a well-formed review, never a crash (real HTTPS)', async (t) => {
  const valid = reviewBody(ns({ 'istio-injection': 'enabled' }));
  const cases: [string, string | undefined, Record<string, string>, number, string][] = [
    ['a body that is not JSON is a 400', 'not json', { 'content-type': 'application/json' }, 400, ERRORS.BODY_NOT_JSON.code],
    ['an empty JSON body is a 400', '', { 'content-type': 'application/json' }, 400, ERRORS.BODY_MISSING.code],
    ['no body and no content type is a 400', undefined, {}, 400, ERRORS.BODY_MISSING.code],
    ['a text/plain body is a 415', JSON.stringify(valid), { 'content-type': 'text/plain' }, 415, ERRORS.CONTENT_TYPE.code],
    ['a form body is a 415', 'a=1', { 'content-type': 'application/x-www-form-urlencoded' }, 415, ERRORS.CONTENT_TYPE.code],
    ['a JSON array is a 400', '[]', { 'content-type': 'application/json' }, 400, ERRORS.REVIEW_NOT_OBJECT.code],
    ['a JSON string is a 400', '"x"', { 'content-type': 'application/json' }, 400, ERRORS.REVIEW_NOT_OBJECT.code],
    ['a review without request is a 400', JSON.stringify({ ...valid, request: undefined }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_MISSING.code],
    ['a review without request.uid is a 400', JSON.stringify({ ...valid, request: { ...valid.request, uid: undefined } }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_UID.code],
    ['a v1beta1 review is a 400', JSON.stringify({ ...valid, apiVersion: 'admission.k8s.io/v1beta1' }), { 'content-type': 'application/json' }, 400, ERRORS.REVIEW_API_VERSION.code],
    ['a review of another kind is a 400', JSON.stringify({ ...valid, kind: 'TokenReview' }), { 'content-type': 'application/json' }, 400, ERRORS.REVIEW_KIND.code],
    ['a request with an unknown operation is a 400', JSON.stringify({ ...valid, request: { ...valid.request, operation: 'PATCH' } }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_INVALID.code],
    ['an object that is a string is a 400', JSON.stringify({ ...valid, request: { ...valid.request, object: 'x' } }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_INVALID.code],
    ['a CREATE whose object is null is a 400', JSON.stringify({ ...valid, request: { ...valid.request, operation: 'CREATE', object: null } }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_OBJECT_MISSING.code],
    ['an UPDATE whose object is null is a 400', JSON.stringify({ ...valid, request: { ...valid.request, operation: 'UPDATE', object: null, oldObject: valid.request.object } }), { 'content-type': 'application/json' }, 400, ERRORS.REQUEST_OBJECT_MISSING.code],
    ['a __proto__ key is refused', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"__proto__":{"x":1}}}', { 'content-type': 'application/json' }, 400, ERRORS.BODY_POISONED.code],
    ['a constructor.prototype key is refused', '{"a":{"constructor":{"prototype":{"x":1}}}}', { 'content-type': 'application/json' }, 400, ERRORS.BODY_POISONED.code],
  ];
  for (const [name, body, headers, status, code] of cases) {
    for (const path of ['/validate', '/mutate']) {
      const r = await post(server, path, body, headers);
      t.equal(r.status, status, `${name} (${path})`);
      t.equal(r.json().code, code, `${name} (${path}): code ${code}`);
      t.notMatch(r.text, /at .*\.ts:\d+/, `${name}: no stack trace`);
    }
  }
  const r = await post(server, '/nope', '{}');
  t.equal(r.status, 404, 'an unknown route is a coded 404');
  t.equal(r.json().code, ERRORS.NOT_FOUND.code);
});

t.test('over-limit bodies get 413 quickly and a 3 MiB UPDATE review is answered', async (t) => {
  const small = await startServer({ 'server.bodyLimitBytes': 64 * 1024 });
  t.teardown(() => small.close());
  const big = Buffer.alloc(64 * 1024 + 1, 0x20);
  const r = await post(small, '/validate', big);
  t.equal(r.status, 413, 'one byte over the limit is a 413');
  t.equal(r.json().code, ERRORS.BODY_TOO_LARGE.code);

  const filler = 'x'.repeat(1.5 * 1024 * 1024);
  const obj = { ...ns({ 'istio-injection': 'enabled' }), metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' }, annotations: { big: filler } } };
  const update = reviewBody(obj, { operation: 'UPDATE', oldObject: obj });
  const ok = await post(server, '/validate', JSON.stringify(update));
  t.equal(ok.status, 200, 'a 3 MiB UPDATE review (two 1.5 MiB objects) is answered');
  t.equal(ok.json().response.allowed, true);
  const over = await post(server, '/validate', Buffer.alloc(server.config.server.bodyLimitBytes + 1, 0x20));
  t.equal(over.status, 413, 'the default limit (6 MiB) + 1 byte is a 413');
});

t.test('answers are AdmissionReviews that echo uid, apiVersion and kind', async (t) => {
  for (const [name, path, labels, allowed, patch] of [
    ['a meshed namespace on /validate is allowed without a patch', '/validate', { 'istio-injection': 'enabled' }, true, false],
    ['a disabled namespace on /validate is denied', '/validate', { 'istio-injection': 'disabled' }, false, false],
    ['a plain namespace on /mutate is patched', '/mutate', {}, true, true],
  ] as const) {
    const body = reviewBody(ns(labels));
    const r = await post(server, path, JSON.stringify(body));
    t.equal(r.status, 200, name);
    t.match(r.headers['content-type'], /^application\/json/);
    const review = r.json();
    t.equal(review.apiVersion, 'admission.k8s.io/v1');
    t.equal(review.kind, 'AdmissionReview');
    t.equal(review.response.uid, body.request.uid, `${name}: uid echoed`);
    t.equal(review.response.allowed, allowed, `${name}: allowed=${allowed}`);
    t.equal('patch' in review.response, patch, `${name}: patch present=${patch}`);
    t.equal('patchType' in review.response, patch, `${name}: patchType iff patch`);
  }
  const del = reviewBody(null, { operation: 'DELETE', oldObject: ns({}) });
  const r = await post(server, '/validate', JSON.stringify(del));
  t.equal(r.json().response.allowed, true, 'DELETE with object null is allowed');
  const admin = await post(server, '/validate', JSON.stringify(reviewBody(ns({ 'istio-injection': 'disabled' }), { user: ADMIN, dryRun: true })));
  t.equal(admin.json().response.allowed, false, 'a dry-run request gets the real verdict');
});

t.test("meshguard's log: one line per denial with the uid and no object, nothing for an allowed review", async (t) => {
  const { lines: logged, log } = captureLog();
  const s = await startServer({}, { log });
  t.teardown(() => s.close());
  await post(s, '/validate', JSON.stringify(reviewBody(ns({ 'istio-injection': 'enabled' }))));
  await post(s, '/mutate', JSON.stringify(reviewBody(ns({}))));
  t.same(logged, [], 'an allowed and a patched review log nothing');
  const denied = reviewBody(ns({ 'istio-injection': 'disabled' }));
  await post(s, '/validate', JSON.stringify(denied));
  t.same(logged, [{ level: 'info', msg: 'admission', obj: { uid: denied.request.uid, kind: 'Namespace', namespace: 'team-a', name: 'team-a', verdict: 'denied' } }], 'a denial logs one line: uid, kind, namespace, name and verdict');
  t.notMatch(JSON.stringify(logged), /"object"|"labels"|istio-injection/, 'and not the object');
});

t.test('health, readiness and metrics', async (t) => {
  t.equal((await get(server, '/healthz')).status, 200, 'healthz is 200');
  const ready = await get(server, '/readyz');
  t.equal(ready.status, 200, 'readyz is 200 with rules, certificates and caches');
  const metrics = await get(server, '/metrics');
  t.equal(metrics.status, 200);
  t.match(metrics.text, /meshguard_admission_requests_total\{endpoint="validate",kind="Namespace",operation="CREATE",verdict="denied"\} \d+/, 'requests by endpoint, kind, operation and verdict');
  t.match(metrics.text, /meshguard_admission_duration_seconds_bucket\{le="0.001",endpoint="validate"/, 'latency histogram');
  t.match(metrics.text, /meshguard_admission_rejected_total\{endpoint="\/validate",code="MG_BODY_NOT_JSON"\}/, 'refused requests by code');

  const lifecycle = { draining: false };
  const notReady = await startServer({}, { lifecycle, readiness: [{ name: 'caches', check: () => 'namespace cache not synced' }] });
  t.teardown(() => notReady.close());
  const r = await get(notReady, '/readyz');
  t.equal(r.status, 503, 'readyz is 503 while a check fails');
  t.same(r.json().failing, { caches: 'namespace cache not synced' });
});

t.test('TLS: 1.2 minimum, 1.0 and 1.1 refused', async (t) => {
  for (const [version, ok] of [['TLSv1', false], ['TLSv1.1', false], ['TLSv1.2', true], ['TLSv1.3', true]] as const) {
    const result = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: server.port, ca: server.ca, minVersion: version, maxVersion: version, servername: 'localhost' }, () => {
        const p = s.getProtocol() ?? '';
        s.end();
        resolve(p);
      });
      s.on('error', (e) => resolve(`error: ${e.message}`));
    });
    if (ok) t.equal(result, version, `a ${version} handshake succeeds`);
    else t.match(result, /^error/, `a ${version} handshake is refused`);
  }
});
