//! A protobuf encoder small enough to read in one sitting: the two wire types ONNX needs
//! (varints and length-delimited fields) and nothing else. Messages are built bottom-up, each
//! nested message encoded before its parent takes it as a length-delimited field, so no sizes are
//! computed ahead. Fields are written in the order they are added, which protobuf allows.

/// Wire type of integers (`int32`, `int64`, enums), encoded as varints.
const VARINT: u64 = 0;
/// Wire type of strings, bytes and nested messages.
const LENGTH_DELIMITED: u64 = 2;

/// An encoded protobuf message, built field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message(Vec<u8>);

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    /// An integer field (`int32`, `int64` or an enum). Negative values take ten bytes, as
    /// protobuf encodes them for `int32` and `int64` alike.
    pub fn int(mut self, field: u32, value: i64) -> Message {
        self.key(field, VARINT);
        self.varint(value as u64);
        self
    }

    /// A `bytes` field.
    pub fn bytes(mut self, field: u32, value: &[u8]) -> Message {
        self.key(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    /// A `string` field.
    pub fn string(self, field: u32, value: &str) -> Message {
        self.bytes(field, value.as_bytes())
    }

    /// A nested message field.
    pub fn message(self, field: u32, value: &Message) -> Message {
        self.bytes(field, &value.0)
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn key(&mut self, field: u32, wire_type: u64) {
        self.varint((u64::from(field) << 3) | wire_type);
    }

    /// Base-128, least significant group first, the high bit set on all but the last byte.
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::Message;

    #[test]
    fn varints_match_the_protobuf_documentation() {
        // protobuf.dev/programming-guides/encoding: field 1 = 150 is 08 96 01.
        assert_eq!(Message::new().int(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(Message::new().int(1, 0).into_bytes(), [0x08, 0x00]);
        assert_eq!(Message::new().int(2, 300).into_bytes(), [0x10, 0xac, 0x02]);
        let minus_one = Message::new().int(1, -1).into_bytes();
        assert_eq!(minus_one, [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        // A field number past 15 needs a two-byte key.
        assert_eq!(Message::new().int(20, 1).into_bytes(), [0xa0, 0x01, 0x01]);
    }

    #[test]
    fn strings_and_nested_messages_are_length_prefixed() {
        // The documentation's example: field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
        assert_eq!(Message::new().string(2, "testing").into_bytes(), b"\x12\x07testing");
        let inner = Message::new().int(1, 150);
        assert_eq!(Message::new().message(3, &inner).into_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        let long = vec![7u8; 200];
        let encoded = Message::new().bytes(1, &long).into_bytes();
        assert_eq!(&encoded[..3], [0x0a, 0xc8, 0x01]);
        assert_eq!(encoded.len(), 3 + 200);
    }
}
