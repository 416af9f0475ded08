import t from 'tap';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/log.ts';

t.test('every log line has a level name and an ISO-8601 time', async (t) => {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  const log = createLogger('info', out);
  log.info({ objects: 3 }, 'scan: completed');
  log.warn({ resource: 'sidecars.networking.istio.io' }, 'scan: not served');
  log.error({ err: 'x' }, 'unexpected error');
  log.debug({}, 'below the level: not written');
  await new Promise((r) => setImmediate(r));
  const lines = chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as { level: unknown; time: unknown; msg: unknown });
  t.same(lines.map((l) => [l.level, l.msg]), [['info', 'scan: completed'], ['warn', 'scan: not served'], ['error', 'unexpected error']], 'level names, not numbers; debug is filtered');
  for (const l of lines) t.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO time, not epoch milliseconds');
});
