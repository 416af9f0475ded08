// The report writer's loop: after each scan, plan (plan.ts) and apply (adapter.ts) the reports
// of each configured format. One write at a time; a scan that completes while a write is running is
// written next (the newest scan only). A format whose CRD is not installed is skipped with a
// reason, every round, so installing the CRD later is picked up.
import type { ScanReport } from '../scan/report.ts';
import type { ReportClient } from './adapter.ts';
import { desiredReports, planReports, REPORT_KINDS, type ReportAction, type ReportFormat } from './plan.ts';
import { apiErrorText, statusCode } from '../../kube/errors.ts';

export interface WriteResult {
  readonly created: number;
  readonly replaced: number;
  readonly deleted: number;
  /** One line per failed action. */
  readonly errors: readonly string[];
  /** Formats not written, with why (e.g. the CRD is not installed). */
  readonly skipped: readonly string[];
}

function describe(a: ReportAction): string {
  const r = a.type === 'delete' ? a.existing : a.report;
  return `${a.type} ${r.kind.kind} ${r.namespace === '' ? '' : `${r.namespace}/`}${r.name}`;
}

/** Write the reports of one scan in the given formats. Never throws. */
export async function writeReports(client: ReportClient, scan: ScanReport, formats: readonly ReportFormat[]): Promise<WriteResult> {
  let created = 0;
  let replaced = 0;
  let deleted = 0;
  const errors: string[] = [];
  const skipped: string[] = [];
  for (const format of formats) {
    const kinds = REPORT_KINDS[format];
    let existing;
    try {
      existing = [...(await client.list(kinds.namespaced)), ...(await client.list(kinds.cluster))];
    } catch (err) {
      const missing = statusCode(err) === 404;
      skipped.push(`${kinds.namespaced.group}: ${missing ? `the ${kinds.namespaced.kind} and ${kinds.cluster.kind} CRDs are not installed` : `cannot list reports: ${apiErrorText(err)}`}`);
      continue;
    }
    for (const action of planReports(desiredReports(scan, format), existing)) {
      try {
        if (action.type === 'create') {
          await client.create(action.report.kind, action.report.namespace, action.report.body);
          created++;
        } else if (action.type === 'replace') {
          const body = { ...action.report.body, metadata: { ...(action.report.body['metadata'] as object), resourceVersion: action.resourceVersion } };
          await client.replace(action.report.kind, action.report.namespace, action.report.name, body);
          replaced++;
        } else {
          await client.delete(action.existing.kind, action.existing.namespace, action.existing.name);
          deleted++;
        }
      } catch (err) {
        // 404 on delete: already gone; anything else is reported and retried next round.
        if (action.type === 'delete' && statusCode(err) === 404) continue;
        errors.push(`${describe(action)}: ${apiErrorText(err)}`);
      }
    }
  }
  return { created, replaced, deleted, errors, skipped };
}

export interface ReportLoopLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ReportWriterOptions {
  readonly client: ReportClient;
  readonly formats: readonly ReportFormat[];
  readonly log: ReportLoopLog;
  readonly onWritten?: (r: WriteResult) => void;
}

export interface ReportWriter {
  submit(scan: ScanReport): void;
  close(): Promise<void>;
}

/** Coalescing writer for the periodic scan: submit() after each scan; close() waits for the write in flight. */
export function startReportWriter(options: ReportWriterOptions): ReportWriter {
  const { client, formats, log } = options;
  let pending: ScanReport | undefined;
  let running: Promise<void> | undefined;
  let closed = false;
  const drain = async (): Promise<void> => {
    while (pending !== undefined && !closed) {
      const scan = pending;
      pending = undefined;
      const r = await writeReports(client, scan, formats);
      options.onWritten?.(r);
      log.info({ created: r.created, replaced: r.replaced, deleted: r.deleted, errors: r.errors.length }, 'reports: written');
      for (const s of r.skipped) log.warn({}, `reports: skipped ${s}`);
      for (const e of r.errors) log.warn({}, `reports: ${e}`);
    }
  };
  return {
    submit(scan) {
      if (closed) return;
      pending = scan;
      running ??= drain().finally(() => {
        running = undefined;
      });
    },
    async close() {
      closed = true;
      await running;
    },
  };
}
