// POST /validate and POST /mutate: review the decoded request, record, answer.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { encodeDecision, encodeReview } from './encode.ts';
import type { ClusterView } from '../core/cluster-view.ts';
import type { AdmissionRequest } from '../core/request.ts';
import type { Config } from '../config/types.ts';
import { reviewRequest, type Endpoint } from '../core/pipeline.ts';
import type { RuleSet } from '../core/rule-set.ts';
import { errorBody } from '../errors.ts';
import type { AppLog } from '../app.ts';
import type { Recorder } from '../metrics/recorder.ts';
import type { AuditSink } from './audit-sink.ts';
import { overdueAnswer } from './deadline.ts';

const JSON_TYPE = 'application/json; charset=utf-8';

export interface AdmissionDeps {
  readonly config: Config;
  readonly cluster: ClusterView;
  readonly rules: RuleSet;
  readonly recorder: Recorder;
  readonly audit: AuditSink;
  readonly log: AppLog;
  readonly state: { closing: boolean };
}

export function registerAdmissionRoutes(app: FastifyInstance, deps: AdmissionDeps): void {
  // A synchronous handler: it sends before returning, so Fastify does not wrap a promise per
  // request; a throw still reaches the error handler (a coded 500).
  const route = (endpoint: Endpoint) => (req: { body: unknown; raw: object }, reply: FastifyReply): void => {
    const started = performance.now();
    // Present, within the size cap, JSON and decoded: the edge guards (guards.ts) saw to it.
    const r = req.body as AdmissionRequest;
    // Nothing after this handler reads the body, so the request object lets go of it. V8's
    // allocation-site pretenuring can put the request object in the old generation, and a dead
    // one's reference keeps the whole review alive through the next young-generation collections
    // (measured: about 15% more CPU per review under load, nearly all of it garbage collection).
    req.body = undefined;
    // Rules read namespace labels and Istio revisions from the watch-backed caches: while what this
    // request's decision reads is not current (not synced yet, or nothing heard from the apiserver
    // within cluster.staleAfterSeconds), no decision is made from it. The 503 makes the apiserver
    // apply the failure policy, as it does when no replica is ready (docs/failure-modes.md).
    const stale =
      deps.cluster.staleFor !== undefined
        ? deps.cluster.staleFor(r.kind)
        : deps.cluster.synced()
          ? undefined
          : (deps.cluster.problem?.() ?? 'cluster caches not synced');
    if (stale !== undefined) {
      const body = errorBody('CACHE_STALE', stale);
      deps.recorder.observeRejected(`/${endpoint}`, body.code);
      void reply.code(body.statusCode).send(body);
      return;
    }
    // Too late to evaluate within the apiserver's timeout: the mode's deterministic answer now.
    const late = overdueAnswer(req.raw, r, deps.config, deps.cluster);
    if (late !== undefined) {
      deps.recorder.observeRejected(`/${endpoint}`, errorBody('OVERLOADED').code);
      deps.log.warn({ uid: r.uid, kind: r.kind.kind, mode: late.mode, lateByMs: Math.round(late.lateByMs), verdict: late.verdict }, 'admission: answered unevaluated, past the deadline');
      void reply.send(late.response);
      return;
    }
    const outcome = reviewRequest(endpoint, r, deps.config, deps.cluster, deps.rules);
    if (outcome.audit !== undefined) deps.audit.write(outcome.audit);
    deps.recorder.observeReview(
      { endpoint, kind: r.kind.kind, operation: r.operation, verdict: outcome.verdict },
      (performance.now() - started) / 1000,
    );
    if (outcome.mode !== undefined) deps.recorder.observeRuleResults({ kind: r.kind.kind, operation: r.operation, mode: outcome.mode }, outcome.results, deps.config.rules);
    if (outcome.verdict === 'denied' || outcome.verdict === 'warned') {
      deps.log.info({ uid: r.uid, kind: r.kind.kind, namespace: outcome.audit?.namespace, name: outcome.audit?.name, verdict: outcome.verdict }, 'admission');
    }
    // Serialized here: Fastify sends a string that already has its JSON content type as it is.
    void reply.header('content-type', JSON_TYPE).send(encodeReview(encodeDecision(r.uid, outcome.decision)));
  };
  app.post('/validate', route('validate'));
  app.post('/mutate', route('mutate'));
}
