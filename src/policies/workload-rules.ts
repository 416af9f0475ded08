// The workload rules (Pods, pod templates of the eight controller kinds), in evaluation order.
import type { Rule } from '../engine/types.ts';

export const WORKLOAD_RULES: readonly Rule[] = [];
