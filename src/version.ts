// meshguard's version, printed by `meshguard --version` and in the build-info metric. A constant
// rather than a read of package.json, so the bundle carries it without the file; the CLI and
// metrics tests keep it equal to package.json's version (and the chart's appVersion follows it).
export const VERSION = '0.1.0';
