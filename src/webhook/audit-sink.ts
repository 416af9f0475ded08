// Where structured audit records go: one JSON line each, to a file or standard output.
import { createWriteStream, type WriteStream } from 'node:fs';
import type { AuditRecord } from '../core/pipeline.ts';

export interface AuditSink {
  write(record: AuditRecord): void;
  close(): Promise<void>;
}

export const nullAuditSink: AuditSink = { write() {}, close: async () => {} };

export function createAuditSink(file: string | null): AuditSink {
  if (file === null) {
    return {
      write(record) {
        process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
      },
      close: async () => {},
    };
  }
  const stream: WriteStream = createWriteStream(file, { flags: 'a', mode: 0o600 });
  return {
    write(record) {
      stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
    },
    close: () => new Promise((resolve) => stream.end(resolve)),
  };
}

/** Collects records in memory (tests, offline check). */
export function memoryAuditSink(): AuditSink & { readonly records: AuditRecord[] } {
  const records: AuditRecord[] = [];
  return { records, write: (r) => void records.push(r), close: async () => {} };
}
