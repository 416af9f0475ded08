// The decision-path floor: meshguard's own admission path (the body parser with its poisoning
// check, decode, review with every rule, the metrics recorder, encode) in a bare node:https
// handler, without Fastify, its hooks or anything else `meshguard serve` adds. The framework split
// (tools/bench/run.ts) runs it beside the floor, the Fastify floor and meshguard, to show what
// meshguard's decision costs over HTTPS when no framework is around it. A benchmark tool, not a
// server: no deadlines, no load shedding, no health routes; a body it cannot use gets a bare 400.
//
//   node tools/bench/path-floor.ts --cert FILE --key FILE [--namespaces N] [--port 0] [--host 127.0.0.1]
//
// --namespaces N: the namespace cache holds the bench's first N namespaces (tools/bench/namespaces.ts)
// with their labels, as meshguard's cache does in the main table; 0 (the default) configures
// `unknownNamespace: allow`, as the bench does without a cluster. The bench bundles it like
// meshguard (tools/bundle.ts). Prints "floor: serving on https://HOST:PORT" on stderr.
import { parseArgs } from 'node:util';
import { decodeReview } from '../../src/webhook/decode.ts';
import { encodeDecision, encodeReview } from '../../src/webhook/encode.ts';
import { namespaceLabels as cachedLabels, StaticClusterView, type NamespaceInfo } from '../../src/core/cluster-view.ts';
import { loadConfig } from '../../src/config/load.ts';
import { reviewRequest } from '../../src/core/pipeline.ts';
import { PromRecorder } from '../../src/metrics/recorder.ts';
import { BUILTIN_RULES, RULE_IDS } from '../../src/policies/registry.ts';
import { parseJsonBody } from '../../src/webhook/json-body.ts';
import { serveFloor } from './floor-server.ts';
import { namespaceLabels, namespaceName } from './namespaces.ts';

const { values } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    namespaces: { type: 'string', default: '0' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
const count = Number(values.namespaces);
if (values.cert === undefined || values.key === undefined || !Number.isSafeInteger(count) || count < 0) {
  process.stderr.write('usage: path-floor.ts --cert FILE --key FILE [--namespaces N] [--port N] [--host ADDR]\n');
  process.exit(2);
}

const config = loadConfig({ overrides: count === 0 ? { unknownNamespace: 'allow' } : {}, ruleIds: RULE_IDS });
const namespaces: NamespaceInfo[] = [];
for (let i = 0; i < count; i++) {
  const name = namespaceName(i);
  namespaces.push({ name, labels: Object.freeze(cachedLabels({ 'kubernetes.io/metadata.name': name, ...namespaceLabels(i) })) });
}
const cluster = new StaticClusterView(namespaces, config.revisions);
const recorder = new PromRecorder();
const JSON_TYPE = 'application/json; charset=utf-8';

serveFloor({ cert: values.cert, key: values.key, port: values.port, host: values.host }, (req, res, chunks) => {
  const endpoint = req.url === '/mutate' || req.url?.startsWith('/mutate?') === true ? 'mutate' : 'validate';
  const started = performance.now();
  let body: unknown;
  try {
    body = parseJsonBody(Buffer.concat(chunks).toString('utf8'));
  } catch {
    res.writeHead(400).end();
    return;
  }
  const decoded = decodeReview(body);
  if (!decoded.ok) {
    res.writeHead(400).end();
    return;
  }
  const r = decoded.request;
  const outcome = reviewRequest(endpoint, r, config, cluster, BUILTIN_RULES);
  recorder.observeReview({ endpoint, kind: r.kind.kind, operation: r.operation, verdict: outcome.verdict }, (performance.now() - started) / 1000);
  const answer = encodeReview(encodeDecision(r.uid, outcome.decision));
  res.writeHead(200, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(answer) }).end(answer);
});
