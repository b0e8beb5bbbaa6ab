//! Keyed fingerprints: a way to match leaked values without keeping them.
//!
//! A fingerprint is HMAC-SHA256 over a normalised value under a 32-byte key that only the
//! user's machine holds. The owner can fingerprint their own user table or token store with
//! the same key and join on the result to find affected people and the credentials to revoke,
//! while the report alone reveals nothing: without the key, a fingerprint cannot be tested
//! against guesses (a plain hash of an e-mail address or a phone number can, by brute force).
//!
//! The key lives in `$LEAKSCOPE_KEY_FILE`, else `$XDG_CONFIG_HOME/leakscope/fingerprint.key`,
//! else `~/.config/leakscope/fingerprint.key`. It is created on first use from the operating
//! system's random source, with mode 0600 in a 0700 directory; an existing key readable by
//! others is refused rather than silently used or repaired.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the key.
pub const KEY_LEN: usize = 32;
/// Hex characters of a fingerprint kept in reports (128 bits: collisions are out of reach,
/// and the strings stay short).
pub const FINGERPRINT_HEX: usize = 32;

/// Why the fingerprint key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no place for the fingerprint key: set LEAKSCOPE_KEY_FILE, XDG_CONFIG_HOME or HOME")]
    NoLocation,
    #[error("fingerprint key {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("fingerprint key {path} has {len} bytes; expected {KEY_LEN}")]
    BadLength { path: PathBuf, len: usize },
    #[error(
        "fingerprint key {path} is readable by other users (mode {mode:o}); run chmod 600 on it"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("no random source for a new fingerprint key: {0}")]
    Random(String),
}

/// Computes keyed fingerprints.
#[derive(Clone)]
pub struct Fingerprinter {
    /// The HMAC keyed once: each fingerprint clones it instead of redoing the key schedule.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Fingerprinter { key: <hidden> }")
    }
}

/// Where the key is kept, from the environment.
pub fn key_path() -> Result<PathBuf, KeyError> {
    key_path_from(
        std::env::var_os("LEAKSCOPE_KEY_FILE"),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn key_path_from(
    explicit: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, KeyError> {
    let nonempty = |v: Option<std::ffi::OsString>| v.filter(|s| !s.is_empty());
    if let Some(p) = nonempty(explicit) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = nonempty(xdg) {
        return Ok(PathBuf::from(x).join("leakscope").join("fingerprint.key"));
    }
    if let Some(h) = nonempty(home) {
        return Ok(PathBuf::from(h)
            .join(".config")
            .join("leakscope")
            .join("fingerprint.key"));
    }
    Err(KeyError::NoLocation)
}

impl Fingerprinter {
    /// A fingerprinter with a given key (tests, or a key managed elsewhere).
    pub fn with_key(key: [u8; KEY_LEN]) -> Fingerprinter {
        Fingerprinter {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// Loads the user's key from [`key_path`], creating it on first use.
    pub fn load_or_create() -> Result<Fingerprinter, KeyError> {
        Fingerprinter::load_or_create_at(&key_path()?)
    }

    /// Loads the key at `path`, creating it (and its directory) if it does not exist.
    pub fn load_or_create_at(path: &Path) -> Result<Fingerprinter, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match read_key(path) {
            Ok(k) => return Ok(Fingerprinter::with_key(k)),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io_err)?;
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::getrandom(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                f.write_all(&key).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                Ok(Fingerprinter::with_key(key))
            }
            // Another process created it first: use theirs, so both agree.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                read_key(path).map(Fingerprinter::with_key)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// The fingerprint of `value` as an example of `category`: 32 hex characters.
    ///
    /// The category is part of the message, so the same string fingerprints differently as an
    /// e-mail and as a user name; the value is normalised first ([`normalise`]) so that
    /// `+39 337 6965150` and `+393376965150` match.
    pub fn fingerprint(&self, category: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(category.as_bytes());
        mac.update(&[0]);
        mac.update(normalise(category, value).as_bytes());
        let out = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(FINGERPRINT_HEX);
        for b in &out[..FINGERPRINT_HEX / 2] {
            hex.push(HEX[(b >> 4) as usize] as char);
            hex.push(HEX[(b & 15) as usize] as char);
        }
        hex
    }
}

/// The canonical form of a value for fingerprinting: e-mail addresses lower-cased; phone,
/// card numbers and IBANs without separators (and upper-cased); everything else trimmed.
pub fn normalise(category: &str, value: &str) -> String {
    let v = value.trim();
    match category {
        "identity.email" | "identity.username" | "device.mac" => v.to_lowercase(),
        "identity.phone" => {
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            if v.starts_with('+') {
                format!("+{digits}")
            } else if let Some(rest) = digits.strip_prefix("00") {
                format!("+{rest}")
            } else {
                digits
            }
        }
        "financial.card" => v.chars().filter(char::is_ascii_digit).collect(),
        "financial.iban" | "government.id" => v
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_uppercase(),
        _ => v.to_string(),
    }
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::open(path).map_err(io_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata().map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut buf = Vec::with_capacity(KEY_LEN + 1);
    // Read one byte more than a key, so an oversized file is an error rather than truncated.
    Read::take(&mut f, KEY_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    <[u8; KEY_LEN]>::try_from(buf.as_slice()).map_err(|_| KeyError::BadLength {
        path: path.to_path_buf(),
        len: buf.len(),
    })
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "leakscope-fp-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = temp_dir("create");
        let path = dir.join("nested").join("fingerprint.key");
        let a = Fingerprinter::load_or_create_at(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        let b = Fingerprinter::load_or_create_at(&path).unwrap();
        assert_eq!(
            a.fingerprint("identity.email", "x@y.com"),
            b.fingerprint("identity.email", "x@y.com")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn open_or_malformed_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("refuse");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        fs::write(&path, [7u8; KEY_LEN]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Fingerprinter::load_or_create_at(&path),
            Err(KeyError::Permissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Fingerprinter::load_or_create_at(&path).is_ok());
        fs::write(&path, [7u8; 10]).unwrap();
        assert!(matches!(
            Fingerprinter::load_or_create_at(&path),
            Err(KeyError::BadLength { len: 10, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_location_precedence() {
        let p = key_path_from(Some("/k".into()), Some("/x".into()), Some("/h".into()));
        assert_eq!(p.unwrap(), PathBuf::from("/k"));
        let p = key_path_from(None, Some("/x".into()), Some("/h".into()));
        assert_eq!(p.unwrap(), PathBuf::from("/x/leakscope/fingerprint.key"));
        let p = key_path_from(Some("".into()), None, Some("/h".into()));
        assert_eq!(
            p.unwrap(),
            PathBuf::from("/h/.config/leakscope/fingerprint.key")
        );
        assert!(key_path_from(None, None, None).is_err());
    }

    #[test]
    fn fingerprints_are_keyed_normalised_and_short() {
        let a = Fingerprinter::with_key([1; KEY_LEN]);
        let b = Fingerprinter::with_key([2; KEY_LEN]);
        let f = a.fingerprint("identity.phone", "+39 337 6965150");
        assert_eq!(f.len(), FINGERPRINT_HEX);
        assert_eq!(f, a.fingerprint("identity.phone", "+393376965150"));
        assert_eq!(f, a.fingerprint("identity.phone", "0039 337 696 5150"));
        assert_ne!(f, b.fingerprint("identity.phone", "+39 337 6965150"));
        assert_ne!(
            a.fingerprint("identity.email", "x"),
            a.fingerprint("identity.username", "x")
        );
        assert!(!format!("{a:?}").contains('1'));
    }
}
