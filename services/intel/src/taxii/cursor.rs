//! TAXII `next` cursors: opaque to clients, valid only for the collection they were issued for,
//! and refused unless a server sharing this store issued them.
//!
//! A cursor is base64url (no padding) of the `date_added` of the last record of a page (8 bytes,
//! big-endian microseconds) and the first 16 bytes of an HMAC-SHA-256 over the collection id and
//! that date, keyed with the store's cursor key ([`crate::Store::cursor_key`]), so every replica
//! of a shared store redeems the others' cursors. Paging after a `date_added` is paging in write
//! order: inside a collection, `date_added` grows strictly with every version added.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// Bytes of the MAC kept in a cursor.
const TAG_BYTES: usize = 16;
/// What the MAC covers besides the collection and the date, so a cursor means nothing elsewhere.
const CONTEXT: &[u8] = b"attackmesh taxii next v1";

/// Issues and redeems `next` cursors with one key.
#[derive(Clone)]
pub struct Cursors {
    key: Vec<u8>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors")
    }
}

impl Cursors {
    /// Cursors signed with `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The cursor of a page of `collection` whose last record was added at `date_added_us`.
    pub fn issue(&self, collection: &str, date_added_us: i64) -> String {
        let date = date_added_us.to_be_bytes();
        let mut raw = date.to_vec();
        raw.extend_from_slice(&self.tag(collection, &date)[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The `date_added` a cursor of `collection` continues after, or why it is refused.
    pub fn redeem(&self, collection: &str, cursor: &str) -> Result<i64, String> {
        let refused = || "next is not a value this server returned for this collection".to_owned();
        let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| refused())?;
        let (date, tag) = raw.split_at_checked(8).ok_or_else(refused)?;
        let expected = self.tag(collection, date);
        let matches = tag.len() == TAG_BYTES
            && tag
                .iter()
                .zip(&expected[..TAG_BYTES])
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        let date = <[u8; 8]>::try_from(date).map_err(|_| refused())?;
        match i64::from_be_bytes(date) {
            us if matches && us >= 0 => Ok(us),
            _ => Err(refused()),
        }
    }

    fn tag(&self, collection: &str, date: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.key, &[CONTEXT, &[0], collection.as_bytes(), &[0], date])
    }
}

/// HMAC-SHA-256 (RFC 2104) of the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn cursors_redeem_only_where_and_as_issued() {
        let cursors = Cursors::new(b"key");
        let next = cursors.issue("c1", 1_767_225_600_123_456);
        assert!(next.parse::<i64>().is_err());
        assert_eq!(cursors.redeem("c1", &next), Ok(1_767_225_600_123_456));
        assert!(cursors.redeem("c2", &next).is_err(), "another collection");
        assert!(Cursors::new(b"other").redeem("c1", &next).is_err(), "another key");
        let mut raw = URL_SAFE_NO_PAD.decode(&next).unwrap();
        raw[7] ^= 1;
        assert!(
            cursors.redeem("c1", &URL_SAFE_NO_PAD.encode(&raw)).is_err(),
            "another date"
        );
        for bad in ["", "42", "-1", "zzz", &next[..next.len() - 2], &format!("{next}AA")] {
            assert!(cursors.redeem("c1", bad).is_err(), "{bad}");
        }
        let negative = cursors.issue("c1", -5);
        assert!(cursors.redeem("c1", &negative).is_err());
    }
}
