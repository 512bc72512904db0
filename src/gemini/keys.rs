//! Object keys read without allocating: single-pass readers (a request's shape, a response's
//! usage) match each key as the parser hands it over, escaped or not, instead of building a
//! `String` per key only to compare it.

use serde::de::{Deserialize, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A reader's field, named by the keys that spell it (readers have an "other" field for keys
/// they do not read).
pub trait FromKey: Sized {
    fn from_key(key: &str) -> Self;
}

/// One object key, read as the field `F` it names.
pub struct Key<F>(pub F);

impl<'de, F: FromKey> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<F>(PhantomData<F>);
        impl<F: FromKey> Visitor<'_> for V<F> {
            type Value = Key<F>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<F>, E> {
                Ok(Key(F::from_key(key)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}
