//! `soragen models list|fetch|verify`: the models in the Hugging Face cache, fetching one, and
//! checking a model folder against what the model needs.

use std::path::PathBuf;

use clap::Subcommand;
use soragen_core::hub::{Hub, ModelId};
use soragen_core::model::WanVace;
use soragen_core::{Error, Result};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// The models in the Hugging Face cache, with their size, state and folder.
    List,
    /// Fetches (or brings up to date) a repository's model files into the Hugging Face cache
    /// and prints the model folder.
    Fetch {
        /// A repository id: owner/name[@revision], e.g. Wan-AI/Wan2.1-VACE-1.3B-diffusers.
        id: String,
    },
    /// Checks that a model folder or cached id holds every part and every tensor the model
    /// needs, with the right shapes, and nothing unexpected (without reading the weights).
    Verify {
        /// A model folder or a repository id in the cache.
        model: String,
    },
}

/// The hub and cache the environment names, with a progress bar per file on a terminal.
pub fn hub() -> Hub {
    Hub::from_env().progress(true)
}

/// A model folder for `--model`: a folder, or a repository id, fetched when not in the cache.
pub fn model_folder(spec: &str) -> Result<PathBuf> {
    hub().resolve(spec)
}

pub fn run(command: ModelsCommand) -> Result<()> {
    let hub = hub();
    match command {
        ModelsCommand::List => {
            let models = hub.list();
            if models.is_empty() {
                println!("no models in {}", hub.cache().display());
            }
            for model in models {
                let state = if model.complete {
                    "complete"
                } else {
                    "incomplete"
                };
                let size = model.bytes as f64 / 1e9;
                println!(
                    "{}\t{size:.2} GB\t{state}\t{}",
                    model.id,
                    model.folder.display()
                );
            }
            Ok(())
        }
        ModelsCommand::Fetch { id } => {
            let parsed = ModelId::parse(&id).ok_or_else(|| {
                Error::Input(format!("{id}: not a repository id (owner/name[@revision])"))
            })?;
            let folder = hub.fetch(&parsed)?;
            println!("{}", folder.display());
            Ok(())
        }
        ModelsCommand::Verify { model } => {
            let folder = hub.find(&model)?;
            WanVace::verify(&folder)?;
            println!("{}: a complete Wan2.1-VACE model", folder.display());
            Ok(())
        }
    }
}
