// The fixture corpus through the Node host must give exactly the Rust
// host's expected effects (tests/fixtures/expected): a difference is a bug
// in one of the hosts, not a tolerance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Billing, replayLines } from '../src/billing.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const events = join(repo, 'tests', 'fixtures', 'events');
const expected = join(repo, 'tests', 'fixtures', 'expected');

const scenarios = readdirSync(events).sort();
assert.ok(scenarios.length >= 20, 'the corpus is there');

for (const scenario of scenarios) {
  test(`scenario ${scenario}`, () => {
    const prices = join(events, scenario, 'license-prices.txt');
    const licensePrices = existsSync(prices)
      ? readFileSync(prices, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
      : [];
    const billing = new Billing(':memory:', { licensePrices });
    const registry = join(events, scenario, 'registry.txt');
    if (existsSync(registry)) {
      for (const line of readFileSync(registry, 'utf8').split('\n')) {
        const t = line.trim();
        if (!t || t.startsWith('#')) continue;
        const [account, tenant] = t.split(/\s+/);
        billing.registerTenant(account, tenant);
      }
    }
    const files = readdirSync(join(events, scenario)).filter((f) => f.endsWith('.json')).sort();
    for (const file of files) {
      const body = readFileSync(join(events, scenario, file));
      const got = replayLines(billing, new Uint8Array(body));
      const want = readFileSync(join(expected, scenario, file.replace(/\.json$/, '.jsonl')), 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l));
      assert.deepStrictEqual(got, want, `${scenario}/${file}`);
    }
    billing.close();
  });
}
