import type { MemoryEventLog } from '../../src/backends/memory/memory-events.js';
import { memoryDatabase } from '../../src/index.js';
import { diffsSuite } from '../conformance/diffs.suite.js';
import { eventsSuite } from '../conformance/events.suite.js';
import { storageSuite } from '../conformance/storage.suite.js';

const shared = memoryDatabase();
storageSuite({ name: 'memory', open: async () => shared });
// A database of its own: the suite closes it.
diffsSuite({ name: 'memory', open: async () => memoryDatabase(), runs: 2000 });
eventsSuite({
  name: 'memory',
  open: async () => shared,
  async injectEventFault(db) {
    const log = (await db.events()) as MemoryEventLog;
    const { publish, append } = log;
    const fail = () => {
      throw new Error('injected event insert failure');
    };
    log.publish = fail;
    log.append = async () => fail();
    return async () => {
      log.publish = publish;
      log.append = append;
    };
  },
});
