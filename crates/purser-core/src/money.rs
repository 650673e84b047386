//! Money in exact decimals, never floating point.
//!
//! Amounts are `rust_decimal::Decimal` (28 significant digits, exact in base ten) with
//! an ISO 4217 currency. Adding two currencies is an error, not a conversion.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(value: &str) -> Result<Self, String> {
        let bytes = value.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(format!(
                "`{value}` is not an ISO 4217 currency code (e.g. USD)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.as_str().to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Serialised as a string, so no JSON reader turns it into a float.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(String, String),
    #[error("the amount overflowed 28 significant digits")]
    Overflow,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.as_str().into(),
                other.currency.as_str().into(),
            ));
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Price × quantity, exact.
    pub fn times(self, quantity: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd(value: &str) -> Money {
        Money::new(Decimal::from_str(value).expect("decimal"), Currency::USD)
    }

    #[test]
    fn sums_are_exact_where_floats_are_not() {
        let mut total = Money::zero(Currency::USD);
        for _ in 0..10 {
            total = total.checked_add(usd("0.1")).expect("same currency");
        }
        assert_eq!(total, usd("1.0"));
        assert_ne!((0..10).map(|_| 0.1_f64).sum::<f64>(), 1.0);
    }

    #[test]
    fn currencies_do_not_mix() {
        let eur = Money::new(Decimal::ONE, Currency::parse("EUR").expect("code"));
        assert!(matches!(
            usd("1").checked_add(eur),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert!(Currency::parse("usd").is_err());
    }

    #[test]
    fn amounts_serialise_as_strings() {
        let json = serde_json::to_string(&usd("12.345")).expect("serialise");
        assert_eq!(json, r#"{"amount":"12.345","currency":"USD"}"#);
        assert_eq!(
            usd("0.015").times(Decimal::from(1000)).expect("fits"),
            usd("15")
        );
    }
}
