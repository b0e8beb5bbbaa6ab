//! Embeds the secret ruleset (gitleaks' default rules at a pinned version, fetched by
//! `scripts/secret-rules.sh`, never kept in the repository) when it is present and has the
//! pinned SHA-256; otherwise the build goes on without it and says so. See
//! `crates/core/src/classify/secrets.rs`.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

const VERSION: &str = "v8.30.1";
const SHA256: &str = "e163e53b9e7e8a8511e77271e2b323ed057759542a6d988258afe3a1fa329caf";

fn main() {
    println!("cargo:rerun-if-env-changed=LEAKSCOPE_SECRET_RULES");
    println!("cargo:rerun-if-env-changed=HOME");
    let path = std::env::var_os("LEAKSCOPE_SECRET_RULES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h)
                    .join(".cache/leakscope")
                    .join(format!("gitleaks-{VERSION}.toml"))
            })
        });
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("secret_rules.toml");
    let mut text = String::new();
    if let Some(p) = path {
        println!("cargo:rerun-if-changed={}", p.display());
        match std::fs::read(&p) {
            Ok(bytes) => {
                let hex: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if hex == SHA256 {
                    text = String::from_utf8(bytes).expect("the pinned ruleset is UTF-8");
                } else {
                    println!(
                        "cargo:warning={} is not gitleaks {VERSION}'s config (SHA-256 {hex}); \
                         building without the secret ruleset",
                        p.display()
                    );
                }
            }
            Err(_) => println!(
                "cargo:warning=secret ruleset {} not found (scripts/secret-rules.sh fetches it); \
                 building without it",
                p.display()
            ),
        }
    }
    std::fs::write(&out, text).expect("write secret_rules.toml");
}
