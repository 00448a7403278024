//! `config.json` of a Hugging Face decoder to a [`DecoderConfig`] and back. Fields this crate
//! does not model but which change the function (sliding windows, unusual rotary scalings,
//! attention scaled by layer) are refused with the field named, never ignored.

use serde_json::{Map, Value};

use crate::ModelsError;
use crate::decoder::{DecoderConfig, DecoderFamily};

/// Largest size any config field may declare (a guard before anything is allocated).
const MAX_DIM: u64 = 1 << 24;

fn invalid(message: String) -> ModelsError {
    ModelsError::InvalidConfig(format!("config.json: {message}"))
}

/// A positive integer field, bounded.
fn size(config: &Map<String, Value>, key: &str) -> Result<usize, ModelsError> {
    match config.get(key) {
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0 && n <= MAX_DIM)
            .map(|n| n as usize)
            .ok_or_else(|| {
                invalid(format!(
                    "`{key}` is {v}, expected a size from 1 to {MAX_DIM}"
                ))
            }),
        None => Err(invalid(format!("`{key}` is missing"))),
    }
}

/// An optional size: `None` when absent or null.
fn size_or(config: &Map<String, Value>, key: &str) -> Result<Option<usize>, ModelsError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => size(config, key).map(Some),
    }
}

fn float_or(config: &Map<String, Value>, key: &str, default: f64) -> Result<f64, ModelsError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| invalid(format!("`{key}` is {v}, expected a positive number"))),
    }
}

fn flag_or(config: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ModelsError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid(format!("`{key}` is {v}, expected true or false"))),
    }
}

/// The end-of-text id: `eos_token_id` as a number, or the first of a list.
pub fn eos_token_id(config: &Value) -> Option<u32> {
    let v = config.get("eos_token_id")?;
    let first = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    first.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Parses `config.json`; `model_type` picks the layout (`gpt2`; `llama`, `qwen2`, `mistral`
/// without a sliding window).
pub fn parse(json: &str) -> Result<DecoderConfig, ModelsError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let config = value
        .as_object()
        .ok_or_else(|| invalid("expected a JSON object".into()))?;
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no `model_type`".into()))?;
    let parsed = match model_type {
        "gpt2" => gpt2(config)?,
        "llama" | "qwen2" | "mistral" => llama(config, model_type)?,
        other => {
            return Err(ModelsError::InvalidConfig(format!(
                "model_type `{other}` is not supported; supported: gpt2, llama (and the \
                 llama-shaped qwen2, mistral)"
            )));
        }
    };
    parsed.validate()?;
    Ok(parsed)
}

fn gpt2(c: &Map<String, Value>) -> Result<DecoderConfig, ModelsError> {
    let act = c.get("activation_function").and_then(Value::as_str);
    if !matches!(act, None | Some("gelu_new" | "gelu_pytorch_tanh")) {
        return Err(invalid(format!(
            "activation_function {act:?} is not supported (gelu_new, gelu_pytorch_tanh)"
        )));
    }
    if !flag_or(c, "scale_attn_weights", true)?
        || flag_or(c, "scale_attn_by_inverse_layer_idx", false)?
    {
        return Err(invalid(
            "attention scores scaled other than by 1/√head_dim (scale_attn_weights false or \
             scale_attn_by_inverse_layer_idx true) are not supported"
                .into(),
        ));
    }
    if flag_or(c, "add_cross_attention", false)? {
        return Err(invalid(
            "cross-attention (an encoder-decoder GPT-2) is not supported".into(),
        ));
    }
    let hidden = size(c, "n_embd")?;
    let heads = size(c, "n_head")?;
    if hidden % heads != 0 {
        return Err(invalid(format!(
            "n_embd {hidden} does not split into {heads} heads"
        )));
    }
    let mut out = DecoderConfig::gpt2(
        size(c, "vocab_size")?,
        hidden,
        size(c, "n_layer")?,
        heads,
        size(c, "n_positions")?,
    );
    out.intermediate = size_or(c, "n_inner")?.unwrap_or(4 * hidden);
    out.norm_eps = float_or(c, "layer_norm_epsilon", 1e-5)?;
    out.tied = flag_or(c, "tie_word_embeddings", true)?;
    Ok(out)
}

fn llama(c: &Map<String, Value>, model_type: &str) -> Result<DecoderConfig, ModelsError> {
    let act = c.get("hidden_act").and_then(Value::as_str);
    if !matches!(act, None | Some("silu")) {
        return Err(invalid(format!(
            "hidden_act {act:?} is not supported (silu)"
        )));
    }
    let window = c.get("sliding_window").filter(|v| !v.is_null());
    let windowed = match model_type {
        "qwen2" => flag_or(c, "use_sliding_window", false)? && window.is_some(),
        _ => window.is_some(),
    };
    if windowed {
        return Err(invalid("sliding-window attention is not supported".into()));
    }
    let hidden = size(c, "hidden_size")?;
    let heads = size(c, "num_attention_heads")?;
    let kv_heads = size_or(c, "num_key_value_heads")?.unwrap_or(heads);
    let mut out = DecoderConfig::llama(
        size(c, "vocab_size")?,
        hidden,
        size(c, "num_hidden_layers")?,
        heads,
        kv_heads,
        size(c, "intermediate_size")?,
        size(c, "max_position_embeddings")?,
    );
    out.head_dim = size_or(c, "head_dim")?.unwrap_or(hidden / heads);
    out.norm_eps = float_or(c, "rms_norm_eps", 1e-6)?;
    out.tied = flag_or(c, "tie_word_embeddings", false)?;
    let bias = flag_or(c, "attention_bias", false)?;
    (out.qkv_bias, out.out_bias) = match model_type {
        // Qwen2 biases q, k and v only.
        "qwen2" => (true, false),
        _ => (bias, bias),
    };
    out.mlp_bias = flag_or(c, "mlp_bias", false)?;
    // transformers 5 nests the rotary settings in `rope_parameters`; 4.x has `rope_theta`
    // and `rope_scaling`.
    let nested = c.get("rope_parameters").and_then(Value::as_object);
    let rope = nested.unwrap_or(c);
    out.rope_theta = float_or(rope, "rope_theta", float_or(c, "rope_theta", 10_000.0)?)?;
    let scaling = match nested {
        Some(p) => Some(p),
        None => c.get("rope_scaling").and_then(Value::as_object),
    };
    if let Some(s) = scaling {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "default" => {}
            "linear" => out.rope_position_scale = float_or(s, "factor", 1.0)?,
            other => {
                return Err(invalid(format!(
                    "rotary scaling `{other}` is not supported (none or linear)"
                )));
            }
        }
    }
    Ok(out)
}

/// `config.json` for `decoder`, starting from the one it was imported with (`original`, whose
/// other fields travel back) and overwriting every field the graph decides.
pub fn write(decoder: &DecoderConfig, original: &Value) -> Value {
    let mut c = original.as_object().cloned().unwrap_or_default();
    let mut set = |key: &str, v: Value| {
        c.insert(key.to_string(), v);
    };
    set("vocab_size", decoder.vocab_size.into());
    set("tie_word_embeddings", decoder.tied.into());
    match decoder.family {
        DecoderFamily::Gpt2 => {
            set("model_type", "gpt2".into());
            set("architectures", serde_json::json!(["GPT2LMHeadModel"]));
            set("n_embd", decoder.hidden.into());
            set("n_layer", decoder.layers.into());
            set("n_head", decoder.heads.into());
            set("n_inner", decoder.intermediate.into());
            set("n_positions", decoder.max_positions.into());
            set("layer_norm_epsilon", decoder.norm_eps.into());
            set("activation_function", "gelu_new".into());
        }
        DecoderFamily::Llama => {
            if !original
                .get("model_type")
                .is_some_and(|t| t == "qwen2" || t == "mistral")
            {
                set("model_type", "llama".into());
                set("architectures", serde_json::json!(["LlamaForCausalLM"]));
                set("attention_bias", decoder.qkv_bias.into());
            }
            set("hidden_size", decoder.hidden.into());
            set("num_hidden_layers", decoder.layers.into());
            set("num_attention_heads", decoder.heads.into());
            set("num_key_value_heads", decoder.kv_heads.into());
            set("head_dim", decoder.head_dim.into());
            set("intermediate_size", decoder.intermediate.into());
            set("max_position_embeddings", decoder.max_positions.into());
            set("rms_norm_eps", decoder.norm_eps.into());
            set("mlp_bias", decoder.mlp_bias.into());
            set("hidden_act", "silu".into());
            let rope = if decoder.rope_position_scale == 1.0 {
                serde_json::json!({"rope_type": "default", "rope_theta": decoder.rope_theta})
            } else {
                serde_json::json!({"rope_type": "linear", "factor": decoder.rope_position_scale, "rope_theta": decoder.rope_theta})
            };
            set("rope_parameters", rope);
            set("rope_theta", decoder.rope_theta.into());
            c.remove("rope_scaling");
        }
    }
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rotary_layouts_and_refusals() {
        let v5 = r#"{"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,
            "rope_parameters":{"rope_theta":5000.0,"rope_type":"default"}}"#;
        let c = parse(v5).unwrap();
        assert_eq!((c.rope_theta, c.kv_heads, c.head_dim), (5000.0, 2, 8));
        let v4 = v5.replace(
            r#""rope_parameters":{"rope_theta":5000.0,"rope_type":"default"}"#,
            r#""rope_theta":500000.0,"rope_scaling":{"type":"linear","factor":4.0}"#,
        );
        let c = parse(&v4).unwrap();
        assert_eq!((c.rope_theta, c.rope_position_scale), (500000.0, 4.0));
        let yarn = v4.replace("linear", "yarn");
        assert!(parse(&yarn).unwrap_err().to_string().contains("yarn"));
        let bert = r#"{"model_type":"bert"}"#;
        assert!(parse(bert).unwrap_err().to_string().contains("bert"));
        let huge = v5.replace(r#""vocab_size":100"#, r#""vocab_size":99999999999"#);
        assert!(parse(&huge).unwrap_err().to_string().contains("vocab_size"));
        let missing = v5.replace(r#""hidden_size":32,"#, "");
        assert!(
            parse(&missing)
                .unwrap_err()
                .to_string()
                .contains("hidden_size")
        );
    }
}
