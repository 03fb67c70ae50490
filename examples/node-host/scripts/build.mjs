// Writes the Rust host's built-in component (the same bytes) to build/,
// transpiles it with jco into an ES module whose psa:billing imports are
// the JavaScript capabilities in src/host/, and reads the effect kinds from
// the plugin's source so that both hosts name effects from one table.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const repo = join(here, '..', '..');
const build = join(here, 'build');
mkdirSync(build, { recursive: true });

const wasm = join(build, 'psa_billing_plugin.wasm');
// PSA_BILLING_BIN names an already built `psa-billing` (CI passes the one
// its tests used); otherwise cargo builds and runs it.
const bin = process.env.PSA_BILLING_BIN;
const [cmd, args] = bin
  ? [bin, ['component', wasm]]
  : ['cargo', ['run', '-q', '-p', 'psa-billing', '--', 'component', wasm]];
execFileSync(cmd, args, { cwd: repo, stdio: 'inherit' });

const jco = join(here, 'node_modules', '.bin', 'jco');
const map = (iface) => ['--map', `psa:billing/${iface}=../../src/host/${iface}.js`];
execFileSync(
  jco,
  ['transpile', wasm, '-o', join(build, 'plugin'), '--quiet', ...map('storage'), ...map('log'), ...map('clock'), ...map('crypto'), ...map('stripe')],
  { stdio: 'inherit' },
);

// Custom fee rules: `--fee-rules file.wasm`, else the plugin authors'
// template (examples/fee-rules-template), built for wasm32-wasip2 here.
const given = process.argv.indexOf('--fee-rules');
let feeRules = given > 0 ? process.argv[given + 1] : null;
if (!feeRules) {
  execFileSync(
    'cargo',
    ['build', '-q', '--release', '-p', 'fee-rules-template', '--target', 'wasm32-wasip2'],
    { cwd: repo, stdio: 'inherit' },
  );
  feeRules = join(repo, 'target', 'wasm32-wasip2', 'release', 'fee_rules_template.wasm');
}
execFileSync(
  jco,
  ['transpile', feeRules, '-o', join(build, 'fee-rules'), '--name', 'fee_rules', '--quiet', ...map('log')],
  { stdio: 'inherit' },
);

// psa_billing_core::effects::KINDS: ("PaymentSucceeded", "payment.succeeded"), ...
const source = readFileSync(join(repo, 'plugin', 'core', 'src', 'effects.rs'), 'utf8');
const table = source.slice(source.indexOf('pub const KINDS'), source.indexOf('];', source.indexOf('pub const KINDS')));
const kinds = {};
for (const [, variant, kind] of table.matchAll(/\("(\w+)", "([^"]+)"\)/g)) {
  // jco names a variant case by its WIT name: PaymentSucceeded -> payment-succeeded.
  kinds[variant.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()] = kind;
}
if (Object.keys(kinds).length < 30) throw new Error('could not read the effect kinds from effects.rs');
writeFileSync(join(build, 'kinds.json'), JSON.stringify(kinds, null, 2));
console.error(`built ${wasm} into build/plugin, fee rules ${feeRules} into build/fee-rules (${Object.keys(kinds).length} effect kinds)`);
