// libpq connection strings, URLs and key=value alike: split the password out so it travels in the environment
// (PGPASSWORD), never in argv or messages; redact it wherever a connection string is shown.

export interface SplitConninfo {
  /** The URL without its password, safe for argv and messages. */
  url: string;
  /** Environment for libpq programs (PGPASSWORD when the URL had one). */
  env: Record<string, string>;
  password?: string;
}

export function splitPassword(url: string): SplitConninfo {
  if (!isUrl(url)) return splitKeyValuePassword(url);
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

/** A libpq URL (postgresql://, postgres://), as opposed to key=value conninfo. */
export function isUrl(conninfo: string): boolean {
  return /^\s*postgres(ql)?:\/\//i.test(conninfo);
}

/** One `key = value` of a key=value conninfo, with where it stands in the text. */
interface KeyValueEntry {
  key: string;
  value: string;
  start: number;
  end: number;
}

/**
 * The entries of a key=value conninfo as libpq reads them: spaces around "=" allowed, a value either bare (up to
 * white space) or in single quotes with \' and \\ escapes. Text that does not parse ends the list.
 */
export function parseKeyValue(conninfo: string): KeyValueEntry[] {
  const entries: KeyValueEntry[] = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/y;
  let match: RegExpExecArray | null;
  while (re.lastIndex < conninfo.length && (match = re.exec(conninfo)) !== null) {
    const raw = match[3] ?? match[4] ?? '';
    entries.push({key: match[1]!.toLowerCase(), value: raw.replace(/\\(.)/g, '$1'), start: match.index, end: re.lastIndex});
    if (match[0].length === 0) break;
  }
  return entries;
}

/** key=value conninfo: the password entry taken out of the text (everything else kept exactly as written). */
function splitKeyValuePassword(conninfo: string): SplitConninfo {
  let password: string | undefined;
  let rest = conninfo;
  for (const entry of parseKeyValue(conninfo).reverse()) {
    if (entry.key !== 'password') continue;
    password ??= entry.value; // libpq: the last one wins, and this walks from the end
    rest = rest.slice(0, entry.start) + rest.slice(entry.end);
  }
  rest = rest.trim();
  return {url: rest, env: password !== undefined ? {PGPASSWORD: password} : {}, password};
}

/** Any connection string (URL or key=value) with its password replaced, for logs and errors. */
export function redactUrl(url: string): string {
  return redactSecrets(url);
}

/** Alias of redactUrl for text that may be key=value conninfo. */
export const redactConninfo = redactUrl;

/**
 * Replaces every password in `text`: URL user info (//user:secret@), ?password= / &password= parameters and
 * key=value `password=...` (bare or quoted). The last line of defence before anything is shown.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@')
    .replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s'"]+)/gi, '$1***');
}

/** The same URL pointing at another database (pg_basebackup ignores it; pg_dump uses it). */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}
