import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderUnavailableError } from '../lib/errors.js';
import { ProviderHttp } from './http.js';

// A real loopback server stands for the provider; the path says how big its answer is.
let server: Server;
let base: string;
const outcomes: string[] = [];
const http = new ProviderHttp('test', {
  timeoutMs: 5000,
  observe: (_provider, outcome) => void outcomes.push(outcome),
});

beforeAll(async () => {
  server = createServer((request, response) => {
    const query = new URL(request.url ?? '/', 'http://x').searchParams;
    const bytes = Number(query.get('bytes'));
    if (query.has('hang')) return; // never answers
    if (query.has('stall')) return void response.writeHead(200, { 'content-type': 'application/json' }).write('{'); // nor ends
    if (query.has('trickle')) {
      // A byte every 50 ms, never the end: undici's bodyTimeout counts only the silence between two bytes.
      response.writeHead(200, { 'content-type': 'application/json' });
      const drip = setInterval(() => (response.destroyed ? clearInterval(drip) : response.write(' ')), 50);
      return void response.on('close', () => clearInterval(drip));
    }
    if (query.has('bom')) {
      // A byte order mark before the JSON, chunked or with a Content-Length.
      const body = '\uFEFF{}';
      const length = query.has('declared') ? { 'content-length': Buffer.byteLength(body) } : {};
      response.writeHead(200, { 'content-type': 'application/json', ...length });
      return void response.end(body);
    }
    if (query.has('declared')) {
      // With a Content-Length: the body is that long (a lie would break the HTTP framing, not our cap).
      const body = `${' '.repeat(Math.max(0, bytes - 2))}{}`;
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      response.on('error', () => {});
      return void response.end(body);
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    // Chunked, no Content-Length: only counting what arrives can stop it.
    const chunk = ' '.repeat(64 * 1024);
    let sent = 0;
    const more = () => {
      while (sent + chunk.length < bytes - 2) {
        sent += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', more);
      }
      response.end(`${' '.repeat(Math.max(0, bytes - 2 - sent))}{}`);
    };
    response.on('error', () => {});
    more();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await http.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('provider answers', () => {
  it('are read up to 1 MiB', async () => {
    expect((await http.json(`${base}/?bytes=${1024 * 1024}`)).body).toEqual({});
  });

  it('past 1 MiB are refused as a broken provider (502), not read into memory', async () => {
    const refusal = await http.json(`${base}/?bytes=${64 * 1024 * 1024}`).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ProviderUnavailableError);
    expect(refusal).toMatchObject({ statusCode: 502, reason: 'answered more than 1048576 bytes' });
    expect(outcomes.at(-1)).toBe('invalid_response');
  });

  it('a leading byte order mark is dropped whether or not the answer gives its length', async () => {
    expect((await http.json(`${base}/?bom`)).body).toEqual({});
    expect((await http.json(`${base}/?bom&declared`)).body).toEqual({});
  });

  it('with a Content-Length: read in one go up to 1 MiB, refused unread past it', async () => {
    expect((await http.json(`${base}/?declared&bytes=${1024 * 1024}`)).body).toEqual({});
    const refusal = await http.json(`${base}/?declared&bytes=${1024 * 1024 + 1}`).catch((error: unknown) => error);
    expect(refusal).toMatchObject({ statusCode: 502, reason: 'answered more than 1048576 bytes' });
  });
});

describe('the deadline of a call', () => {
  /** A call with a short deadline to one of the server's slow answers: what it was refused with (and counted). */
  async function refusalWithin(timeoutMs: number, path: string): Promise<unknown> {
    const quick = new ProviderHttp('test', { timeoutMs, observe: (_p, outcome) => void outcomes.push(outcome) });
    try {
      return await quick.json(`${base}/${path}`).catch((error: unknown) => error);
    } finally {
      await quick.close();
    }
  }

  // undici's headersTimeout and bodyTimeout (the same length) end these two as well.
  it('ends a call the provider does not answer: 502, counted as a timeout', async () => {
    const refusal = await refusalWithin(200, '?hang');
    expect(refusal).toBeInstanceOf(ProviderUnavailableError);
    expect(refusal).toMatchObject({ statusCode: 502, reason: 'did not answer within 200 ms' });
    expect(outcomes.at(-1)).toBe('timeout');
  });

  it('covers the answer until its end: one that starts and stalls is a timeout too', async () => {
    expect(await refusalWithin(200, '?stall')).toMatchObject({ reason: 'did not answer within 200 ms' });
    expect(outcomes.at(-1)).toBe('timeout');
  });

  // Only the call's own deadline ends this one: without it the call would last as long as the provider goes on.
  it('ends an answer that keeps coming a byte at a time, past the deadline', async () => {
    expect(await refusalWithin(300, '?trickle')).toMatchObject({ reason: 'did not answer within 300 ms' });
    expect(outcomes.at(-1)).toBe('timeout');
  });
});
