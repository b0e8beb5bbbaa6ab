//! The parsers of peer bytes, gathered for the cargo-fuzz targets in `fuzz/` (feature
//! `fuzzing`, off by default; see `fuzz/README.md`).
//!
//! Only re-exports and thin wrappers: the parsers themselves stay where they are, and private
//! ones are reached through each module's `fuzz_hooks` child (which exists only with the
//! feature). The invariants checked (no panic; a checker's `Complete(n)` is within the input and
//! its parser accepts the frame) live in the targets.

pub use crate::net::{looks_like_tls, Check};

/// Target and scope parsing (user input, but from files too).
pub mod scope {
    pub use crate::scope::{PortList, ScopeFile, TargetSpec};
}

/// Flattening of sampled records (JSON from stores: documents, Redis values, text columns).
pub mod flatten {
    pub use crate::inventory::flatten::{flatten_bytes, flatten_json, flatten_row, truncate, Flat};
}

/// Decoders of serialized values (PHP, pickle, MessagePack, signed and encoded payloads).
pub mod decode {
    pub use crate::inventory::flatten::decode::*;
}

/// RESP frames and the Redis text replies inside them.
pub mod resp {
    pub use crate::protocols::redis::inventory::parse_keyspace;
    pub use crate::protocols::redis::probe::{auth_error, parse_info};
    pub use crate::protocols::redis::wire::{check, parse, RespLimits, Value};
}

/// HTTP responses.
pub mod http {
    pub use crate::driver::http::{check_response, parse_response, Response, MAX_HEAD};
}

/// ClickHouse native packets and HTTP results.
pub mod clickhouse {
    pub use crate::protocols::clickhouse::wire::{
        check_packet, parse_error_text, parse_json_compact, parse_packet,
    };
}

/// InfluxDB 1.x query results.
pub mod influxdb {
    pub use crate::protocols::influxdb::inventory::{points, records};
    pub use crate::protocols::influxdb::wire::{parse_error, parse_result};
}

/// Memcached text-protocol replies.
pub mod memcached {
    pub use crate::protocols::memcached::fuzz_hooks::{
        check_line, check_line_lf, check_stats, check_values, parse_values,
    };
    pub use crate::protocols::memcached::wire::{parse_metadump_line, parse_version, stat};
}

/// etcd's v3 JSON gateway: range answers, `/version`, and the range-body check of the
/// allowlist.
pub mod etcd {
    pub use crate::protocols::etcd::fuzz_hooks::{is_range_body, parse_range, parse_version};
    pub use crate::protocols::etcd::wire::{error_message, is_auth_error, range_body, RangeReq};
}

/// ZooKeeper's client protocol: the frame checker and the records' parsers.
pub mod zookeeper {
    pub use crate::protocols::zookeeper::wire::{
        check_frame, parse_children, parse_connect_response, parse_data, parse_reply,
        parse_srvr_version,
    };
}

/// MongoDB wire-protocol replies and the reply documents' parsers.
pub mod mongodb {
    pub use crate::protocols::mongodb::fuzz_hooks::{document_json, inventory_parsers};
    pub use crate::protocols::mongodb::probe::{
        parse_connection_status, parse_list_collections, parse_list_databases,
    };
    pub use crate::protocols::mongodb::wire::{
        check_reply, command_error, parse_build_info, parse_hello, parse_reply, Wire,
    };
}

/// PostgreSQL backend messages.
pub mod postgresql {
    pub use crate::protocols::postgresql::fuzz_hooks::{
        check_result_message, startup_step, to_msg, Rows, StartupStep,
    };
    pub use crate::protocols::postgresql::inventory::{
        parse_columns, parse_data_row, parse_databases, parse_relations, parse_row_description,
        Answer,
    };
    pub use crate::protocols::postgresql::wire::{
        check_message, parse_auth, parse_error, parse_server_first, recognise, verify_server_final,
        Msg, Startup,
    };
}

/// MySQL/MariaDB packets.
pub mod mysql {
    pub use crate::protocols::mysql::fuzz_hooks::{
        check_packet, is_eof_packet, is_ok_packet, parse_row, ResultReader,
    };
    pub use crate::protocols::mysql::wire::{
        parse_auth_reply, parse_err, parse_greeting, product_version, Greeting, QueryReply,
    };
}

/// Elasticsearch/OpenSearch response bodies.
pub mod elasticsearch {
    pub use crate::protocols::elasticsearch::fuzz_hooks::inventory_parsers;
    pub use crate::protocols::elasticsearch::probe::{
        normalise_publish_address, parse_cat_count, parse_cat_indices, parse_cluster_health,
        parse_nodes_http, parse_refusal, parse_root_doc,
    };
}
