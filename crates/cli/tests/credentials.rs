//! Content Credentials (C2PA) on CLI outputs, with a certificate chain made here by the
//! `openssl` command (a CA and a signing certificate for it): the manifest embedded in an
//! `.mp4` names the generated frames, validates, is trusted with our CA as anchor, and fails to
//! validate once the video is altered. Read back by `soragen credentials show`, which uses the
//! `c2pa` crate's reader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

fn testcard() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/samples/testcard.y4m")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("credentials-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a P-256 signing certificate it issued (with the key usage and extended key usage
/// C2PA asks of signers): returns (chain, key, CA) paths.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("signer.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl(dir, &[&["genpkey"][..], &ec, &["-out", "ca.key"]].concat());
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=Soragen Test CA/O=Soragen",
            "-out",
            "ca.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "30", "-sha256",
            "-extfile", "ca.ext", "-out", "ca.pem",
        ],
    );
    openssl(
        dir,
        &[&["genpkey"][..], &ec, &["-out", "signer.key"]].concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "signer.key",
            "-subj",
            "/CN=Soragen Test Signer/O=Soragen",
            "-out",
            "signer.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "signer.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "signer.ext",
            "-out",
            "signer.pem",
        ],
    );
    let chain = [
        std::fs::read_to_string(dir.join("signer.pem")).unwrap(),
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    (
        dir.join("chain.pem"),
        dir.join("signer.key"),
        dir.join("ca.pem"),
    )
}

fn soragen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(args)
        .env_remove("SORAGEN_SIGN_CERT")
        .env_remove("SORAGEN_SIGN_KEY")
        .output()
        .unwrap()
}

fn task(args: &[&str], output: &Path, signing: &[&str]) -> Output {
    let tiny = tiny();
    let mut all = args.to_vec();
    all.extend([
        "--model",
        tiny.to_str().unwrap(),
        "--steps",
        "1",
        "--guidance",
        "1",
        "--working-pixels",
        "512",
        "--prompt",
        "a lighthouse",
        "--output",
        output.to_str().unwrap(),
    ]);
    all.extend(signing);
    soragen(&all)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `soragen credentials show FILE [--trust-anchors CA]`: the manifest store's JSON and the
/// validation state.
fn show(file: &Path, anchors: Option<&Path>) -> (serde_json::Value, String) {
    let mut args = vec!["credentials", "show", file.to_str().unwrap()];
    if let Some(anchors) = anchors {
        args.extend(["--trust-anchors", anchors.to_str().unwrap()]);
    }
    let out = soragen(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let (json, state) = text.rsplit_once("validation: ").expect("a validation line");
    (
        serde_json::from_str(json).unwrap(),
        state.trim().to_string(),
    )
}

/// The active manifest's assertion labelled `label`.
fn assertion<'a>(store: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    let active = store["active_manifest"].as_str().unwrap();
    store["manifests"][active]["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["label"] == label)
        .map(|a| &a["data"])
        .unwrap_or_else(|| panic!("no {label} in {store:#}"))
}

#[test]
fn a_signed_extension_says_which_frames_were_generated_and_validates() {
    let dir = scratch("extend");
    let (chain, key, ca) = certificates(&dir);
    let signing = [
        "--sign-cert",
        chain.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
    ];
    let out = dir.join("extended.mp4");
    let input = testcard();
    let run = task(
        &[
            "extend",
            "--input",
            input.to_str().unwrap(),
            "--frames",
            "4",
        ],
        &out,
        &signing,
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(!stderr(&run).contains("not signed"), "{}", stderr(&run));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("extended.mp4.json")).unwrap())
            .unwrap();

    let (store, state) = show(&out, Some(&ca));
    assert_eq!(state, "Trusted", "{store:#}");
    let generation = assertion(&store, "org.soragen.generation");
    assert_eq!(generation["generated"], record["generated"]);
    assert_eq!(generation["task"], "extend-forward");
    assert!(generation.get("prompt").is_none(), "only the prompt's hash");
    assert_eq!(
        generation["prompt_sha256"].as_str().unwrap().len(),
        64,
        "{generation}"
    );
    let actions = assertion(&store, "c2pa.actions.v2")["actions"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = actions
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c2pa.opened", "c2pa.edited"], "{actions:#?}");
    assert!(
        actions[1]["digitalSourceType"]
            .as_str()
            .unwrap()
            .ends_with("compositeWithTrainedAlgorithmicMedia")
    );

    // Without our CA as an anchor the signature still validates, but is not trusted.
    assert_eq!(show(&out, None).1, "Valid");

    // One changed byte near the end of the video (its frames): the hash no longer matches.
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    let altered = dir.join("altered.mp4");
    std::fs::write(&altered, bytes).unwrap();
    assert_eq!(show(&altered, Some(&ca)).1, "Invalid");
}

#[test]
fn a_generated_clip_is_created_by_a_trained_model_and_may_carry_its_prompt() {
    let dir = scratch("generate");
    let (chain, key, ca) = certificates(&dir);
    let out = dir.join("made.mov");
    let run = task(
        &[
            "generate", "--frames", "5", "--width", "32", "--height", "32",
        ],
        &out,
        &[
            "--sign-cert",
            chain.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--credentials-prompt",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (store, state) = show(&out, Some(&ca));
    assert_eq!(state, "Trusted");
    let actions = &assertion(&store, "c2pa.actions.v2")["actions"];
    assert_eq!(actions[0]["action"], "c2pa.created", "{actions:#}");
    assert!(
        actions[0]["digitalSourceType"]
            .as_str()
            .unwrap()
            .ends_with("/trainedAlgorithmicMedia")
    );
    let generation = assertion(&store, "org.soragen.generation");
    assert_eq!(generation["prompt"], "a lighthouse");
    assert_eq!(
        generation["generated"],
        serde_json::json!([{"start": 0, "end": 5}])
    );
}

#[test]
fn unsigned_outputs_say_so_and_unsignable_ones_are_refused_before_any_work() {
    let dir = scratch("unsigned");
    let input = testcard();
    let extend = [
        "extend",
        "--input",
        input.to_str().unwrap(),
        "--frames",
        "4",
    ];
    let out = dir.join("plain.mp4");
    let run = task(&extend, &out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("is not signed"), "{}", stderr(&run));
    let shown = soragen(&["credentials", "show", out.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(
        stderr(&shown).contains("carries no Content Credentials"),
        "{}",
        stderr(&shown)
    );

    let (chain, key, _) = certificates(&dir);
    let y4m = dir.join("out.y4m");
    let run = task(
        &extend,
        &y4m,
        &[
            "--sign-cert",
            chain.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains(".mp4 and .mov"), "{}", stderr(&run));
    assert!(!y4m.exists());
    // A key that is not one: refused before any work, in one line.
    let run = task(
        &extend,
        &out,
        &[
            "--sign-cert",
            chain.to_str().unwrap(),
            "--sign-key",
            chain.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim_end().lines().count(),
        1,
        "{}",
        stderr(&run)
    );
}
