/** Narrowing helpers for provider answers and claims, which are untrusted JSON even when signed. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A non-empty string field, or undefined. */
export function text(value: Record<string, unknown>, key: string): string | undefined {
  const field = value[key];
  return typeof field === 'string' && field !== '' ? field : undefined;
}

/** A boolean the provider may write as true or "true". */
export const flag = (value: unknown) => value === true || value === 'true';
