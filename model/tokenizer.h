/*
 * model/tokenizer.h: text <-> token ids for the vocabularies formats/vocab.h
 * reads (SentencePiece BPE, tokenizer.json BPE over "▁"-escaped text, and
 * byte-level BPE).
 *
 * Encoding, by vocabulary kind:
 *  - QT_VOCAB_SPM (tokenizer.model): as llama.cpp's llm_tokenizer_spm and
 *    SentencePiece's BPE: spaces become "▁", a "▁" is prepended
 *    (add_dummy_prefix), the text is cut into UTF-8 characters and the
 *    adjacent pair whose concatenation is a piece with the highest score is
 *    merged first (ties: leftmost). Characters that end up in no piece become
 *    their <0xXX> byte tokens (byte fallback) or unk.
 *  - QT_VOCAB_BPE_SPM (tokenizer.json): the same escaping, then Hugging Face
 *    BPE: characters (or their byte tokens) merged by lowest merge rank.
 *  - QT_VOCAB_BPE_BYTE (tokenizer.json): the text is cut into words by the
 *    GPT-2 / Llama 3 / Qwen2 split pattern (implemented by hand over code
 *    points with the Unicode tables of model/unicode_tables.c), each byte is
 *    mapped through the GPT-2 byte-to-unicode table, and the word is merged
 *    by rank.
 *  Each merge loop is a linked list of symbols plus a binary heap of
 *  candidate pairs: O(n log n) in the length of the word.
 *  Added tokens (tokenizer.json added_tokens, SentencePiece user-defined
 *  pieces) are matched literally in the text first, longest match first; the
 *  text between them is encoded as above (each text segment gets the dummy
 *  prefix unless the vocab says "first only"). Their lstrip / rstrip /
 *  single_word / normalized options are not applied. No Unicode
 *  normalization (NFC, NFKC) is performed.
 *
 * Decoding: "▁" becomes a space, <0xXX> tokens become the raw byte, byte-level
 * tokens are mapped back to bytes, control tokens (BOS, EOS, special added
 * tokens) decode to nothing and unk to " \xe2\x81\x87 " (" ⁇ ", as
 * SentencePiece). When the vocab adds a dummy prefix, the space that starts
 * the first piece of text is dropped, so decode(encode(s)) == s. Bytes are
 * returned as they are, even when they are not valid UTF-8.
 *
 * Thread-safety: a tokenizer is immutable after qt_tokenizer_new; encode and
 * decode may run concurrently on one tokenizer (each call allocates its own
 * scratch). The tokenizer copies what it needs: the vocab may be freed after
 * qt_tokenizer_new returns.
 *
 * What this module does not do: read files (formats/vocab.h does), apply
 * chat templates, or sample.
 */
#ifndef QT_MODEL_TOKENIZER_H
#define QT_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/vocab.h"

typedef struct qt_tokenizer qt_tokenizer;

/* Builds a tokenizer (hash maps of the token texts and merge pairs, decoded
 * pieces) from v, which is borrowed for the call only.
 * On success *out is the tokenizer; caller frees with qt_tokenizer_free.
 * @return QT_OK, QT_ERR_NOMEM, QT_ERR_ARG (v NULL, empty, an unknown kind, or
 *         a byte-level vocab that lacks one of the 256 byte characters). */
qt_status qt_tokenizer_new(const qt_vocab *v, qt_tokenizer **out);

/* Encodes text[0..len) (UTF-8; invalid bytes are encoded as bytes) into
 * token ids, with the BOS id first when add_bos is true and the vocab has
 * one. On success *ids is a new array of *n_ids ids that the caller frees
 * with qt_free (NULL when *n_ids is 0). On failure *ids is NULL, *n_ids 0.
 * @return QT_OK, QT_ERR_NOMEM, QT_ERR_ARG (NULL arguments, or a character
 *         the vocab cannot represent: no piece, no byte fallback, no unk). */
qt_status qt_tokenizer_encode(const qt_tokenizer *tok, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids);

/* Decodes ids[0..n) into *text (NUL-terminated, *len bytes without the
 * NUL); the caller frees *text with qt_free. See the header comment for the
 * rules (leading dummy-prefix space dropped, control tokens skipped).
 * @return QT_OK, QT_ERR_NOMEM, QT_ERR_ARG (NULL arguments or an id out of
 *         range). */
qt_status qt_tokenizer_decode(const qt_tokenizer *tok, const int32_t *ids, size_t n, char **text,
                              size_t *len);

/* The bytes one token decodes to, for streaming output. at_start says that no
 * text has been produced yet: the dummy-prefix space is then dropped. A
 * control token gives an empty piece (the caller keeps at_start as it was).
 * *piece is borrowed, valid until qt_tokenizer_free; not NUL-terminated.
 * @return QT_OK, QT_ERR_ARG (id out of range). */
qt_status qt_tokenizer_piece(const qt_tokenizer *tok, int32_t id, bool at_start,
                             const char **piece, size_t *len);

/* Token count and special ids (-1 when none); add_bos as the vocab says. */
size_t qt_tokenizer_n_tokens(const qt_tokenizer *tok);
int32_t qt_tokenizer_bos(const qt_tokenizer *tok);
int32_t qt_tokenizer_eos(const qt_tokenizer *tok);
bool qt_tokenizer_add_bos(const qt_tokenizer *tok);

/* Frees the tokenizer. Accepts NULL. */
void qt_tokenizer_free(qt_tokenizer *tok);

/* Unicode classes used by the byte-level pre-tokenizers (model/unicode_tables.c),
 * exposed for tests: general category L*, N*, and the White_Space property. */
bool qt_unicode_is_letter(uint32_t cp);
bool qt_unicode_is_number(uint32_t cp);
bool qt_unicode_is_space(uint32_t cp);

#endif /* QT_MODEL_TOKENIZER_H */
