// psa:billing/crypto: HMAC-SHA256 by Node's crypto (OpenSSL), which uses
// the CPU's SHA instructions; the guest compares the tag itself.
import { createHmac } from 'node:crypto';

export function hmacSha256(key, message) {
  return new Uint8Array(createHmac('sha256', key).update(message).digest());
}
