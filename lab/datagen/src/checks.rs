//! Check-digit algorithms: Luhn (payment cards), ISO 7064 mod 97-10 (IBAN) and the Italian
//! odd/even tables (codice fiscale check character, IBAN CIN). The generators use them to make
//! values that pass, and the tests use the validators to prove it.

/// The Luhn check digit to append to `payload` (ASCII digits).
pub fn luhn_digit(payload: &[u8]) -> u8 {
    let mut sum = 0u32;
    // Walking from the right, the digit next to the future check digit is doubled first.
    for (k, &c) in payload.iter().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if k % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// Whether a card number (spaces allowed) passes Luhn.
pub fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u8> = number.bytes().filter(|b| *b != b' ').collect();
    if digits.len() < 12 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (payload, check) = digits.split_at(digits.len() - 1);
    luhn_digit(payload) == check[0]
}

/// `s` (digits and letters, letters counting A=10 … Z=35) modulo 97, streaming.
fn mod97(s: impl Iterator<Item = u8>) -> u32 {
    let mut r = 0u32;
    for c in s {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => continue,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r
}

/// The two IBAN check digits for a country and BBAN.
pub fn iban_check_digits(country: &str, bban: &str) -> u32 {
    let moved = bban.bytes().chain(country.bytes()).chain(*b"00");
    98 - mod97(moved)
}

/// Whether an IBAN (print form with spaces allowed) passes mod 97.
pub fn iban_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban.bytes().filter(|b| *b != b' ').collect();
    if compact.len() < 15 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    mod97(compact[4..].iter().chain(&compact[..4]).copied()) == 1
}

/// Values of characters in odd (1st, 3rd, …) positions; digits count as the letter of the
/// same index (0 as A).
const ODD: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// The Italian control letter: used for the 16th character of a codice fiscale (over its first
/// 15) and for the CIN of an Italian BBAN (over ABI, CAB and account number).
pub fn italian_check_char(s: &[u8]) -> u8 {
    let mut sum = 0;
    for (k, &c) in s.iter().enumerate() {
        let idx = match c {
            b'0'..=b'9' => usize::from(c - b'0'),
            b'A'..=b'Z' => usize::from(c - b'A'),
            _ => 0,
        };
        // k is 0-based, so even k are the odd positions of the official description.
        sum += if k % 2 == 0 { ODD[idx] } else { idx as u32 };
    }
    b'A' + (sum % 26) as u8
}

/// Whether a codice fiscale is well formed and its check character is right.
pub fn codice_fiscale_valid(cf: &str) -> bool {
    let b = cf.as_bytes();
    let shape = b.len() == 16
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && b[6..8].iter().all(u8::is_ascii_digit)
        && b"ABCDEHLMPRST".contains(&b[8])
        && b[9..11].iter().all(u8::is_ascii_digit)
        && b[11].is_ascii_uppercase()
        && b[12..15].iter().all(u8::is_ascii_digit);
    shape && italian_check_char(&b[..15]) == b[15]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("5555555555554444"));
        assert!(!luhn_valid("4111111111111112"));
        assert_eq!(luhn_digit(b"411111111111111"), b'1');
    }

    #[test]
    fn iban_known_numbers() {
        assert!(iban_valid("IT60X0542811101000000123456"));
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(!iban_valid("IT61X0542811101000000123456"));
        assert_eq!(iban_check_digits("IT", "X0542811101000000123456"), 60);
        // The same published example also has a correct CIN.
        assert_eq!(italian_check_char(b"0542811101000000123456"), b'X');
    }

    #[test]
    fn codice_fiscale_known_number() {
        assert!(codice_fiscale_valid("RSSMRA80A01H501U"));
        assert!(!codice_fiscale_valid("RSSMRA80A01H501V"));
    }
}
