// The provider emulator in its own process, so that it never shares an event loop with the load generator
// or the server under test. Started by bench/run.ts; prints {"url": ...} on one stdout line when listening.
import type { EmulatedApps } from '../src/config/dev.js';
import { emulatorOptionsFor } from '../src/config/dev.js';
import { startEmulator } from '@social-link/emulator';

const apps = JSON.parse(process.env.BENCH_APPS ?? 'null') as EmulatedApps | null;
if (!apps) throw new Error('BENCH_APPS (the emulated apps, JSON) is required');

const emulator = await startEmulator({ ...emulatorOptionsFor(apps), host: '127.0.0.1', port: 0, logger: false });
console.log(JSON.stringify({ url: emulator.url }));

const stop = () => void emulator.close().finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
