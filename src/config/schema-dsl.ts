// ConfigError's old home, kept so that modules outside src/config that import it from here keep
// working; new code imports it from validate.ts (or load.ts).
export { ConfigError } from './validate.ts';
