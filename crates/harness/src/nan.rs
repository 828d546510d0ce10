//! Serde for floats that may be NaN (a mean over no example): JSON has no NaN, so it is
//! written as `null` and read back as NaN, and cached stages load again.

use serde::{Deserialize, Deserializer, Serializer};

/// `f64` <-> number or `null`.
pub mod float {
    use super::*;

    /// NaN and infinities become `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// `null` becomes NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// `Vec<f64>` <-> array of numbers or `null`s.
pub mod floats {
    use super::*;
    use serde::ser::SerializeSeq;

    /// NaN and infinities become `null`.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&x.is_finite().then_some(*x))?;
        }
        seq.end()
    }

    /// `null` becomes NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct S {
        #[serde(with = "super::float")]
        a: f64,
        #[serde(with = "super::floats")]
        b: Vec<f64>,
    }

    #[test]
    fn nan_round_trips_through_null() {
        let text = serde_json::to_string(&S {
            a: f64::NAN,
            b: vec![1.5, f64::NAN],
        })
        .unwrap();
        assert_eq!(text, r#"{"a":null,"b":[1.5,null]}"#);
        let back: S = serde_json::from_str(&text).unwrap();
        assert!(back.a.is_nan() && back.b[0] == 1.5 && back.b[1].is_nan());
    }
}
