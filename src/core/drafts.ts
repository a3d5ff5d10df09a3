/** How each kind of write becomes an event draft: one place, used by every backend. */

import type { EventRecord } from './event-backend.js';
import type { EventDraft, EventOperation } from './events.js';
import type { Diff, JsonObject } from './json.js';

/** The diff of a creation: everything added at once. */
export function creationDiff(doc: JsonObject, version: number): Diff {
  return {
    hasChanges: true,
    version,
    jsonPatch: [{ op: 'add', path: '', value: doc }],
    mergePatch: doc,
    mongoUpdate: { $set: { ...doc } },
  };
}

export interface WriteFacts {
  diff?: Diff;
  /** For update_section: the section's dotted path. */
  section?: string;
  /** For delete: the document as it was. */
  deletedDocument?: JsonObject;
}

export function eventDraft(
  collection: string,
  documentId: string,
  operation: EventOperation,
  version: number,
  record: EventRecord,
  facts: WriteFacts,
): EventDraft {
  const metadata: JsonObject = { ...record.metadata };
  if (facts.section !== undefined) metadata.section = facts.section;
  if (facts.deletedDocument !== undefined) metadata.deletedDocument = facts.deletedDocument;
  const draft: EventDraft = { collection, documentId, operation, version, clientId: record.clientId };
  if (facts.diff) draft.diff = facts.diff;
  if (Object.keys(metadata).length > 0) draft.metadata = metadata;
  return draft;
}
