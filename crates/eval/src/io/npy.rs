//! A strict reader of NumPy's `.npy` format (versions 1–3), for the numeric arrays scores are made of.
//!
//! Object arrays are refused outright: reading them would mean unpickling Python objects.

use super::{ElementType, RawTensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses one `.npy` file's bytes; errors are plain sentences the caller prefixes with file and array.
pub(crate) fn parse(bytes: Vec<u8>) -> Result<RawTensor<'static>, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy array (the magic string \\x93NUMPY is missing)".into());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(format!(
                ".npy format version {major} is not supported (1, 2 and 3 are)"
            ));
        }
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .ok_or("the .npy header is truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let header = Header::parse(header)?;
    let dtype = parse_descr(&header.descr)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("the .npy shape overflows")?;
    // An unsupported dtype has no known size; the conversion that follows names it.
    let expected = dtype
        .0
        .size()
        .map(|size| count.checked_mul(size).ok_or("the .npy shape overflows"))
        .transpose()?;
    let found = bytes.len() - data_start;
    if let Some(expected) = expected
        && found != expected
    {
        return Err(format!(
            "the .npy data holds {found} bytes but shape {:?} of {} needs {expected} (truncated or corrupt file)",
            header.shape, header.descr
        ));
    }
    let mut data = bytes;
    data.drain(..data_start);
    Ok(RawTensor {
        dtype: dtype.0,
        shape: header.shape,
        data: data.into(),
        big_endian: dtype.1,
        fortran_order: header.fortran_order,
    })
}

/// The three keys of a `.npy` header dictionary.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl Header {
    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, the dict NumPy writes.
    fn parse(text: &str) -> Result<Header, String> {
        let mut cursor = Cursor { rest: text.trim() };
        cursor.expect('{')?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        loop {
            cursor.skip_ws();
            if cursor.eat('}') {
                break;
            }
            let key = cursor.string()?;
            cursor.skip_ws();
            cursor.expect(':')?;
            cursor.skip_ws();
            let value = cursor.value()?;
            match (key.as_str(), value) {
                ("descr", Value::Str(s)) => descr = Some(s),
                ("fortran_order", Value::Bool(b)) => fortran_order = Some(b),
                ("shape", Value::Tuple(t)) => shape = Some(t),
                (other, _) => return Err(format!("unexpected .npy header entry `{other}`")),
            }
            cursor.skip_ws();
            if !cursor.eat(',') {
                cursor.skip_ws();
                cursor.expect('}')?;
                break;
            }
        }
        Ok(Header {
            descr: descr.ok_or("the .npy header has no `descr`")?,
            fortran_order: fortran_order.ok_or("the .npy header has no `fortran_order`")?,
            shape: shape.ok_or("the .npy header has no `shape`")?,
        })
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed .npy header: expected `{c}` at `{}`",
                self.preview()
            ))
        }
    }

    fn preview(&self) -> String {
        self.rest.chars().take(20).collect()
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                return Err(format!(
                    "malformed .npy header: expected a quoted key at `{}`",
                    self.preview()
                ));
            }
        };
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or("malformed .npy header: unterminated string")?;
        let value = body[..end].to_owned();
        self.rest = &body[end + 1..];
        Ok(value)
    }

    fn value(&mut self) -> Result<Value, String> {
        if self.rest.starts_with(['\'', '"']) {
            return self.string().map(Value::Str);
        }
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(Value::Bool(value));
            }
        }
        if self.eat('(') {
            let mut dims = Vec::new();
            loop {
                self.skip_ws();
                if self.eat(')') {
                    return Ok(Value::Tuple(dims));
                }
                let digits =
                    self.rest.len() - self.rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let dim = self.rest[..digits]
                    .parse::<usize>()
                    .map_err(|_| format!("malformed .npy shape at `{}`", self.preview()))?;
                self.rest = &self.rest[digits..];
                dims.push(dim);
                self.skip_ws();
                if !self.eat(',') {
                    self.skip_ws();
                    self.expect(')')?;
                    return Ok(Value::Tuple(dims));
                }
            }
        }
        if self.rest.starts_with('[') {
            return Err("structured (record) arrays are not supported: save plain numeric arrays".into());
        }
        Err(format!("malformed .npy header value at `{}`", self.preview()))
    }
}

/// Parses a dtype string such as `<f4` into the element type and whether it is big-endian.
fn parse_descr(descr: &str) -> Result<(ElementType, bool), String> {
    let mut chars = descr.chars();
    let (order, kind) = (chars.next(), chars.next());
    let size: usize = chars.as_str().parse().unwrap_or(0);
    let big_endian = match order {
        Some('<' | '|' | '=') => false,
        Some('>') => true,
        _ => return Err(format!("unknown .npy dtype `{descr}`")),
    };
    let dtype = match (kind, size) {
        (Some('f'), 2) => ElementType::F16,
        (Some('f'), 4) => ElementType::F32,
        (Some('f'), 8) => ElementType::F64,
        (Some('i'), 1) => ElementType::I8,
        (Some('i'), 2) => ElementType::I16,
        (Some('i'), 4) => ElementType::I32,
        (Some('i'), 8) => ElementType::I64,
        (Some('u'), 1) => ElementType::U8,
        (Some('u'), 2) => ElementType::U16,
        (Some('u'), 4) => ElementType::U32,
        (Some('u'), 8) => ElementType::U64,
        (Some('b'), 1) => ElementType::Bool,
        (Some('O'), _) => {
            return Err(
                "object arrays are refused: reading them would unpickle Python objects; save a numeric array"
                    .into(),
            );
        }
        _ => ElementType::Other(descr.to_owned()),
    };
    Ok((dtype, big_endian))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn reads_the_header_numpy_writes() {
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = parse(npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }      \n",
            &data,
        ))
        .unwrap();
        assert_eq!(t.dtype, ElementType::F32);
        assert_eq!(t.shape, vec![2]);
        assert!(!t.fortran_order && !t.big_endian);
        let t = parse(npy(
            "{'descr': '>i8', 'fortran_order': True, 'shape': (1, 1)}",
            &[0; 8],
        ))
        .unwrap();
        assert_eq!(
            (t.dtype, t.shape, t.fortran_order, t.big_endian),
            (ElementType::I64, vec![1, 1], true, true)
        );
    }

    #[test]
    fn refuses_truncated_data_objects_and_records() {
        let err = parse(npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &[0; 8],
        ))
        .unwrap_err();
        assert!(
            err.contains("holds 8 bytes but shape [3] of <f4 needs 12"),
            "{err}"
        );
        let err = parse(npy(
            "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        ))
        .unwrap_err();
        assert!(err.contains("object arrays are refused"), "{err}");
        let err = parse(npy(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            &[],
        ))
        .unwrap_err();
        assert!(err.contains("structured"), "{err}");
        assert!(
            parse(b"PK\x03\x04 not npy".to_vec())
                .unwrap_err()
                .contains("magic")
        );
    }

    #[test]
    fn a_scalar_has_an_empty_shape() {
        let t = parse(npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &[0; 8],
        ))
        .unwrap();
        assert!(t.shape.is_empty());
    }
}
