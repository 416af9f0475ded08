// POST /validate and POST /mutate: decode, review, record, answer.
import type { FastifyInstance } from 'fastify';
import { decodeReview } from '../admission/decode.ts';
import type { ClusterState } from '../cluster/state.ts';
import type { Config } from '../config/types.ts';
import { reviewRequest, type Endpoint, type RuleSet } from '../engine/review.ts';
import { errorBody } from '../errors.ts';
import type { Recorder } from '../metrics/recorder.ts';
import type { AuditSink } from './audit-sink.ts';
import { overdueAnswer } from './deadline.ts';

export interface AdmissionDeps {
  readonly config: Config;
  readonly cluster: ClusterState;
  readonly rules: RuleSet;
  readonly recorder: Recorder;
  readonly audit: AuditSink;
  readonly state: { closing: boolean };
}

export function registerAdmissionRoutes(app: FastifyInstance, deps: AdmissionDeps): void {
  const route = (endpoint: Endpoint) => async (req: { body: unknown; raw: object; log: FastifyInstance['log'] }, reply: import('fastify').FastifyReply) => {
    const started = process.hrtime.bigint();
    if (req.body === undefined || req.body === null) {
      deps.recorder.observeRejected(`/${endpoint}`, errorBody('BODY_MISSING').code);
      return reply.code(400).send(errorBody('BODY_MISSING'));
    }
    const decoded = decodeReview(req.body);
    if (!decoded.ok) {
      const body = errorBody(decoded.error.name, decoded.error.detail);
      deps.recorder.observeRejected(`/${endpoint}`, body.code);
      return reply.code(body.statusCode).send(body);
    }
    {
      const r = decoded.request;
      // Too late to evaluate within the apiserver's timeout: the mode's deterministic answer now.
      const late = overdueAnswer(req.raw, r, deps.config, deps.cluster);
      if (late !== undefined) {
        deps.recorder.observeRejected(`/${endpoint}`, errorBody('OVERLOADED').code);
        req.log.warn({ uid: r.uid, kind: r.kind.kind, mode: late.mode, lateByMs: Math.round(late.lateByMs), verdict: late.verdict }, 'admission: answered unevaluated, past the deadline');
        return reply.send(late.response);
      }
      const outcome = reviewRequest(endpoint, r, deps.config, deps.cluster, deps.rules);
      if (outcome.audit !== undefined) deps.audit.write(outcome.audit);
      deps.recorder.observeReview(
        { endpoint, kind: r.kind.kind, operation: r.operation, verdict: outcome.verdict },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      if (outcome.verdict === 'denied' || outcome.verdict === 'warned') {
        req.log.info({ uid: r.uid, kind: r.kind.kind, namespace: outcome.audit?.namespace, name: outcome.audit?.name, verdict: outcome.verdict }, 'admission');
      }
      return reply.send(outcome.response);
    }
  };
  app.post('/validate', route('validate'));
  app.post('/mutate', route('mutate'));
}
