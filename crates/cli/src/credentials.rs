//! Content Credentials (C2PA): signed manifests that say which frames of an output were
//! generated, by which model, from which prompt (its SHA-256 unless asked otherwise), read back
//! by any C2PA reader (`soragen credentials show`, `c2patool`).
//!
//! Embedded in `.mp4` and `.mov` outputs (the formats the `c2pa` crate embeds in that we write);
//! other outputs keep the unsigned JSON record beside them.

use std::path::{Path, PathBuf};

use c2pa::{Builder, BuilderIntent, DigitalSourceType, Ingredient, Reader, SigningAlg};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use soragen_core::{Error, Result};

/// The assertion that holds what Soragen generated, beside the standard `c2pa.actions`.
pub(crate) const GENERATION_LABEL: &str = "org.soragen.generation";

#[derive(Args, Clone, Debug, Default)]
pub struct SigningArgs {
    /// Certificate chain (PEM, signing certificate first) that signs the output's Content
    /// Credentials (C2PA); with --sign-key. Embedded in .mp4/.mov outputs.
    #[arg(long, env = "SORAGEN_SIGN_CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8) of --sign-cert.
    #[arg(long, env = "SORAGEN_SIGN_KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The key's signature algorithm.
    #[arg(long, default_value = "es256", value_parser = ["es256", "es384", "ps256", "ed25519"])]
    sign_alg: String,
    /// Put the prompt itself in the credentials (by default only its SHA-256).
    #[arg(long)]
    credentials_prompt: bool,
}

/// A signer made from the user's certificate and key, checked before any work is done.
pub(crate) struct Credentials {
    signer: c2pa::BoxedSigner,
    with_prompt: bool,
}

fn refused(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("{what}: {e}"))
}

impl Credentials {
    /// The signer for `output`, or None when no key is given; an output that cannot carry
    /// credentials is refused here, before the work, when a key is given.
    pub(crate) fn for_output(args: &SigningArgs, output: &Path) -> Result<Option<Self>> {
        let (Some(cert), Some(key)) = (&args.sign_cert, &args.sign_key) else {
            return Ok(None);
        };
        mime_of(output).ok_or_else(|| {
            Error::Output(format!(
                "{}: Content Credentials are embedded in .mp4 and .mov outputs only (a sidecar for other outputs is not done yet)",
                output.display()
            ))
        })?;
        let alg: SigningAlg = args
            .sign_alg
            .parse()
            .map_err(|e| refused("--sign-alg", e))?;
        let read = |path: &Path| {
            soragen_models::files::read_bounded(path, 1 << 20)
                .map_err(|e| refused(&path.display().to_string(), e))
        };
        let signer = c2pa::create_signer::from_keys(&read(cert)?, &read(key)?, alg, None)
            .map_err(|e| refused("--sign-cert/--sign-key do not make a signer", e))?;
        Ok(Some(Self {
            signer,
            with_prompt: args.credentials_prompt,
        }))
    }

    /// Signs `staged` (the written output, of `output`'s kind) in place with a manifest built
    /// from the output's `record` and its `inputs` (the parent for edits).
    pub(crate) fn sign(
        &self,
        staged: &Path,
        output: &Path,
        record: &Value,
        inputs: &[&Path],
    ) -> Result<()> {
        let format = mime_of(output).expect("checked by for_output");
        let mut builder = manifest(record, output, inputs, self.with_prompt)?;
        let signed = tempfile::Builder::new()
            .suffix(&format!(
                ".{}",
                output.extension().unwrap_or_default().to_string_lossy()
            ))
            .tempfile_in(staged.parent().unwrap_or(Path::new(".")))
            .map_err(|e| Error::Output(format!("cannot sign {}: {e}", output.display())))?;
        let mut source = std::fs::File::open(staged)
            .map_err(|e| Error::Output(format!("cannot sign {}: {e}", output.display())))?;
        let mut dest = signed.reopen().map_err(|e| Error::Output(e.to_string()))?;
        builder
            .sign(self.signer.as_ref(), format, &mut source, &mut dest)
            .map_err(|e| Error::Output(format!("cannot sign {}: {e}", output.display())))?;
        signed
            .persist(staged)
            .map_err(|e| Error::Output(format!("cannot sign {}: {e}", output.display())))?;
        Ok(())
    }
}

/// Says, once a run's output is written, that it carries no signed credentials.
pub(crate) fn say_unsigned(output: &Path) {
    eprintln!(
        "soragen: {} is not signed (no --sign-cert/--sign-key): its record {} says what was generated",
        output.display(),
        soragen_core::output::record_path(output).display()
    );
}

/// The C2PA format of an output we embed credentials in.
fn mime_of(output: &Path) -> Option<&'static str> {
    match output
        .extension()?
        .to_string_lossy()
        .to_ascii_lowercase()
        .as_str()
    {
        "mp4" => Some("video/mp4"),
        "mov" => Some("video/quicktime"),
        _ => None,
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tasks that make every frame (the rest edit a source clip).
fn creates(task: &str) -> bool {
    matches!(task, "generate" | "animate")
}

/// The manifest for an output whose record is `record`: an edit (c2pa.opened of the source,
/// then c2pa.edited with `compositeWithTrainedAlgorithmicMedia`) or a creation
/// (`trainedAlgorithmicMedia`), and Soragen's own assertion with the generated frame ranges.
fn manifest(record: &Value, output: &Path, inputs: &[&Path], with_prompt: bool) -> Result<Builder> {
    let task = record["task"].as_str().unwrap_or_default();
    let params = &record["params"];
    let prompt = params["prompt"].as_str().unwrap_or_default();
    let mut generation = json!({
        "task": task,
        "model": record["model"],
        // Half-open frame ranges of the output that the model made.
        "generated": record["generated"],
        "prompt_sha256": sha256_hex(prompt),
        "seed": params["seed"],
        "steps": params["steps"],
        "guidance": params["guidance"],
        "adapters": record.get("adapters").cloned().unwrap_or(json!([])),
        "references": record.get("references").map_or(0, |r| r.as_array().map_or(0, Vec::len)),
    });
    if with_prompt {
        generation["prompt"] = prompt.into();
    }
    if task == "replace-background" {
        generation["region"] = "background".into();
    }
    let agent = json!({"name": "soragen", "version": env!("CARGO_PKG_VERSION")});
    let definition = json!({
        "claim_generator_info": [agent],
        "title": output.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    let failed =
        |e: c2pa::Error| Error::Output(format!("cannot describe {}: {e}", output.display()));
    let mut builder = Builder::from_context(c2pa::Context::new())
        .with_definition(definition)
        .map_err(failed)?;
    let ranges = record["generated"].to_string();
    if creates(task) {
        builder.set_intent(BuilderIntent::Create(
            DigitalSourceType::TrainedAlgorithmicMedia,
        ));
    } else {
        builder.set_intent(BuilderIntent::Edit);
        let source = inputs.first().copied().unwrap_or(Path::new("source"));
        let parent = json!({
            "title": source.file_name().map(|n| n.to_string_lossy().into_owned()),
            "format": mime_of(source).unwrap_or("application/octet-stream"),
            "relationship": "parentOf",
        });
        builder.add_ingredient(Ingredient::from_json(&parent.to_string()).map_err(failed)?);
        builder
            .add_action(json!({
                "action": "c2pa.edited",
                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
                "softwareAgent": agent,
                "description": format!("{task}: output frames {ranges} generated"),
            }))
            .map_err(failed)?;
    }
    builder
        .add_assertion_json(GENERATION_LABEL, &generation)
        .map_err(failed)?;
    Ok(builder)
}

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Prints the Content Credentials a file carries and whether they validate.
    Show {
        file: PathBuf,
        /// Certificates (PEM) to trust besides the C2PA trust list, e.g. your own CA's.
        #[arg(long)]
        trust_anchors: Option<PathBuf>,
    },
}

pub fn run(command: CredentialsCommand) -> Result<()> {
    match command {
        CredentialsCommand::Show {
            file,
            trust_anchors,
        } => {
            let reader = read(&file, trust_anchors.as_deref())?;
            println!("{}", reader.json());
            println!("validation: {:?}", reader.validation_state());
            Ok(())
        }
    }
}

/// The credentials `file` carries, validated (against `trust_anchors` too, where given).
pub fn read(file: &Path, trust_anchors: Option<&Path>) -> Result<Reader> {
    let mut settings = json!({});
    if let Some(path) = trust_anchors {
        let pem = soragen_models::files::read_text(path, 1 << 20)
            .map_err(|e| refused(&path.display().to_string(), e))?;
        settings["trust"] = json!({ "trust_anchors": pem });
    }
    let context = c2pa::Context::new()
        .with_settings(settings)
        .map_err(|e| Error::Input(format!("trust anchors: {e}")))?;
    Reader::from_context(context)
        .with_file(file)
        .map_err(|e| match e {
            c2pa::Error::JumbfNotFound => {
                Error::Input(format!("{} carries no Content Credentials", file.display()))
            }
            e => Error::Input(format!("{}: {e}", file.display())),
        })
}
