import { memoryDatabase } from '../../src/index.js';
import { catchupSuite } from '../conformance/catchup.suite.js';

const shared = memoryDatabase();
catchupSuite({ name: 'memory', open: async () => shared });
