// An Express application serving Stripe webhooks through the component:
//   STRIPE_WEBHOOK_SECRET=whsec_... PSA_BILLING_API_TOKEN=dev-token npm run serve
import express from 'express';
import { createHash, timingSafeEqual } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Billing } from './billing.js';

/** The routes, on an existing Express app or a new one. */
export function billingRoutes(billing, { apiToken, maxBodyBytes = 1024 * 1024 } = {}, app = express()) {
  // The signature is over the raw bytes: never let a JSON parser touch them.
  app.post('/webhooks/stripe', express.raw({ type: () => true, limit: maxBodyBytes }), (req, res) => {
    const body = new Uint8Array(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    const out = billing.receive(body, req.get('Stripe-Signature'));
    if (out.rejected) return res.status(400).json({ error: out.rejected, reason: out.reason });
    if (out.failed) return res.status(500).json({ error: 'processing_failed', reason: out.failed, event_id: out.eventId });
    res.json({ status: out.status, event_id: out.eventId, effects: out.effects?.length ?? 0 });
  });

  const digest = (t) => createHash('sha256').update(t).digest();
  const expected = apiToken ? digest(apiToken) : null;
  app.get('/v1/effects', (req, res) => {
    const given = (req.get('Authorization') ?? '').replace(/^Bearer /, '');
    if (!expected) return res.status(403).json({ error: 'api_closed', reason: 'set PSA_BILLING_API_TOKEN' });
    if (!timingSafeEqual(digest(given), expected)) return res.status(401).json({ error: 'unauthorized', reason: 'bad token' });
    const after = Number(req.query.after ?? 0);
    const limit = Number(req.query.limit ?? 100);
    if (!Number.isInteger(after) || after < 0 || !Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return res.status(400).json({ error: 'bad_query', reason: 'after must be a non-negative integer and limit 1 to 1000' });
    }
    const effects = billing.effectsAfter(after, limit);
    res.json({ effects, next_after: effects.at(-1)?.seq ?? after });
  });
  app.get('/healthz', (_req, res) => res.json({ status: 'ok' }));
  // A body over the limit, or any other error: a clear JSON answer.
  app.use((err, _req, res, _next) => {
    const tooLarge = err?.type === 'entity.too.large';
    res.status(tooLarge ? 413 : 500).json({ error: tooLarge ? 'body_too_large' : 'internal', reason: String(err?.message ?? err) });
  });
  return app;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const secrets = (process.env.STRIPE_WEBHOOK_SECRET ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (secrets.length === 0) {
    console.error('set STRIPE_WEBHOOK_SECRET to the endpoint secret (whsec_...)');
    process.exit(2);
  }
  const billing = new Billing(process.env.PSA_BILLING_DATABASE ?? 'psa-billing-node.db', { secrets });
  const app = billingRoutes(billing, { apiToken: process.env.PSA_BILLING_API_TOKEN });
  const [host, port] = (process.env.PSA_BILLING_LISTEN ?? '127.0.0.1:8788').split(':');
  app.listen(Number(port), host, () => console.error(`psa-billing (node) on ${host}:${port}`));
}
