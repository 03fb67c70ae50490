// Quotes in the Node host: the built-in rules, and the plugin authors'
// template as custom fee rules, give what the Rust host's CLI gives
// (host/tests/cli.rs: 100.00 USD -> 3.20 / 2.00 / 94.80 with the template).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Billing, loadFeeRules } from '../src/billing.js';

test('custom fee rules are loaded and checked by the billing plugin', async () => {
  const billing = new Billing(':memory:');
  const feeRules = await loadFeeRules();
  const q = billing.quote({ amount: 10000, currency: 'usd' }, { feeRules });
  assert.deepEqual(
    [q.processor_fee.amount, q.application_fee.amount, q.net.amount],
    [320, 200, 9480],
  );
  // The template declines other currencies: the quote fails with its reason.
  assert.throws(() => billing.quote({ amount: 10000, currency: 'eur' }, { feeRules }), /usd only/);
  billing.close();
});

test('the built-in rules price a card payment as the Rust host does', () => {
  const billing = new Billing(':memory:');
  const q = billing.quote({ amount: 10000, currency: 'usd' });
  // Stripe's US card price, no platform fee: 2.9% + 30c.
  assert.equal(q.processor_fee.amount, 320);
  assert.equal(q.application_fee.amount, 0);
  assert.equal(q.net.amount, 9680);
  assert.throws(() => billing.quote({ amount: -1, currency: 'usd' }), /quote refused/);
  billing.close();
});
