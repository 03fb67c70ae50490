// The Express endpoint: a signed delivery is accepted once, a bad signature
// is refused with the Rust host's code, and the effects API needs the token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Billing } from '../src/billing.js';
import { billingRoutes } from '../src/server.js';

const SECRET = 'whsec_node_test';

function sign(body, secret = SECRET, t = Math.floor(Date.now() / 1000)) {
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

test('webhook endpoint over HTTP', async () => {
  const billing = new Billing(':memory:', { secrets: [SECRET] });
  const server = billingRoutes(billing, { apiToken: 'tok' }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const body = JSON.stringify({
    id: 'evt_node_1', object: 'event', type: 'payment_intent.succeeded', created: 1763800000,
    data: { object: { id: 'pi_node_1', object: 'payment_intent', amount: 10000, amount_received: 10000,
      currency: 'usd', application_fee_amount: 250, metadata: { tenant_id: 't-1' } } },
  });
  const post = (headers) => fetch(`${base}/webhooks/stripe`, { method: 'POST', body, headers });
  try {
    let r = await post({ 'Stripe-Signature': sign(body) });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'accepted', event_id: 'evt_node_1', effects: 1 });
    r = await post({ 'Stripe-Signature': sign(body) });
    assert.equal((await r.json()).status, 'duplicate');
    r = await post({ 'Stripe-Signature': sign(body, 'whsec_other') });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, 'bad_signature');
    r = await post({ 'Stripe-Signature': sign(body, SECRET, 1000) });
    assert.equal((await r.json()).error, 'timestamp_too_old');
    r = await post({});
    assert.equal((await r.json()).error, 'missing_signature');

    assert.equal((await fetch(`${base}/v1/effects`)).status, 401);
    r = await fetch(`${base}/v1/effects?after=0`, { headers: { Authorization: 'Bearer tok' } });
    const page = await r.json();
    assert.equal(page.effects.length, 1);
    assert.equal(page.effects[0].kind, 'payment.succeeded');
    assert.deepEqual(page.effects[0].effect.amount, { amount: 10000, currency: 'usd' });
    assert.equal(page.effects[0].effect.tenant, 't-1');
  } finally {
    server.close();
    billing.close();
  }
});
