//! Object keys read without allocating: single-pass readers (a request's shape, a response's
//! usage) match each key as the parser hands it over, escaped or not, instead of building a
//! `String` per key only to compare it.

use serde::de::{Deserialize, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The fields a reader knows, named by the keys that spell them.
pub trait Fields {
    type Field;
    /// The field `key` names (readers give an "other" field for keys they do not read).
    fn field(key: &str) -> Self::Field;
}

/// One object key, read as the field of `F` it names.
pub struct Key<F: Fields>(pub F::Field);

impl<'de, F: Fields> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<F>(PhantomData<F>);
        impl<F: Fields> Visitor<'_> for V<F> {
            type Value = Key<F>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<F>, E> {
                Ok(Key(F::field(key)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}
