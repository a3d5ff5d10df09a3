export { MemoryDatabase, memoryDatabase } from './backends/memory/memory-database.js';
export * from './protocol/errors.js';
export type { CollectionBackend, CommittedChange, Database, StoredDocument } from './storage/backend.js';
export { type CreateStorageOptions, createStorage } from './storage/create-storage.js';
export { DocumentStorage, type StorageOptions } from './storage/document-storage.js';
export type * from './storage/types.js';
export { newObjectId } from './storage/validate.js';
