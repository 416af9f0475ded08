// The app is a Fastify plugin (src/app.ts), and its edge guards (src/webhook/guards.ts) run in a
// fixed order: body present, size cap, content type, decode. Through app.inject().
import t from 'tap';
import Fastify from 'fastify';
import { ERRORS } from '../../src/errors.ts';
import { meshguardPlugin, type MeshguardOptions } from '../../src/app.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import { config, reviewBody, state } from '../helpers/review.ts';
import { injectableApp } from '../helpers/server.ts';

const namespace = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } };

t.test('the plugin registers with a name and refuses wrong options at registration', async (t) => {
  const app = await injectableApp(t);
  t.ok(app.hasPlugin('meshguard'), 'registered as the meshguard plugin');
  const bare = Fastify();
  t.teardown(() => bare.close());
  const wrong = { config: config(), cluster: {}, rules: BUILTIN_RULES } as unknown as MeshguardOptions;
  await t.rejects(async () => bare.register(meshguardPlugin, wrong).ready(), { name: 'TypeError', message: /cluster \(a ClusterView\)/ }, 'a cluster that is no ClusterView fails at registration');
});

t.test('the edge guards answer in order: body present, size cap, content type, decode', async (t) => {
  const app = await injectableApp(t, { 'server.bodyLimitBytes': 1024 });
  const big = 'x'.repeat(2048);
  const rows: [string, string, Record<string, string>, number, string][] = [
    ['an empty body of the wrong content type is missing, not the wrong type', '', { 'content-type': 'text/plain' }, 400, ERRORS.BODY_MISSING.code],
    ['a body over the cap of the wrong content type is too large, not the wrong type', big, { 'content-type': 'text/plain' }, 413, ERRORS.BODY_TOO_LARGE.code],
    ['a body over the cap that is not JSON is too large, not undecodable', big, { 'content-type': 'application/json' }, 413, ERRORS.BODY_TOO_LARGE.code],
    ['a body that is not JSON, sent as text, is the wrong type, not undecodable', 'nope', { 'content-type': 'text/plain' }, 415, ERRORS.CONTENT_TYPE.code],
    ['a JSON null is missing', 'null', { 'content-type': 'application/json' }, 400, ERRORS.BODY_MISSING.code],
    ['a JSON body that is no review is refused by the decoder', '{}', { 'content-type': 'application/json; charset=utf-8' }, 400, ERRORS.REVIEW_API_VERSION.code],
  ];
  for (const [sentence, payload, headers, status, code] of rows) {
    const r = await app.inject({ method: 'POST', url: '/validate', payload, headers });
    t.equal(r.statusCode, status, sentence);
    t.equal(r.json().code, code, `${sentence}: ${code}`);
  }
  const ok = await app.inject({ method: 'POST', url: '/mutate', payload: reviewBody(namespace) });
  t.equal(ok.statusCode, 200, 'a review that passes every guard is answered');
  t.equal(ok.json().kind, 'AdmissionReview');
});

t.test('an unknown route is a 404 whatever its body', async (t) => {
  const app = await injectableApp(t, {}, { cluster: state() });
  const r = await app.inject({ method: 'POST', url: '/nope', payload: 'nope', headers: { 'content-type': 'application/json' } });
  t.equal(r.statusCode, 404);
  t.equal(r.json().code, ERRORS.NOT_FOUND.code);
});

t.test('the guards refuse a route they would not cover', async (t) => {
  const { registerEdgeGuards } = await import('../../src/webhook/guards.ts');
  const early = Fastify();
  t.teardown(() => early.close());
  early.post('/validate', async () => ({}));
  t.throws(() => registerEdgeGuards(early, { bodyLimitBytes: 1024 } as never), /POST \/validate was registered before the edge guards/, 'an admission route registered first would run unguarded');
  const other = Fastify();
  t.teardown(() => other.close());
  registerEdgeGuards(other, { bodyLimitBytes: 1024 } as never);
  t.throws(() => other.put('/upload', async () => ({})), /only POST \/validate and POST \/mutate take a body/, 'another route that takes a body would be handed to the review decoder');
  t.doesNotThrow(() => other.get('/extra', async () => ({})), 'a route without a body is fine');
});

t.test('once answered, the request no longer holds the decoded review', async (t) => {
  // A dead request object that still points at the review can keep it alive through V8's young
  // collections (src/webhook/routes.ts): the handler clears the body as soon as it has read it.
  const app = Fastify();
  t.teardown(() => app.close());
  const bodies: unknown[] = [];
  app.addHook('onResponse', async (req) => void bodies.push(req.body));
  await app.register(meshguardPlugin, { config: config(), cluster: state(), rules: BUILTIN_RULES });
  const r = await app.inject({ method: 'POST', url: '/mutate', payload: reviewBody(namespace) });
  t.equal(r.statusCode, 200, 'the review is answered');
  t.same(bodies, [undefined], 'and the request object does not keep it');
});
