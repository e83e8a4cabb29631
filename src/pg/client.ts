// Connections to the server (node-postgres), opened on demand and always closed.

import type {Client} from 'pg';
import {PgServerError} from '../errors.js';
import {redactUrl} from './conninfo.js';

export async function withClient<T>(url: string, work: (client: Client) => Promise<T>, options: {connectTimeoutMs?: number} = {}): Promise<T> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000, application_name: 'pgbk'});
  try {
    await client.connect();
  } catch (error) {
    throw new PgServerError(
      `cannot connect to ${redactUrl(url)}: ${(error as Error).message}`,
      'check postgres.url in the policy, that the server runs, and pg_hba.conf',
      {cause: error},
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
