//! The packaged bundle (`packaging/ofx/bundle.sh`, given as `SORAGEN_OFX_BUNDLE`): laid out as
//! hosts look for it, its binary stripped, and loading in the test host. Every other test file
//! also runs against that bundle when the variable is set:
//!
//! ```sh
//! packaging/ofx/bundle.sh
//! SORAGEN_OFX_BUNDLE=target/ofx/Soragen.ofx.bundle cargo test -p soragen-ofx
//! ```

mod common;

use std::path::Path;

use common::*;
use soragen_ofx_host::{Profile, bundle_binary};

/// Section names of a 64-bit little-endian ELF file.
fn elf_sections(elf: &[u8]) -> Vec<String> {
    assert!(
        elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    // ELF header: e_shoff, e_shentsize, e_shnum, e_shstrndx; section header: sh_name, sh_offset.
    let (table, entry, count, names) = (u64_at(0x28), u16_at(0x3A), u16_at(0x3C), u16_at(0x3E));
    let header = |index: usize| table + index * entry;
    let strings = u64_at(header(names) + 0x18);
    (0..count)
        .map(|index| {
            let start = strings + u32_at(header(index));
            let end = start + elf[start..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8_lossy(&elf[start..end]).into_owned()
        })
        .collect()
}

#[test]
fn the_packaged_bundle_is_complete_stripped_and_loads() {
    if std::env::var_os(BUNDLE_ENV).is_none() {
        eprintln!(
            "{BUNDLE_ENV} is not set: build the bundle with packaging/ofx/bundle.sh and name it there to check it"
        );
        return;
    }
    let bundle = bundle();
    assert_eq!(
        bundle.file_name().and_then(|n| n.to_str()),
        Some("Soragen.ofx.bundle")
    );
    let binary = bundle_binary(&bundle);
    assert_eq!(binary, bundle.join("Contents/Linux-x86-64/Soragen.ofx"));
    let sections = elf_sections(&std::fs::read(&binary).unwrap());
    assert!(sections.iter().any(|s| s == ".text"), "{sections:?}");
    assert!(
        !sections
            .iter()
            .any(|s| s == ".symtab" || s.starts_with(".debug")),
        "not stripped: {sections:?}"
    );

    let plist = std::fs::read_to_string(bundle.join("Contents/Info.plist")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    for expected in [
        "<string>Soragen.ofx</string>",
        "<string>BNDL</string>",
        &format!("<string>{version}</string>"),
    ] {
        assert!(plist.contains(expected), "Info.plist lacks {expected}");
    }
    for id in [EXTEND, INSERT, REPLACE_BACKGROUND, GENERATE] {
        let icon =
            std::fs::read(Path::new(&bundle).join(format!("Contents/Resources/{id}.png"))).unwrap();
        assert!(icon.starts_with(b"\x89PNG\r\n\x1a\n"), "{id}.png is a PNG");
    }

    let host = common::host(Profile::RESOLVE);
    assert_eq!(
        host.identifiers(),
        [EXTEND, INSERT, REPLACE_BACKGROUND, GENERATE]
    );
    for id in host.identifiers() {
        host.describe(&id).unwrap();
    }
}
