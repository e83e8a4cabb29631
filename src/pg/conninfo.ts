// libpq URLs: split the password out so it travels in the environment (PGPASSWORD), never in argv or messages.

export interface SplitConninfo {
  /** The URL without its password, safe for argv and messages. */
  url: string;
  /** Environment for libpq programs (PGPASSWORD when the URL had one). */
  env: Record<string, string>;
  password?: string;
}

export function splitPassword(url: string): SplitConninfo {
  const query = takeQueryPassword(url);
  let rest = query.url;
  let userinfoPassword: string | undefined;
  try {
    const parsed = new URL(rest);
    userinfoPassword = parsed.password ? safeDecode(parsed.password) : undefined;
    parsed.password = '';
    rest = parsed.toString();
  } catch {
    // libpq takes URLs that WHATWG URL refuses (several hosts: h1:5432,h2:5432): cut the password out as text.
    const match = /^([^:/?#]+:\/\/[^:/@?#]*):([^@/?#]*)@/.exec(rest);
    if (match) {
      userinfoPassword = safeDecode(match[2]!);
      rest = `${match[1]}@${rest.slice(match[0].length)}`;
    }
  }
  // libpq lets a query parameter override the URL's user info.
  const password = query.password ?? userinfoPassword;
  return {url: rest, env: password ? {PGPASSWORD: password} : {}, password};
}

/** Removes ?password=... (keeping the other parameters exactly as written). */
function takeQueryPassword(url: string): {url: string; password?: string} {
  const mark = url.indexOf('?');
  if (mark < 0) return {url};
  let password: string | undefined;
  const kept = url.slice(mark + 1).split('&').filter((param) => {
    if (!param.startsWith('password=')) return true;
    password = safeDecode(param.slice('password='.length));
    return false;
  });
  return {url: kept.length > 0 ? `${url.slice(0, mark)}?${kept.join('&')}` : url.slice(0, mark), password};
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
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
