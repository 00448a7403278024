//! Text to token ids and back: a Hugging Face `tokenizer.json` (read with the `tokenizers`
//! crate, pure-Rust regex backend), or bytes (ids 0–255) for models without one.

use fasterai_core::model::TextModel;

use crate::ModelsError;

/// A model's tokenizer.
pub enum Tokenizer {
    /// Each UTF-8 byte is a token.
    Bytes,
    /// A Hugging Face tokenizer.
    Hf(Box<tokenizers::Tokenizer>),
}

fn invalid(what: &str, e: impl std::fmt::Display) -> ModelsError {
    ModelsError::InvalidConfig(format!("tokenizer: {what}: {e}"))
}

impl Tokenizer {
    /// Parses a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self, ModelsError> {
        // The file comes from strangers: a panic inside the parser is an error here too.
        let parsed =
            std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(json.as_bytes()))
                .map_err(|_| invalid("tokenizer.json cannot be read", "the parser failed"))?;
        parsed
            .map(|t| Tokenizer::Hf(Box::new(t)))
            .map_err(|e| invalid("tokenizer.json cannot be read", e))
    }

    /// The tokenizer a language model carries (bytes when it has none).
    pub fn of(text: &TextModel) -> Result<Self, ModelsError> {
        match &text.tokenizer {
            Some(json) => Self::from_json(json),
            None => Ok(Tokenizer::Bytes),
        }
    }

    /// Ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Hf(t) => t.get_vocab_size(true),
        }
    }

    /// Checks that every id the tokenizer produces has a row in a table of `rows` (models may
    /// have more rows than tokens; fewer is an error).
    pub fn check_fits(&self, rows: usize) -> Result<(), ModelsError> {
        let ids = self.vocab_size();
        if ids > rows {
            return Err(ModelsError::InvalidConfig(format!(
                "the tokenizer has {ids} tokens but the model's embedding only {rows} rows: \
                 they do not belong together"
            )));
        }
        Ok(())
    }

    /// The ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelsError> {
        match self {
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| invalid("encoding failed", e)),
        }
    }

    /// The text of `ids` (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelsError> {
        match self {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.min(255) as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Tokenizer::Hf(t) => t
                .decode(ids, false)
                .map_err(|e| invalid("decoding failed", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer.json small enough to write by hand.
    const WORDS: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"[UNK]":0,"the":1,"cat":2,"sat":3},"unk_token":"[UNK]"}}"#;

    #[test]
    fn word_level_and_byte_tokenizers_round_trip() {
        let t = Tokenizer::from_json(WORDS).unwrap();
        assert_eq!(t.encode("the cat sat").unwrap(), vec![1, 2, 3]);
        assert_eq!(t.encode("the dog").unwrap(), vec![1, 0]);
        assert_eq!(t.vocab_size(), 4);
        assert!(t.check_fits(4).is_ok());
        assert!(
            t.check_fits(3)
                .unwrap_err()
                .to_string()
                .contains("4 tokens")
        );
        let b = Tokenizer::Bytes;
        let ids = b.encode("héllo").unwrap();
        assert_eq!(ids.len(), 6);
        assert_eq!(b.decode(&ids).unwrap(), "héllo");
        assert!(Tokenizer::from_json("{").is_err());
    }
}
