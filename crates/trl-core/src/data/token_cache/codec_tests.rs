//! The cache's binary encoding: values come back as written, at the size documented.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decode::Decoder;
use super::encode::Encoder;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    Weighted(f32),
    Pair { chosen: u32, rejected: u32 },
    Tuple(u8, i64),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Example {
    input_ids: Vec<u32>,
    mask: Vec<bool>,
    label: Option<bool>,
    origin: String,
    kind: Kind,
    spans: Vec<(usize, usize)>,
    extra: BTreeMap<String, i32>,
    letter: char,
    unit: (),
}

fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> (T, usize) {
    let mut encoder = Encoder::new(Vec::new());
    encoder.encode(value).unwrap();
    let bytes = encoder.into_inner();
    let mut decoder = Decoder::new(&bytes);
    let decoded = T::deserialize(&mut decoder).unwrap();
    assert_eq!(decoder.remaining(), 0);
    (decoded, bytes.len())
}

#[test]
fn values_come_back_as_written() {
    let examples: Vec<Example> = [
        Kind::Plain,
        Kind::Weighted(0.5),
        Kind::Pair {
            chosen: 1,
            rejected: 2,
        },
        Kind::Tuple(3, -4),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| Example {
        input_ids: (0..i as u32 * 3).collect(),
        mask: vec![i % 2 == 0; i],
        label: (i > 1).then_some(i == 2),
        origin: format!("d.jsonl line {i} é"),
        kind,
        spans: vec![(i, i + 1)],
        extra: BTreeMap::from([("k".to_owned(), -(i as i32))]),
        letter: 'λ',
        unit: (),
    })
    .collect();
    assert_eq!(round_trip(&examples).0, examples);
}

#[test]
fn token_ids_cost_four_bytes_each() {
    let rows: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![], vec![u32::MAX]];
    let (decoded, bytes) = round_trip(&rows);
    assert_eq!(decoded, rows);
    assert_eq!(bytes, 4 + (4 + 12) + 4 + (4 + 4));
}

#[test]
fn truncated_and_undescribed_data_are_errors() {
    let mut encoder = Encoder::new(Vec::new());
    encoder.encode(&vec![vec![1u32, 2, 3]]).unwrap();
    let bytes = encoder.into_inner();
    let cut = &bytes[..bytes.len() - 1];
    assert!(Vec::<Vec<u32>>::deserialize(&mut Decoder::new(cut)).is_err());
    assert!(serde_json::Value::deserialize(&mut Decoder::new(&bytes)).is_err());
}
