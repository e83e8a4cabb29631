// libpq URLs: split the password out so it travels in the environment (PGPASSWORD), never in argv or messages.

export interface SplitConninfo {
  /** The URL without its password, safe for argv and messages. */
  url: string;
  /** Environment for libpq programs (PGPASSWORD when the URL had one). */
  env: Record<string, string>;
  password?: string;
}

export function splitPassword(url: string): SplitConninfo {
  try {
    const parsed = new URL(url);
    const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
    parsed.password = '';
    return {url: parsed.toString(), env: password ? {PGPASSWORD: password} : {}, password};
  } catch {
    return {url, env: {}};
  }
}

/** The URL with any password replaced, for logs and errors. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@').replace(/(password=)[^&\s]*/gi, '$1***');
}

/** The same URL pointing at another database (pg_basebackup ignores it; pg_dump uses it). */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}
