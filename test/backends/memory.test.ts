import type { MemoryDatabase } from '../../src/backends/memory/memory-database.js';
import { memoryDatabase } from '../../src/index.js';
import type { BackendTarget } from '../conformance/backend-fixtures.js';
import { collectionBackendSuite } from '../conformance/collection-backend.suite.js';
import { diffsSuite } from '../conformance/diffs.suite.js';
import { eventBackendSuite } from '../conformance/event-backend.suite.js';
import { eventsSuite } from '../conformance/events.suite.js';
import { storageSuite } from '../conformance/storage.suite.js';
import { injectMemoryEventFault } from '../support/event-faults.js';

// Memory has no second instance on the same data: "instances" are storages on one database.
// Each suite gets a database of its own, as each closes the ones it opened when it ends.
const sharedBy = (db: MemoryDatabase) => async () => db;

const backend: BackendTarget = {
  name: 'memory',
  open: async () => memoryDatabase(),
  async openPeers() {
    const db = memoryDatabase();
    return [db, db];
  },
  injectEventFault: injectMemoryEventFault,
};
collectionBackendSuite(backend);
eventBackendSuite(backend);

storageSuite({ name: 'memory', open: sharedBy(memoryDatabase()) });
diffsSuite({ name: 'memory', open: async () => memoryDatabase(), runs: 2000 });
eventsSuite({ name: 'memory', open: sharedBy(memoryDatabase()), injectEventFault: injectMemoryEventFault });
