import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase } from '../src/store/database.js';

// Hardening: each guarantee of README's Security section that an attack review asked for.

describe('the embedded database file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hardening-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is the owner's only: its new directory 0700, the database and its WAL 0600", async () => {
    const path = join(dir, 'data', 'social-link.sqlite');
    const db = openDatabase(`sqlite:${path}`);
    await migrateToLatest(db);
    const mode = (file: string) => statSync(file).mode & 0o777;
    expect(mode(join(dir, 'data'))).toBe(0o700);
    expect(mode(path)).toBe(0o600);
    expect(mode(`${path}-wal`)).toBe(0o600);
    await db.destroy();
  });
});
