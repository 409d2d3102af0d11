//! Whether a PostgreSQL role's stored SCRAM-SHA-256 verifier accepts a password, shared by
//! `target_pg` (library level) and `cli_pg` (through the binary).
//!
//! Trust authentication on 127.0.0.1 would accept any password at login, so tests check the
//! verifier in `pg_authid` instead of logging in.

#![allow(dead_code)]

use provflow_runner::target::Target;
use provflow_runner::value::Value;
use sha2::{Digest, Sha256};

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 { Sha256::digest(key).to_vec() } else { key.to_vec() };
    k.resize(64, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut h = Sha256::new();
    h.update(&inner);
    h.update(message);
    let inner_hash = h.finalize().to_vec();
    let mut h = Sha256::new();
    h.update(&outer);
    h.update(&inner_hash);
    h.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// Whether the SCRAM-SHA-256 verifier stored in pg_authid for `role` accepts `password`
/// (RFC 5802: StoredKey = H(HMAC(PBKDF2(password, salt, i), "Client Key"))). `role` is a
/// test-generated name (no quotes).
pub fn scram_accepts(t: &mut dyn Target, role: &str, password: &str) -> bool {
    let mut part = |expr: &str| -> String {
        let sql = format!("select {expr} from pg_authid where rolname = '{role}'");
        match t.query_scalar(&sql) {
            Ok(Some(Value::Text(s))) => s,
            other => panic!("{sql}: {other:?}"),
        }
    };
    let verifier = "split_part(rolpassword, '$', 2)";
    let keys = "split_part(rolpassword, '$', 3)";
    assert_eq!(part("split_part(rolpassword, '$', 1)"), "SCRAM-SHA-256", "role `{role}` has no SCRAM verifier");
    let iterations: u32 = part(&format!("split_part({verifier}, ':', 1)")).parse().unwrap();
    let salt = unhex(&part(&format!("encode(decode(split_part({verifier}, ':', 2), 'base64'), 'hex')")));
    let stored = part(&format!("encode(decode(split_part({keys}, ':', 1), 'base64'), 'hex')"));
    // PBKDF2-HMAC-SHA-256 with one output block.
    let mut u = hmac(password.as_bytes(), &[salt.as_slice(), &1u32.to_be_bytes()].concat());
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, b"Client Key");
    hex(&Sha256::digest(&client_key)) == stored
}
