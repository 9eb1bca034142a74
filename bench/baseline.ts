// The physical limit, measured on the same machine with the same load: a bare Fastify server (no schemas,
// plugins, database, logging or tokens) in its own process. Started by bench/run.ts; prints {"url": ...}.
//
//   baseline A: POST /api/auth/facebook/ and /api/associate/facebook/ make exactly the provider calls of
//               social-link's Facebook check (GET /me with appsecret_proof and GET /debug_token, together,
//               through an undici keep-alive Agent with the same settings as src/providers/http.ts) and answer.
//   baseline A1: POST /a1/api/auth/facebook/ makes the one call a linked Facebook sign-in needs (GET /debug_token:
//               validity, app and user id) and answers.
//   baseline B: POST /api/auth/google/ answers a static JSON body of the size of a token response.
//   (baseline C, the work of a Google sign-in, is bench/baseline-c.ts.)
import Fastify from 'fastify';
import { Graph } from './graph.js';

const graph = new Graph();

/** The work of the Facebook check, without any of its decisions: two calls, both must answer 200. */
async function facebookCheck(token: string): Promise<string> {
  const [profile, info] = await Promise.all([graph.me(token), graph.debugToken(token)]);
  if (profile.status !== 200 || info.status !== 200) throw new Error(`graph answered ${profile.status}/${info.status}`);
  return profile.body.id as string;
}

/** A linked sign-in's check: debug_token alone proves the token valid, ours, and whose. */
async function facebookDebugToken(token: string): Promise<string> {
  const info = await graph.debugToken(token);
  if (info.status !== 200) throw new Error(`graph answered ${info.status}`);
  return (info.body as { data: { user_id: string } }).data.user_id;
}

// What social-link answers on a sign-in, with fixed values: same shape, similar size.
const STATIC_ANSWER = JSON.stringify({
  id: 123456,
  username: 'guest_0123456789abcdef',
  access_token: `eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjAwMDAwMDAwIn0.${'x'.repeat(260)}.${'y'.repeat(86)}`,
  refresh_token: 'r'.repeat(43),
  token_type: 'Bearer',
  expires_in: 900,
});

const app = Fastify({ logger: false });
app.get('/healthz', async () => ({ status: 'ok' }));
for (const path of ['/api/auth/facebook/', '/api/associate/facebook/']) {
  app.post<{ Body: { access_token?: string } }>(path, async (req, reply) => {
    const token = req.body?.access_token;
    if (typeof token !== 'string') return reply.code(400).send({ code: 'invalid_request' });
    try {
      return { id: await facebookCheck(token) };
    } catch {
      return reply.code(502).send({ code: 'provider_unavailable' });
    }
  });
}
app.post<{ Body: { access_token?: string } }>('/a1/api/auth/facebook/', async (req, reply) => {
  const token = req.body?.access_token;
  if (typeof token !== 'string') return reply.code(400).send({ code: 'invalid_request' });
  try {
    return { id: await facebookDebugToken(token) };
  } catch {
    return reply.code(502).send({ code: 'provider_unavailable' });
  }
});
app.post('/api/auth/google/', async (_req, reply) => reply.type('application/json; charset=utf-8').send(STATIC_ANSWER));

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('not listening on TCP');
console.log(JSON.stringify({ url: `http://127.0.0.1:${address.port}` }));

const stop = () => void app.close().finally(() => graph.close().finally(() => process.exit(0)));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
