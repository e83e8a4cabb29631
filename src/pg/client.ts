// Connections to the server (node-postgres), opened on demand and always closed.

import type {Client, ClientConfig} from 'pg';
import {PgServerError} from '../errors.js';
import {isUrl, parseKeyValue, redactUrl} from './conninfo.js';

export async function withClient<T>(url: string, work: (client: Client) => Promise<T>, options: {connectTimeoutMs?: number} = {}): Promise<T> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({...connectionOf(url), connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000, application_name: 'pgbk'});
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

/**
 * node-postgres reads URLs only: a key=value conninfo (`host=… port=… dbname=…`, as --to-db accepts) is turned into
 * its settings — host, port, user, dbname, password, sslmode — as libpq would read them.
 */
function connectionOf(conninfo: string): ClientConfig {
  if (isUrl(conninfo)) return {connectionString: conninfo};
  const config: ClientConfig = {};
  for (const {key, value} of parseKeyValue(conninfo)) {
    if (key === 'host' || key === 'hostaddr') config.host = value;
    else if (key === 'port') config.port = Number(value);
    else if (key === 'user') config.user = value;
    else if (key === 'dbname') config.database = value;
    else if (key === 'password') config.password = value;
    else if (key === 'sslmode' && value !== 'disable' && value !== 'allow' && value !== 'prefer') {
      config.ssl = {rejectUnauthorized: value.startsWith('verify')};
    }
  }
  return config;
}
