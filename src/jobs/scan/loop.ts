// The periodic scan in serve: a full scan every config.scan.intervalSeconds, its metrics kept for
// the Prometheus gauges (by rule and namespace) and handed to the caller; a failed round is
// logged and the previous result stays.
import type { Config } from '../../config/types.ts';
import type { RuleSet } from '../../core/rule-set.ts';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import type { ScanSource } from './adapter.ts';
import { scanMetrics, type ScanMetrics, type ScanReport } from './report.ts';
import { scanCluster } from './scan.ts';

export interface PeriodicScanOptions {
  readonly config: Config;
  readonly source: ScanSource;
  readonly rules: RuleSet;
  readonly log: ListWatchLog;
  readonly onResult: (m: ScanMetrics, report: ScanReport) => void;
  /** Skip a round when false (e.g. only the reconciler's leader scans). Default: always. */
  readonly shouldRun?: () => boolean;
  /** First scan after this delay (default 10 s, so the server is up first). */
  readonly initialDelayMs?: number;
}

export interface PeriodicScan {
  stop(): Promise<void>;
  /** The most recent completed scan's metrics. */
  last(): ScanMetrics | undefined;
}

/** Scan every config.scan.intervalSeconds; undefined when the interval is 0 (off). */
export function startPeriodicScan(options: PeriodicScanOptions): PeriodicScan | undefined {
  const { config, log } = options;
  const intervalMs = config.scan.intervalSeconds * 1000;
  if (intervalMs === 0) return undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let last: ScanMetrics | undefined;
  const round = async (): Promise<void> => {
    if (options.shouldRun !== undefined && !options.shouldRun()) return;
    const t0 = Date.now();
    try {
      const report = await scanCluster(options.source, config, options.rules);
      last = scanMetrics(report);
      options.onResult(last, report);
      log.info({ objects: report.objects, violations: report.findings.length, kindErrors: last.kindErrors, durationMs: Date.now() - t0 }, 'scan: completed');
      for (const k of report.kinds) if (k.error !== undefined) log.warn({ resource: k.resource }, `scan: ${k.error}`);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'scan: failed; the metrics keep the previous result');
    }
  };
  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = round().finally(() => schedule(intervalMs));
    }, ms);
    timer.unref();
  };
  schedule(options.initialDelayMs ?? 10_000);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    last: () => last,
  };
}
