//! Signed checkpoints: C2SP tlog-checkpoint v1.0.0 (origin, tree size, root hash) as a C2SP
//! signed-note v1.0.0 with an Ed25519 signature (AIMS MO-7: tamper evidence anyone can check
//! with the log's public key).

use std::sync::Arc;

use aims_credentials::{KeyType, PrivateKey};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;

/// signed-note: signature type 0x01, Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// signed-note: verifiers need accept no more signature lines than this.
const MAX_SIGNATURES: usize = 100;

/// Why a note or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a well-formed note, checkpoint or verifier key.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// No signature by the expected key verified (or one by it failed).
    #[error("the note's signature does not verify with key {0}")]
    BadSignature(String),
    /// The signing key is not an Ed25519 key.
    #[error("checkpoint keys are Ed25519")]
    KeyType,
}

/// signed-note: the key ID, SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4].
fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ED25519_TYPE]);
    ctx.update(public);
    let mut id = [0u8; 4];
    id.copy_from_slice(&ctx.finish().as_ref()[..4]);
    id
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

/// Signs notes with the log's Ed25519 key under a key name (the log's origin).
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
    key: Arc<PrivateKey>,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("vkey", &self.vkey())
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` (no spaces, no `+`) with Ed25519 `key`.
    pub fn new(name: &str, key: Arc<PrivateKey>) -> Result<Self, NoteError> {
        if key.key_type() != KeyType::Ed25519 {
            return Err(NoteError::KeyType);
        }
        if !valid_name(name) {
            return Err(NoteError::Malformed("key name"));
        }
        let public = key.public_key().ed25519_bytes().ok_or(NoteError::KeyType)?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
            key,
        })
    }

    /// The verifier key, `<name>+<hex key id>+<base64(type ‖ public key)>`.
    pub fn vkey(&self) -> String {
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(&self.public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(typed)
        )
    }

    /// The signed note of `text` (which must end in a newline): the text, a blank line and
    /// one signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("note text"));
        }
        let sig = self
            .key
            .sign_jws(text.as_bytes())
            .map_err(|_| NoteError::KeyType)?;
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&sig);
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// Checks notes signed by one key, given as a verifier key string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl NoteVerifier {
    /// Parses a verifier key `<name>+<hex id>+<base64(0x01 ‖ Ed25519 key)>`; the id must
    /// match the key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Malformed("verifier key"));
        };
        let typed = STANDARD
            .decode(key)
            .map_err(|_| NoteError::Malformed("verifier key"))?;
        let Some((&ED25519_TYPE, public)) = typed.split_first() else {
            return Err(NoteError::KeyType);
        };
        if public.len() != 32 || !valid_name(name) {
            return Err(NoteError::Malformed("verifier key"));
        }
        let want = key_id(name, public);
        if hex::decode(id).ok().as_deref() != Some(&want[..]) {
            return Err(NoteError::Malformed("verifier key id"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: want,
            public: public.to_vec(),
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a signed note: returns its text if a signature by this key verifies. Signatures by
    /// other keys are ignored; one by this key that fails refuses the note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("signed note"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signed note"));
        }
        let mut verified = false;
        for (n, line) in sigs.lines().enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(NoteError::Malformed("signature line"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line"))?;
            let blob = STANDARD
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature"))?;
            if blob.len() < 4 || name != self.name || blob[..4] != self.id {
                continue;
            }
            let key = UnparsedPublicKey::new(&ED25519, &self.public);
            if key.verify(text.as_bytes(), &blob[4..]).is_err() {
                return Err(NoteError::BadSignature(self.name.clone()));
            }
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::BadSignature(self.name.clone()))
        }
    }
}

/// C2SP tlog-checkpoint: a log's origin, tree size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (`host/path`); also the signing key's name.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 9162 tree head.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root, each on its own line.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a checkpoint's note text (extension lines are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::Malformed("checkpoint");
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(bad)?;
        let size = lines.next().ok_or_else(bad)?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad());
        }
        let size = size.parse().map_err(|_| bad())?;
        let root = STANDARD
            .decode(lines.next().ok_or_else(bad)?)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Opens a signed checkpoint note with `verifier`; the origin must be the key's name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        let cp = Self::parse(verifier.open(note)?)?;
        if cp.origin != verifier.name() {
            return Err(NoteError::Malformed("checkpoint origin"));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The C2SP signed-note example (specs.md §6.2).
    const VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn the_published_note_verifies_and_tampered_ones_do_not() {
        let v = NoteVerifier::from_vkey(VKEY).unwrap();
        assert_eq!(v.open(NOTE).unwrap(), "This is an example message.\n");
        let tampered = NOTE.replace("example message", "exemplary message");
        assert_eq!(
            v.open(&tampered),
            Err(NoteError::BadSignature("example.com/foo".into()))
        );
        // Only an unknown key's signature: refused.
        let other = NOTE.replace("\u{2014} example.com/foo", "\u{2014} example.com/bar");
        assert!(v.open(&other).is_err());
        // A wrong key id in the verifier key is refused at parse time.
        assert!(NoteVerifier::from_vkey(&VKEY.replace("530d903a", "530d903b")).is_err());
        assert!(NoteVerifier::from_vkey("example.com/foo+530d903a").is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_bind_size_and_root() {
        let key = Arc::new(PrivateKey::generate(KeyType::Ed25519).unwrap());
        let signer = NoteSigner::new("aims.example/audit", key).unwrap();
        let v = NoteVerifier::from_vkey(&signer.vkey()).unwrap();
        let cp = Checkpoint {
            origin: "aims.example/audit".into(),
            size: 12,
            root: [7; 32],
        };
        let note = signer.sign(&cp.to_text()).unwrap();
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let bigger = note.replacen("\n12\n", "\n13\n", 1);
        assert!(Checkpoint::open(&bigger, &v).is_err());
        assert!(Checkpoint::parse("o\n012\nAAAA\n").is_err());
        assert!(Checkpoint::parse("o\n1\nAAAA\n").is_err());
        let other = NoteSigner::new(
            "aims.example/audit",
            Arc::new(PrivateKey::generate(KeyType::Ed25519).unwrap()),
        )
        .unwrap();
        assert!(Checkpoint::open(&other.sign(&cp.to_text()).unwrap(), &v).is_err());
        assert!(
            NoteSigner::new(
                "x",
                Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap())
            )
            .is_err()
        );
    }
}
