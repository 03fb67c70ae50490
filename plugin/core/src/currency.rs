//! Stripe's currency rules: how many decimals an amount's minor unit has.
//!
//! Source: Stripe's "Supported currencies" documentation (zero-decimal and
//! three-decimal lists, and the special cases noted on each entry below).

/// How a currency's amounts are expressed to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    /// Lower-case ISO 4217 code.
    pub code: &'static str,
    /// Decimals of the minor unit in the API (`amount` = major × 10^decimals).
    pub decimals: u32,
}

/// Zero-decimal currencies: the API amount is the major unit (¥100 = 100).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Three-decimal currencies: the API amount has three decimals (5.124 KWD = 5124).
/// Stripe requires charge amounts in these to end in 0 (a multiple of 10 minor units).
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Two-decimal currencies Stripe charges in. ISK, HUF, TWD and UGX have
/// further rules on whole units that the fee engine applies (issue 3).
const TWO_DECIMAL: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf", "chf", "cny",
    "cop", "crc", "cve", "czk", "dkk", "dop", "dzd", "egp", "etb", "eur", "fjd", "fkp", "gbp",
    "gel", "gip", "gmd", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "isk",
    "jmd", "kes", "kgs", "khr", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl",
    "mkd", "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio",
    "nok", "npr", "nzd", "pab", "pen", "pgk", "php", "pkr", "pln", "qar", "ron", "rsd", "rub",
    "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb", "tjs",
    "top", "try", "ttd", "twd", "tzs", "uah", "usd", "uyu", "uzs", "wst", "xcd", "yer", "zar",
    "zmw",
];

/// What a charge in `code` must be a multiple of, in minor units.
///
/// - Three-decimal currencies (BHD JOD KWD OMR TND): Stripe's payment
///   partners need the last digit to be 0, so 10.
/// - ISK: two-decimal in the API, but since April 2023 charges must be whole
///   krónur, so 100.
/// - Everything else: 1.
pub fn charge_step(code: &str) -> i64 {
    match code {
        "bhd" | "jod" | "kwd" | "omr" | "tnd" => 10,
        "isk" => 100,
        _ => 1,
    }
}

/// What a payout in `code` must be a multiple of, in minor units.
///
/// HUF and TWD can be charged with two decimals but are paid out in whole
/// units only (Stripe treats them as zero-decimal for payouts); ISK likewise.
/// Three-decimal currencies follow the charge rule.
pub fn payout_step(code: &str) -> i64 {
    match code {
        "huf" | "twd" | "isk" => 100,
        other => charge_step(other),
    }
}

/// Looks a currency up by code (case-insensitive).
///
/// Every code is three ASCII letters, lower-cased on the stack and found by
/// binary search in the sorted lists: a linear scan of string compares was
/// most of the cost of a plugin call that prices money (memcmp in wasm is a
/// byte loop, and every amount is checked against its currency).
pub fn lookup(code: &str) -> Option<Currency> {
    let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
    let lower = bytes.map(|b| b.to_ascii_lowercase());
    let lower = std::str::from_utf8(&lower).ok()?;
    [(ZERO_DECIMAL, 0), (THREE_DECIMAL, 3), (TWO_DECIMAL, 2)]
        .into_iter()
        .find_map(|(list, decimals)| {
            let i = list.binary_search(&lower).ok()?;
            // The static code, so the result does not borrow the caller's string.
            Some(Currency {
                code: list[i],
                decimals,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_stripe() {
        assert_eq!(lookup("USD").unwrap().decimals, 2);
        assert_eq!(lookup("jpy").unwrap().decimals, 0);
        assert_eq!(lookup("krw").unwrap().decimals, 0);
        assert_eq!(lookup("kwd").unwrap().decimals, 3);
        assert_eq!(lookup("bhd").unwrap().decimals, 3);
        assert_eq!(lookup("isk").unwrap().decimals, 2);
        assert!(lookup("xyz").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn special_cases() {
        assert_eq!(charge_step("kwd"), 10);
        assert_eq!(charge_step("isk"), 100);
        assert_eq!(charge_step("huf"), 1);
        assert_eq!(payout_step("huf"), 100);
        assert_eq!(payout_step("twd"), 100);
        assert_eq!(payout_step("usd"), 1);
        assert_eq!(lookup("ugx").unwrap().decimals, 0);
    }

    #[test]
    fn lists_are_sorted_lower_case_codes() {
        // `lookup` binary-searches them.
        for list in [ZERO_DECIMAL, THREE_DECIMAL, TWO_DECIMAL] {
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "{list:?} is not sorted"
            );
            for c in list {
                assert!(
                    c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()),
                    "{c}"
                );
                assert_eq!(lookup(c).map(|f| f.code), Some(*c));
                assert_eq!(lookup(&c.to_uppercase()).map(|f| f.code), Some(*c));
            }
        }
        assert!(lookup("usdx").is_none() && lookup("us").is_none() && lookup("ü").is_none());
    }

    #[test]
    fn lists_do_not_overlap() {
        for c in ZERO_DECIMAL.iter().chain(THREE_DECIMAL) {
            assert!(!TWO_DECIMAL.contains(c), "{c} listed twice");
        }
        for c in ZERO_DECIMAL {
            assert!(!THREE_DECIMAL.contains(c), "{c} listed twice");
        }
    }
}
