// meshguard's version (package.json "version"; test/unit/metrics-exposition.test.ts keeps them
// equal). A module constant, so the bundle and the compiled build carry it without reading
// package.json at run time.
export const VERSION = '0.1.0';
