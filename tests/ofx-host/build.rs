// The parameter and message suites are C-variadic: stable Rust can call such functions but not
// define them, so the host's versions are in C and forward to Rust callbacks.
fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    cc::Build::new()
        .file("src/variadic.c")
        .warnings(true)
        .compile("ofx_host_variadic");
}
