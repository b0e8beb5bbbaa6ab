//! `leakscope`: command line front end over `leakscope-core`.
fn main() {
    println!("leakscope {}", env!("CARGO_PKG_VERSION"));
}
