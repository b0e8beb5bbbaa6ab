//! The six layouts of DATASET.md: which containers each store holds, where (database, schema,
//! key pattern…), how each record is written, and what follows from that: record counts, the
//! ground truth (`truth`) and the SQL DDL (`schema`).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::fields::*;
use crate::model::{
    Build, Cliente, Counts, Ctx, Need, Telemetry, Totals, User, ALEXA_SCOPE, FIRMWARE_BUILDS,
    FRAGMENTS, QUEUE_JOBS, TELEMETRY_DAYS,
};
use crate::record::{Encoding, Framing, Out, PathInfo, Ty, Val};
use crate::text::{date_string, days_from_civil, TimeStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Elasticsearch,
    Mongodb,
    Postgresql,
    Mysql,
    Redis,
    Memcached,
}

impl Layout {
    pub const ALL: [Layout; 6] = [
        Layout::Elasticsearch,
        Layout::Mongodb,
        Layout::Postgresql,
        Layout::Mysql,
        Layout::Redis,
        Layout::Memcached,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Elasticsearch => "elasticsearch",
            Layout::Mongodb => "mongodb",
            Layout::Postgresql => "postgresql",
            Layout::Mysql => "mysql",
            Layout::Redis => "redis",
            Layout::Memcached => "memcached",
        }
    }

    pub fn containers(self) -> impl Iterator<Item = &'static Container> {
        CONTAINERS.iter().filter(move |c| c.layout() == self)
    }

    fn is_sql(self) -> bool {
        matches!(self, Layout::Postgresql | Layout::Mysql)
    }
}

/// What a key-value value holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Hash,
    Json,
    Scalar,
    List,
}

/// Where a container lives in its store.
#[derive(Clone, Copy, Debug)]
pub enum Loc {
    Index(&'static str),
    Collection {
        database: &'static str,
        collection: &'static str,
    },
    PgTable {
        database: &'static str,
        schema: &'static str,
        table: &'static str,
    },
    MyTable {
        database: &'static str,
        table: &'static str,
    },
    Redis {
        db: u8,
        pattern: &'static str,
        value: Value,
    },
    Memcached {
        pattern: &'static str,
        value: Value,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id {
    EsCustomers,
    EsOrders,
    EsFirmware,
    EsTelemetry,
    MgUsers,
    MgAlexa,
    MgScale,
    MgOrders,
    MgTelemetry,
    PgUsers,
    PgDevices,
    PgAlexa,
    PgScale,
    PgOrders,
    PgFirmware,
    PgTelemetry,
    PgClienti,
    MyUsers,
    MyDevices,
    MyAlexa,
    MyOrders,
    MyPayments,
    RdUser,
    RdDevice,
    RdSession,
    RdCounter,
    RdStats,
    RdQueue,
    RdAlexa,
    McSession,
    McFragment,
}

/// One index, collection, table or key pattern of a layout.
#[derive(Debug)]
pub struct Container {
    pub id: Id,
    pub loc: Loc,
    /// SQL primary key columns; the unique index of a MongoDB collection.
    pub primary_key: &'static [&'static str],
}

/// Where a container's records come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A pass over users; the records of user `i` are written together.
    Users(Need),
    /// Entities of their own, indexed `0..domain`.
    Indexed,
}

/// What an [`Out`] is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The bytes a store's loader consumes.
    Emit,
    /// JSON lines as a record reads back from the store.
    Export,
    /// Field paths for the ground truth.
    Paths,
}

const fn c(id: Id, loc: Loc, primary_key: &'static [&'static str]) -> Container {
    Container {
        id,
        loc,
        primary_key,
    }
}
const fn mg(database: &'static str, collection: &'static str) -> Loc {
    Loc::Collection {
        database,
        collection,
    }
}
const fn pg(schema: &'static str, table: &'static str) -> Loc {
    Loc::PgTable {
        database: "smarthome",
        schema,
        table,
    }
}
const fn my(database: &'static str, table: &'static str) -> Loc {
    Loc::MyTable { database, table }
}
const fn rd(db: u8, pattern: &'static str, value: Value) -> Loc {
    Loc::Redis { db, pattern, value }
}
const fn mc(pattern: &'static str, value: Value) -> Loc {
    Loc::Memcached { pattern, value }
}

/// Every container, grouped by layout in the order of the truth.
#[rustfmt::skip]
pub static CONTAINERS: &[Container] = &[
    c(Id::EsCustomers, Loc::Index("customers"), &[]),
    c(Id::EsOrders, Loc::Index("orders"), &[]),
    c(Id::EsFirmware, Loc::Index("firmware_builds"), &[]),
    c(Id::EsTelemetry, Loc::Index("telemetry_daily"), &[]),
    // MongoDB collections get a unique index on the same key the SQL tables have.
    c(Id::MgUsers, mg("smarthome", "users"), &["user_id"]),
    c(Id::MgAlexa, mg("smarthome", "alexa_links"), &["user_id"]),
    c(Id::MgScale, mg("smarthome", "scale_measurements"), &["user_id", "measured_at"]),
    c(Id::MgOrders, mg("smarthome", "orders"), &["order_id"]),
    c(Id::MgTelemetry, mg("analytics", "telemetry_daily"), &[]),
    c(Id::PgUsers, pg("public", "users"), &["user_id"]),
    c(Id::PgDevices, pg("public", "devices"), &["device_id"]),
    c(Id::PgAlexa, pg("public", "alexa_links"), &["user_id"]),
    c(Id::PgScale, pg("public", "scale_measurements"), &["user_id", "measured_at"]),
    c(Id::PgOrders, pg("public", "orders"), &["order_id"]),
    c(Id::PgFirmware, pg("public", "firmware_builds"), &["build_number"]),
    c(Id::PgTelemetry, pg("public", "telemetry_daily"), &["day", "region"]),
    c(Id::PgClienti, pg("crm_it", "clienti"), &["cliente_id"]),
    c(Id::MyUsers, my("smarthome", "users"), &["user_id"]),
    c(Id::MyDevices, my("smarthome", "devices"), &["device_id"]),
    c(Id::MyAlexa, my("smarthome", "alexa_links"), &["user_id"]),
    c(Id::MyOrders, my("smarthome", "orders"), &["order_id"]),
    c(Id::MyPayments, my("billing", "payments"), &["payment_id"]),
    c(Id::RdUser, rd(0, "user:*", Value::Hash), &[]),
    c(Id::RdDevice, rd(0, "device:*", Value::Hash), &[]),
    c(Id::RdSession, rd(0, "sess:*", Value::Json), &[]),
    c(Id::RdCounter, rd(0, "counter:events:*", Value::Scalar), &[]),
    c(Id::RdStats, rd(0, "stats:ssid_count:*", Value::Scalar), &[]),
    c(Id::RdQueue, rd(0, "queue:jobs", Value::List), &[]),
    c(Id::RdAlexa, rd(1, "alexa:*", Value::Hash), &[]),
    c(Id::McSession, mc("session:*", Value::Json), &[]),
    c(Id::McFragment, mc("fragment:home:*", Value::Scalar), &[]),
];

/// Finds a container of `layout` by its truth name, or by a unique last part of it
/// (`clienti`, `users`, `db1:alexa:*` or `alexa:*`).
pub fn find(layout: Layout, name: &str) -> Result<&'static Container> {
    if let Some(c) = layout.containers().find(|c| c.name() == name) {
        return Ok(c);
    }
    let by_suffix: Vec<_> = layout
        .containers()
        .filter(|c| {
            let full = c.name();
            full.strip_suffix(name)
                .is_some_and(|head| head.ends_with(['.', ':']))
        })
        .collect();
    match by_suffix.as_slice() {
        [c] => Ok(c),
        _ => {
            let names: Vec<_> = layout.containers().map(Container::name).collect();
            bail!(
                "no single {} container named {name:?}; containers: {}",
                layout.name(),
                names.join(", ")
            )
        }
    }
}

/// Reusable buffers for the stand-alone entities.
#[derive(Default)]
pub struct Scratch {
    cliente: Cliente,
    build: Build,
    telemetry: Telemetry,
    text: String,
}

impl Container {
    pub fn layout(&self) -> Layout {
        match self.loc {
            Loc::Index(_) => Layout::Elasticsearch,
            Loc::Collection { .. } => Layout::Mongodb,
            Loc::PgTable { .. } => Layout::Postgresql,
            Loc::MyTable { .. } => Layout::Mysql,
            Loc::Redis { .. } => Layout::Redis,
            Loc::Memcached { .. } => Layout::Memcached,
        }
    }

    /// The name a scan reports (see DATASET.md): `index`, `database.collection`,
    /// `database.schema.table`, `database.table`, `dbN:pattern` or the Memcached pattern.
    pub fn name(&self) -> String {
        match self.loc {
            Loc::Index(index) => index.to_string(),
            Loc::Collection {
                database,
                collection,
            } => format!("{database}.{collection}"),
            Loc::PgTable {
                database,
                schema,
                table,
            } => format!("{database}.{schema}.{table}"),
            Loc::MyTable { database, table } => format!("{database}.{table}"),
            Loc::Redis { db, pattern, .. } => format!("db{db}:{pattern}"),
            Loc::Memcached { pattern, .. } => pattern.to_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.layout() {
            Layout::Elasticsearch => "index",
            Layout::Mongodb => "collection",
            Layout::Postgresql | Layout::Mysql => "table",
            Layout::Redis | Layout::Memcached => "keyspace",
        }
    }

    pub fn redis_db(&self) -> Option<u8> {
        match self.loc {
            Loc::Redis { db, .. } => Some(db),
            _ => None,
        }
    }

    fn value(&self) -> Option<Value> {
        match self.loc {
            Loc::Redis { value, .. } | Loc::Memcached { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn source(&self) -> Source {
        let n = Need::default();
        let need = match self.id {
            Id::EsCustomers => Need {
                devices: true,
                alexa: true,
                scale: true,
                ..n
            },
            Id::MgUsers | Id::PgDevices | Id::MyDevices | Id::RdDevice => {
                Need { devices: true, ..n }
            }
            Id::MgAlexa | Id::PgAlexa | Id::MyAlexa | Id::RdAlexa => Need { alexa: true, ..n },
            Id::MgScale | Id::PgScale => Need { scale: true, ..n },
            Id::EsOrders | Id::MgOrders | Id::PgOrders | Id::MyOrders => Need { orders: true, ..n },
            Id::MyPayments => Need { payment: true, ..n },
            Id::RdSession => Need { session: true, ..n },
            Id::McSession => Need {
                mc_session: true,
                ..n
            },
            Id::PgUsers | Id::MyUsers | Id::RdUser => n,
            Id::EsFirmware
            | Id::EsTelemetry
            | Id::MgTelemetry
            | Id::PgFirmware
            | Id::PgTelemetry
            | Id::PgClienti
            | Id::RdCounter
            | Id::RdStats
            | Id::RdQueue
            | Id::McFragment => return Source::Indexed,
        };
        Source::Users(need)
    }

    /// How many leading users a per-user pass must visit: only the first ones have a cached
    /// Memcached session, so that pass can stop early.
    pub fn users_spanned(&self, ctx: Ctx) -> u64 {
        match self.id {
            Id::McSession => ctx.users.min(crate::model::MC_SESSIONS),
            _ => ctx.users,
        }
    }

    /// Number of indexed entities (one record each) of an [`Source::Indexed`] container.
    pub fn domain(&self, ctx: Ctx) -> u64 {
        match self.id {
            Id::EsFirmware | Id::PgFirmware => FIRMWARE_BUILDS,
            Id::EsTelemetry | Id::MgTelemetry | Id::PgTelemetry => Telemetry::ROWS,
            Id::PgClienti => Totals::crm_customers(ctx),
            Id::RdCounter => TELEMETRY_DAYS,
            Id::RdStats => crate::lists::REGIONS.len() as u64,
            Id::RdQueue => 1,
            Id::McFragment => FRAGMENTS,
            _ => 0,
        }
    }

    pub fn records(&self, ctx: Ctx, t: &Totals) -> u64 {
        match self.id {
            Id::EsCustomers | Id::MgUsers | Id::PgUsers | Id::MyUsers | Id::RdUser => t.users,
            Id::PgDevices | Id::MyDevices | Id::RdDevice => t.devices,
            Id::MgAlexa | Id::PgAlexa | Id::MyAlexa | Id::RdAlexa => t.alexa,
            Id::MgScale | Id::PgScale => t.measurements,
            Id::EsOrders | Id::MgOrders | Id::PgOrders | Id::MyOrders => t.orders,
            Id::MyPayments => t.payments,
            Id::RdSession => t.sessions,
            Id::McSession => t.mc_sessions,
            _ => self.domain(ctx),
        }
    }

    /// Distinct people in this container: users with at least one record in it (every user
    /// has a device; sessions, Alexa links and payments are one per user). None for
    /// containers that hold no person's data (decoys, counters, the job queue).
    pub fn subjects(&self, ctx: Ctx, t: &Totals) -> Option<u64> {
        Some(match self.id {
            Id::EsCustomers | Id::MgUsers | Id::PgUsers | Id::MyUsers | Id::RdUser => t.users,
            Id::PgDevices | Id::MyDevices | Id::RdDevice => t.users,
            Id::MgAlexa | Id::PgAlexa | Id::MyAlexa | Id::RdAlexa => t.alexa,
            Id::MgScale | Id::PgScale => t.scale_owners,
            Id::EsOrders | Id::MgOrders | Id::PgOrders | Id::MyOrders => t.order_users,
            Id::MyPayments => t.payments,
            Id::RdSession => t.sessions,
            Id::McSession => t.mc_sessions,
            Id::PgClienti => Totals::crm_customers(ctx),
            _ => return None,
        })
    }

    pub fn out(&self, mode: Mode) -> Out {
        let style = match self.layout() {
            Layout::Postgresql => TimeStyle::Pg,
            Layout::Mysql => TimeStyle::My,
            _ => TimeStyle::Iso,
        };
        let (enc, framing) = match (mode, self.value()) {
            (Mode::Paths, _) => (Encoding::Paths, Framing::None),
            (Mode::Export, Some(Value::Hash | Value::Scalar)) => {
                (Encoding::Json { strings: true }, Framing::Line)
            }
            (Mode::Export, _) => (Encoding::Json { strings: false }, Framing::Line),
            (Mode::Emit, None) if self.layout().is_sql() => (Encoding::Tsv, Framing::Line),
            (Mode::Emit, None) => (Encoding::Json { strings: false }, Framing::Line),
            (Mode::Emit, Some(value)) if self.layout() == Layout::Memcached => {
                let enc = if value == Value::Scalar {
                    Encoding::Scalar
                } else {
                    Encoding::Json { strings: false }
                };
                (enc, Framing::MemcachedSet)
            }
            (Mode::Emit, Some(Value::Hash)) => (Encoding::Pairs, Framing::Hset),
            (Mode::Emit, Some(Value::Json)) => (Encoding::Json { strings: false }, Framing::Set),
            (Mode::Emit, Some(Value::Scalar)) => (Encoding::Scalar, Framing::Set),
            (Mode::Emit, Some(Value::List)) => (Encoding::Json { strings: false }, Framing::Rpush),
        };
        Out::new(enc, framing, style)
    }

    /// Writes the records user `u` contributes to this container.
    pub fn write_user(&self, u: &User, o: &mut Out) {
        match self.id {
            Id::EsCustomers | Id::MgUsers => {
                o.begin(&[]);
                user_base(o, u);
                o.obj("app");
                o.put(&PLATFORM, Val::Str(u.platform));
                o.put(&API_TOKEN, Val::Str(&u.api_token));
                o.end_obj();
                o.list("devices");
                for d in u.devices() {
                    o.elem();
                    o.put(&DEVICE_ID, Val::Str(&d.device_id));
                    device_fields(o, d);
                    o.put(&ADDED_AT, Val::Time(d.added_at));
                    o.end_elem();
                }
                o.end_list();
                if self.id == Id::EsCustomers {
                    if u.counts.alexa {
                        o.obj("alexa");
                        alexa_fields(o, u);
                        o.put(&SCOPE, Val::Str(ALEXA_SCOPE));
                        o.end_obj();
                    }
                    if let Some(m) = u.measurements().last() {
                        o.obj("scale");
                        measure_fields(o, m);
                        o.end_obj();
                    }
                }
                o.end();
            }
            Id::PgUsers | Id::MyUsers => {
                o.begin(&[]);
                user_base(o, u);
                o.put(&APP_PLATFORM, Val::Str(u.platform));
                o.put(&APP_API_TOKEN, Val::Str(&u.api_token));
                if self.id == Id::PgUsers {
                    o.put(&PASSWORD_HASH, Val::Str(&u.password_hash));
                }
                o.end();
            }
            Id::PgDevices | Id::MyDevices => {
                for d in u.devices() {
                    o.begin(&[]);
                    o.put(&DEVICE_ID, Val::Str(&d.device_id));
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    device_fields(o, d);
                    o.put(&ADDED_AT, Val::Time(d.added_at));
                    o.end();
                }
            }
            Id::MgAlexa | Id::PgAlexa | Id::MyAlexa => {
                if u.counts.alexa {
                    o.begin(&[]);
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    alexa_fields(o, u);
                    o.put(&SCOPE, Val::Str(ALEXA_SCOPE));
                    o.end();
                }
            }
            Id::MgScale | Id::PgScale => {
                for m in u.measurements() {
                    o.begin(&[]);
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    measure_fields(o, m);
                    o.end();
                }
            }
            Id::EsOrders | Id::MgOrders | Id::PgOrders | Id::MyOrders => {
                for x in u.orders() {
                    o.begin(&[]);
                    o.put(&ORDER_ID, Val::Str(&x.order_id));
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    o.put(&SKU, Val::Str(&x.sku));
                    o.put(&QUANTITY, Val::Int(x.quantity));
                    o.put(&UNIT_PRICE, Val::Decimal(x.unit_price_c, 2));
                    o.put(&SHIPMENT_WEIGHT_KG, Val::Decimal(x.shipment_weight_c, 2));
                    o.put(&REQUEST_ID, Val::Str(&x.request_id));
                    o.put(&STATUS, Val::Str(x.status));
                    o.put(&CREATED_AT, Val::Time(x.created_at));
                    o.end();
                }
            }
            Id::MyPayments => {
                if u.counts.payment {
                    let p = &u.payment;
                    o.begin(&[]);
                    o.put(&PAYMENT_ID, Val::Int(p.payment_id));
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    o.put(&CARDHOLDER_NAME, Val::Str(&p.cardholder_name));
                    o.put(&CARD_NUMBER, Val::Str(&p.card_number));
                    o.put(&CARD_EXPIRY, Val::Str(&p.card_expiry));
                    o.put(&AMOUNT_EUR, Val::Decimal(p.amount_c, 2));
                    o.put(&CURRENCY, Val::Str(p.currency));
                    o.put(&CREATED_AT, Val::Time(p.created_at));
                    o.end();
                }
            }
            Id::RdUser => {
                o.begin(&["user:", &u.user_id]);
                o.put(&USERNAME, Val::Str(&u.username));
                o.put(&EMAIL, Val::Str(&u.email));
                o.put(&FULL_NAME, Val::Str(&u.full_name));
                o.put(&PHONE, Val::Str(&u.phone));
                o.put(&WIFI_SSID, Val::Str(&u.wifi_ssid));
                o.put(&APP_API_TOKEN, Val::Str(&u.api_token));
                o.put(&PLATFORM, Val::Str(u.platform));
                o.end();
            }
            Id::RdDevice => {
                for d in u.devices() {
                    o.begin(&["device:", &d.device_id]);
                    o.put(&USER_ID, Val::Str(&u.user_id));
                    device_fields(o, d);
                    o.end();
                }
            }
            Id::RdAlexa => {
                if u.counts.alexa {
                    o.begin(&["alexa:", &u.user_id]);
                    alexa_fields(o, u);
                    o.end();
                }
            }
            Id::RdSession => {
                if u.counts.session {
                    o.begin(&["sess:", &u.session.session_id]);
                    session_fields(o, u, &u.session);
                    o.end();
                }
            }
            Id::McSession => {
                if u.counts.mc_session {
                    o.begin(&["session:", &u.mc_session.session_id]);
                    session_fields(o, u, &u.mc_session);
                    o.end();
                }
            }
            _ => unreachable!("{:?} is not written per user", self.id),
        }
    }

    /// Writes record `j` of a stand-alone container.
    pub fn write_indexed(&self, ctx: Ctx, j: u64, o: &mut Out, s: &mut Scratch) {
        match self.id {
            Id::EsFirmware | Id::PgFirmware => {
                let b = &mut s.build;
                b.fill(ctx, j);
                o.begin(&[]);
                o.put(&BUILD_SHA, Val::Str(&b.build_sha));
                o.put(&BUILD_NUMBER, Val::Int(b.build_number));
                o.put(&CHANNEL, Val::Str(b.channel));
                o.put(&ARTIFACT_SIZE_BYTES, Val::Int(b.artifact_size_bytes));
                o.put(&RELEASED_AT, Val::Time(b.released_at));
                o.end();
            }
            Id::EsTelemetry | Id::MgTelemetry | Id::PgTelemetry => {
                let t = &mut s.telemetry;
                t.fill(ctx, j);
                o.begin(&[]);
                o.put(&DAY, Val::Date(t.day));
                o.put(&REGION, Val::Str(t.region));
                o.put(&SSID_COUNT, Val::Int(t.ssid_count));
                o.put(&ACTIVE_DEVICES, Val::Int(t.active_devices));
                o.put(&AVG_RSSI, Val::Decimal(t.avg_rssi_d, 1));
                o.put(&MOTION_EVENTS, Val::Int(t.motion_events));
                o.end();
            }
            Id::PgClienti => {
                let c = &mut s.cliente;
                c.fill(ctx, j);
                o.begin(&[]);
                o.put(&CLIENTE_ID, Val::Str(&c.cliente_id));
                o.put(&NOME, Val::Str(c.nome));
                o.put(&COGNOME, Val::Str(c.cognome));
                o.put(&EMAIL, Val::Str(&c.email));
                o.put(&TELEFONO, Val::Str(&c.telefono));
                o.put(&CODICE_FISCALE, Val::Str(&c.codice_fiscale));
                o.put(&INDIRIZZO, Val::Str(&c.indirizzo));
                o.put(&DATA_NASCITA, Val::Date(c.data_nascita));
                o.put(&IBAN, Val::Str(&c.iban));
                o.put(&CREATO_IL, Val::Time(c.creato_il));
                o.end();
            }
            Id::RdCounter => {
                let day = date_string(days_from_civil(2019, 1, 1) + j as i64);
                o.begin(&["counter:events:", &day]);
                o.put(&VALUE, Val::Int(crate::model::daily_events(ctx, j)));
                o.end();
            }
            Id::RdStats => {
                o.begin(&["stats:ssid_count:", crate::lists::REGIONS[j as usize]]);
                o.put(&VALUE, Val::Int(crate::model::region_ssids(ctx, j)));
                o.end();
            }
            Id::RdQueue => {
                o.begin_items(&["queue:jobs"]);
                for k in 0..QUEUE_JOBS {
                    let (job, attempts) = crate::model::job(ctx, k, &mut s.text);
                    o.elem();
                    o.put(&REQUEST_ID, Val::Str(&s.text));
                    o.put(&JOB, Val::Str(job));
                    o.put(&ATTEMPTS, Val::Int(attempts));
                    o.end_elem();
                }
                o.end();
            }
            Id::McFragment => {
                crate::model::fragment(&mut s.text, ctx, j);
                let n = j.to_string();
                o.begin(&["fragment:home:", &n]);
                o.put(&VALUE, Val::Str(&s.text));
                o.end();
            }
            _ => unreachable!("{:?} is written per user", self.id),
        }
    }

    /// The fields that exist in this container, with their true categories. SQL tables always
    /// have their columns; other stores have a path only if some record carries it.
    pub fn fields(&self, ctx: Ctx, t: &Totals) -> Vec<PathInfo> {
        if self.layout().is_sql() {
            return self.paths(ctx, Counts::everything());
        }
        if self.records(ctx, t) == 0 {
            return Vec::new();
        }
        // Only the customer documents have optional parts; a representative user has them
        // exactly when some user in the dataset does.
        let counts = Counts {
            alexa: t.alexa > 0,
            measurements: u8::from(t.measurements > 0),
            ..Counts::everything()
        };
        self.paths(ctx, counts)
    }

    fn paths(&self, ctx: Ctx, counts: Counts) -> Vec<PathInfo> {
        let mut o = self.out(Mode::Paths);
        match self.source() {
            Source::Users(need) => {
                let mut u = User::default();
                u.fill_with(ctx, 0, need, counts);
                self.write_user(&u, &mut o);
            }
            Source::Indexed => self.write_indexed(ctx, 0, &mut o, &mut Scratch::default()),
        }
        o.paths
    }
}

fn user_base(o: &mut Out, u: &User) {
    o.put(&USER_ID, Val::Str(&u.user_id));
    o.put(&USERNAME, Val::Str(&u.username));
    o.put(&EMAIL, Val::Str(&u.email));
    o.put(&FULL_NAME, Val::Str(&u.full_name));
    o.put(&PHONE, Val::Str(&u.phone));
    o.put(&COUNTRY, Val::Str(u.country.code()));
    o.put(&CREATED_AT, Val::Time(u.created_at));
    o.put(&LAST_LOGIN_IP, Val::Str(&u.last_login_ip));
    o.put(&WIFI_SSID, Val::Str(&u.wifi_ssid));
}

fn device_fields(o: &mut Out, d: &crate::model::Device) {
    o.put(&MODEL, Val::Str(d.model));
    o.put(&MAC, Val::Str(&d.mac));
    o.put(&FIRMWARE_VERSION, Val::Str(&d.firmware_version));
    o.put(&NICKNAME, Val::Str(d.nickname));
}

fn alexa_fields(o: &mut Out, u: &User) {
    o.put(&ACCESS_TOKEN, Val::Str(&u.alexa.access_token));
    o.put(&REFRESH_TOKEN, Val::Str(&u.alexa.refresh_token));
    o.put(&LINKED_AT, Val::Time(u.alexa.linked_at));
}

fn measure_fields(o: &mut Out, m: &crate::model::Measure) {
    o.put(&MEASURED_AT, Val::Time(m.measured_at));
    o.put(&HEIGHT_CM, Val::Int(m.height_cm));
    o.put(&WEIGHT_KG, Val::Decimal(m.weight_dg, 1));
    o.put(&BONE_DENSITY, Val::Decimal(m.bone_density_c, 2));
    o.put(&BODY_FAT_PCT, Val::Decimal(m.body_fat_d, 1));
    o.put(&PROTEIN_G, Val::Int(m.protein_g));
}

fn session_fields(o: &mut Out, u: &User, s: &crate::model::Session) {
    o.put(&SESSION_ID, Val::Str(&s.session_id));
    o.put(&USER_ID, Val::Str(&u.user_id));
    o.put(&USERNAME, Val::Str(&u.username));
    o.put(&EMAIL, Val::Str(&u.email));
    o.put(&API_TOKEN, Val::Str(&u.api_token));
    o.put(&JWT, Val::Str(&s.jwt));
    o.put(&IP, Val::Str(&s.ip));
    o.put(&PLATFORM, Val::Str(u.platform));
    o.put(&CREATED_AT, Val::Time(s.created_at));
    o.put(&EXPIRES_AT, Val::Time(s.expires_at));
}

pub const TRUTH_SCHEMA: &str = "leakscope.lab-truth/v1";

#[derive(Debug, Serialize)]
pub struct Truth {
    pub schema: &'static str,
    pub seed: u64,
    pub users: u64,
    pub layouts: Layouts,
}

#[derive(Debug, Default, Serialize)]
pub struct Layouts {
    pub elasticsearch: Vec<ContainerTruth>,
    pub mongodb: Vec<ContainerTruth>,
    pub postgresql: Vec<ContainerTruth>,
    pub mysql: Vec<ContainerTruth>,
    pub redis: Vec<ContainerTruth>,
    pub memcached: Vec<ContainerTruth>,
}

#[derive(Debug, Serialize)]
pub struct ContainerTruth {
    pub name: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<&'static str>,
    pub records: u64,
    /// The unique key (SQL primary key, MongoDB unique index); empty when none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub key: &'static [&'static str],
    /// Distinct people (null for containers without personal data).
    pub subjects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    pub fields: Vec<FieldTruth>,
}

#[derive(Debug, Serialize)]
pub struct FieldTruth {
    pub path: String,
    pub categories: &'static [&'static str],
}

/// The ground truth of a dataset; counting costs one pass over the users' count streams.
pub fn truth(ctx: Ctx) -> Truth {
    truth_with(ctx, &Totals::of(ctx))
}

pub fn truth_with(ctx: Ctx, totals: &Totals) -> Truth {
    let mut layouts = Layouts::default();
    for c in CONTAINERS {
        let fields = c.fields(ctx, totals);
        let mut t = ContainerTruth {
            name: c.name(),
            kind: c.kind(),
            database: None,
            schema: None,
            table: None,
            collection: None,
            db: None,
            pattern: None,
            value_type: None,
            records: c.records(ctx, totals),
            key: c.primary_key,
            subjects: c.subjects(ctx, totals),
            columns: None,
            fields: Vec::new(),
        };
        match c.loc {
            Loc::Index(_) => {}
            Loc::Collection {
                database,
                collection,
            } => {
                t.database = Some(database);
                t.collection = Some(collection);
            }
            Loc::PgTable {
                database,
                schema,
                table,
            } => {
                t.database = Some(database);
                t.schema = Some(schema);
                t.table = Some(table);
            }
            Loc::MyTable { database, table } => {
                t.database = Some(database);
                t.table = Some(table);
            }
            Loc::Redis { db, pattern, value } => {
                t.db = Some(db);
                t.pattern = Some(pattern);
                t.value_type = Some(match value {
                    Value::Hash => "hash",
                    Value::List => "list",
                    Value::Json | Value::Scalar => "string",
                });
            }
            Loc::Memcached { pattern, .. } => t.pattern = Some(pattern),
        }
        if c.layout().is_sql() {
            t.columns = Some(fields.iter().map(|f| f.path.clone()).collect());
        }
        t.fields = fields
            .into_iter()
            .map(|f| FieldTruth {
                path: f.path,
                categories: f.categories,
            })
            .collect();
        let list = match c.layout() {
            Layout::Elasticsearch => &mut layouts.elasticsearch,
            Layout::Mongodb => &mut layouts.mongodb,
            Layout::Postgresql => &mut layouts.postgresql,
            Layout::Mysql => &mut layouts.mysql,
            Layout::Redis => &mut layouts.redis,
            Layout::Memcached => &mut layouts.memcached,
        };
        list.push(t);
    }
    Truth {
        schema: TRUTH_SCHEMA,
        seed: ctx.seed,
        users: ctx.users,
        layouts,
    }
}

/// DDL creating the SQL layouts' schemas and tables (PostgreSQL: run inside database
/// `smarthome`; MySQL: creates its databases).
pub fn ddl(layout: Layout) -> Result<String> {
    let ctx = Ctx { seed: 0, users: 1 };
    let mut sql = String::new();
    let mut current = "";
    for c in layout.containers() {
        let (space, table) = match c.loc {
            Loc::PgTable { schema, table, .. } => (schema, table),
            Loc::MyTable { database, table } => (database, table),
            _ => bail!("{} has no SQL schema", layout.name()),
        };
        if space != current {
            current = space;
            if layout == Layout::Postgresql {
                writeln!(sql, "CREATE SCHEMA IF NOT EXISTS {space};")?;
            } else {
                writeln!(
                    sql,
                    "CREATE DATABASE IF NOT EXISTS {space} CHARACTER SET utf8mb4;"
                )?;
            }
        }
        writeln!(sql, "CREATE TABLE IF NOT EXISTS {space}.{table} (")?;
        for f in c.paths(ctx, Counts::everything()) {
            let ty = if layout == Layout::Postgresql {
                pg_type(f.ty)
            } else {
                mysql_type(f.ty)
            };
            writeln!(sql, "    {} {ty} NOT NULL,", f.path)?;
        }
        write!(sql, "    PRIMARY KEY ({})\n)", c.primary_key.join(", "))?;
        if layout == Layout::Mysql {
            sql.push_str(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        }
        sql.push_str(";\n");
    }
    Ok(sql)
}

fn pg_type(ty: Ty) -> String {
    match ty {
        Ty::Uuid => "uuid".into(),
        Ty::Text(_) | Ty::Char(_) => "text".into(),
        Ty::Inet => "inet".into(),
        Ty::Timestamp => "timestamptz".into(),
        Ty::Date => "date".into(),
        Ty::Decimal(p, s) => format!("numeric({p},{s})"),
        Ty::Int => "integer".into(),
        Ty::BigInt => "bigint".into(),
    }
}

fn mysql_type(ty: Ty) -> String {
    match ty {
        Ty::Uuid => "CHAR(36)".into(),
        Ty::Text(n) => format!("VARCHAR({n})"),
        Ty::Char(n) => format!("CHAR({n})"),
        Ty::Inet => "VARCHAR(45)".into(),
        Ty::Timestamp => "DATETIME".into(),
        Ty::Date => "DATE".into(),
        Ty::Decimal(p, s) => format!("DECIMAL({p},{s})"),
        Ty::Int => "INT".into(),
        Ty::BigInt => "BIGINT".into(),
    }
}
