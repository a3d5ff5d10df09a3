/**
 * What every benchmark module shares: its shape, and a timer that reports medians.
 *
 * A module exports `{ name, title, run(opts) }`; `run` returns a markdown section (tables and
 * notes) that `bench/run.ts` prints and writes into BENCHMARKS.md.
 */

export interface BenchOptions {
  /** Fewer and shorter samples: for a smoke test, not for figures worth keeping. */
  quick: boolean;
  /** A line of progress for the terminal (stderr). */
  progress(message: string): void;
}

export interface Section {
  /** Markdown, starting with a `##` heading. */
  markdown: string;
}

export interface BenchModule {
  /** Short id, used by `--only` and as the section's marker in BENCHMARKS.md. */
  name: string;
  run(opts: BenchOptions): Promise<Section>;
}

export interface Timing {
  /** Median time of one operation, in microseconds. */
  medianUs: number;
  minUs: number;
  maxUs: number;
  samples: number;
  /** Operations per sample. */
  batch: number;
}

export interface MeasureOptions {
  /** Number of timed samples; the figure is their median. */
  samples: number;
  /** Aim for each sample to take about this long (ms); the batch size is chosen from a warm-up. */
  sampleMs: number;
  /** Warm-up time before calibrating (ms). */
  warmupMs: number;
}

export function measureOptions(quick: boolean): MeasureOptions {
  return quick ? { samples: 5, sampleMs: 10, warmupMs: 100 } : { samples: 11, sampleMs: 60, warmupMs: 300 };
}

const now = (): number => performance.now();

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Times `op` (synchronous): warms up, picks a batch size so one sample takes about `sampleMs`,
 * then returns the median per-operation time over `samples` samples.
 */
export function measure(op: () => void, opts: MeasureOptions): Timing {
  // Warm-up, which also estimates the cost of one call.
  let calls = 0;
  const warmStart = now();
  do {
    op();
    calls++;
  } while (now() - warmStart < opts.warmupMs || calls < 3);
  const estimateMs = (now() - warmStart) / calls;
  const batch = Math.max(1, Math.round(opts.sampleMs / Math.max(estimateMs, 1e-6)));

  const perOp: number[] = [];
  for (let s = 0; s < opts.samples; s++) {
    const start = now();
    for (let i = 0; i < batch; i++) op();
    perOp.push(((now() - start) * 1000) / batch);
  }
  return {
    medianUs: median(perOp),
    minUs: Math.min(...perOp),
    maxUs: Math.max(...perOp),
    samples: opts.samples,
    batch,
  };
}

/** `1234.5` → `"1,235"`, `12.345` → `"12.3"`, `0.1234` → `"0.123"`. */
export function formatNumber(value: number): string {
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** A markdown table; cells are already formatted strings. */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly ('l' | 'r')[],
): string {
  const sep = header.map((_, i) => ((align?.[i] ?? 'l') === 'r' ? '---:' : '---'));
  return [header, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
