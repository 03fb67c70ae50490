// Load bench, the same way as the Rust one (bench/src/main.rs): the real
// Express app on a loopback port over a temporary SQLite file (WAL,
// synchronous=FULL), distinct signed payment_intent.succeeded deliveries
// over 50 tenants at a given concurrency; prints events/s and latency.
//   node scripts/bench.mjs --events 3000 --concurrency 16
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Billing } from '../src/billing.js';
import { billingRoutes } from '../src/server.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const events = arg('events', 2000);
const concurrency = arg('concurrency', 16);
const SECRET = 'whsec_bench';

const body = (i) => JSON.stringify({
  id: `evt_bench_${i}`, object: 'event', type: 'payment_intent.succeeded',
  created: 1763800000 + i, livemode: false, api_version: '2025-08-27.basil',
  data: { object: {
    id: `pi_bench_${i}`, object: 'payment_intent', amount: 10000, amount_received: 10000,
    currency: 'usd', status: 'succeeded', customer: 'cus_bench', application_fee_amount: 250,
    metadata: { tenant_id: `tenant-${i % 50}`, invoice_id: `INV-${i}` },
  } },
});
const sign = (b) => {
  const t = Math.floor(Date.now() / 1000);
  return `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${b}`).digest('hex')}`;
};

const dir = mkdtempSync(join(tmpdir(), 'psa-node-bench-'));
const billing = new Billing(join(dir, 'bench.db'), { secrets: [SECRET] });
const server = billingRoutes(billing, {}).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const url = `http://127.0.0.1:${server.address().port}/webhooks/stripe`;

const latencies = [];
let next = 0;
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < events) {
    const b = body(next++);
    const t0 = performance.now();
    const r = await fetch(url, { method: 'POST', body: b, headers: { 'Stripe-Signature': sign(b) } });
    const answer = await r.json();
    if (r.status !== 200 || answer.status !== 'accepted') throw new Error(JSON.stringify(answer));
    latencies.push(performance.now() - t0);
  }
}));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))].toFixed(2);
console.log(`node host: ${events} events, concurrency ${concurrency}: ${(events / seconds).toFixed(0)} events/s, p50 ${pct(50)} ms, p99 ${pct(99)} ms`);
server.close();
billing.close();
rmSync(dir, { recursive: true, force: true });
