//! Honest accounting: the dated price table and the cost of a response, computed from the
//! upstream's own token counts.

pub mod cost;
pub mod ids;
pub mod pricing;

pub use cost::{
    Costs, Pricing, Service, Usage, actual_usd, as_sent_usd, creation_usd, net_saving_usd, rates_for, storage_usd,
};
pub use pricing::{CreationBilling, ModelPrice, PriceSource, PriceTable, Priced, Rates, Tiers, day_of_ms, today};
