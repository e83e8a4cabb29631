// Durations in policies: "30s", "5m", "1h30m", "2d".

const PART_RE = /(\d+)\s*(s|m|h|d)/g;
const WHOLE_RE = /^(\s*\d+\s*(s|m|h|d)\s*)+$/;
const UNIT_SECONDS: Record<string, number> = {s: 1, m: 60, h: 3600, d: 86400};

/** Seconds in a duration, or undefined when the text is not one. */
export function parseDuration(text: string): number | undefined {
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
