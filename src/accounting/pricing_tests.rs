//! Tests of the price schedule: every listed model has its own row, versioned ids and unknown
//! family members find their family, and rows change on their dates.

use super::*;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Every model of the late-2026 lineup with its Standard input price on 2026-11-27.
const LINEUP: [(&str, f64); 14] = [
    ("gemini-2.5-pro", 1.25),
    ("gemini-2.5-flash", 0.30),
    ("gemini-2.5-flash-lite", 0.10),
    ("gemini-3.1-pro-preview", 2.00),
    ("gemini-3.5-flash", 1.50),
    ("gemini-3.6-flash", 0.75),
    ("gemini-3.7-flash", 0.75),
    ("gemini-3.8-flash", 0.75),
    ("gemini-3.5-flash-lite", 0.30),
    ("gemini-3.1-flash-lite", 0.25),
    ("gemini-4-argon", 2.00),
    ("gemini-4-carbon", 2.00),
    ("gemini-4-neon", 3.00),
    ("gemini-4-hydrogen", 1.50),
];

#[test]
fn every_lineup_model_resolves_to_its_own_row() {
    let t = PriceTable::builtin();
    for (model, input) in LINEUP {
        let p = t.price_at(&format!("models/{model}"), day("2026-11-27"));
        assert_eq!((p.key, p.source), (model, PriceSource::Table), "{model}");
        assert_eq!(p.row.standard.input, input, "{model}");
    }
}

#[test]
fn versioned_ids_and_unknown_family_members_find_their_family() {
    let t = PriceTable::builtin();
    let at = |m: &str| {
        let p = t.price_at(m, day("2026-11-27"));
        (p.key.to_string(), p.source)
    };
    assert_eq!(at("gemini-2.5-flash-001"), ("gemini-2.5-flash".into(), PriceSource::Family));
    assert_eq!(at("gemini-2.5-flash-lite-preview-09-2025"), ("gemini-2.5-flash-lite".into(), PriceSource::Family));
    assert_eq!(at("gemini-3.1-pro-preview-11-2026"), ("gemini-3.1-pro-preview".into(), PriceSource::Family));
    assert_eq!(at("gemini-3.8-flash-002"), ("gemini-3.8-flash".into(), PriceSource::Family));
    assert_eq!(at("gemini-4-xenon"), ("gemini-4-carbon".into(), PriceSource::Family));
    assert_eq!(at("gemini-3.9-flash"), ("gemini-3.8-flash".into(), PriceSource::Family));
    assert_eq!(at("gemini-3.9-flash-lite"), ("gemini-3.5-flash-lite".into(), PriceSource::Family));
    assert_eq!(at("gemini-flash-latest"), ("gemini-3.5-flash".into(), PriceSource::Table));
    assert_eq!(at("some-future-model"), ("gemini-3.8-flash".into(), PriceSource::Default));
    assert!(t.price_for("some-future-model").1, "price_for flags the default row");
}

#[test]
fn rows_change_on_their_dates() {
    let t = PriceTable::builtin();
    let input = |m: &str, d: &str| t.price_at(m, day(d)).row.standard.input;
    for m in ["gemini-3.6-flash", "gemini-3.7-flash", "gemini-3.8-flash"] {
        assert_eq!(input(m, "2026-12-31"), 0.75, "{m}");
        assert_eq!(input(m, "2027-01-01"), 1.50, "{m}");
        assert_eq!(t.price_at(m, day("2026-12-31")).row.storage_per_hour, 0.50);
        assert_eq!(t.price_at(m, day("2027-01-01")).row.storage_per_hour, 1.00);
    }
    for m in ["gemini-4-argon", "gemini-4-carbon"] {
        assert_eq!(input(m, "2026-11-30"), 2.00, "{m}");
        assert_eq!(input(m, "2026-12-01"), 4.00, "{m}");
        assert!((t.price_at(m, day("2026-12-01")).row.cached_share() - 0.05).abs() < 1e-9, "{m}");
    }
    assert_eq!(t.price_at("gemini-3.8-flash", day("2027-01-01")).row_name(), "gemini-3.8-flash@2027-01-01");
    // Before a model's first row, its first row.
    assert_eq!(input("gemini-4-carbon", "2020-01-01"), 2.00);
}

#[test]
fn pro_long_context_and_tier_multipliers() {
    let t = PriceTable::builtin();
    let (pro, fb) = t.price_for("models/gemini-2.5-pro");
    assert!(!fb);
    assert_eq!(pro.rates(200_000).input, 1.25);
    assert_eq!(pro.rates(200_001).input, 2.50);
    assert_eq!(pro.rates(200_001).cached_read, 0.25);
    assert_eq!(pro.tiers.priority.input, 1.8);
    assert_eq!(pro.tiers.batch.cached_read, 0.5);
    assert_eq!(t.cache_creation, CreationBilling::InputPrice);
}

#[test]
fn staleness_follows_the_newest_as_of() {
    let t = PriceTable::builtin();
    let limit = std::time::Duration::from_secs(120 * 86_400);
    assert_eq!(t.newest_as_of(), Some(day("2026-11-01")));
    assert!(t.staleness(day("2026-11-27"), limit).is_none());
    let warning = t.staleness(day("2027-06-01"), limit).expect("stale");
    assert!(warning.contains("212 days"), "{warning}");
}

const ROW: &str = r#"effective_from = "2025-01-01"
as_of = "2025-10"
storage_per_hour = 1.0
standard = { input = 0.3, output = 2.5, cached_read = 0.03 }"#;

#[test]
fn rejects_unknown_keys_dangling_names_and_bad_rows() {
    let ok = format!("default = \"m\"\n[[models.m]]\n{ROW}\n");
    assert!(PriceTable::parse(&ok).is_ok());
    assert!(PriceTable::parse(&format!("{ok}storage_per_hr = 2.0\n")).is_err(), "unknown key");
    let err = PriceTable::parse(&ok.replace("default = \"m\"", "default = \"x\"")).unwrap_err().to_string();
    assert!(err.contains("default"), "{err}");
    let err = PriceTable::parse(&format!("{ok}[aliases]\na = \"nope\"\n")).unwrap_err().to_string();
    assert!(err.contains("aliases.a"), "{err}");
    let twice = format!("{ok}[[models.m]]\n{ROW}\n");
    assert!(PriceTable::parse(&twice).unwrap_err().to_string().contains("same effective_from"));
    assert!(PriceTable::parse(&format!("{ok}long_context_above = 10\n")).is_err(), "half a tier");
    assert!(PriceTable::parse(&ok.replace("storage_per_hour = 1.0", "storage_per_hour = -1.0")).is_err());
    assert!(PriceTable::parse(&ok.replace("2025-10", "October")).is_err(), "as_of");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, BUILTIN).unwrap();
    assert_eq!(PriceTable::load(&p).unwrap(), PriceTable::builtin());
    let err = PriceTable::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(format!("{err:#}").contains("missing.toml"));
}
