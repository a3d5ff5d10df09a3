/**
 * What the load benchmarks share: percentiles, side-by-side rounds, the machine line, and a
 * deterministic PRNG. (`harness.ts` has the timer for synchronous micro-benchmarks.)
 */
import os from 'node:os';
import { formatNumber, median } from '../harness.js';

export { median };

/** The `p`-th percentile (0–100) of `values`, nearest rank. `NaN` when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** `median (min–max)` of per-round figures, formatted. */
export function spread(values: readonly number[], format: (v: number) => string = formatNumber): string {
  if (values.length === 0) return '—';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return `${format(median(values))} (${format(lo)}–${format(hi)})`;
}

/** `0.873` → `"0.87×"`. */
export function ratio(value: number): string {
  if (!Number.isFinite(value)) return '—';
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}×`;
}

/** `12.345` → `"12.3"` ms; sub-millisecond values keep two decimals. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return '—';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/**
 * `met` when `value` reaches `threshold` (≥); `missed` otherwise, with three decimals when the
 * two-decimal ratio would read as the threshold itself (`2.00×` that is really 1.998×).
 */
export function atLeast(value: number, threshold: number): string {
  if (value >= threshold) return 'met';
  return ratio(value) === ratio(threshold) ? `missed (${value.toFixed(3)}×)` : 'missed';
}

/** `items` rotated left by `by`: round r runs the contenders starting at a different one. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const n = items.length;
  if (n === 0) return [];
  const k = ((by % n) + n) % n;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The machine, as one markdown list item (each section carries its own: `--only` keeps old sections). */
export function machineLine(extra: string[] = []): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown CPU';
  const gib = (os.totalmem() / 1024 ** 3).toFixed(1);
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ');
  return [
    `- Machine: ${cpus.length} cores (${model}), ${gib} GiB memory, Node ${process.version}${extra.map((e) => `, ${e}`).join('')}`,
    `- Date: ${new Date().toISOString()}; load average at the end of this section (1/5/15 min): ${load}`,
  ].join('\n');
}

/** Epoch milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}
