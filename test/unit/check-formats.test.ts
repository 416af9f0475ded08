// meshguard check for CI: SARIF 2.1.0 (validated against the published schema), JUnit XML,
// GitHub workflow commands, and findings at the field's line and column.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import formatsModule from 'ajv-formats';
import { parseDocument, LineCounter } from 'yaml';
import { runCheck } from '../../src/cli/check.ts';
import { ghData, ghProperty, xml } from '../../src/cli/check-formats.ts';
import { locate, parsePath } from '../../src/cli/field-location.ts';
import { RULES_DOC_URL } from '../../src/cli/check-formats.ts';
import { VALIDATING_RULES } from '../../src/policies/registry.ts';
import { FIXTURES } from '../helpers/review.ts';

// ajv-formats is CommonJS: its function is the module itself (and its `default`).
const addFormats = formatsModule as unknown as typeof formatsModule.default;

async function check(args: string[], input = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCheck(args, { out: (s) => void (out += s), err: (s) => void (err += s), env: {}, stdin: async () => input });
  return { code, out, err };
}

/** The SARIF 2.1.0 schema (draft-04) for ajv's draft-07 validator: the root `id` is `$id` there. */
function sarifValidator() {
  const schema = JSON.parse(readFileSync(join(FIXTURES, 'sarif/sarif-2.1.0-rtm.5.json'), 'utf8')) as Record<string, unknown>;
  const { $schema: _draft, id, ...rest } = schema;
  // unicodeRegExp false: one of the schema's patterns (a language tag) is not a valid /u regex.
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  return ajv.compile({ $id: String(id), ...rest });
}

const NS_BAD = join(FIXTURES, 'rules/namespace-mesh-enrollment/bad/a-namespace-labelled-istio-injection-disabled.yaml');

t.test('field paths resolve to the line and column of the field, or of its nearest present parent', async (t) => {
  const text = [
    'apiVersion: apps/v1', //                          1
    'kind: Deployment', //                             2
    'metadata:', //                                    3
    '  name: web', //                                  4
    '  annotations:', //                               5
    '    "sidecar.istio.io/inject": "false"', //       6
    'spec:', //                                        7
    '  template:', //                                  8
    '    spec:', //                                    9
    '      containers:', //                           10
    '        - name: app', //                         11
    '          securityContext:', //                  12
    '            capabilities:', //                   13
    '              add: [NET_ADMIN, NET_RAW]', //     14
    '',
  ].join('\n');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  const rows: [string | undefined, number, number][] = [
    ['metadata.annotations["sidecar.istio.io/inject"]', 6, 5],
    ['spec.template.spec.containers[0].securityContext.capabilities.add[1]', 14, 32],
    ['spec.template.spec.containers[0].securityContext.privileged', 12, 11],
    ['spec.template.spec.hostNetwork', 9, 5],
    ['metadata.labels["istio-injection"]', 3, 1],
    [undefined, 1, 1],
  ];
  for (const [path, line, column] of rows) t.same(locate(doc, lc, [], path), { line, column }, `${path ?? '(no path)'} at ${line}:${column}`);
  t.same(parsePath('metadata.annotations["a.b/c"].x[3]'), ['metadata', 'annotations', 'a.b/c', 'x', 3]);
});

t.test('SARIF output validates against the SARIF 2.1.0 schema and points at the field', async (t) => {
  const validate = sarifValidator();
  const r = await check(['-f', join(FIXTURES, 'rules'), '-o', 'sarif']);
  t.equal(r.code, 1, 'the bad fixtures are violations');
  const log = JSON.parse(r.out) as any;
  const ok = validate(log);
  t.ok(ok, `valid SARIF 2.1.0${ok ? '' : `: ${JSON.stringify(validate.errors?.slice(0, 5))}`}`);
  t.equal(log.version, '2.1.0');
  const run = log.runs[0];
  t.equal(run.tool.driver.rules.length, VALIDATING_RULES.length, 'every validating rule is described');
  for (const rule of run.tool.driver.rules) {
    t.ok(rule.help.text.includes('Fix: ') && rule.helpUri === RULES_DOC_URL && rule.shortDescription.text !== '', `${rule.id}: help text and docs link`);
  }
  t.ok(run.results.length > 20, `${run.results.length} results`);
  const ns = run.results.find((x: any) => x.locations[0].physicalLocation.artifactLocation.uri.endsWith('a-namespace-labelled-istio-injection-disabled.yaml'));
  t.same(ns.locations[0].physicalLocation.region, { startLine: 6, startColumn: 5 }, "the label's line and column");
  t.equal(ns.ruleId, 'namespace-mesh-enrollment');
  t.equal(run.tool.driver.rules[ns.ruleIndex].id, ns.ruleId, 'ruleIndex names the rule');
  t.notOk(run.results.some((x: any) => x.locations[0].physicalLocation.artifactLocation.uri.startsWith('/')), 'artifact URIs are relative');
  const broken = structuredClone(log);
  broken.runs[0].results[0].level = 'fatal';
  delete broken.version;
  t.notOk(validate(broken), 'the validator rejects an invalid log (the check can fail)');
});

t.test('SARIF from stdin and with input errors stays valid', async (t) => {
  const validate = sarifValidator();
  const r = await check(['-f', '-', '-o', 'sarif'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    istio-injection: disabled\n---\na: [\n');
  t.equal(r.code, 2, 'an input error exits 2');
  const log = JSON.parse(r.out) as any;
  t.ok(validate(log), JSON.stringify(validate.errors?.slice(0, 3)));
  t.equal(log.runs[0].results[0].locations[0].physicalLocation.artifactLocation.uri, 'stdin');
  t.equal(log.runs[0].invocations[0].executionSuccessful, false);
  t.match(log.runs[0].invocations[0].toolExecutionNotifications[0].message.text, /<stdin>: line 7/);
});

t.test('JUnit: one testsuite per file, one testcase per object, a failure per finding', async (t) => {
  const r = await check(['-f', join(FIXTURES, 'rules/namespace-mesh-enrollment'), '-o', 'junit']);
  t.equal(r.code, 1);
  const x = r.out;
  t.match(x, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="meshguard check" tests="(\d+)" failures="(\d+)" errors="0">/);
  const [, tests, failures] = /tests="(\d+)" failures="(\d+)"/.exec(x) ?? [];
  t.equal(Number(tests), (x.match(/<testcase /g) ?? []).length, 'tests counts the testcases');
  t.equal(Number(failures), (x.match(/<failure /g) ?? []).length, 'failures counts the failures');
  t.ok(Number(failures) > 0 && Number(tests) > Number(failures) - 1);
  t.match(x, /<testcase classname="[^"]*a-namespace-labelled-istio-injection-disabled\.yaml" name="Namespace nsbad-injection-disabled" file="[^"]*" line="6">\n\s+<failure type="namespace-mesh-enrollment" message="\[namespace-mesh-enrollment\] istio-injection is &quot;disabled&quot;/, 'the failure names the rule; quotes are escaped');
  t.match(x, /<testcase classname="[^"]*good[^"]*" name="Namespace [^"]+" file="[^"]*" line="\d+"><\/testcase>/, 'a compliant object is a passing testcase');
  t.equal((x.match(/<testsuite /g) ?? []).length, (x.match(/<\/testsuite>/g) ?? []).length, 'balanced suites');
  t.equal(xml('a<b>&"c"\u0001'), 'a&lt;b&gt;&amp;&quot;c&quot;\uFFFD', 'escaping, and no control characters');
  t.comment(x.split('\n').slice(0, 8).join('\n'));
});

t.test('GitHub: workflow commands at the field, escaped', async (t) => {
  const r = await check(['-f', NS_BAD, '-o', 'github']);
  t.equal(r.code, 1);
  t.match(r.out, /^::error file=[^,]*a-namespace-labelled-istio-injection-disabled\.yaml,line=6,col=5,title=meshguard \[namespace-mesh-enrollment\]::Namespace nsbad-injection-disabled: istio-injection is "disabled".*%0Afix: /m);
  const audit = await check(['-f', NS_BAD, '-o', 'github', '--mode', 'audit']);
  t.match(audit.out, /^::warning file=/m, 'audit mode: warnings');
  t.equal(ghData('50%\nx\r'), '50%25%0Ax%0D');
  t.equal(ghProperty('a:b,c'), 'a%3Ab%2Cc');
});

t.test('the text output carries the line and column of the field', async (t) => {
  const r = await check(['-f', NS_BAD]);
  t.match(r.out, /a-namespace-labelled-istio-injection-disabled\.yaml:6:5: Namespace nsbad-injection-disabled: DENY \[namespace-mesh-enrollment\]/);
  const json = JSON.parse((await check(['-f', NS_BAD, '-o', 'json'])).out) as { findings: { line: number; column: number }[] };
  t.same([json.findings[0]?.line, json.findings[0]?.column], [6, 5], 'json too');
  t.equal((await check(['-f', NS_BAD, '-o', 'xml']).catch((e: Error) => ({ code: -1, out: e.message, err: '' }))).out, '--output must be one of text, json, sarif, junit, github, got "xml"');
});
