#!/usr/bin/env python3
"""Writes N signed `payment_intent.succeeded` deliveries, one "signature<TAB>body"
line each, in the shape the bench binary sends (50 tenants, round robin).

usage: sign.py N PREFIX OUT [SECRET]
"""
import hashlib
import hmac
import json
import sys
import time

n, prefix, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
secret = (sys.argv[4] if len(sys.argv) > 4 else "whsec_test").encode()
now = int(time.time())
with open(out, "w") as f:
    for i in range(n):
        body = json.dumps({
            "id": f"evt_{prefix}_{i}", "object": "event", "type": "payment_intent.succeeded",
            "created": 1763800000 + i, "livemode": False, "api_version": "2025-08-27.basil",
            "data": {"object": {
                "id": f"pi_{prefix}_{i}", "object": "payment_intent", "amount": 10000,
                "amount_received": 10000, "currency": "usd", "status": "succeeded",
                "customer": "cus_bench", "application_fee_amount": 250,
                "metadata": {"tenant_id": f"tenant-{i % 50}", "invoice_id": f"INV-{i}"},
            }},
        }, separators=(",", ":"))
        tag = hmac.new(secret, f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
        f.write(f"t={now},v1={tag}\t{body}\n")
