//! The field catalogue: every field name the dataset uses, with its true categories (ids from
//! the taxonomy of docs/taxonomy.md; empty for non-sensitive fields and decoys) and its SQL type.

use crate::record::{Field, Ty};

const USER_ID_C: &[&str] = &["identity.user_id"];
const NONE: &[&str] = &[];

macro_rules! fields {
    ($($id:ident = $name:literal, $cats:expr, $ty:expr;)*) => {
        $(pub static $id: Field = Field { name: $name, categories: $cats, ty: $ty };)*
    };
}

fields! {
    USER_ID = "user_id", USER_ID_C, Ty::Uuid;
    USERNAME = "username", &["identity.username"], Ty::Text(64);
    EMAIL = "email", &["identity.email"], Ty::Text(255);
    FULL_NAME = "full_name", &["identity.name"], Ty::Text(128);
    PHONE = "phone", &["identity.phone"], Ty::Text(32);
    COUNTRY = "country", NONE, Ty::Char(2);
    CREATED_AT = "created_at", NONE, Ty::Timestamp;
    LAST_LOGIN_IP = "last_login_ip", &["network.ip"], Ty::Inet;
    WIFI_SSID = "wifi_ssid", &["network.ssid"], Ty::Text(64);
    PLATFORM = "platform", NONE, Ty::Text(16);
    API_TOKEN = "api_token", &["credential.api_token"], Ty::Text(64);
    APP_PLATFORM = "app_platform", NONE, Ty::Text(16);
    APP_API_TOKEN = "app_api_token", &["credential.api_token"], Ty::Text(64);
    PASSWORD_HASH = "password_hash", &["credential.password_hash"], Ty::Text(60);

    DEVICE_ID = "device_id", &["device.id"], Ty::Text(16);
    MODEL = "model", &["device.model"], Ty::Text(32);
    MAC = "mac", &["device.mac"], Ty::Char(17);
    FIRMWARE_VERSION = "firmware_version", &["device.firmware"], Ty::Text(32);
    NICKNAME = "nickname", &["device.name"], Ty::Text(64);
    ADDED_AT = "added_at", NONE, Ty::Timestamp;

    ACCESS_TOKEN = "access_token", &["credential.oauth_token"], Ty::Text(512);
    REFRESH_TOKEN = "refresh_token", &["credential.oauth_token"], Ty::Text(512);
    LINKED_AT = "linked_at", NONE, Ty::Timestamp;
    SCOPE = "scope", NONE, Ty::Text(64);

    MEASURED_AT = "measured_at", NONE, Ty::Timestamp;
    HEIGHT_CM = "height_cm", &["health.body"], Ty::Int;
    WEIGHT_KG = "weight_kg", &["health.body"], Ty::Decimal(4, 1);
    BONE_DENSITY = "bone_density", &["health.body"], Ty::Decimal(3, 2);
    BODY_FAT_PCT = "body_fat_pct", &["health.body"], Ty::Decimal(3, 1);
    PROTEIN_G = "protein_g", &["health.nutrition"], Ty::Int;

    ORDER_ID = "order_id", NONE, Ty::Text(24);
    SKU = "sku", NONE, Ty::Text(32);
    QUANTITY = "quantity", NONE, Ty::Int;
    UNIT_PRICE = "unit_price", NONE, Ty::Decimal(8, 2);
    SHIPMENT_WEIGHT_KG = "shipment_weight_kg", NONE, Ty::Decimal(4, 2);
    REQUEST_ID = "request_id", NONE, Ty::Uuid;
    STATUS = "status", NONE, Ty::Text(16);

    PAYMENT_ID = "payment_id", NONE, Ty::Int;
    CARDHOLDER_NAME = "cardholder_name", &["identity.name"], Ty::Text(128);
    CARD_NUMBER = "card_number", &["financial.card"], Ty::Text(23);
    CARD_EXPIRY = "card_expiry", NONE, Ty::Char(5);
    AMOUNT_EUR = "amount_eur", NONE, Ty::Decimal(10, 2);
    CURRENCY = "currency", NONE, Ty::Char(3);

    // A session id is a bearer credential: whoever holds it is logged in as its user.
    SESSION_ID = "session_id", &["credential.api_token"], Ty::Uuid;
    JWT = "jwt", &["credential.jwt"], Ty::Text(512);
    IP = "ip", &["network.ip"], Ty::Inet;
    EXPIRES_AT = "expires_at", NONE, Ty::Timestamp;

    BUILD_SHA = "build_sha", NONE, Ty::Char(40);
    BUILD_NUMBER = "build_number", NONE, Ty::Int;
    CHANNEL = "channel", NONE, Ty::Text(16);
    ARTIFACT_SIZE_BYTES = "artifact_size_bytes", NONE, Ty::BigInt;
    RELEASED_AT = "released_at", NONE, Ty::Timestamp;

    DAY = "day", NONE, Ty::Date;
    REGION = "region", NONE, Ty::Text(32);
    SSID_COUNT = "ssid_count", NONE, Ty::Int;
    ACTIVE_DEVICES = "active_devices", NONE, Ty::Int;
    AVG_RSSI = "avg_rssi", NONE, Ty::Decimal(4, 1);
    MOTION_EVENTS = "motion_events", NONE, Ty::BigInt;

    CLIENTE_ID = "cliente_id", USER_ID_C, Ty::Uuid;
    NOME = "nome", &["identity.name"], Ty::Text(64);
    COGNOME = "cognome", &["identity.name"], Ty::Text(64);
    TELEFONO = "telefono", &["identity.phone"], Ty::Text(32);
    CODICE_FISCALE = "codice_fiscale", &["government.id"], Ty::Char(16);
    INDIRIZZO = "indirizzo", &["identity.address"], Ty::Text(255);
    DATA_NASCITA = "data_nascita", &["identity.birthdate"], Ty::Date;
    IBAN = "iban", &["financial.iban"], Ty::Text(34);
    CREATO_IL = "creato_il", NONE, Ty::Timestamp;

    JOB = "job", NONE, Ty::Text(32);
    ATTEMPTS = "attempts", NONE, Ty::Int;
    // The whole value of a key-value string that is not JSON (counters, HTML fragments).
    VALUE = "value", NONE, Ty::Text(255);
}
