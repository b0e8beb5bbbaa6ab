//! The logical entities of DATASET.md and how each is drawn: a user and everything hanging off
//! them (devices, Alexa link, scale measurements, orders, payment, sessions) from the user's
//! index, and the stand-alone entities (CRM customers, firmware builds, telemetry, jobs…) from
//! their own index. Counts come from dedicated sub-streams so totals need no formatting.

use crate::lists::{
    Model, ACCESSORIES, COLOURS, COMUNI, FIRST_IT, LAST_IT, MODELS, NICKNAMES, OUIS, REGIONS,
};
use crate::people::{self, Country};
use crate::rng::{mix, permute_below, Aspect, Rng};
use crate::text::{
    civil_from_days, epoch, push_base64url, push_hex, random_bytes, string_padded, string_u64,
    uuid4,
};

/// What the whole dataset is a function of.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub seed: u64,
    pub users: u64,
}

pub const MAX_DEVICES: usize = 3;
pub const MAX_MEASUREMENTS: usize = 5;
pub const MAX_ORDERS: usize = 3;
/// Memcached keeps sessions of the first users only, like a cache would.
pub const MC_SESSIONS: u64 = 3000;
pub const FIRMWARE_BUILDS: u64 = 200;
pub const TELEMETRY_DAYS: u64 = 365;
pub const QUEUE_JOBS: u64 = 64;
pub const FRAGMENTS: u64 = 100;

/// The dataset's time frame: accounts opened from mid-2017, the copy taken in December 2019.
fn accounts_from() -> i64 {
    epoch(2017, 6, 1)
}
fn snapshot() -> i64 {
    epoch(2019, 12, 4)
}

/// How many of each dependent entity a user has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub devices: u8,
    pub alexa: bool,
    pub measurements: u8,
    pub orders: u8,
    pub payment: bool,
    pub session: bool,
    pub mc_session: bool,
}

impl Counts {
    pub fn of(ctx: Ctx, i: u64) -> Counts {
        let devices =
            Rng::new(ctx.seed, i, Aspect::DeviceCount).weighted(&[(1u8, 55), (2, 30), (3, 15)]);
        let alexa = Rng::new(ctx.seed, i, Aspect::AlexaLink).below(3) == 0;
        let mut s = Rng::new(ctx.seed, i, Aspect::ScaleCount);
        let measurements = if s.below(10) == 0 {
            1 + s.below(MAX_MEASUREMENTS as u64) as u8
        } else {
            0
        };
        let orders = Rng::new(ctx.seed, i, Aspect::OrderCount).weighted(&[
            (0u8, 30),
            (1, 40),
            (2, 20),
            (3, 10),
        ]);
        let payment = Rng::new(ctx.seed, i, Aspect::PaymentFlag).below(4) == 0;
        let session = Rng::new(ctx.seed, i, Aspect::SessionFlag).below(2) == 0;
        Counts {
            devices,
            alexa,
            measurements,
            orders,
            payment,
            session,
            mc_session: i < MC_SESSIONS,
        }
    }

    /// A user that has one of everything, to learn which fields each container has.
    pub fn everything() -> Counts {
        Counts {
            devices: 1,
            alexa: true,
            measurements: 1,
            orders: 1,
            payment: true,
            session: true,
            mc_session: true,
        }
    }
}

/// Dataset-wide totals of the user-dependent entities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub users: u64,
    pub devices: u64,
    pub alexa: u64,
    pub scale_owners: u64,
    pub measurements: u64,
    pub orders: u64,
    /// Users with at least one order (the people an orders container exposes).
    pub order_users: u64,
    pub payments: u64,
    pub sessions: u64,
    pub mc_sessions: u64,
}

impl Totals {
    pub fn of(ctx: Ctx) -> Totals {
        let mut t = Totals {
            users: ctx.users,
            ..Totals::default()
        };
        for i in 0..ctx.users {
            let c = Counts::of(ctx, i);
            t.devices += u64::from(c.devices);
            t.alexa += u64::from(c.alexa);
            t.scale_owners += u64::from(c.measurements > 0);
            t.measurements += u64::from(c.measurements);
            t.orders += u64::from(c.orders);
            t.order_users += u64::from(c.orders > 0);
            t.payments += u64::from(c.payment);
            t.sessions += u64::from(c.session);
            t.mc_sessions += u64::from(c.mc_session);
        }
        t
    }

    pub fn crm_customers(ctx: Ctx) -> u64 {
        ctx.users / 20
    }
}

/// Which dependent entities a container needs, so a pass generates nothing it won't write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Need {
    pub devices: bool,
    pub alexa: bool,
    pub scale: bool,
    pub orders: bool,
    pub payment: bool,
    pub session: bool,
    pub mc_session: bool,
}

impl Need {
    pub fn union(self, o: Need) -> Need {
        Need {
            devices: self.devices | o.devices,
            alexa: self.alexa | o.alexa,
            scale: self.scale | o.scale,
            orders: self.orders | o.orders,
            payment: self.payment | o.payment,
            session: self.session | o.session,
            mc_session: self.mc_session | o.mc_session,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Device {
    pub device_id: String,
    pub model: &'static str,
    pub mac: String,
    pub firmware_version: String,
    pub nickname: &'static str,
    pub added_at: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Alexa {
    pub access_token: String,
    pub refresh_token: String,
    pub linked_at: i64,
}

pub const ALEXA_SCOPE: &str = "alexa::skills:account_linking";

/// One smart-scale reading; decimals are scaled integers (`weight_dg` is tenths of a kg).
#[derive(Clone, Copy, Debug, Default)]
pub struct Measure {
    pub measured_at: i64,
    pub height_cm: i64,
    pub weight_dg: i64,
    pub bone_density_c: i64,
    pub body_fat_d: i64,
    pub protein_g: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Order {
    pub order_id: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_c: i64,
    pub shipment_weight_c: i64,
    pub request_id: String,
    pub status: &'static str,
    pub created_at: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Payment {
    pub payment_id: i64,
    pub cardholder_name: String,
    pub card_number: String,
    pub card_expiry: String,
    pub amount_c: i64,
    pub currency: &'static str,
    pub created_at: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Session {
    pub session_id: String,
    pub jwt: String,
    pub ip: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A user and their dependent entities. Reused across users: `fill` overwrites the strings in
/// place, so a pass over millions of users allocates only while the buffers first grow.
#[derive(Clone, Debug, Default)]
pub struct User {
    pub index: u64,
    pub counts: Counts,
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub phone: String,
    pub country: Country,
    pub created_at: i64,
    pub last_login_ip: String,
    pub wifi_ssid: String,
    pub platform: &'static str,
    pub api_token: String,
    pub password_hash: String,
    devices: [Device; MAX_DEVICES],
    pub alexa: Alexa,
    measurements: [Measure; MAX_MEASUREMENTS],
    orders: [Order; MAX_ORDERS],
    pub payment: Payment,
    pub session: Session,
    pub mc_session: Session,
}

impl User {
    pub fn devices(&self) -> &[Device] {
        &self.devices[..usize::from(self.counts.devices)]
    }
    pub fn measurements(&self) -> &[Measure] {
        &self.measurements[..usize::from(self.counts.measurements)]
    }
    pub fn orders(&self) -> &[Order] {
        &self.orders[..usize::from(self.counts.orders)]
    }

    pub fn fill(&mut self, ctx: Ctx, i: u64, need: Need) {
        self.fill_with(ctx, i, need, Counts::of(ctx, i));
    }

    /// Fills user `i` as if it had `counts` (the schema pass forces one of everything).
    pub fn fill_with(&mut self, ctx: Ctx, i: u64, need: Need, counts: Counts) {
        self.index = i;
        self.counts = counts;
        self.fill_profile(ctx, i);
        if need.devices {
            self.fill_devices(ctx, i);
        }
        if need.alexa && counts.alexa {
            self.fill_alexa(ctx, i);
        }
        if need.scale && counts.measurements > 0 {
            self.fill_scale(ctx, i);
        }
        if need.orders {
            self.fill_orders(ctx, i);
        }
        if need.payment && counts.payment {
            self.fill_payment(ctx, i);
        }
        if need.session && counts.session {
            fill_session(
                &mut self.session,
                &mut Rng::new(ctx.seed, i, Aspect::Session),
                &self.user_id,
                &self.last_login_ip,
            );
        }
        if need.mc_session && counts.mc_session {
            fill_session(
                &mut self.mc_session,
                &mut Rng::new(ctx.seed, i, Aspect::McSession),
                &self.user_id,
                &self.last_login_ip,
            );
        }
    }

    fn fill_profile(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Profile);
        uuid4(&mut self.user_id, r);
        self.country = Country::draw(r);
        // Most people carry names of their country; some don't.
        let names_from = if r.chance(0.8) {
            self.country
        } else {
            r.pick(&Country::ALL)
        };
        let first = names_from.first_name(r);
        let last = names_from.last_name(r);
        self.full_name.clear();
        self.full_name.push_str(first);
        self.full_name.push(' ');
        self.full_name.push_str(last);
        people::username(&mut self.username, r, first, last);
        let unique = email_number(i, id_key(ctx.seed, 1));
        people::email(&mut self.email, r, first, last, unique, self.country);
        people::phone(&mut self.phone, r, self.country);
        self.created_at = r.range(accounts_from(), epoch(2019, 11, 30));
        people::public_ip(&mut self.last_login_ip, r);
        people::ssid(&mut self.wifi_ssid, r, self.country, last);
        self.platform = if r.chance(0.55) { "android" } else { "ios" };
        people::api_token(&mut self.api_token, r);
        people::bcrypt_hash(&mut self.password_hash, r);
    }

    fn fill_devices(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Devices);
        let created = self.created_at;
        for (k, d) in self.devices[..usize::from(self.counts.devices)]
            .iter_mut()
            .enumerate()
        {
            let model = pick_model(r);
            d.model = model.code;
            // The serial's tail is a permutation of the global device slot, hence unique.
            let slot = i * MAX_DEVICES as u64 + k as u64;
            let mut x = permute_below(slot, SERIAL_SPACE, id_key(ctx.seed, 2));
            d.device_id.clear();
            d.device_id.push_str(model.serial_prefix);
            let mut tail = [0u8; 9];
            for c in tail.iter_mut().rev() {
                *c = crate::text::ALNUM_UPPER[(x % 36) as usize];
                x /= 36;
            }
            d.device_id
                .push_str(std::str::from_utf8(&tail).expect("ascii"));
            d.mac.clear();
            let oui = r.pick(OUIS);
            let nic: [u8; 3] = random_bytes(r);
            let upper = r.chance(0.8);
            for (n, b) in oui.iter().chain(nic.iter()).enumerate() {
                if n > 0 {
                    d.mac.push(':');
                }
                push_hex(&mut d.mac, &[*b], upper);
            }
            d.firmware_version.clear();
            d.firmware_version.push_str(model.firmware);
            d.firmware_version.push('.');
            string_u64(&mut d.firmware_version, r.below(14));
            d.firmware_version.push('.');
            string_u64(&mut d.firmware_version, r.range(1000, 9999) as u64);
            d.nickname = r.pick(NICKNAMES);
            d.added_at = (created + r.range(0, 400 * 86_400)).min(snapshot() - 86_400);
        }
    }

    fn fill_alexa(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Alexa);
        people::lwa_token(&mut self.alexa.access_token, r, false);
        people::lwa_token(&mut self.alexa.refresh_token, r, true);
        self.alexa.linked_at =
            (self.created_at + r.range(3600, 300 * 86_400)).min(snapshot() - 3600);
    }

    fn fill_scale(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Scale);
        // A plausible adult: height, then weight through a body mass index.
        let height = (r.range(150, 200) + r.range(150, 200)) / 2;
        let bmi_d = r.range(185, 340);
        let base_weight_dg = (bmi_d * height * height / 10_000).clamp(450, 1300);
        let bone = r.range(80, 140);
        let fat = r.range(80, 400);
        let mut day = epoch(2019, 6, 1) + r.range(0, 120) * 86_400;
        for m in &mut self.measurements[..usize::from(self.counts.measurements)] {
            m.measured_at = day + r.range(6 * 3600, 22 * 3600);
            m.height_cm = height;
            m.weight_dg = (base_weight_dg + r.range(-15, 15)).clamp(450, 1300);
            m.bone_density_c = (bone + r.range(-2, 2)).clamp(80, 140);
            m.body_fat_d = (fat + r.range(-8, 8)).clamp(80, 400);
            m.protein_g = r.range(40, 180);
            // Readings are days apart, so (user_id, measured_at) is a key.
            day += r.range(1, 14) * 86_400;
        }
    }

    fn fill_orders(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Orders);
        for (k, o) in self.orders[..usize::from(self.counts.orders)]
            .iter_mut()
            .enumerate()
        {
            o.created_at = r.range(epoch(2018, 1, 1), snapshot());
            let (year, _, _) = civil_from_days(o.created_at.div_euclid(86_400));
            o.order_id.clear();
            o.order_id.push_str("ORD-");
            string_u64(&mut o.order_id, year as u64);
            o.order_id.push('-');
            // Sequential in the user's slot: order numbers are unique, not secret.
            string_padded(&mut o.order_id, 1 + i * MAX_ORDERS as u64 + k as u64, 8);
            o.sku.clear();
            let grams;
            if r.chance(0.7) {
                let m = pick_model(r);
                o.sku.push_str(m.code);
                o.sku.push('-');
                o.sku.push_str(r.pick(COLOURS));
                o.unit_price_c = m.sku_price_cents;
                grams = m.shipping_grams;
            } else {
                let (sku, price, g) = r.pick(ACCESSORIES);
                o.sku.push_str(sku);
                o.unit_price_c = price;
                grams = g;
            }
            o.quantity = r.weighted(&[(1i64, 80), (2, 15), (3, 5)]);
            o.shipment_weight_c = ((grams * o.quantity + r.range(60, 300)) / 10).clamp(20, 350);
            uuid4(&mut o.request_id, r);
            o.status = r.weighted(&[
                ("delivered", 70),
                ("shipped", 12),
                ("processing", 5),
                ("cancelled", 8),
                ("returned", 5),
            ]);
        }
    }

    fn fill_payment(&mut self, ctx: Ctx, i: u64) {
        let r = &mut Rng::new(ctx.seed, i, Aspect::Payment);
        let p = &mut self.payment;
        p.payment_id = 100_000 + i as i64;
        p.cardholder_name.clear();
        if r.chance(0.5) {
            p.cardholder_name.push_str(&self.full_name);
        } else {
            // As embossed on the card: upper case, no accents.
            for (k, word) in self.full_name.split(' ').enumerate() {
                if k > 0 {
                    p.cardholder_name.push(' ');
                }
                people::push_ascii_upper(&mut p.cardholder_name, word);
            }
        }
        card_number(&mut p.card_number, r);
        p.card_expiry.clear();
        string_padded(&mut p.card_expiry, r.range(1, 12) as u64, 2);
        p.card_expiry.push('/');
        string_u64(&mut p.card_expiry, r.range(20, 25) as u64);
        p.amount_c = r.range(499, 39_900);
        p.currency = self.country.currency();
        p.created_at = r.range(epoch(2019, 1, 1), snapshot());
    }
}

/// The number that makes an e-mail address unique, from the entity index alone: indices below
/// 1000 map to a permutation of 0..1000, and each decade `[10^k, 10^(k+1))` to a permutation of
/// itself. The decades are disjoint, so numbers never repeat, look like the digits people add,
/// and do not depend on how many users the dataset has.
fn email_number(i: u64, key: u64) -> u64 {
    if i < 1000 {
        return permute_below(i, 1000, key);
    }
    let mut decade = 1000;
    while decade <= i / 10 {
        decade *= 10;
    }
    decade + permute_below(i - decade, 9 * decade, key)
}

/// 36^9: the nine alphanumeric characters of a device serial.
const SERIAL_SPACE: u64 = 101_559_956_668_416;

fn id_key(seed: u64, which: u64) -> u64 {
    mix(Rng::new(seed, which, Aspect::Ids).next_u64())
}

fn pick_model(r: &mut Rng) -> &'static Model {
    let total: u32 = MODELS.iter().map(|m| m.weight).sum();
    let mut x = r.below(u64::from(total)) as u32;
    for m in MODELS {
        if x < m.weight {
            return m;
        }
        x -= m.weight;
    }
    &MODELS[0]
}

/// A Luhn-valid Visa (4…) or Mastercard (51–55…) number, a third of them spaced in fours.
fn card_number(out: &mut String, r: &mut Rng) {
    let mut digits = [0u8; 16];
    let start = if r.chance(0.6) {
        digits[0] = b'4';
        1
    } else {
        digits[0] = b'5';
        digits[1] = b'1' + r.below(5) as u8;
        2
    };
    for d in &mut digits[start..15] {
        *d = b'0' + r.below(10) as u8;
    }
    digits[15] = crate::checks::luhn_digit(&digits[..15]);
    out.clear();
    let spaced = r.chance(0.33);
    for (k, d) in digits.iter().enumerate() {
        if spaced && k > 0 && k % 4 == 0 {
            out.push(' ');
        }
        out.push(char::from(*d));
    }
}

fn fill_session(s: &mut Session, r: &mut Rng, user_id: &str, user_ip: &str) {
    uuid4(&mut s.session_id, r);
    s.created_at = r.range(epoch(2019, 12, 1), snapshot());
    s.expires_at = s.created_at + 30 * 86_400;
    if r.chance(0.7) {
        s.ip.clear();
        s.ip.push_str(user_ip);
    } else {
        people::public_ip(&mut s.ip, r);
    }
    jwt(&mut s.jwt, r, user_id, s.created_at, s.expires_at);
}

const JWT_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// An HS256-shaped JWT: real base64url header and payload, a random 32-byte signature.
fn jwt(out: &mut String, r: &mut Rng, sub: &str, iat: i64, exp: i64) {
    let mut payload = String::with_capacity(80);
    payload.push_str("{\"sub\":\"");
    payload.push_str(sub);
    payload.push_str("\",\"iat\":");
    string_u64(&mut payload, iat as u64);
    payload.push_str(",\"exp\":");
    string_u64(&mut payload, exp as u64);
    payload.push('}');
    out.clear();
    out.push_str(JWT_HEADER);
    out.push('.');
    push_base64url(out, payload.as_bytes());
    out.push('.');
    push_base64url(out, &random_bytes::<32>(r));
}

/// A customer of the Italian CRM.
#[derive(Clone, Debug, Default)]
pub struct Cliente {
    pub cliente_id: String,
    pub nome: &'static str,
    pub cognome: &'static str,
    pub email: String,
    pub telefono: String,
    pub codice_fiscale: String,
    pub indirizzo: String,
    pub data_nascita: i64,
    pub iban: String,
    pub creato_il: i64,
}

impl Cliente {
    pub fn fill(&mut self, ctx: Ctx, j: u64) {
        let r = &mut Rng::new(ctx.seed, j, Aspect::Crm);
        uuid4(&mut self.cliente_id, r);
        let (nome, female) = r.pick(FIRST_IT);
        self.nome = nome;
        self.cognome = r.pick(LAST_IT);
        let unique = email_number(j, id_key(ctx.seed, 3));
        people::email(&mut self.email, r, nome, self.cognome, unique, Country::It);
        people::phone(&mut self.telefono, r, Country::It);
        self.data_nascita = r.range(
            crate::text::days_from_civil(1940, 1, 1),
            crate::text::days_from_civil(2003, 12, 31),
        );
        let (year, month, day) = civil_from_days(self.data_nascita);
        let person = crate::italy::Person {
            nome,
            cognome: self.cognome,
            year,
            month,
            day,
            female,
            comune: r.pick(COMUNI).1,
        };
        crate::italy::codice_fiscale(&mut self.codice_fiscale, &person);
        crate::italy::indirizzo(&mut self.indirizzo, r);
        crate::italy::iban(&mut self.iban, r);
        self.creato_il = r.range(epoch(2016, 3, 1), snapshot());
    }
}

/// A firmware build (decoy: hashes and sizes that are not secrets).
#[derive(Clone, Debug, Default)]
pub struct Build {
    pub build_sha: String,
    pub build_number: i64,
    pub channel: &'static str,
    pub artifact_size_bytes: i64,
    pub released_at: i64,
}

impl Build {
    pub fn fill(&mut self, ctx: Ctx, j: u64) {
        let r = &mut Rng::new(ctx.seed, j, Aspect::Firmware);
        self.build_sha.clear();
        push_hex(&mut self.build_sha, &random_bytes::<20>(r), false);
        // Strictly increasing with j, so build numbers are unique.
        self.build_number = 6800 + 7 * j as i64 + r.range(0, 6);
        self.channel = r.weighted(&[("stable", 70), ("beta", 20), ("canary", 10)]);
        self.artifact_size_bytes = r.range(8_000_000, 24_000_000);
        self.released_at = epoch(2018, 1, 8) + j as i64 * 3 * 86_400 + r.range(8 * 3600, 20 * 3600);
    }
}

/// Daily telemetry of one region (decoy: counts and averages).
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    pub day: i64,
    pub region: &'static str,
    pub ssid_count: i64,
    pub active_devices: i64,
    pub avg_rssi_d: i64,
    pub motion_events: i64,
}

impl Telemetry {
    pub const ROWS: u64 = TELEMETRY_DAYS * REGIONS.len() as u64;

    pub fn fill(&mut self, ctx: Ctx, j: u64) {
        let r = &mut Rng::new(ctx.seed, j, Aspect::Telemetry);
        self.day = crate::text::days_from_civil(2019, 1, 1) + (j / REGIONS.len() as u64) as i64;
        self.region = REGIONS[(j % REGIONS.len() as u64) as usize];
        let fleet = (ctx.users * 2 / REGIONS.len() as u64).max(10) as i64;
        self.active_devices = fleet * r.range(55, 80) / 100;
        self.ssid_count = self.active_devices * r.range(45, 60) / 100;
        self.avg_rssi_d = -r.range(480, 720);
        self.motion_events = self.active_devices * r.range(8, 30);
    }
}

/// A background job in the Redis queue (decoy).
pub fn job(ctx: Ctx, j: u64, request_id: &mut String) -> (&'static str, i64) {
    let r = &mut Rng::new(ctx.seed, j, Aspect::Jobs);
    uuid4(request_id, r);
    let kind = r.pick(&[
        "thumbnail.generate",
        "clip.transcode",
        "firmware.rollout",
        "notify.push",
        "event.index",
        "alexa.sync",
    ]);
    (kind, r.range(0, 3))
}

/// Events counted per day (decoy counter value).
pub fn daily_events(ctx: Ctx, day: u64) -> i64 {
    let r = &mut Rng::new(ctx.seed, day, Aspect::Counter);
    (ctx.users as i64 * r.range(20, 60)).max(r.range(10, 99))
}

/// Distinct SSIDs seen per region (decoy counter value).
pub fn region_ssids(ctx: Ctx, region: u64) -> i64 {
    let r = &mut Rng::new(ctx.seed, region, Aspect::Stats);
    (ctx.users as i64 / REGIONS.len() as i64) * r.range(50, 90) / 100 + r.range(0, 9)
}

/// A cached HTML fragment of the web shop's home page (decoy).
pub fn fragment(out: &mut String, ctx: Ctx, j: u64) {
    let r = &mut Rng::new(ctx.seed, j, Aspect::Fragment);
    let m = pick_model(r);
    out.clear();
    match r.below(3) {
        0 => {
            out.push_str("<section class=\"promo\"><h2>");
            out.push_str(m.code);
            out.push_str(" is here</h2><p>1080p, colour night vision, IP65.</p><a href=\"/shop/");
            out.push_str(&m.code.to_ascii_lowercase());
            out.push_str("\">Shop now</a></section>");
        }
        1 => {
            out.push_str("<div class=\"tile\"><h3>Motion alerts</h3><p>");
            string_u64(out, r.range(2, 40) as u64);
            out.push_str(" events today</p></div>");
        }
        _ => {
            out.push_str("<ul class=\"faq\"><li>How do I reset my camera?</li><li>Firmware ");
            out.push_str(m.firmware);
            out.push_str(" release notes</li></ul>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_in_range_and_close_to_the_documented_shares() {
        let ctx = Ctx {
            seed: 1,
            users: 20_000,
        };
        let t = Totals::of(ctx);
        let share = |x: u64| x as f64 / ctx.users as f64;
        assert!((0.30..0.37).contains(&share(t.alexa)));
        assert!((0.08..0.12).contains(&share(t.scale_owners)));
        assert!((0.22..0.28).contains(&share(t.payments)));
        assert!((0.47..0.53).contains(&share(t.sessions)));
        assert!((1.5..1.7).contains(&share(t.devices)));
        assert_eq!(t.mc_sessions, MC_SESSIONS);
    }

    #[test]
    fn email_numbers_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            assert!(seen.insert(email_number(i, 7)), "{i}");
        }
        assert!(email_number(5, 7) < 1000);
        assert!((10_000..100_000).contains(&email_number(12_345, 7)));
    }

    #[test]
    fn filling_reuses_buffers_and_is_pure() {
        let ctx = Ctx {
            seed: 9,
            users: 100,
        };
        let all = Need {
            devices: true,
            alexa: true,
            scale: true,
            orders: true,
            payment: true,
            session: true,
            mc_session: true,
        };
        // Slots beyond a user's counts keep stale values by design; only what is visible counts.
        let visible = |u: &User| {
            format!(
                "{:?}",
                (
                    &u.user_id,
                    &u.email,
                    &u.phone,
                    u.devices(),
                    u.measurements(),
                    u.orders(),
                    u.counts
                )
            )
        };
        let mut a = User::default();
        a.fill(ctx, 5, all);
        let first = visible(&a);
        for i in 0..20 {
            a.fill(ctx, i, all);
        }
        a.fill(ctx, 5, all);
        assert_eq!(first, visible(&a));
    }
}
