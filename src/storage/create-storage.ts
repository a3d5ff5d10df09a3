import type { Database } from '../core/collection-backend.js';
import { assertCollectionName } from '../core/ids.js';
import { DocumentStorage, type StorageOptions } from './document-storage.js';
import type { BaseDocument, Storage } from './types.js';

export interface CreateStorageOptions extends StorageOptions {
  db: Database;
  collection: string;
}

/** Opens one collection of `db` as a `Storage<T>`. */
export async function createStorage<T extends BaseDocument>(
  options: CreateStorageOptions,
): Promise<Storage<T>> {
  assertCollectionName(options.collection);
  const backend = await options.db.collection(
    options.collection,
    options.filterIndex === undefined ? {} : { filterIndex: options.filterIndex },
  );
  return new DocumentStorage<T>(backend, options);
}
