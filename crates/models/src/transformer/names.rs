//! Tensor names of the original Wan releases (`WanModel`, `VaceWanModel`) versus diffusers,
//! text-to-video and VACE tensors (the map of diffusers' `convert_wan_to_diffusers.py`).

/// Renames at the start of a top-level (non-block) name: (original, diffusers).
const TOP_LEVEL: &[(&[&str], &[&str])] = &[
    (
        &["time_embedding", "0"],
        &["condition_embedder", "time_embedder", "linear_1"],
    ),
    (
        &["time_embedding", "2"],
        &["condition_embedder", "time_embedder", "linear_2"],
    ),
    (
        &["text_embedding", "0"],
        &["condition_embedder", "text_embedder", "linear_1"],
    ),
    (
        &["text_embedding", "2"],
        &["condition_embedder", "text_embedder", "linear_2"],
    ),
    (
        &["time_projection", "1"],
        &["condition_embedder", "time_proj"],
    ),
    (&["head", "head"], &["proj_out"]),
    (&["head", "modulation"], &["scale_shift_table"]),
];

/// Renames of path segments inside `blocks.N.` and `vace_blocks.N.`: (original, diffusers).
/// The original `norm3` is the cross-attention norm, diffusers' `norm2`, and vice versa.
const IN_BLOCK: &[(&[&str], &[&str])] = &[
    (&["self_attn"], &["attn1"]),
    (&["cross_attn"], &["attn2"]),
    (&["q"], &["to_q"]),
    (&["k"], &["to_k"]),
    (&["v"], &["to_v"]),
    (&["o"], &["to_out", "0"]),
    (&["ffn", "0"], &["ffn", "net", "0", "proj"]),
    (&["ffn", "2"], &["ffn", "net", "2"]),
    (&["norm2"], &["norm3"]),
    (&["norm3"], &["norm2"]),
    (&["modulation"], &["scale_shift_table"]),
    (&["before_proj"], &["proj_in"]),
    (&["after_proj"], &["proj_out"]),
];

/// Prefix of the original checkpoints as some tools repackage them.
const ORIGINAL_PREFIX: &str = "model.diffusion_model.";

/// Maps an original Wan tensor name (e.g. `blocks.0.self_attn.q.weight`) to its diffusers name
/// (`blocks.0.attn1.to_q.weight`). Names it does not know pass through unchanged.
pub fn original_to_diffusers_name(name: &str) -> String {
    rename(name.strip_prefix(ORIGINAL_PREFIX).unwrap_or(name), true)
}

/// Maps a diffusers tensor name to the original Wan name: the function to give
/// `VarBuilder::rename_f` so the diffusers-named model loads original-named weights.
pub fn diffusers_to_original_name(name: &str) -> String {
    rename(name, false)
}

fn rename(name: &str, from_original: bool) -> String {
    let segments: Vec<&str> = name.split('.').collect();
    let in_block = matches!(segments.first(), Some(&"blocks" | &"vace_blocks"));
    let (table, first_renamed) = if in_block {
        (IN_BLOCK, 2)
    } else {
        (TOP_LEVEL, 0)
    };
    let mut renamed: Vec<&str> = segments[..first_renamed.min(segments.len())].to_vec();
    let mut i = renamed.len();
    while i < segments.len() {
        let rule = table.iter().find_map(|&(original, diffusers)| {
            let (from, to) = if from_original {
                (original, diffusers)
            } else {
                (diffusers, original)
            };
            segments[i..].starts_with(from).then_some((from.len(), to))
        });
        match rule {
            Some((matched, to)) => {
                renamed.extend_from_slice(to);
                i += matched;
            }
            None => {
                renamed.push(segments[i]);
                i += 1;
            }
        }
        // Top-level names are only renamed at their start.
        if !in_block {
            renamed.extend_from_slice(&segments[i..]);
            break;
        }
    }
    renamed.join(".")
}
