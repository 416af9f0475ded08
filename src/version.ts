// meshguard's version, printed by `meshguard --version`. A constant rather than a read of
// package.json, so the bundle carries it without the file; test/unit/cli.test.ts keeps it equal
// to package.json's version (and the chart's appVersion follows package.json).
export const VERSION = '0.1.0';
