/*
 * tests/fuzz/fuzz_tokenizer_json.c: libFuzzer harness for the Hugging Face
 * tokenizer.json loader (qt_vocab_load_hf_json_mem). A vocabulary that
 * loads is turned into a tokenizer that encodes and decodes a short mixed
 * string (ASCII, accents, CJK, digits, an invalid byte, special-token text)
 * and streams every piece: whatever the file says, nothing may read out of
 * bounds, loop or crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "formats/vocab.h"
#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char sample[] = "Hello world, h\xc3\xa9llo  123 \xe4\xb8\xad\xff<s></s> <unk>'s\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qt_vocab *v = NULL;
    qt_tokenizer *tok = NULL;
    char err[QT_ERRMSG_SIZE];
    if (qt_vocab_load_hf_json_mem((const char *)data, size, "fuzz", NULL, &v, err) != QT_OK) {
        if (getenv("QT_FUZZ_VERBOSE")) fprintf(stderr, "rejected: %s\n", err);
        return 0;
    }
    if (qt_tokenizer_new(v, &tok) == QT_OK) {
        int32_t *ids = NULL;
        size_t n = 0, len = 0;
        char *text = NULL;
        if (qt_tokenizer_encode(tok, sample, sizeof sample - 1, true, &ids, &n) == QT_OK) {
            if (qt_tokenizer_decode(tok, ids, n, &text, &len) == QT_OK) qt_free(text);
            bool at_start = true;
            for (size_t i = 0; i < n; i++) {
                const char *piece;
                size_t pl;
                if (qt_tokenizer_piece(tok, ids[i], at_start, &piece, &pl) != QT_OK)
                    __builtin_trap(); /* encode produced an id decode refuses */
                if (pl) at_start = false;
            }
            qt_free(ids);
        }
        qt_tokenizer_free(tok);
    } else if (getenv("QT_FUZZ_VERBOSE")) {
        fprintf(stderr, "tokenizer refused the vocab\n");
    }
    qt_vocab_free(v);
    return 0;
}
