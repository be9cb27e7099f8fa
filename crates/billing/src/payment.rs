//! How invoices get paid: the [`PaymentProvider`] trait and the built-in [`ManualProvider`].
//!
//! No payment network is reachable from Silo's machines, so the built-in provider is the
//! "manual invoice": the invoice carries bank-transfer instructions, and an operator marks it
//! paid ([`crate::invoices::Invoices::record_payment`], `silo billing pay`, the console) once the money
//! arrived. A card processor is another implementation: [`PaymentProvider::collect`] charges
//! the customer's saved card when an invoice is finalised and answers [`Collection::Paid`]
//! (recorded at once) or [`Collection::Failed`] (the invoice stays open and dunning takes
//! over); a processor that confirms later by webhook answers [`Collection::Pending`] and its
//! webhook handler calls `record_payment` with the processor's reference.

use std::future::Future;
use std::pin::Pin;

use crate::Result;

use crate::invoices::Invoice;

/// What collecting an invoice did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collection {
    /// The money arrived; `reference` is the provider's (a charge id).
    Paid {
        /// The provider's reference.
        reference: String,
    },
    /// Nothing yet: the customer pays (or the provider confirms) later.
    Pending,
    /// The attempt failed; the invoice stays open.
    Failed {
        /// Why, for the audit log.
        reason: String,
    },
}

/// A boxed future (the trait is used as `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way of being paid.
pub trait PaymentProvider: Send + Sync {
    /// Its name, stored on the invoices it collects.
    fn name(&self) -> &'static str;

    /// What the invoice tells the customer about paying it.
    fn instructions(&self, invoice: &Invoice) -> String;

    /// Starts collecting a just-finalised invoice.
    fn collect<'a>(&'a self, invoice: &'a Invoice) -> BoxFuture<'a, Result<Collection>>;
}

/// Bank transfer, confirmed by an operator.
pub struct ManualProvider {
    /// The instructions (`billing.payment_instructions`).
    pub instructions: String,
}

impl PaymentProvider for ManualProvider {
    fn name(&self) -> &'static str {
        "manual"
    }

    fn instructions(&self, invoice: &Invoice) -> String {
        match invoice.number {
            Some(number) => format!("{} Reference: invoice {number}.", self.instructions),
            None => self.instructions.clone(),
        }
    }

    fn collect<'a>(&'a self, _invoice: &'a Invoice) -> BoxFuture<'a, Result<Collection>> {
        // Nothing to charge: the customer transfers, an operator records it.
        Box::pin(async { Ok(Collection::Pending) })
    }
}
