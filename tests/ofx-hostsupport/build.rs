//! Builds the OpenFX association's host library (HostSupport) and expat as they come in the
//! `openfx-sys` 0.1.0 package, with our driver (`src/driver.cpp`), into two shared libraries:
//!
//! - `libsoragen_hostsupport.so`: HostSupport with its default defines;
//! - `libsoragen_hostsupport_gl.so`: the same with `OFX_SUPPORTS_OPENGLRENDER` (OpenGL render
//!   suite, texture images, `kOfxImageEffectPropOpenGLRenderSupported`).
//!
//! Each is self-contained (everything but the C API hidden), so the tests load the one they
//! drive with libloading. Nothing in the package's sources is changed; expat's configure step is
//! replaced by an `expat_config.h` written here.

use std::path::{Path, PathBuf};

const HOST_SUPPORT: [&str; 12] = [
    "ofxhBinary",
    "ofxhClip",
    "ofxhHost",
    "ofxhImageEffect",
    "ofxhImageEffectAPI",
    "ofxhInteract",
    "ofxhMemory",
    "ofxhParam",
    "ofxhPluginAPICache",
    "ofxhPluginCache",
    "ofxhPropertySuite",
    "ofxhUtilities",
];

/// The unpacked `openfx-sys-0.1.0` package in cargo's registry sources.
fn openfx_sources() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set");
    let registry = cargo_home.join("registry/src");
    let found = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join("openfx-sys-0.1.0"))
        .find(|dir| dir.join("openfx/HostSupport/src").is_dir());
    found.unwrap_or_else(|| {
        panic!(
            "the openfx-sys 0.1.0 sources (openfx/HostSupport) are not under {}/*/openfx-sys-0.1.0: \
             they come with the `openfx-sys = \"=0.1.0\"` build-dependency; run `cargo fetch` (network to crates.io) \
             or set CARGO_HOME to the cargo home that holds them",
            registry.display()
        )
    })
}

fn expat_config(out: &Path) -> PathBuf {
    let dir = out.join("expat-config");
    std::fs::create_dir_all(&dir).unwrap();
    let header = "\
/* Written by soragen-ofx-hostsupport's build.rs in place of expat's configure (Linux, glibc). */
#define BYTEORDER 1234
#define HAVE_BCOPY 1
#define HAVE_DLFCN_H 1
#define HAVE_FCNTL_H 1
#define HAVE_GETPAGESIZE 1
#define HAVE_INTTYPES_H 1
#define HAVE_MEMMOVE 1
#define HAVE_MEMORY_H 1
#define HAVE_MMAP 1
#define HAVE_STDINT_H 1
#define HAVE_STDLIB_H 1
#define HAVE_STRINGS_H 1
#define HAVE_STRING_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_UNISTD_H 1
#define PACKAGE_NAME \"expat\"
#define PACKAGE_VERSION \"2.0.1\"
#define STDC_HEADERS 1
#define XML_CONTEXT_BYTES 1024
#define XML_DTD 1
#define XML_NS 1
";
    std::fs::write(dir.join("expat_config.h"), header).unwrap();
    dir
}

fn main() {
    let sources = openfx_sources();
    let openfx = sources.join("openfx");
    let host_support = openfx.join("HostSupport");
    let expat = host_support.join("expat-2.0.1/lib");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let config = expat_config(&out);
    println!("cargo:rerun-if-changed=src/driver.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    // expat: C, built once, linked into both libraries.
    let expat_objects = cc::Build::new()
        .files(["xmlparse.c", "xmlrole.c", "xmltok.c"].map(|f| expat.join(f)))
        .include(&config)
        .include(&expat)
        .define("HAVE_EXPAT_CONFIG_H", None)
        .define("XML_STATIC", None)
        .opt_level(2)
        .pic(true)
        .flag("-fvisibility=hidden")
        .warnings(false)
        .out_dir(out.join("expat"))
        .compile_intermediates();

    for (name, defines) in [
        ("soragen_hostsupport", &[][..]),
        ("soragen_hostsupport_gl", &["OFX_SUPPORTS_OPENGLRENDER"][..]),
    ] {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++14") // HostSupport uses std::auto_ptr
            .define("XML_STATIC", None)
            .opt_level(1)
            .pic(true)
            .flag("-fvisibility=hidden")
            .flag("-fvisibility-inlines-hidden")
            .out_dir(out.join(name));
        for define in defines {
            build.define(define, None);
        }
        let headers = [
            openfx.join("include"),
            host_support.join("include"),
            expat.clone(),
        ];
        // Third-party sources: as they come, their warnings are not ours.
        let mut third_party = build.clone();
        third_party.includes(&headers).warnings(false).flag("-w");
        let mut objects = third_party
            .files(HOST_SUPPORT.map(|f| host_support.join("src").join(format!("{f}.cpp"))))
            .compile_intermediates();
        // Ours, with warnings; the library's headers as system headers.
        let mut driver = build.clone();
        for header in &headers {
            driver.flag(format!("-isystem{}", header.display()));
        }
        objects.extend(
            driver
                .file("src/driver.cpp")
                .warnings(true)
                .extra_warnings(true)
                .compile_intermediates(),
        );
        objects.extend(expat_objects.iter().cloned());

        let library = out.join(format!("lib{name}.so"));
        let status = build
            .get_compiler()
            .to_command()
            .arg("-shared")
            .arg("-o")
            .arg(&library)
            .args(&objects)
            .args(["-ldl", "-Wl,--no-undefined"])
            .status()
            .expect("run the C++ compiler to link");
        assert!(status.success(), "linking {} failed", library.display());
        let variable = name.to_uppercase();
        println!("cargo:rustc-env={variable}={}", library.display());
    }
    println!("cargo:rustc-env=OPENFX_SYS_SOURCES={}", sources.display());
}
