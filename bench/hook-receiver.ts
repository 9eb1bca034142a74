// The app's backend of `npm run bench:hook`, in its own process (its CPU is not the server's): a bare node:http
// server that answers every before_sign_in call as a real receiver would, at the least — it reads the body,
// verifies the Standard Webhooks signature (standardwebhooks: HMAC-SHA256, fresh timestamp, JSON parse) and
// answers 200 {"decision":"allow"}; 401 when the signature does not verify. GET /stats answers how many calls it
// verified and rejected so far, and how many connections were opened to it. Needs BENCH_HOOK_SECRET (whsec_…); prints {"url": ...} on one stdout line when
// listening.
import { createServer, type IncomingMessage } from 'node:http';
import { Webhook } from 'standardwebhooks';

const secret = process.env.BENCH_HOOK_SECRET;
if (!secret) throw new Error('BENCH_HOOK_SECRET (whsec_…) is required');
const webhook = new Webhook(secret);

const ALLOW = Buffer.from(JSON.stringify({ decision: 'allow' }));
let verified = 0;
let rejected = 0;
let connections = 0;

const header = (request: IncomingMessage, name: string) => {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(' ') : (value ?? '');
};

const server = createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/stats') {
    response
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ verified, rejected, connections }));
    return;
  }
  if (request.method !== 'POST') {
    response.writeHead(405).end();
    return;
  }
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    try {
      webhook.verify(Buffer.concat(chunks).toString('utf8'), {
        'webhook-id': header(request, 'webhook-id'),
        'webhook-timestamp': header(request, 'webhook-timestamp'),
        'webhook-signature': header(request, 'webhook-signature'),
      });
    } catch {
      rejected++;
      response.writeHead(401).end();
      return;
    }
    verified++;
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': ALLOW.length }).end(ALLOW);
  });
});
server.on('connection', () => connections++);
// The server under test keeps its connections to the hook open between sign-ins (undici's keep-alive).
server.keepAliveTimeout = 30_000;

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('no address');
  console.log(JSON.stringify({ url: `http://127.0.0.1:${address.port}/hooks/before-sign-in` }));
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
