/**
 * Where an event starts in its document's seqs, and whether a run of events continues a
 * position. An event compaction merged covers `fromSeq`..`seq`; every other covers `seq` alone.
 */
import type { SyncEvent } from './events.js';

/** The first seq `event` covers. */
export const firstSeq = (event: Pick<SyncEvent, 'seq' | 'fromSeq'>): number => event.fromSeq ?? event.seq;

/** Whether `events` starts right after `afterSeq` (there is a first event, and it covers `afterSeq + 1`). */
export function follows(events: readonly SyncEvent[], afterSeq: number): boolean {
  const first = events[0];
  return first !== undefined && firstSeq(first) === afterSeq + 1;
}
