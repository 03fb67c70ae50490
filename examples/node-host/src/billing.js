// The psa-billing component in Node.js: the same flow as the Rust host
// (host/src/pipeline/mod.rs): verify in the plugin, skip what was processed,
// handle in the plugin inside one SQLite transaction with the event row and
// its effects, answer like the Rust host.
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fees, webhooks, tenants } from '../build/plugin/psa_billing_plugin.js';
import { withDatabase } from './host/storage.js';

const here = dirname(fileURLToPath(import.meta.url));
const KINDS = JSON.parse(readFileSync(join(here, '..', 'build', 'kinds.json'), 'utf8'));

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, account TEXT, created INTEGER NOT NULL,
  livemode INTEGER NOT NULL, received_at INTEGER NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL, last_error TEXT, payload BLOB NOT NULL, processed_at INTEGER);
CREATE TABLE IF NOT EXISTS plugin_state (
  collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  version INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (collection, key));
CREATE TABLE IF NOT EXISTS effects (
  seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events (id),
  kind TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
`;

const REJECTION_CODES = {
  'missing-signature': 'missing_signature',
  'malformed-header': 'malformed_signature_header',
  'no-matching-signature': 'bad_signature',
  'timestamp-too-old': 'timestamp_too_old',
  'timestamp-in-future': 'timestamp_in_future',
  'no-secret-configured': 'no_secret_configured',
  'malformed-payload': 'malformed_payload',
  'missing-field': 'missing_field',
};

function describeRejection({ tag, val }) {
  switch (tag) {
    case 'missing-signature': return 'missing Stripe-Signature header';
    case 'malformed-header': return `malformed Stripe-Signature header: ${val}`;
    case 'no-matching-signature': return 'no v1 signature matches any configured endpoint secret';
    case 'timestamp-too-old': return `signature timestamp is ${val} s old, outside the tolerance`;
    case 'timestamp-in-future': return `signature timestamp is ${val} s in the future, outside the tolerance`;
    case 'no-secret-configured': return 'no webhook endpoint secret is configured';
    case 'malformed-payload': return `malformed event: ${val}`;
    default: return `event field ${JSON.stringify(val)} is missing or invalid`;
  }
}

function describeHandleError({ tag, val }) {
  switch (tag) {
    case 'malformed-payload': return `malformed event: ${val}`;
    case 'missing-field': return `required field ${val} is missing or invalid`;
    case 'storage': return `storage failed: ${val}`;
    default: return `not ready: ${val}`;
  }
}

const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A value lifted by jco as the Rust host's serde writes it. */
function plain(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') return Number(value); // amounts fit in 2^53
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Uint8Array) return Array.from(value);
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [snake(k), plain(v)]));
  }
  return value;
}

/** The outbox JSON of an effect: `kind`, `unrouted` when it names no tenant, the fields. */
export function effectJson(effect) {
  const kind = KINDS[effect.tag];
  if (!kind) throw new Error(`no kind for effect ${effect.tag}`);
  const fields = plain(effect.val);
  const body = { kind };
  if ('tenant' in fields && fields.tenant === null) body.unrouted = true;
  Object.assign(body, fields);
  // Stripe metadata (a WIT list of pairs) reads as the object it is, its
  // keys as Stripe has them (not snake-cased).
  if (Array.isArray(effect.val.metadata)) body.metadata = Object.fromEntries(effect.val.metadata);
  return body;
}

/** A component error's payload (jco throws a result's `err`). */
function payloadOf(e) {
  if (e && typeof e === 'object' && 'payload' in e) return e.payload;
  throw e;
}

export class Billing {
  /**
   * @param {string} path  SQLite file, or ':memory:'
   * @param {{secrets?: string[], toleranceSeconds?: number, tenantKeys?: string[], referenceKeys?: string[], licensePrices?: string[]}} options
   */
  constructor(path, options = {}) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    this.secrets = options.secrets ?? [];
    this.tolerance = options.toleranceSeconds ?? 300;
    this.routing = {
      tenantKeys: options.tenantKeys ?? [],
      referenceKeys: options.referenceKeys ?? [],
      licensePrices: options.licensePrices ?? [],
    };
  }

  /** A signed delivery: `{status, eventId, effects}` or `{rejected, reason}` or `{failed, eventId}`. */
  receive(body, signatureHeader) {
    let envelope;
    try {
      envelope = webhooks.verify({
        body,
        signatureHeader: signatureHeader ?? undefined,
        secrets: this.secrets,
        toleranceSeconds: this.tolerance,
      });
    } catch (e) {
      const err = payloadOf(e);
      return { rejected: REJECTION_CODES[err.tag], reason: describeRejection(err) };
    }
    return this.#process(envelope, body);
  }

  /** An unsigned event (fixture replay). */
  receiveUnsigned(body) {
    let envelope;
    try {
      envelope = webhooks.parse(body);
    } catch (e) {
      const err = payloadOf(e);
      return { rejected: REJECTION_CODES[err.tag], reason: describeRejection(err) };
    }
    return this.#process(envelope, body);
  }

  #process(envelope, body) {
    const db = this.db;
    const id = envelope.id;
    const known = db.prepare('SELECT status FROM events WHERE id = ?').get(id);
    if (known && (known.status === 'processed' || known.status === 'ignored')) {
      return { status: 'duplicate', eventId: id };
    }
    const now = Math.floor(Date.now() / 1000);
    let effects;
    try {
      effects = db.transaction(() =>
        withDatabase(db, () => {
          const handled = webhooks.handle(body, this.routing).map(effectJson);
          const ignored = handled.length > 0 && handled.every((e) => e.kind === 'event.ignored');
          db.prepare(
            `INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, payload, processed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = events.attempts + 1,
               last_error = NULL, processed_at = excluded.processed_at`,
          ).run(id, envelope.eventType, envelope.account ?? null, Number(envelope.created),
            envelope.livemode ? 1 : 0, now, ignored ? 'ignored' : 'processed', Buffer.from(body), now);
          const last = db.prepare('SELECT COALESCE(MAX(seq), 0) AS last FROM effects').get().last;
          const insert = db.prepare('INSERT INTO effects (seq, event_id, kind, body, created_at) VALUES (?, ?, ?, ?, ?)');
          handled.forEach((e, i) => insert.run(last + 1 + i, id, e.kind, JSON.stringify(e), now));
          return { handled, ignored };
        }),
      )();
    } catch (e) {
      let reason;
      try {
        reason = describeHandleError(payloadOf(e));
      } catch {
        reason = `plugin failed: ${e?.message ?? e}`;
      }
      db.prepare(
        `INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, last_error, payload)
         VALUES (?, ?, ?, ?, ?, ?, 'failed', 1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET attempts = events.attempts + 1, last_error = excluded.last_error
         WHERE events.status NOT IN ('processed', 'ignored')`,
      ).run(id, envelope.eventType, envelope.account ?? null, Number(envelope.created),
        envelope.livemode ? 1 : 0, now, reason, Buffer.from(body));
      return { failed: reason, eventId: id };
    }
    return {
      status: effects.ignored ? 'ignored' : 'accepted',
      eventId: id,
      effects: effects.handled,
    };
  }

  /**
   * A fee breakdown of `amount` minor units, like `psa-billing quote`: from
   * the custom fee-rules component when `feeRules` (its jco module, see
   * `loadFeeRules`) is given, checked by the billing plugin; else from the
   * rules text (TOML; undefined: the defaults). Throws the fee error.
   */
  quote({ amount, currency, paymentMethod = 'card', tenant, international = false, converted = false, monthlyVolume }, { feeRules, rules } = {}) {
    const request = {
      amount: { amount: BigInt(amount), currency },
      paymentMethod,
      tenant,
      international,
      converted,
      monthlyVolume: monthlyVolume === undefined ? undefined : BigInt(monthlyVolume),
    };
    try {
      if (!feeRules) return plain(fees.computeQuote(rules, request));
      const lines = feeRules.computeFees({
        amount: request.amount, paymentMethod, tenant, international, converted,
        monthlyVolume: request.monthlyVolume,
      });
      return plain(fees.checkBreakdown(request, lines));
    } catch (e) {
      throw Object.assign(new Error(`quote refused: ${JSON.stringify(plain(payloadOf(e)))}`), { payload: payloadOf(e) });
    }
  }

  /** Registers a connected account to a tenant (the plugin's registry). */
  registerTenant(account, tenant) {
    this.db.transaction(() => withDatabase(this.db, () => tenants.register(account, tenant)))();
  }

  /** Effects after `after`, in order. */
  effectsAfter(after, limit) {
    return this.db
      .prepare('SELECT seq, event_id, kind, body, created_at FROM effects WHERE seq > ? ORDER BY seq LIMIT ?')
      .all(after, limit)
      .map((r) => ({ seq: r.seq, event_id: r.event_id, kind: r.kind, effect: JSON.parse(r.body), created_at: r.created_at }));
  }

  close() {
    this.db.close();
  }
}

/** The JSON lines one event gives in a replay, as `psa-billing replay` prints them. */
export function replayLines(billing, body) {
  const out = billing.receiveUnsigned(body);
  if (out.rejected) return [{ rejected: out.rejected, reason: out.reason }];
  if (out.failed) return [{ event_id: out.eventId, failed: out.failed }];
  if (out.status === 'duplicate') return [{ event_id: out.eventId, duplicate: true }];
  return out.effects.map((effect) => ({ event_id: out.eventId, effect }));
}

/** The custom fee-rules component transpiled by `npm run build` (build/fee-rules). */
export async function loadFeeRules() {
  const module = await import('../build/fee-rules/fee_rules.js');
  return module.feeRules;
}
