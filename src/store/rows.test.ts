import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { iso, timestamptzReader } from './rows.js';

// PostgreSQL's output of a timestamptz with DateStyle ISO: `1997-12-17 07:37:16-08`, the date and time in the session's
// TimeZone with its offset, fractional seconds to the microsecond when there are any
// (https://www.postgresql.org/docs/current/datatype-datetime.html#DATATYPE-DATETIME-OUTPUT).
const pgParser = pg.types.getTypeParser(1184, 'text') as (text: string) => unknown;
const read = timestamptzReader(pgParser);
/** What pg's own parser makes of it, as the ISO string rows keep (the instant the fast path must agree with). */
const byPg = (text: string) => iso(pgParser(text) as Date);

describe('timestamptzReader', () => {
  it.each([
    ['2026-12-07 16:40:44.123456+00', '2026-12-07T16:40:44.123Z'],
    ['2026-12-07 16:40:44.999999+00', '2026-12-07T16:40:44.999Z'], // cut, as a Date is: never rounded up a second
    ['2026-12-07 16:40:44.1+00', '2026-12-07T16:40:44.100Z'],
    ['2026-12-07 16:40:44.05+00', '2026-12-07T16:40:44.050Z'],
    ['2026-12-07 16:40:44+00', '2026-12-07T16:40:44.000Z'],
    ['0099-01-01 00:00:00+00', '0099-01-01T00:00:00.000Z'],
  ])('reads %s in UTC as %s, the instant pg reads', (text, expected) => {
    expect(read(text)).toBe(expected);
    expect(byPg(text)).toBe(expected);
  });

  it.each([
    '2026-12-07 22:10:44.123456+05:30', // another session TimeZone
    '2026-12-07 08:40:44-08',
    'infinity',
    '-infinity',
    '10000-01-01 00:00:00+00',
    '0044-03-15 12:00:00+00 BC',
  ])('leaves %s to pg', (text) => {
    expect(read(text)).toEqual(pgParser(text));
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'our PostgreSQL pool reads timestamptz as ISO strings in UTC, and as the same instants in any other zone',
    async () => {
      const db = openDatabase(process.env.TEST_DATABASE_URL!);
      try {
        const at = sql<{ at: unknown }>`select '2026-12-07 16:40:44.123456+00'::timestamptz as at`;
        const utc = await db.transaction().execute(async (trx) => {
          await sql`set local time zone 'UTC'`.execute(trx);
          return (await at.execute(trx)).rows[0]!.at;
        });
        expect(utc).toBe('2026-12-07T16:40:44.123Z');
        const kolkata = await db.transaction().execute(async (trx) => {
          await sql`set local time zone 'Asia/Kolkata'`.execute(trx);
          return (await at.execute(trx)).rows[0]!.at;
        });
        expect(kolkata).toBeInstanceOf(Date);
        expect(iso(kolkata as Date)).toBe('2026-12-07T16:40:44.123Z');
        // A host's own pg pools keep pg's parsers: ours is this pool's alone.
        expect(pg.types.getTypeParser(1184, 'text')).toBe(pgParser);
      } finally {
        await db.destroy();
      }
    },
  );
});
