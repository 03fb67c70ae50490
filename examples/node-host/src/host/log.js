// psa:billing/log: warnings and errors to stderr; the rest when PSA_BILLING_LOG=debug.
const verbose = process.env.PSA_BILLING_LOG === 'debug';
export function log(level, message) {
  if (verbose || level === 'warn' || level === 'error') {
    console.error(`[plugin ${level}] ${message}`);
  }
}
