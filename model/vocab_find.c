/* model/vocab_find.c: which tokenizer goes with a model path. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/fsutil.h"
#include "model/model.h"

/* A file, or a folder's tokenizer.json / tokenizer.model; *v NULL when a
 * folder holds neither. */
static qt_status vocab_from(const char *path, qt_vocab **v, char *errmsg)
{
    char buf[4200];
    *v = NULL;
    if (qt_path_is_dir(path)) {
        if (snprintf(buf, sizeof buf, "%s/tokenizer.json", path) < (int)sizeof buf &&
            qt_path_is_file(buf))
            return qt_vocab_load_hf_json(buf, v, errmsg);
        if (snprintf(buf, sizeof buf, "%s/tokenizer.model", path) < (int)sizeof buf &&
            qt_path_is_file(buf))
            return qt_vocab_load_spm(buf, v, errmsg);
        return QT_OK;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return qt_vocab_load_hf_json(path, v, errmsg);
    if (qt_file_is_gguf(path)) return qt_model_gguf_vocab(path, v, errmsg);
    return qt_vocab_load_spm(path, v, errmsg);
}

qt_status qt_model_find_vocab(const char *model_path, const char *tokenizer, qt_vocab **out,
                              char *errmsg)
{
    *out = NULL;
    if (tokenizer) {
        qt_status st = vocab_from(tokenizer, out, errmsg);
        if (st == QT_OK && !*out)
            st = qt_set_err(errmsg, QT_ERR_ARG, "'%s' holds no tokenizer.json or tokenizer.model",
                            tokenizer);
        return st;
    }
    if (qt_path_is_dir(model_path)) return vocab_from(model_path, out, errmsg);
    if (qt_file_is_gguf(model_path)) {
        qt_status st = qt_model_gguf_vocab(model_path, out, errmsg);
        if (st == QT_ERR_UNSUPPORTED) { /* no vocabulary in the file */
            *out = NULL;
            return QT_OK;
        }
        return st;
    }
    char dir[4096]; /* a .safetensors file: its folder */
    snprintf(dir, sizeof dir, "%s", model_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    return vocab_from(dir, out, errmsg);
}
