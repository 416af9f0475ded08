// The validated, frozen configuration every module receives: CONFIG_SCHEMA's static type, read-only
// all the way down.
import type { Static } from '@sinclair/typebox';
import type { CONFIG_SCHEMA } from './schema.ts';

type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Config = DeepReadonly<Static<typeof CONFIG_SCHEMA>>;

export type Mode = Config['mode'];

export type RuleSettings = Config['rules'][string];

export type GeneratedResource = Config['reconciler']['serviceEntries'][string];
