#!/usr/bin/env python3
"""Writes N signed deliveries, one "signature<TAB>body" line each, to 50
tenants in turn.

usage: sign.py N PREFIX OUT [--secret S] [--payload small|stripe] [--duplicates F]

--payload small (default): the bench binary's 390-byte
  payment_intent.succeeded with just the fields the mapping reads.
--payload stripe: Stripe's own sample objects from the fixture corpus,
  compact as Stripe sends them: 70% payment_intent.succeeded (1.5 KB),
  15% invoice.paid (4.1 KB), 15% customer.subscription.updated (5.6 KB).
--duplicates F: a fraction F of the lines are redeliveries of an earlier
  line (the same body and signature), as Stripe's retries are.
"""
import argparse
import copy
import hashlib
import hmac
import json
import os
import random
import time

parser = argparse.ArgumentParser()
parser.add_argument("n", type=int)
parser.add_argument("prefix")
parser.add_argument("out")
parser.add_argument("--secret", default="whsec_test")
parser.add_argument("--payload", choices=["small", "stripe"], default="small")
parser.add_argument("--duplicates", type=float, default=0.0)
args = parser.parse_args()

fixtures = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "events")


def sample(path):
    with open(os.path.join(fixtures, path)) as f:
        return json.load(f)


SAMPLES = {
    "payment": sample("connect-payment/01-payment_intent_succeeded.json"),
    "invoice": sample("license-invoice-paid/01-invoice_paid.json"),
    "subscription": sample("subscription-lifecycle/04-customer_subscription_updated.json"),
}


def small(i, evt, tenant):
    return {
        "id": evt, "object": "event", "type": "payment_intent.succeeded",
        "created": 1763800000 + i, "livemode": False, "api_version": "2025-08-27.basil",
        "data": {"object": {
            "id": f"pi_{args.prefix}_{i}", "object": "payment_intent", "amount": 10000,
            "amount_received": 10000, "currency": "usd", "status": "succeeded",
            "customer": "cus_bench", "application_fee_amount": 250,
            "metadata": {"tenant_id": tenant, "invoice_id": f"INV-{i}"},
        }},
    }


def stripe(i, evt, tenant):
    roll = i % 20  # 14 payments, 3 invoices, 3 subscription changes in 20
    kind = "payment" if roll < 14 else "invoice" if roll < 17 else "subscription"
    event = copy.deepcopy(SAMPLES[kind])
    event["id"] = evt
    event["created"] = 1763800000 + i
    event["account"] = None
    obj = event["data"]["object"]
    obj["id"] = f"{obj['id'].split('_')[0]}_{args.prefix}_{i}"
    obj["metadata"] = {"tenant_id": tenant, "invoice_id": f"INV-{i}"}
    return event


make = small if args.payload == "small" else stripe
secret = args.secret.encode()
now = int(time.time())
rng = random.Random(args.prefix)
lines = []
for i in range(args.n):
    if lines and rng.random() < args.duplicates:
        lines.append(rng.choice(lines))
        continue
    body = json.dumps(make(i, f"evt_{args.prefix}_{i}", f"tenant-{i % 50}"), separators=(",", ":"))
    tag = hmac.new(secret, f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
    lines.append(f"t={now},v1={tag}\t{body}\n")
with open(args.out, "w") as f:
    f.writelines(lines)
