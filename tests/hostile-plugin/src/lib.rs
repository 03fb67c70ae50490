//! A billing plugin that behaves like the default one for verification, but
//! misbehaves on purpose when handling events of the test types below. The
//! host's tests use it to prove that a bad plugin fails one call cleanly.
//!
//! - `test.trap`: panics (a wasm trap);
//! - `test.loop`: spins forever (the epoch deadline must stop it);
//! - `test.oom`: grows memory without bound (the memory cap must stop it);
//! - `test.recurse`: recurses without bound (stack overflow trap);
//! - `test.huge` / `test.wide`: returns 20,000 effects / 640 KB of effects;
//! - `test.escape`: tries to read the environment and a file (must find nothing);
//! - `test.count`: counts its calls in a static and reports the count (what
//!   an instance keeps between calls, and when it is replaced).
//!
//! Its fee math loops or traps, and its ledger `post` stages a write and
//! traps, `balances` loops. Operations: `onboard-tenant` spins after a
//! Stripe call, `refund` calls Stripe without end (the host caps the
//! calls), `withdraw` stages a write and traps, the others trap.
//!
//! Any other type is handled by the real mapping.

#[cfg(target_arch = "wasm32")]
mod glue {
    use psa_billing_core::{event, signature};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "billing-plugin",
    });

    use exports::psa::billing::fees::{self, FeeError, Quote, QuoteRequest};
    use exports::psa::billing::ledger;
    use exports::psa::billing::operations as ops;
    use exports::psa::billing::webhooks::{
        self, Delivery, Effect, Envelope, EventIgnored, HandleError, VerifyError,
    };
    use psa::billing::clock;
    use psa::billing::types::Money;

    struct Hostile;
    export!(Hostile);

    impl fees::Guest for Hostile {
        fn compute_quote(_: Option<String>, _: QuoteRequest) -> Result<Quote, FeeError> {
            loop {
                std::hint::black_box(());
            }
        }
        fn check_rules(_: String) -> Result<(), FeeError> {
            Ok(())
        }
        fn check_breakdown(
            _: QuoteRequest,
            _: Vec<psa::billing::types::FeeLine>,
        ) -> Result<Quote, FeeError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn plan_escrow(
            _: Option<String>,
            _: Money,
            _: fees::EscrowParties,
        ) -> Result<fees::EscrowPlan, FeeError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn check_wallet_move(
            _: Option<String>,
            _: fees::WalletMove,
            _: Money,
            _: i64,
        ) -> Result<(), FeeError> {
            Ok(())
        }
        fn total_invoice(
            _: Option<String>,
            _: String,
            _: Vec<fees::InvoiceLine>,
        ) -> Result<fees::InvoiceTotals, FeeError> {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hog);
            }
        }
        fn prorate_seats(
            _: Option<String>,
            _: fees::SeatChange,
        ) -> Result<fees::Proration, FeeError> {
            Err(FeeError::InvalidAmount("hostile plugin".into()))
        }
        fn split_refund(
            _: Option<String>,
            _: fees::Charged,
            _: i64,
            _: bool,
        ) -> Result<fees::RefundSplit, FeeError> {
            Err(FeeError::InvalidAmount("hostile plugin".into()))
        }
        fn parse_amount(_: String, _: String) -> Result<Money, FeeError> {
            Err(FeeError::InvalidAmount("hostile plugin".into()))
        }
    }

    impl exports::psa::billing::ledger::Guest for Hostile {
        fn post(
            id: String,
            _: String,
            _: String,
            _: String,
            _: Vec<psa::billing::types::Movement>,
        ) -> Result<ledger::Transaction, ledger::LedgerError> {
            // Stage a write, then trap: the host must commit nothing.
            let _ = psa::billing::storage::put("ledger_books", &id, "half-posted");
            panic!("hostile plugin trapped on purpose while posting")
        }
        fn balances(_: String) -> Result<Vec<ledger::Balance>, ledger::LedgerError> {
            loop {
                std::hint::black_box(());
            }
        }
        fn transactions(
            _: String,
            _: u64,
            _: u32,
        ) -> Result<Vec<ledger::Transaction>, ledger::LedgerError> {
            Ok(Vec::new())
        }
    }

    #[allow(unconditional_recursion)]
    fn recurse(depth: u64) -> u64 {
        // A frame that cannot be optimised away, so the stack really grows.
        let frame = std::hint::black_box([depth; 32]);
        recurse(frame[0] + 1) + frame[31]
    }

    /// The registry hangs: a host must survive a stuck registration.
    impl exports::psa::billing::operations::Guest for Hostile {
        fn charge_invoice(
            _: ops::ChargeInvoiceRequest,
            _: Quote,
        ) -> Result<ops::ChargedInvoice, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn refund(
            _: Option<String>,
            req: ops::RefundRequest,
        ) -> Result<ops::Refunded, ops::OperationError> {
            loop {
                if let Err(e @ psa::billing::stripe::StripeError::Denied(_)) =
                    psa::billing::stripe::retrieve_payment_intent(&req.payment_intent, None)
                {
                    return Err(ops::OperationError::Stripe(e));
                }
            }
        }
        fn deposit(
            _: Option<String>,
            _: ops::DepositRequest,
        ) -> Result<psa::billing::stripe::PaymentIntent, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn withdraw(
            _: Option<String>,
            req: ops::WithdrawRequest,
        ) -> Result<ops::Withdrawal, ops::OperationError> {
            let _ = psa::billing::storage::put("ledger_books", &req.tenant, "half-withdrawn");
            panic!("hostile plugin trapped on purpose while withdrawing")
        }
        fn set_license_count(
            _: ops::LicenseCountRequest,
        ) -> Result<psa::billing::stripe::Subscription, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn settle_payment(_: ops::SettleRequest) -> Result<Vec<Effect>, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn prove_owned(_: ops::OwnershipClaim) -> Result<(), ops::OperationError> {
            // Lets every request through, so the host's own limits are what
            // its operations meet.
            Ok(())
        }
        fn account_status(
            _: ops::AccountStatusRequest,
        ) -> Result<psa::billing::stripe::Account, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn manage_customer(
            _: ops::CustomerRequest,
        ) -> Result<psa::billing::stripe::Customer, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn manage_subscription(
            _: ops::SubscriptionRequest,
        ) -> Result<psa::billing::stripe::Subscription, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn create_checkout(
            _: Option<String>,
            _: ops::CheckoutRequest,
        ) -> Result<psa::billing::stripe::CheckoutSession, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn create_portal(
            _: ops::PortalRequest,
        ) -> Result<psa::billing::stripe::PortalSession, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn manage_invoice(
            _: Option<String>,
            _: ops::InvoiceRequest,
        ) -> Result<Option<ops::Invoiced>, ops::OperationError> {
            panic!("hostile plugin trapped on purpose")
        }
        fn onboard_tenant(_: ops::OnboardRequest) -> Result<ops::Onboarded, ops::OperationError> {
            // Time spent in Stripe is given back; the spin after it is not.
            let _ = psa::billing::stripe::retrieve_account("acct_1Hostile");
            loop {
                std::hint::black_box(());
            }
        }
    }

    impl exports::psa::billing::tenants::Guest for Hostile {
        fn register(
            _: String,
            _: String,
        ) -> Result<Vec<exports::psa::billing::tenants::Effect>, String> {
            loop {
                std::hint::black_box(());
            }
        }
        fn unregister(_: String) -> Result<(), String> {
            Err("hostile plugin forgets nothing".into())
        }
        fn lookup(_: String) -> Result<Option<String>, String> {
            panic!("hostile plugin trapped on purpose")
        }
        fn register_contractor(_: String, _: String, _: String) -> Result<(), String> {
            panic!("hostile plugin trapped on purpose")
        }
        fn contractor_account(_: String, _: String) -> Result<Option<String>, String> {
            panic!("hostile plugin trapped on purpose")
        }
    }

    impl webhooks::Guest for Hostile {
        fn verify(d: Delivery) -> Result<Envelope, VerifyError> {
            signature::verify(
                &d.body,
                d.signature_header.as_deref(),
                &d.secrets,
                d.tolerance_seconds,
                clock::now(),
            )
            .map_err(|_| VerifyError::NoMatchingSignature)?;
            Self::parse(d.body)
        }

        fn parse(body: Vec<u8>) -> Result<Envelope, VerifyError> {
            let e = event::parse_envelope(&body)
                .map_err(|e| VerifyError::MalformedPayload(e.to_string()))?;
            Ok(Envelope {
                id: e.id,
                event_type: e.event_type,
                account: e.account,
                created: e.created,
                livemode: e.livemode,
                api_version: e.api_version,
            })
        }

        fn verify_thin(_: Delivery) -> Result<webhooks::ThinEnvelope, VerifyError> {
            panic!("hostile plugin trapped on purpose")
        }

        fn snapshot_from_thin(_: Vec<u8>, _: Option<Vec<u8>>) -> Result<Vec<u8>, VerifyError> {
            loop {
                std::hint::black_box(());
            }
        }

        fn handle(body: Vec<u8>, _: webhooks::Routing) -> Result<Vec<Effect>, HandleError> {
            let e = event::parse_envelope(&body)
                .map_err(|e| HandleError::MalformedPayload(e.to_string()))?;
            // Stage a write first: the host must roll it back when the call fails.
            psa::billing::storage::put("hostile", &e.id, "written before misbehaving")
                .map_err(|e| HandleError::Storage(format!("{e:?}")))?;
            match e.event_type.as_str() {
                "test.trap" => panic!("hostile plugin trapped on purpose"),
                "test.loop" => loop {
                    std::hint::black_box(());
                },
                "test.oom" => {
                    let mut hog: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hog.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hog);
                    }
                }
                "test.recurse" => {
                    recurse(0);
                    unreachable!()
                }
                // Output far beyond any real mapping: by count, then by size.
                "test.huge" => Ok((0..20_000)
                    .map(|_| {
                        Effect::EventIgnored(EventIgnored {
                            event_type: e.event_type.clone(),
                            reason: "x".repeat(64),
                        })
                    })
                    .collect()),
                "test.wide" => Ok((0..40)
                    .map(|_| {
                        Effect::EventIgnored(EventIgnored {
                            event_type: e.event_type.clone(),
                            reason: "y".repeat(16 * 1024),
                        })
                    })
                    .collect()),
                "test.escape" => {
                    let env = std::env::vars().count();
                    let file = std::fs::read("/etc/passwd").is_ok();
                    let dir = std::fs::read_dir("/").is_ok();
                    let net = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
                    Ok(vec![Effect::EventIgnored(EventIgnored {
                        event_type: e.event_type,
                        reason: format!("env={env} file={file} dir={dir} net={net}"),
                    })])
                }
                "test.count" => {
                    static CALLS: std::sync::atomic::AtomicU32 =
                        std::sync::atomic::AtomicU32::new(0);
                    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    Ok(vec![Effect::EventIgnored(EventIgnored {
                        event_type: e.event_type,
                        reason: format!("calls={n}"),
                    })])
                }
                other => Ok(vec![Effect::EventIgnored(EventIgnored {
                    event_type: other.to_string(),
                    reason: "handled by the hostile plugin".into(),
                })]),
            }
        }
    }
}
