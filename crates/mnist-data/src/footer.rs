//! A check of a parquet file's footer before the parquet crate decodes it: every Thrift
//! length in the footer (a list's, a set's or a map's element count, a binary's byte
//! count) must fit in the bytes that remain.
//!
//! parquet 57 reserves a list's announced capacity before reading any element
//! (`read_thrift_vec`; apache/arrow-rs#10920, fixed in parquet 60): a footer of a few
//! bytes that announces two billion schema elements asks for tens of gigabytes, and a
//! failed allocation aborts the process. Found by `fuzz_parquet` (#24). Each element
//! takes at least one byte, so bounding every count by the bytes left bounds what the
//! decoder reserves by a small multiple of the footer's size.

/// Walks the Thrift compact encoding of a struct (the footer's `FileMetaData`); `Err`
/// says which length does not fit.
pub(crate) fn check_footer(footer: &[u8]) -> Result<(), String> {
    let mut r = Reader {
        bytes: footer,
        at: 0,
    };
    r.skip_struct(0)
}

/// Nesting deeper than this is refused (the real footer nests a few levels).
const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("the footer ends inside a value")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.left() as u64 {
            return Err(format!(
                "{what} announces {n} bytes with {} left",
                self.left()
            ));
        }
        self.at += n as usize;
        Ok(())
    }

    /// A count of elements, each at least `min_size` bytes, that must fit.
    fn count(&mut self, n: u64, min_size: u64, what: &str) -> Result<u64, String> {
        if n.saturating_mul(min_size) > self.left() as u64 {
            return Err(format!(
                "{what} announces {n} elements with {} bytes left",
                self.left()
            ));
        }
        Ok(n)
    }

    fn skip_struct(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("structures nested deeper than {MAX_DEPTH}"));
        }
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                self.varint()?; // the field id, written out
            }
            match header & 0x0f {
                // Booleans live in the field header.
                1 | 2 => {}
                t => self.skip_value(t, depth)?,
            }
        }
    }

    fn skip_value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        match kind {
            1..=3 => self.skip(1, "a byte"),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8, "a double"),
            8 => {
                let n = self.varint()?;
                self.skip(n, "a binary")
            }
            9 | 10 => {
                let header = self.byte()?;
                let n = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let n = self.count(n, 1, "a list")?;
                for _ in 0..n {
                    self.skip_value(header & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                let n = self.count(n, 2, "a map")?;
                for _ in 0..n {
                    self.skip_value(kinds >> 4, depth + 1)?;
                    self.skip_value(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1),
            t => Err(format!("unknown Thrift type {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_lengths_pass_and_oversized_ones_are_named() {
        // struct { 1: i32 = 2, 2: list<i32> [1, 2], 3: binary "ab" } stop
        let ok = [
            0x15, 0x04, 0x19, 0x25, 0x02, 0x04, 0x18, 0x02, b'a', b'b', 0x00,
        ];
        assert_eq!(check_footer(&ok), Ok(()));
        // A list announcing 2^31 - 1 elements in a 9-byte footer.
        let liar = [0x15, 0x04, 0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
        let err = check_footer(&liar).unwrap_err();
        assert!(
            err.contains("a list announces 2147483647 elements"),
            "{err}"
        );
        // A binary longer than the footer, a truncated struct, deep nesting.
        assert!(check_footer(&[0x18, 0x7f, 0x00]).is_err());
        assert!(check_footer(&[0x15]).is_err());
        assert!(check_footer(&[0x1c; 200]).unwrap_err().contains("nested"));
    }
}
