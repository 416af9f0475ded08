// meshguard's one log: pino JSON lines on standard error, with ISO-8601 times and level names
// ("level":"info", "time":"2026-01-01T00:00:00.000Z"). Every part of serve (admission, caches,
// reconciler, scan, certificates) writes through the one logger made here; standard output
// carries only the audit records.
import { pino, type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(level: LogLevel, destination: number | NodeJS.WritableStream = 2): Logger {
  return pino(
    {
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    typeof destination === 'number' ? pino.destination({ dest: destination, sync: true }) : destination,
  );
}
