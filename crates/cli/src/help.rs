//! Help text generated from the protocol registry, so `--help`, `leakscope protocols` and the
//! docs cannot drift from what the scanner actually does.

use leakscope_core::protocols::{default_ports, REGISTRY};

fn ports(p: &[u16]) -> String {
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// The registry as an aligned table (also the body of `leakscope protocols`).
pub fn protocol_table() -> String {
    let mut out = String::from("PROTOCOL       DEFAULT PORTS        HOW ACCESS IS DECIDED\n");
    for p in REGISTRY {
        out.push_str(&format!(
            "{:<14} {:<20} {}\n",
            p.id,
            ports(p.default_ports),
            p.method
        ));
        for c in p.default_credentials {
            let pw = if c.password.is_empty() {
                "(empty)"
            } else {
                c.password
            };
            out.push_str(&format!(
                "{:<35} --try-defaults: {} / {} ({})\n",
                "", c.user, pw, c.why
            ));
        }
    }
    out.push_str(
        "\nIdentification does not trust port numbers: on a port no protocol claims, every protocol \
above is tried in this order, then the same inside TLS.",
    );
    out
}

/// The long help of `leakscope scan` after the flags.
pub fn scan_after_help() -> String {
    format!(
        "Default ports: {}\n\n{}\n\n\
Exit codes: 0 nothing at or above --fail-on; 1 something is; 2 bad input or error.\n\n\
Examples:\n  \
leakscope scan 127.0.10.0/24                      # every default port of 256 addresses\n  \
leakscope scan 127.0.10.1:9200 127.0.10.5:16380   # exactly these two endpoints\n  \
leakscope scan 127.0.10.0/24 -x 127.0.10.9 --format json -o scan.json\n  \
leakscope scan --scope-file scope.toml --try-defaults --fail-on high",
        ports(&default_ports()),
        protocol_table()
    )
}
