// Durations, one syntax for every flag and policy key: "30s", "5m" (or PostgreSQL's "5min"), "1h30m", "2d";
// a bare whole number is seconds, as PostgreSQL reads a unit-less archive_timeout.

const PART_RE = /(\d+)\s*(min|s|m|h|d)/g;
const WHOLE_RE = /^(\s*\d+\s*(min|s|m|h|d)\s*)+$/;
const BARE_RE = /^\s*\d+\s*$/;
const UNIT_SECONDS: Record<string, number> = {s: 1, m: 60, min: 60, h: 3600, d: 86400};

/** What every message about a malformed duration says it expected. */
export const DURATION_SYNTAX = 'a duration such as 30s, 5m (or 5min), 1h30m or 2d (a bare number is seconds)';

/** Seconds in a duration, or undefined when the text is not one. */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0 ? text : undefined;
  if (BARE_RE.test(text)) return Number(text);
  if (!WHOLE_RE.test(text)) return undefined;
  let seconds = 0;
  for (const match of text.matchAll(PART_RE)) seconds += Number(match[1]) * UNIT_SECONDS[match[2]!]!;
  return seconds;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'n/a';
  const s = Math.round(seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 172800) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600) ? `${Math.floor((s % 86400) / 3600)}h` : ''}`;
}
