/* cli/cmd_logits.c: `qtool logits MODEL [--adapter DIR] (--ids FILE.json |
 * --text FILE) -o OUT.safetensors`: the F32 logits of one sequence, for
 * cross-checks with other frameworks (layout in docs/FORMATS.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/adapter.h"
#include "formats/fsutil.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "formats/vocab.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define MAX_INPUT_BYTES (64u << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool logits MODEL (--ids FILE.json | --text FILE) -o OUT.safetensors [options]\n"
            "\n"
            "Runs one sequence through qtool's forward pass and writes its logits: tensor\n"
            "\"logits\" F32 [tokens, vocab] (row t: the next-token logits after token t) and\n"
            "tensor \"ids\" I32 [tokens], with the model, adapter and qtool version in the\n"
            "__metadata__. MODEL may be MODEL+ADAPTER (a PEFT LoRA adapter folder).\n"
            "\n"
            "options:\n"
            "      --ids FILE.json   the token ids: a JSON array of integers, used as they are\n"
            "      --text FILE       UTF-8 text, tokenized with MODEL's tokenizer, BOS first\n"
            "  -o, --output FILE     the .safetensors file to write (atomically)\n"
            "      --adapter DIR     run a PEFT LoRA adapter on MODEL, unmerged\n"
            "      --tokenizer PATH  tokenizer.json / tokenizer.model or a folder (for --text)\n"
            "  -j, --threads N       OpenMP threads (default: all); the logits do not depend on it\n"
            "      --isa ISA         force a SIMD path: ref, avx2, avx512, neon\n"
            "  -h, --help            this help\n");
}

/* The ids of a JSON array file. *ids: qt_free. Returns an exit code. */
static int read_ids(const char *path, int32_t **ids, size_t *n)
{
    char err[QT_ERRMSG_SIZE] = "";
    cJSON *root = NULL;
    qt_status st = qt_json_parse_file(path, MAX_INPUT_BYTES, &root, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    int rc = QT_EXIT_USAGE;
    size_t cnt = cJSON_IsArray(root) ? (size_t)cJSON_GetArraySize(root) : 0;
    if (!cnt) {
        qt_cli_error("'%s': not a non-empty JSON array of token ids", path);
        goto out;
    }
    *ids = qt_malloc(cnt * sizeof **ids);
    if (!*ids) {
        qt_cli_error("'%s': out of memory", path);
        rc = QT_EXIT_FAIL;
        goto out;
    }
    size_t i = 0;
    for (const cJSON *e = root->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int32_t)e->valuedouble ||
            e->valuedouble < 0) {
            qt_cli_error("'%s': element %zu is not a token id (a non-negative integer)", path, i);
            qt_free(*ids);
            *ids = NULL;
            goto out;
        }
        (*ids)[i] = (int32_t)e->valuedouble;
    }
    *n = cnt;
    rc = QT_EXIT_OK;
out:
    cJSON_Delete(root);
    return rc;
}

/* The ids of a text file, BOS first, through the model's tokenizer. */
static int read_text(const char *path, const char *model, const char *tok_path, int32_t **ids,
                     size_t *n)
{
    char err[QT_ERRMSG_SIZE] = "", *text = NULL;
    size_t len = 0;
    qt_vocab *v = NULL;
    qt_tokenizer *tok = NULL;
    int rc = QT_EXIT_OK;
    qt_status st = qt_file_read(path, &text, &len, MAX_INPUT_BYTES, err);
    if (st == QT_OK) st = qt_model_find_vocab(model, tok_path, &v, err);
    if (st == QT_OK && !v)
        st = qt_set_err(err, QT_ERR_ARG, "'%s' comes with no tokenizer (use --tokenizer)", model);
    if (st == QT_OK && (st = qt_tokenizer_new(v, &tok)) != QT_OK)
        qt_set_err(err, st, "tokenizer: %s", qt_status_str(st));
    if (st == QT_OK && (st = qt_tokenizer_encode(tok, text, len, true, ids, n)) != QT_OK)
        qt_set_err(err, st, "'%s': cannot tokenize it (%s)", path, qt_status_str(st));
    if (st == QT_OK && *n == 0) st = qt_set_err(err, QT_ERR_ARG, "'%s': no tokens", path);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = qt_cli_exit_for(st);
    }
    qt_tokenizer_free(tok);
    qt_vocab_free(v);
    qt_free(text);
    return rc;
}

/* Writes logits (n, V) and ids (n) to out with provenance metadata. */
static qt_status write_logits(const char *out, const char *model, const qt_model *m,
                              const float *logits, const int32_t *ids, size_t n, size_t V,
                              char *err)
{
    qt_status st = QT_OK;
    qt_st_writer *w = NULL;
    const qt_adapter *ad = qt_model_adapter(m);
    uint64_t sl[2] = {n, V}, si[1] = {n};
    QT_TRY(qt_st_writer_open(out, &w, err));
    QT_TRY(qt_st_writer_add_metadata(w, "format", "pt"));
    QT_TRY(qt_st_writer_add_metadata(w, "qtool.version", QT_VERSION_STRING));
    QT_TRY(qt_st_writer_add_metadata(w, "qtool.model", model));
    if (ad) {
        QT_TRY(qt_st_writer_add_metadata(w, "qtool.adapter", ad->dir));
        QT_TRY(qt_st_writer_add_metadata(w, "qtool.adapter_fingerprint", ad->fingerprint));
    }
    QT_TRY(qt_st_writer_declare(w, "logits", QT_DTYPE_F32, 2, sl, NULL));
    QT_TRY(qt_st_writer_declare(w, "ids", QT_DTYPE_I32, 1, si, NULL));
    qt_st_writer_keep_order(w, true);
    QT_TRY(qt_st_writer_write(w, 0, 0, logits, n * V * sizeof *logits));
    QT_TRY(qt_st_writer_write(w, 1, 0, ids, n * sizeof *ids));
    st = qt_st_writer_close(w, err);
    w = NULL;
    return st;
fail:
    if (w && !err[0]) snprintf(err, QT_ERRMSG_SIZE, "'%s': %s", out, qt_st_writer_errmsg(w));
    qt_st_writer_abort(w);
    return st;
}

int cmd_logits(int argc, char **argv)
{
    enum { OPT_IDS = 256, OPT_TEXT, OPT_ADAPTER, OPT_TOKENIZER, OPT_ISA };
    static const struct option longopts[] = {
        {"ids", required_argument, NULL, OPT_IDS},
        {"text", required_argument, NULL, OPT_TEXT},
        {"output", required_argument, NULL, 'o'},
        {"adapter", required_argument, NULL, OPT_ADAPTER},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"threads", required_argument, NULL, 'j'},
        {"isa", required_argument, NULL, OPT_ISA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *ids_path = NULL, *text_path = NULL, *out = NULL, *adapter = NULL,
               *tok_path = NULL, *isa = NULL;
    long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:j:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_IDS: ids_path = optarg; break;
        case OPT_TEXT: text_path = optarg; break;
        case 'o': out = optarg; break;
        case OPT_ADAPTER: adapter = optarg; break;
        case OPT_TOKENIZER: tok_path = optarg; break;
        case 'j':
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case OPT_ISA: isa = optarg; break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !out || !ids_path == !text_path) {
        qt_cli_error("logits needs one MODEL, -o OUT and exactly one of --ids, --text "
                     "(see 'qtool logits -h')");
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(threads); /* the thread team, up front */
    char model_path[4096], err[QT_ERRMSG_SIZE] = "";
    int32_t *ids = NULL;
    float *logits = NULL;
    size_t n = 0;
    qt_model *m = NULL;
    /* the tokens first (a bad file costs no model load), then the model */
    const char *ad_part;
    int rc = QT_EXIT_USAGE;
    if (!qt_model_arg_split(argv[optind], model_path, sizeof model_path, &ad_part))
        qt_cli_error("'%s': path too long", argv[optind]);
    else if (ids_path)
        rc = read_ids(ids_path, &ids, &n);
    else
        rc = read_text(text_path, model_path, tok_path, &ids, &n);
    if (rc == QT_EXIT_OK) {
        qt_model_opts mo = {.n_ctx = n};
        rc = qt_cli_open_model(argv[optind], adapter, &mo, false, model_path, sizeof model_path,
                               &m);
    }
    if (rc != QT_EXIT_OK) goto out;
    const size_t V = qt_model_get_config(m)->vocab_size;
    logits = qt_malloc(n * V * sizeof *logits);
    if (!logits) {
        qt_cli_error("out of memory for %zu x %zu logits", n, V);
        rc = QT_EXIT_FAIL;
        goto out;
    }
    qt_status st = qt_model_eval(m, ids, n, 0, logits);
    if (st != QT_OK) {
        qt_cli_error("'%s': %s", argv[optind], qt_model_errmsg(m));
        rc = qt_cli_exit_for(st);
        goto out;
    }
    if ((st = write_logits(out, argv[optind], m, logits, ids, n, V, err)) != QT_OK) {
        qt_cli_error("%s", err);
        rc = qt_cli_exit_for(st);
        goto out;
    }
    fprintf(stderr, "qtool: wrote %s: logits [%zu, %zu]\n", out, n, V);
out:
    qt_free(ids);
    qt_free(logits);
    qt_model_free(m);
    return rc;
}
