//! Sealing a trail: every closed segment is hashed (SHA-256 over its exact bytes) and
//! described by a seal record appended to `seals.jsonl`; the records form a hash chain
//! and each is signed with Ed25519 under forward-secure key succession. The format
//! and the threat model are documented in docs/seal.md.
//!
//! Key succession: the genesis record commits the public half of key 0. The seal of
//! segment i is signed with key i and commits the public half of key i+1; key i is then
//! dropped (ed25519-dalek zeroizes signing keys on drop). Whoever takes over the host
//! after segment i was sealed holds only key i+1 and cannot re-sign seals 0..=i.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

/// The seal log's file name in a trail directory.
pub const SEALS_FILE: &str = "seals.jsonl";
/// Format tag of every record.
pub const SEAL_FORMAT: &str = "groundtruth-seal/1";

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("random source: {e}")))?;
    Ok(b)
}

/// A fresh key from the kernel's random source.
pub fn new_key() -> std::io::Result<SigningKey> {
    let mut seed = random_bytes::<32>()?;
    let key = SigningKey::from_bytes(&seed);
    seed.iter_mut().for_each(|b| *b = 0);
    Ok(key)
}

/// What is signed: every field of a record except the signature, serialized with
/// serde_json in declaration order (deterministic: maps are BTreeMaps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub format: String,
    /// `genesis`, `segment` or `final`.
    pub kind: String,
    pub run_id: String,
    /// Position in the log, from 0 (genesis).
    pub seq: u64,
    /// Hex SHA-256 of the previous record's line; empty for genesis.
    pub prev: String,
    /// Public key (hex) that signs the next record.
    pub next_key: String,
    /// Wall-clock time the record was written, ns UTC.
    pub time_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<Genesis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentSeal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub host: String,
    pub kernel: String,
    pub agent_version: String,
    /// Long-term public key that certified this run's first key (`--sign-key`), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSeal {
    pub index: u32,
    pub file: String,
    /// Hex SHA-256 of the file's exact bytes.
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub time_min_ns: i64,
    pub time_max_ns: i64,
    /// Per CPU: first and last sequence number in the segment.
    pub seq_ranges: BTreeMap<String, [u64; 2]>,
    /// Per CPU: events the kernel could not deliver, as of this seal.
    pub lost: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub segments: u32,
    pub rows: u64,
    pub lost: u64,
}

/// One line of `seals.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub body: Body,
    /// Ed25519 signature (hex) of the body's serialization, by the key the previous
    /// record committed (genesis: by the long-term key when certified, else empty).
    pub sig: String,
}

impl Body {
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("seal bodies serialize")
    }
}

/// Appends seal records to a trail's `seals.jsonl`.
pub struct Sealer {
    file: File,
    path: PathBuf,
    run_id: String,
    seq: u64,
    head: [u8; 32],
    /// Signs the next record; dropped (zeroized) once it has.
    key: Option<SigningKey>,
    anchor: Option<PathBuf>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Sealer {
    /// Start the seal log with its genesis record. Returns the sealer and the first
    /// public key (hex), which the agent prints.
    pub fn create(
        dir: &Path,
        run: &crate::RunInfo,
        long_term: Option<&SigningKey>,
        anchor: Option<PathBuf>,
    ) -> std::io::Result<(Sealer, String)> {
        let path = dir.join(SEALS_FILE);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let key = new_key()?;
        let first = hex(key.verifying_key().as_bytes());
        let mut s = Sealer {
            file,
            path,
            run_id: run.run_id.clone(),
            seq: 0,
            head: [0; 32],
            key: Some(key),
            anchor,
        };
        let body = Body {
            format: SEAL_FORMAT.into(),
            kind: "genesis".into(),
            run_id: run.run_id.clone(),
            seq: 0,
            prev: String::new(),
            next_key: first.clone(),
            time_ns: now_ns(),
            genesis: Some(Genesis {
                host: run.host.clone(),
                kernel: run.kernel.clone(),
                agent_version: run.agent_version.clone(),
                certified_by: long_term.map(|k| hex(k.verifying_key().as_bytes())),
            }),
            segment: None,
            totals: None,
        };
        let sig = long_term
            .map(|k| hex(&k.sign(&body.signed_bytes()).to_bytes()))
            .unwrap_or_default();
        s.append(Record { body, sig })?;
        Ok((s, first))
    }

    /// Hex SHA-256 of the last record: the chain head.
    pub fn head(&self) -> String {
        hex(&self.head)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, r: Record) -> std::io::Result<()> {
        let line = serde_json::to_vec(&r).map_err(std::io::Error::other)?;
        let mut buf = line.clone();
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.file.sync_all()?;
        self.head = sha256(&line);
        self.seq += 1;
        if let Some(a) = &self.anchor {
            let mut f = OpenOptions::new().create(true).append(true).open(a)?;
            writeln!(f, "{} {} {}", self.run_id, r.body.seq, hex(&self.head))?;
            f.sync_all()?;
        }
        Ok(())
    }

    /// Sign `body` with the current key, commit a fresh one, and drop the old.
    fn sign_and_append(&mut self, mut body: Body) -> std::io::Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| std::io::Error::other("the seal log is already finished"))?;
        let next = new_key()?;
        body.next_key = hex(next.verifying_key().as_bytes());
        let sig = hex(&key.sign(&body.signed_bytes()).to_bytes());
        drop(key);
        self.key = Some(next);
        self.append(Record { body, sig })
    }

    fn body(&self, kind: &str) -> Body {
        Body {
            format: SEAL_FORMAT.into(),
            kind: kind.into(),
            run_id: self.run_id.clone(),
            seq: self.seq,
            prev: hex(&self.head),
            next_key: String::new(),
            time_ns: now_ns(),
            genesis: None,
            segment: None,
            totals: None,
        }
    }

    /// Seal a closed (fsynced) segment.
    pub fn seal_segment(&mut self, seg: SegmentSeal) -> std::io::Result<String> {
        let mut body = self.body("segment");
        body.segment = Some(seg);
        self.sign_and_append(body)?;
        Ok(self.head())
    }

    /// The final record of a clean stop. The last key is dropped with it.
    pub fn finish(&mut self, totals: Totals) -> std::io::Result<String> {
        let mut body = self.body("final");
        body.totals = Some(totals);
        self.sign_and_append(body)?;
        self.key = None;
        Ok(self.head())
    }
}

/// Read a long-term signing key: 64 hex characters (the 32-byte seed), in a file only
/// its owner can read (mode without group/other bits), owned by root.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if md.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable or writable by group or others (mode {:o}); make it 0400 or 0600 (`chmod 0400 {}`)",
            path.display(),
            md.mode() & 0o777,
            path.display()
        ));
    }
    if md.uid() != 0 {
        return Err(format!(
            "{}: owned by uid {}, not root",
            path.display(),
            md.uid()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let seed = unhex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            format!(
                "{}: expected 64 hex characters (an Ed25519 seed, as written by `groundtruth-agent keygen`)",
                path.display()
            )
        })?;
    let mut s = [0u8; 32];
    s.copy_from_slice(&seed);
    Ok(SigningKey::from_bytes(&s))
}

/// A public key in hex (64 characters), e.g. from a `.pub` file.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let b = unhex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or("expected 64 hex characters (an Ed25519 public key)")?;
    let mut a = [0u8; 32];
    a.copy_from_slice(&b);
    VerifyingKey::from_bytes(&a).map_err(|e| format!("not a valid Ed25519 public key: {e}"))
}

/// Check a hex signature of `body` by the hex public key `key`.
pub fn signature_ok(key: &str, body: &Body, sig: &str) -> bool {
    let (Some(k), Some(s)) = (unhex(key), unhex(sig)) else {
        return false;
    };
    let (Ok(k), Ok(s)) = (<[u8; 32]>::try_from(k), <[u8; 64]>::try_from(s)) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&k) else {
        return false;
    };
    vk.verify(&body.signed_bytes(), &Signature::from_bytes(&s))
        .is_ok()
}
