//! Content digests (`algorithm:encoded`) and streaming verification.
//!
//! Only the algorithms registered by the image-spec (`digest.md`) are accepted: sha256 (64 hex
//! characters) and sha512 (128). Encoded parts are lowercase hex; anything else is an error
//! rather than a digest we would later fail to match.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::Error;

/// A digest algorithm registered by the image-spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the algorithm every registry supports.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A content address such as `sha256:44136fa3…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    encoded: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::compute(Algorithm::Sha256, bytes)
    }

    /// The digest of `bytes` with `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// A streaming checker of content against this digest.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            hasher: Hasher::new(self.algorithm),
            expected: self.clone(),
            len: 0,
        }
    }

    /// Check `bytes` against this digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), Error> {
        let mut verifier = self.verifier();
        verifier.update(bytes);
        verifier.finish()
    }

    /// The tag under which the referrers tag schema (distribution-spec "Referrers Tag Schema")
    /// stores the referrers index of this digest: `<alg>-<encoded>`, truncated to 32 and 64
    /// characters.
    pub fn referrers_tag(&self) -> String {
        let alg: String = self.algorithm.as_str().chars().take(32).collect();
        let enc: String = self.encoded.chars().take(64).collect();
        format!("{alg}-{enc}")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(input: &str) -> Result<Digest, Error> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (alg, encoded) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected algorithm:hex, e.g. sha256:<64 hex characters>"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(invalid("unsupported algorithm, expected sha256 or sha512")),
        };
        if encoded.len() != algorithm.hex_len() {
            return Err(invalid(&format!(
                "a {algorithm} digest has {} hex characters, this one has {}",
                algorithm.hex_len(),
                encoded.len()
            )));
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("the encoded part must be lowercase hex"));
        }
        Ok(Digest {
            algorithm,
            encoded: encoded.to_owned(),
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hash with one algorithm.
#[derive(Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Digest {
        let (algorithm, raw) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            encoded: hex(&raw),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Checks a stream of bytes against an expected digest without holding the bytes.
///
/// Feed every chunk to [`Verifier::update`], then call [`Verifier::finish`].
#[derive(Clone)]
pub struct Verifier {
    hasher: Hasher,
    expected: Digest,
    len: u64,
}

impl Verifier {
    /// Hash the next chunk.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte has been hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest the content is expected to have.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// `Ok` if everything hashed matches the expected digest.
    pub fn finish(self) -> Result<(), Error> {
        let actual = self.hasher.finish();
        if actual == self.expected {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                expected: self.expected,
                actual,
            })
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("expected", &self.expected)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_JSON: &str =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn sha256_of_empty_json_matches_the_spec_value() {
        assert_eq!(Digest::sha256(b"{}").to_string(), EMPTY_JSON);
    }

    #[test]
    fn sha512_round_trips() {
        let d = Digest::compute(Algorithm::Sha512, b"abc");
        assert_eq!(d.encoded().len(), 128);
        assert!(d.encoded().starts_with("ddaf35a193617aba"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn parse_rejects_bad_digests_with_the_input_named() {
        for (input, needle) in [
            ("sha256", "expected algorithm:hex"),
            ("md5:abcd", "unsupported algorithm"),
            ("sha256:abc", "64 hex characters"),
            (&format!("sha256:{}", "A".repeat(64)), "lowercase hex"),
            (&format!("sha256:{}", "g".repeat(64)), "lowercase hex"),
        ] {
            let err = input.parse::<Digest>().unwrap_err();
            assert!(matches!(err, Error::InvalidDigest { .. }), "{input}");
            let msg = err.to_string();
            assert!(msg.contains(input) && msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn streaming_verifier_accepts_matching_chunks_and_rejects_others() {
        let data = vec![7u8; 100_000];
        let digest = Digest::sha256(&data);
        let mut v = digest.verifier();
        for chunk in data.chunks(4096) {
            v.update(chunk);
        }
        assert_eq!(v.len(), 100_000);
        v.finish().unwrap();

        let mut v = digest.verifier();
        v.update(&data[..99_999]);
        let err = v.finish().unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { ref expected, .. } if *expected == digest));
    }

    #[test]
    fn referrers_tag_follows_the_tag_schema() {
        let d: Digest = EMPTY_JSON.parse().unwrap();
        assert_eq!(
            d.referrers_tag(),
            "sha256-44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let long = Digest::compute(Algorithm::Sha512, b"x").referrers_tag();
        assert_eq!(long.len(), "sha512-".len() + 64);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::sha256(b"{}");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_JSON}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha1:00\"").is_err());
    }
}
