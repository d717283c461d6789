//! `tempo convert`: checkpoints between PyTorch's `.pt` and tempo's format, both ways.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tempo::ckpt::{convert_checked, detect_format, Format};

use crate::Outcome;

const AFTER_HELP: &str = "\
The input's format is detected from its content (a torch.save zip, a tempo checkpoint,
or a plain safetensors file such as Hugging Face's model.safetensors); the output's
from its extension: .pt, .pth, .bin or .ckpt for PyTorch (torch.load(path,
weights_only=True) reads it), .tempo for tempo's format (a safetensors file with
versioned metadata), .safetensors for a plain safetensors file (a dict of named
tensors only). Every value, dtype, shape
and key order is kept; the output is read back and compared with the input bit for
bit (NaNs included) before it takes OUT's name, so a failed conversion leaves no file
behind and never replaces an existing OUT.

Examples:
  tempo convert seed_epoch5_float32.pt seed_epoch5_float32.tempo
  tempo convert runs/a/ckpt-000000000675.tempo final.pt";

/// Arguments of `tempo convert`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ConvertArgs {
    /// The checkpoint to read (.pt or .tempo).
    #[arg(value_name = "IN")]
    pub(crate) input: PathBuf,
    /// The checkpoint to write: .pt/.pth (PyTorch) or .tempo.
    #[arg(value_name = "OUT")]
    pub(crate) output: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long, short)]
    pub(crate) force: bool,
}

fn name(format: Format) -> &'static str {
    match format {
        Format::Torch => "PyTorch .pt",
        Format::Tempo => "tempo",
        Format::Safetensors => "safetensors",
        _ => "checkpoint",
    }
}

/// Runs `tempo convert`.
pub(crate) fn run(args: &ConvertArgs) -> Result<Outcome> {
    let out_format = match args.output.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth" | "bin" | "ckpt") => Format::Torch,
        Some("tempo") => Format::Tempo,
        Some("safetensors") => Format::Safetensors,
        _ => bail!(
            "cannot tell which format to write {}: expected a name ending in .pt, .pth, .bin, .ckpt, .tempo or .safetensors",
            args.output.display()
        ),
    };
    if !args.input.exists() {
        bail!("{} does not exist", args.input.display());
    }
    if args.output.exists() && !args.force {
        bail!(
            "{} exists already: pass --force to replace it",
            args.output.display()
        );
    }
    if args.output.canonicalize().ok() == Some(args.input.canonicalize()?) {
        bail!("IN and OUT are the same file");
    }
    let in_format = detect_format(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    // Written to a temporary file, read back and compared bit for bit before it takes
    // OUT's name: a failure leaves no file, and an existing OUT as it was.
    convert_checked(&args.input, &args.output, args.force).with_context(|| {
        format!(
            "cannot convert {} into {}",
            args.input.display(),
            args.output.display()
        )
    })?;
    println!(
        "converted {} ({}) into {} ({}); it reads back identical",
        args.input.display(),
        name(in_format),
        args.output.display(),
        name(out_format)
    );
    Ok(Outcome::Done)
}
