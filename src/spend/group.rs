//! Summing rollup rows along the dimensions a reader asks for (`group_by=`).

use crate::store::{SpendFigures, SpendRow};
use std::collections::BTreeMap;

/// A dimension rollups can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Hour,
    Model,
    Tenant,
    Tag,
    Mechanism,
}

impl Dim {
    pub const ALL: [Dim; 5] = [Dim::Hour, Dim::Model, Dim::Tenant, Dim::Tag, Dim::Mechanism];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Hour => "hour",
            Dim::Model => "model",
            Dim::Tenant => "tenant",
            Dim::Tag => "tag",
            Dim::Mechanism => "mechanism",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.as_str() == s)
    }

    fn of(self, row: &SpendRow) -> String {
        let k = &row.0;
        match self {
            Dim::Hour => crate::clock::rfc3339(k.hour_ms),
            Dim::Model => k.model.clone(),
            Dim::Tenant => k.tenant.clone(),
            Dim::Tag => k.tag.clone(),
            Dim::Mechanism => k.mechanism.clone(),
        }
    }
}

/// `rows` summed per distinct value of `dims` (one group holding everything when `dims` is
/// empty), ordered by those values.
pub fn group(rows: &[SpendRow], dims: &[Dim]) -> Vec<(Vec<String>, SpendFigures)> {
    let mut out: BTreeMap<Vec<String>, SpendFigures> = BTreeMap::new();
    for row in rows {
        let key: Vec<String> = dims.iter().map(|d| d.of(row)).collect();
        out.entry(key).or_default().add(&row.1);
    }
    if out.is_empty() && dims.is_empty() {
        out.insert(Vec::new(), SpendFigures::default());
    }
    out.into_iter().collect()
}
