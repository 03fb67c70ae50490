// psa:billing/clock: Unix seconds, as the guest's only clock.
export function now() {
  return BigInt(Math.floor(Date.now() / 1000));
}
