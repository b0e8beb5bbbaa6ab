//! Values of the Italian CRM: codice fiscale (computed from name, birth date, sex and
//! birthplace with the official rules, so the check character is right), IBAN with correct CIN
//! and mod-97 check digits, and postal addresses.

use crate::checks::{iban_check_digits, italian_check_char};
use crate::lists::{ABI, CITTA, STREETS, STREET_TYPES};
use crate::people::push_ascii_upper;
use crate::rng::Rng;
use crate::text::{string_padded, string_u64};

const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";

fn is_vowel(c: u8) -> bool {
    matches!(c, b'A' | b'E' | b'I' | b'O' | b'U')
}

/// Three letters from a surname or name: consonants, then vowels, then X.
fn name_code(out: &mut String, s: &str, is_first_name: bool) {
    let mut up = String::with_capacity(s.len());
    push_ascii_upper(&mut up, s);
    let consonants: Vec<u8> = up.bytes().filter(|c| !is_vowel(*c)).collect();
    if is_first_name && consonants.len() >= 4 {
        // A first name with four or more consonants skips the second one.
        for k in [0, 2, 3] {
            out.push(char::from(consonants[k]));
        }
        return;
    }
    let letters = consonants
        .iter()
        .copied()
        .chain(up.bytes().filter(|c| is_vowel(*c)))
        .chain(std::iter::repeat(b'X'))
        .take(3);
    for c in letters {
        out.push(char::from(c));
    }
}

/// Builds a codice fiscale (without omocodia substitutions).
pub fn codice_fiscale(out: &mut String, p: &Person<'_>) {
    out.clear();
    name_code(out, p.cognome, false);
    name_code(out, p.nome, true);
    string_padded(out, (p.year % 100) as u64, 2);
    out.push(char::from(MONTHS[(p.month - 1) as usize]));
    string_padded(out, u64::from(p.day) + if p.female { 40 } else { 0 }, 2);
    out.push_str(p.comune);
    let check = italian_check_char(out.as_bytes());
    out.push(char::from(check));
}

/// What the codice fiscale is computed from.
pub struct Person<'a> {
    pub nome: &'a str,
    pub cognome: &'a str,
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub female: bool,
    /// Cadastral code of the birthplace (`H501` is Rome).
    pub comune: &'a str,
}

/// An Italian IBAN: `IT`, check digits, CIN, ABI, CAB and a 12-digit account, in electronic
/// form or (one in four) in print form with a space every four characters.
pub fn iban(out: &mut String, r: &mut Rng) {
    let mut bban = String::with_capacity(23);
    bban.push_str(r.pick(ABI));
    string_padded(&mut bban, r.range(1000, 99_999) as u64, 5);
    string_padded(&mut bban, r.below(1_000_000_000) * 1000 + r.below(1000), 12);
    let cin = italian_check_char(bban.as_bytes());
    bban.insert(0, char::from(cin));
    let check = iban_check_digits("IT", &bban);
    let mut compact = String::with_capacity(27);
    compact.push_str("IT");
    string_padded(&mut compact, u64::from(check), 2);
    compact.push_str(&bban);
    out.clear();
    if r.chance(0.25) {
        for (k, c) in compact.chars().enumerate() {
            if k > 0 && k % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
    } else {
        out.push_str(&compact);
    }
}

/// `Via Roma 12, 00184 Roma RM`.
pub fn indirizzo(out: &mut String, r: &mut Rng) {
    out.clear();
    out.push_str(r.pick(STREET_TYPES));
    out.push(' ');
    out.push_str(r.pick(STREETS));
    out.push(' ');
    string_u64(out, r.range(1, 180) as u64);
    out.push_str(", ");
    let (city, prov, lo, hi) = r.pick(CITTA);
    string_padded(out, r.range(i64::from(lo), i64::from(hi)) as u64, 5);
    out.push(' ');
    out.push_str(city);
    out.push(' ');
    out.push_str(prov);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{codice_fiscale_valid, iban_valid};
    use crate::rng::Aspect;

    fn cf(nome: &str, cognome: &str, y: i64, m: u32, d: u32, female: bool, comune: &str) -> String {
        let mut s = String::new();
        let p = Person {
            nome,
            cognome,
            year: y,
            month: m,
            day: d,
            female,
            comune,
        };
        codice_fiscale(&mut s, &p);
        s
    }

    #[test]
    fn codice_fiscale_matches_known_examples() {
        assert_eq!(
            cf("Mario", "Rossi", 1980, 1, 1, false, "H501"),
            "RSSMRA80A01H501U"
        );
        // Four consonants in the name: first, third and fourth are used.
        assert!(cf("Gianfranco", "Bo", 1975, 7, 3, false, "F205").starts_with("BOXGFR75L03"));
        // Women add 40 to the day.
        assert_eq!(
            &cf("Maria", "Esposito", 1990, 12, 25, true, "F839")[9..11],
            "65"
        );
        assert!(codice_fiscale_valid(&cf(
            "Niccolò", "D'Angelo", 2001, 2, 9, false, "L219"
        )));
    }

    #[test]
    fn generated_ibans_pass_mod97_and_cin() {
        let mut r = Rng::new(5, 5, Aspect::Crm);
        let mut s = String::new();
        for _ in 0..1000 {
            iban(&mut s, &mut r);
            assert!(iban_valid(&s), "{s}");
            let compact: String = s.chars().filter(|c| *c != ' ').collect();
            assert_eq!(compact.len(), 27);
            assert_eq!(
                compact.as_bytes()[4],
                italian_check_char(&compact.as_bytes()[5..])
            );
        }
    }
}
