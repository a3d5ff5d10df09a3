/**
 * The client registry in SQL: the client ids the server knows and the principal owning each
 * (`eventsync_clients`, schema.ts, migrations 2 and 5).
 */
import { SqlEventPart } from './event-context.js';

const sql = {
  registerClient: 'INSERT INTO eventsync_clients (client_id) VALUES ($1) ON CONFLICT DO NOTHING',
  // Always updates (to the owner it has, or to $2 when it has none), so RETURNING gives the owner
  // even when a racing claim committed it after this statement began.
  claimClient: `INSERT INTO eventsync_clients AS k (client_id, principal) VALUES ($1, $2)
    ON CONFLICT (client_id) DO UPDATE SET principal = COALESCE(k.principal, EXCLUDED.principal)
    RETURNING principal`,
  unregisterClient: `WITH v AS (DELETE FROM eventsync_state_vectors WHERE client_id = $1),
      m AS (DELETE FROM eventsync_mutations WHERE client_id = $1)
    DELETE FROM eventsync_clients WHERE client_id = $1`,
  isRegistered: 'SELECT 1 AS ok FROM eventsync_clients WHERE client_id = $1',
};

/** `EventBackend`'s client registry: `registerClient`, `claimClient`, `unregisterClient`, `isRegistered`. */
export class SqlClients extends SqlEventPart {
  async registerClient(clientId: string): Promise<void> {
    await this.run(`register client ${JSON.stringify(clientId)}`, sql.registerClient, [clientId]);
  }

  async claimClient(clientId: string, principal: string): Promise<string> {
    const [row] = await this.run<{ principal: string }>(
      `claim client ${JSON.stringify(clientId)}`,
      sql.claimClient,
      [clientId, principal],
    );
    return row!.principal;
  }

  async unregisterClient(clientId: string): Promise<void> {
    await this.run(`unregister client ${JSON.stringify(clientId)}`, sql.unregisterClient, [clientId]);
  }

  async isRegistered(clientId: string): Promise<boolean> {
    const rows = await this.run(`look up client ${JSON.stringify(clientId)}`, sql.isRegistered, [clientId]);
    return rows.length > 0;
  }
}
