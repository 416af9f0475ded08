// `meshguard check` output for CI systems: SARIF 2.1.0 (GitHub code scanning and other SARIF
// readers), JUnit XML (test report widgets) and GitHub Actions workflow commands (annotations on
// the pull request's diff). Pure functions over the check report.
import { relative, sep } from 'node:path';
import { VALIDATING_RULES } from '../policies/registry.ts';
import { VERSION } from '../version.ts';
import { whereText, type Finding } from '../jobs/scan/report.ts';
import type { CheckFinding, CheckReport } from './check.ts';

/** Where the rule reference lives (docs/rules.md in the repository). */
export const RULES_DOC_URL = 'https://github.com/meshguard/meshguard/blob/main/docs/rules.md';
const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';

/** A path as a SARIF artifact URI: relative to the working directory, '/'-separated,
 * percent-encoded; stdin has no file, so it is named `stdin`. */
export function artifactUri(file: string, cwd: string = process.cwd()): string {
  if (file === '<stdin>') return 'stdin';
  const rel = relative(cwd, file);
  const path = (rel.startsWith('..') ? file : rel).split(sep).join('/');
  return path.split('/').map(encodeURIComponent).join('/');
}

function subject(f: Pick<Finding, 'kind' | 'namespace' | 'name'>): string {
  return `${f.kind} ${f.namespace === '' ? '' : `${f.namespace}/`}${f.name}`;
}

function findingText(f: Finding): string {
  return `${subject(f)}: ${f.message}${whereText(f)}`;
}

export function renderSarif(report: CheckReport, cwd: string = process.cwd()): string {
  const rules = VALIDATING_RULES.map((r) => ({
    id: r.id,
    name: r.id.replace(/(^|-)([a-z0-9])/g, (_m, _d: string, c: string) => c.toUpperCase()),
    shortDescription: { text: r.title },
    fullDescription: { text: `${r.title}. Fix: ${r.fix}.` },
    help: { text: `${r.title}.\nFix: ${r.fix}.\nReference: ${RULES_DOC_URL}`, markdown: `**${r.title}.**\n\nFix: ${r.fix}.\n\nSee [the rule reference](${RULES_DOC_URL}) (\`${r.id}\`).` },
    helpUri: RULES_DOC_URL,
    defaultConfiguration: { level: 'error' },
    properties: { tags: ['security', 'istio', 'kubernetes'] },
  }));
  const index = new Map(rules.map((r, i) => [r.id, i]));
  const results = report.findings.map((f) => ({
    ruleId: f.rule,
    ...(index.has(f.rule) ? { ruleIndex: index.get(f.rule) } : {}),
    level: f.action === 'deny' ? 'error' : 'warning',
    message: { text: `${findingText(f)}${f.fix === '' ? '' : `. Fix: ${f.fix}`}` },
    locations: [{ physicalLocation: { artifactLocation: { uri: artifactUri(f.file, cwd) }, region: { startLine: f.line, startColumn: f.column } } }],
    // The same finding on the same object keeps its identity when lines move.
    partialFingerprints: { 'meshguardFinding/v1': `${f.rule}:${subject(f)}:${f.path ?? ''}` },
  }));
  const notifications = [
    ...report.errors.map((e) => ({ level: 'error', message: { text: `${e.file}: ${e.message}` } })),
    ...report.notes.map((n) => ({ level: 'note', message: { text: n } })),
  ];
  const log = {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'meshguard', version: VERSION, semanticVersion: VERSION, informationUri: RULES_DOC_URL, rules } },
        results,
        invocations: [{ executionSuccessful: report.errors.length === 0, ...(notifications.length > 0 ? { toolExecutionNotifications: notifications } : {}) }],
        columnKind: 'utf16CodeUnits',
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}

/** XML 1.0 text: escaped, and without the control characters XML cannot carry. */
export function xml(s: string): string {
  return s
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** One testsuite per file, one testcase per object; each finding is a <failure>, an input
 * error an <error>. */
export function renderJunit(report: CheckReport): string {
  const files = new Map<string, { cases: string[]; failures: number; errors: number }>();
  const suite = (file: string) => {
    let s = files.get(file);
    if (s === undefined) {
      s = { cases: [], failures: 0, errors: 0 };
      files.set(file, s);
    }
    return s;
  };
  const byObject = new Map<string, CheckFinding[]>();
  for (const f of report.findings) {
    const key = `${f.file}\0${subject(f)}`;
    byObject.set(key, [...(byObject.get(key) ?? []), f]);
  }
  const seen = new Set<string>();
  const objects = report.checked ?? report.findings.map((f) => ({ file: f.file, line: f.line, subject: subject(f) }));
  for (const o of objects) {
    const key = `${o.file}\0${o.subject}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const s = suite(o.file);
    const fs = byObject.get(key) ?? [];
    const failures = fs.map((f) => {
      const body = `${f.file}:${f.line}:${f.column}: ${f.action === 'deny' ? 'DENY' : 'WARN'} [${f.rule}] ${findingText(f)}${f.fix === '' ? '' : `\nfix: ${f.fix}`}`;
      return `      <failure type="${xml(f.rule)}" message="${xml(`[${f.rule}] ${f.message}`)}">${xml(body)}</failure>`;
    });
    s.failures += fs.length;
    const line = fs[0]?.line ?? o.line;
    s.cases.push(`    <testcase classname="${xml(o.file)}" name="${xml(o.subject)}" file="${xml(o.file)}" line="${line}">${failures.length > 0 ? `\n${failures.join('\n')}\n    ` : ''}</testcase>`);
  }
  for (const e of report.errors) {
    const s = suite(e.file);
    s.errors++;
    s.cases.push(`    <testcase classname="${xml(e.file)}" name="input" file="${xml(e.file)}">\n      <error type="input" message="${xml(e.message)}">${xml(`${e.file}: ${e.message}`)}</error>\n    </testcase>`);
  }
  let tests = 0;
  let failures = 0;
  let errors = 0;
  const suites = [...files.entries()].map(([file, s]) => {
    tests += s.cases.length;
    failures += s.failures;
    errors += s.errors;
    return `  <testsuite name="${xml(file)}" tests="${s.cases.length}" failures="${s.failures}" errors="${s.errors}" skipped="0">\n${s.cases.join('\n')}\n  </testsuite>`;
  });
  const props = report.notes.length > 0 ? `\n  <!-- ${report.notes.map((n) => xml(n).replace(/--/g, '- -')).join(' | ')} -->` : '';
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="meshguard check" tests="${tests}" failures="${failures}" errors="${errors}">${props}\n${suites.join('\n')}\n</testsuites>\n`;
}

/** GitHub Actions workflow-command escaping: data escapes %, CR, LF; properties also : and ,. */
export function ghData(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

export function ghProperty(s: string): string {
  return ghData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/** ::error file=..,line=..,col=..,title=..::message (::warning in audit), one per finding. */
export function renderGithub(report: CheckReport, cwd: string = process.cwd()): string {
  const lines: string[] = [];
  for (const e of report.errors) lines.push(`::error file=${ghProperty(e.file === '<stdin>' ? 'stdin' : relative(cwd, e.file) || e.file)},title=${ghProperty('meshguard: input error')}::${ghData(e.message)}`);
  for (const f of report.findings) {
    const file = f.file === '<stdin>' ? 'stdin' : relative(cwd, f.file).split(sep).join('/') || f.file;
    const props = `file=${ghProperty(file)},line=${f.line},col=${f.column},title=${ghProperty(`meshguard [${f.rule}]`)}`;
    lines.push(`::${f.action === 'deny' ? 'error' : 'warning'} ${props}::${ghData(`${findingText(f)}${f.fix === '' ? '' : `\nfix: ${f.fix}`}`)}`);
  }
  for (const n of report.notes) lines.push(`::notice title=${ghProperty('meshguard')}::${ghData(n)}`);
  lines.push(`${report.objects} object(s) checked, ${report.findings.length} violation(s)${report.errors.length > 0 ? `, ${report.errors.length} input error(s)` : ''}`);
  return `${lines.join('\n')}\n`;
}
