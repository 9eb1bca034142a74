import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SQLite from 'better-sqlite3';
import { SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver, type SqliteDialectConfig } from 'kysely';

/*
 * SQLite in WAL mode appends each commit to the log, and now and then copies the log back into the database file: a
 * checkpoint. By default the committing connection runs it (every 1,000 pages), and better-sqlite3 is synchronous:
 * the event loop then waits ~10 ms for the disk (two fsyncs), every ~70 sign-ins — the largest part of a sign-in's
 * database time. Here a thread of its own checkpoints instead, on a connection of its own:
 *
 * - every INTERVAL_MS it copies what the log holds (PASSIVE: it never blocks a writer, nor waits for one);
 * - the log starts over from its beginning only when a write begins while the log is all copied; under a steady load
 *   a commit always lands during the copy, so once the log is RESTART_FRAMES long the thread asks for a pause:
 *   the next query waits (asynchronously: the event loop runs on) while the thread copies the last few commits,
 *   and the write after it starts the log over. The pause is the time to copy those frames (a millisecond or two),
 *   no query waiting on the disk in the meantime blocks the process.
 * - should the thread fail, the connection checkpoints itself again (SQLite's default); should it lag, the
 *   connection does it past FALLBACK_FRAMES.
 *
 * Only the server's (and the embedding plugin's) connection has one: a CLI command ends before it would matter.
 */

/** The thread copies the log this often. */
const INTERVAL_MS = 50;
/** A log this long is started over (SQLite's own checkpoint threshold). */
const RESTART_FRAMES = 1000;
/** The connection's own checkpoint threshold while the thread works: only if the thread falls far behind. */
const FALLBACK_FRAMES = 10_000;
/** SQLite's default threshold, back when the thread has failed. */
const DEFAULT_FRAMES = 1000;
/** A pause never waits longer than this for the thread (a disk that hangs): queries go on, the log restarts later. */
const PAUSE_LIMIT_MS = 1000;
/** Closing waits this long for the thread to close its connection, then goes on without it. */
const STOP_LIMIT_MS = 5000;

// The thread: CommonJS, evaluated (the same code from src/ under the tests and from dist/). It loads better-sqlite3
// from the path the main thread resolved.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const { restartFrames, intervalMs } = workerData;
let timer;
// The log length that asks for a pause: further on while a pause cannot catch up (another process's reader holds
// old frames, another process keeps writing), back to restartFrames once the log has started over.
let pauseAt = restartFrames;
const pass = () => checkpoint.get();
const failed = (error) => parentPort.postMessage({ failed: String(error && error.message) });
const tick = () => {
  try {
    // busy: another connection is checkpointing (log and checkpointed are then -1): nothing learnt this time.
    const { busy, log } = pass();
    if (!busy && log < pauseAt - restartFrames) pauseAt = restartFrames;
    if (!busy && log >= pauseAt) return parentPort.postMessage('pause');
  } catch (error) {
    failed(error);
  }
  timer = setTimeout(tick, intervalMs);
};
parentPort.on('message', (message) => {
  if (message === 'paused') {
    let caughtUp = false;
    try {
      const { busy, log, checkpointed } = pass();
      caughtUp = !busy && log === checkpointed;
      pauseAt = caughtUp ? restartFrames : log + restartFrames;
    } catch (error) {
      failed(error);
    }
    parentPort.postMessage({ resumed: { caughtUp } });
    timer = setTimeout(tick, intervalMs);
  } else if (message === 'stop') {
    clearTimeout(timer);
    db.close();
    parentPort.close();
  }
});
timer = setTimeout(tick, workerData.intervalMs);
`;

/** What the thread did, for tests and the curious. */
export interface CheckpointStats {
  /** Pauses that copied the whole log: the next write starts it over (unless another process reads from its end). */
  restarts: number;
  /** Pauses that could not (another process's reader or writer): the next one waits for more log. */
  partialPauses: number;
  /** The thread's error, once it has failed (the connection checkpoints itself since). */
  failure?: string;
}

/** The checkpoint thread of one SQLite connection (`path`, in WAL mode). */
export class WalCheckpoints {
  readonly stats: CheckpointStats = { restarts: 0, partialPauses: 0 };
  private thread?: Worker;
  private pauseAsked = false;
  private resume?: (caughtUp: boolean | undefined) => void;
  private ended?: Promise<void>;

  constructor(
    private readonly sqlite: SQLite.Database,
    path: string,
  ) {
    let thread: Worker | undefined;
    try {
      thread = new Worker(THREAD, {
        eval: true,
        workerData: {
          driver: createRequire(import.meta.url).resolve('better-sqlite3'),
          path,
          intervalMs: INTERVAL_MS,
          restartFrames: RESTART_FRAMES,
        },
        // It holds almost nothing: a small heap keeps the process's memory as it was.
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1, stackSizeMb: 1 },
      });
      // Never what keeps a process alive (stop() waits for it).
      thread.unref();
      sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_FRAMES}`);
    } catch (error) {
      void thread?.terminate();
      this.fail((error as Error).message);
      return;
    }
    this.thread = thread;
    this.thread.on('message', (message: unknown) => {
      if (message === 'pause') this.pauseAsked = true;
      else if (typeof message === 'object' && message !== null && 'resumed' in message)
        this.endPause((message as { resumed: { caughtUp: boolean } }).resumed.caughtUp);
      else if (typeof message === 'object' && message !== null && 'failed' in message)
        this.fail(String((message as { failed: unknown }).failed));
    });
    this.thread.on('error', (error) => this.fail(error.message));
    this.thread.on('exit', () => this.fail('the checkpoint thread ended'));
  }

  /** Called with the connection in hand, before its query: when the thread asked for it, the pause happens now. */
  async beforeQuery(): Promise<void> {
    const thread = this.thread;
    if (!this.pauseAsked || !thread || this.stats.failure || this.ended) return;
    this.pauseAsked = false;
    await new Promise<void>((resolve) => {
      const limit = setTimeout(() => this.endPause(undefined), PAUSE_LIMIT_MS);
      this.resume = (caughtUp) => {
        clearTimeout(limit);
        if (caughtUp) this.stats.restarts++;
        else if (caughtUp === false) this.stats.partialPauses++;
        resolve();
      };
      thread.postMessage('paused');
    });
  }

  /**
   * Ends the thread (its connection closed), before the main connection closes. A thread stuck in the disk (a
   * checkpoint's fsync) cannot be interrupted: after STOP_LIMIT_MS closing goes on without it, and it no longer keeps
   * the process alive.
   */
  stop(): Promise<void> {
    this.ended ??= new Promise<void>((resolve) => {
      const thread = this.thread;
      this.endPause(undefined);
      if (!thread || this.stats.failure) return resolve();
      const giveUp = setTimeout(() => {
        thread.unref();
        void thread.terminate();
        resolve();
      }, STOP_LIMIT_MS);
      thread.once('exit', () => {
        clearTimeout(giveUp);
        resolve();
      });
      // Waited for: the process must not end (its loop empty) before the thread has closed its connection.
      thread.ref();
      thread.postMessage('stop');
    });
    return this.ended;
  }

  private endPause(caughtUp: boolean | undefined): void {
    const resume = this.resume;
    this.resume = undefined;
    resume?.(caughtUp);
  }

  /** The thread is gone or broken: the connection checkpoints itself again, as SQLite does by default. */
  private fail(reason: string): void {
    if (this.stats.failure || this.ended) return;
    this.stats.failure = reason;
    this.endPause(undefined);
    if (this.sqlite.open) this.sqlite.pragma(`wal_autocheckpoint = ${DEFAULT_FRAMES}`);
    void this.thread?.terminate();
    process.emitWarning(`SQLite checkpoint thread stopped (${reason}): the connection checkpoints itself`);
  }
}

/**
 * Kysely's SQLite dialect, with the pauses of a checkpoint thread (see the top of this file). The thread starts with
 * the driver (the first query) and ends with it: a database opened and never used has none.
 */
export class CheckpointedSqliteDialect extends SqliteDialect {
  constructor(
    private readonly dialectConfig: SqliteDialectConfig,
    private readonly startCheckpoints: () => WalCheckpoints,
  ) {
    super(dialectConfig);
  }

  override createDriver(): Driver {
    return new CheckpointedSqliteDriver(this.dialectConfig, this.startCheckpoints);
  }
}

class CheckpointedSqliteDriver extends SqliteDriver {
  private checkpoints?: WalCheckpoints;

  constructor(
    config: SqliteDialectConfig,
    private readonly startCheckpoints: () => WalCheckpoints,
  ) {
    super(config);
  }

  override async init(): Promise<void> {
    await super.init();
    this.checkpoints = this.startCheckpoints();
  }

  // The connection is ours (the driver's mutex) until released: nothing reads or writes during the pause.
  override async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await super.acquireConnection();
    await this.checkpoints?.beforeQuery();
    return connection;
  }

  override async destroy(): Promise<void> {
    await this.checkpoints?.stop();
    await super.destroy();
  }
}
