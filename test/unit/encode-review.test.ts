// The hand-assembled answer is byte for byte what JSON.stringify makes of every constructor's
// output, including uids that need escaping.
import t from 'tap';
import { allowed, denied, encodeReview, errored, patched } from '../../src/webhook/encode.ts';

const uids = ['705ab4f5-6393-11e8-b7cc-42010a800002', '', 'quote " backslash \\ newline \n', 'ünïcödé 𝐭 \u2028', '<script>'];

t.test('encodeReview(x) === JSON.stringify(x) for every answer shape', async (t) => {
  for (const uid of uids) {
    const answers = {
      'allowed': allowed(uid),
      'allowed with warnings': allowed(uid, { warnings: ['policy x: y'] }),
      'allowed with audit annotations': allowed(uid, { auditAnnotations: { a: 'b' } }),
      'denied': denied(uid, 'no'),
      'patched': patched(uid, [{ op: 'add', path: '/metadata/labels', value: {} }]),
      'patched, empty patch': patched(uid, []),
      'errored': errored(uid, 'boom'),
    };
    // U+2028 stays raw in JSON.stringify; in a TAP line it would split the test name.
    const shown = JSON.stringify(uid).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
    for (const [name, a] of Object.entries(answers)) t.equal(encodeReview(a), JSON.stringify(a), `${name}, uid ${shown}`);
  }
  // An answer object with an extra field (a future constructor) is not mistaken for a plain allow.
  const odd = allowed('u');
  (odd.response as unknown as Record<string, unknown>)['extra'] = 1;
  t.equal(encodeReview(odd), JSON.stringify(odd), 'an extra response field is serialized, not dropped');
  const extraTop = { ...allowed('u'), metadata: {} };
  t.equal(encodeReview(extraTop), JSON.stringify(extraTop), 'an extra review field is serialized, not dropped');
  const { response, ...head } = allowed('u');
  const reordered = { response, ...head };
  t.equal(encodeReview(reordered), JSON.stringify(reordered), 'review keys in another order keep their order');
  const swapped = { ...head, response: { allowed: true, uid: 'u' } };
  t.equal(encodeReview(swapped), JSON.stringify(swapped), 'response keys in another order keep their order');
  const inherited = { ...head, response: Object.assign(Object.create({ warnings: ['w'] }) as object, { uid: 'u', allowed: true }) } as typeof swapped;
  t.equal(encodeReview(inherited), JSON.stringify(inherited), 'an inherited enumerable key: the slow path, still JSON.stringify');
});
