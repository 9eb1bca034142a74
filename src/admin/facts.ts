/**
 * A link's kept facts (extra_data) as a person reads them: one row per fact, Unix times as UTC dates (the raw
 * number kept beside them), lists joined, nested values as compact JSON, nothing left out.
 */
export interface FactRow {
  name: string;
  value: string;
  /** The value as stored, when it is shown otherwise (a Unix time's number). */
  stored?: string;
}

/** Keys whose numbers are Unix times: `expires_at`, `profile_read_at`, ID tokens' `exp`/`iat`/`auth_time`. */
const TIME_KEY = /(_at|_time)$|^(exp|iat|nbf)$/;
/** Seconds between 2001 and 2286: a number outside is not shown as a date. */
const isUnixSeconds = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 1e9 && value < 1e10;

export function factRows(extraData: Record<string, unknown>): FactRow[] {
  return Object.entries(extraData).map(([name, value]) => {
    if (TIME_KEY.test(name) && isUnixSeconds(value))
      return {
        name,
        value: `${new Date(value * 1000).toISOString().slice(0, 19).replace('T', ' ')} UTC`,
        stored: String(value),
      };
    if (value === null || value === undefined) return { name, value: '-' };
    if (Array.isArray(value) && value.every((item) => typeof item !== 'object' || item === null))
      return { name, value: value.length ? value.join(', ') : '(none)' };
    if (typeof value === 'object') return { name, value: JSON.stringify(value) };
    return { name, value: String(value) };
  });
}
