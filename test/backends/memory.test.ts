import { memoryDatabase } from '../../src/index.js';
import { storageSuite } from '../conformance/storage.suite.js';

const shared = memoryDatabase();
storageSuite({ name: 'memory', open: async () => shared });
