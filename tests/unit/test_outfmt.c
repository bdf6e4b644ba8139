/* tests/unit/test_outfmt.c: formats/bnb as the one owner of the stored
 * layout (checked against files bitsandbytes itself wrote, in
 * ../shared/data/golden) and the output-format seam (formats/outfmt.h):
 * a round trip through the model-folder format, sharding, call order,
 * abort leaving nothing behind, and the staging folder (formats/out_stage:
 * name within NAME_MAX, mode, a lost race for OUT). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/bnb.h"
#include "formats/fsutil.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/out_stage.h"
#include "formats/outfmt.h"
#include "testutil.h"

/* Every quantized weight of a bitsandbytes-written model: the parts
 * qt_bnb_layout_of gives are exactly the tensors stored (names, dtypes,
 * shapes, bytes; the quant_state byte for byte), and nothing else is. */
static void check_golden(const char *rel, size_t want_quantized)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE];
    qt_modeldir *md = NULL;
    qt_layout *L = NULL;
    cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(path, sizeof path, rel), &md, err), QT_OK),
              "%s", err);
    cr_assert(eq(int, qt_layout_build(md, &L, err), QT_OK), "%s", err);
    size_t stored = 0, quantized = 0;
    for (size_t i = 0; i < qt_layout_n(L); i++) {
        const qt_lweight *w = qt_layout_at(L, i);
        if (w->kind == QT_LW_PLAIN) {
            stored++;
            continue;
        }
        quantized++;
        qt_bnb_layout bl;
        cr_assert(eq(int, qt_bnb_layout_of(w->scheme, w->block_size, w->double_quant, w->dtype,
                                           w->n_dims, w->shape, w->nested_offset, &bl),
                     QT_OK));
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(w->name) - 7), w->name);
        uint64_t total = 0;
        for (size_t k = 0; k < bl.n_parts; k++) {
            const qt_bnb_part *p = &bl.part[k];
            char name[600];
            snprintf(name, sizeof name, "%s%s", prefix, p->suffix);
            const qt_st_tensor *t = qt_modeldir_find(md, name, NULL);
            cr_assert(t != NULL, "%s: part '%s' not in the file", rel, name);
            cr_assert(eq(int, t->dtype, p->dtype), "%s", name);
            cr_assert(eq(sz, t->n_dims, p->n_dims), "%s", name);
            for (size_t d = 0; d < p->n_dims; d++)
                cr_assert(eq(u64, t->shape[d], p->shape[d]), "%s dim %zu", name, d);
            cr_assert(eq(u64, t->nbytes, p->nbytes), "%s", name);
            if (p->role == QT_BNB_STATE || p->role == QT_BNB_QUANT_MAP ||
                p->role == QT_BNB_NESTED_MAP || p->role == QT_BNB_WEIGHT_FORMAT) {
                unsigned char buf[1024];
                cr_assert(eq(int, qt_bnb_constant_part(&bl, p, w->scheme, buf), QT_OK), "%s", name);
                cr_assert(memcmp(buf, t->data, (size_t)p->nbytes) == 0, "%s: bytes differ", name);
            }
            total += p->nbytes;
            stored++;
        }
        cr_assert(eq(u64, total, w->nbytes), "%s: bytes of all parts", w->name);
    }
    cr_assert(eq(sz, quantized, want_quantized), "%s", rel);
    cr_assert(eq(sz, stored, qt_modeldir_n_tensors(md)), "%s: tensors the layout does not give",
              rel);
    qt_layout_free(L);
    qt_modeldir_close(md);
}

Test(outfmt, bnb_layout_is_what_bitsandbytes_wrote_nf4_dq)
{
    check_golden("golden/transformers-bnb-nf4-dq", 35);
}

Test(outfmt, bnb_layout_is_what_bitsandbytes_wrote_int8)
{
    check_golden("golden/transformers-bnb-int8", 35);
}

Test(outfmt, bnb_suffixes_and_companions)
{
    cr_assert(eq(str, (char *)qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_FP4),
                 ".weight.quant_state.bitsandbytes__fp4"));
    cr_assert(eq(str, (char *)qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_Q8),
                 ".weight.quant_state.qtool__q8"));
    cr_assert(qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_INT8) == NULL);
    cr_assert(qt_bnb_is_companion("a.weight.nested_quant_map"));
    cr_assert(qt_bnb_is_companion("a.SCB"));
    cr_assert(not(qt_bnb_is_companion("a.weight")));
    cr_assert(not(qt_bnb_is_companion("a.bias")));
    /* spec §3.2: NF4 of [4, 64] at block 64 with double quant */
    qt_bnb_layout L;
    uint64_t shape[2] = {4, 64};
    cr_assert(eq(int, qt_bnb_layout_of(QT_SCHEME_NF4, 64, true, QT_DTYPE_BF16, 2, shape, 0.5f, &L),
                 QT_OK));
    cr_assert(eq(sz, L.n_parts, 6));
    cr_assert(eq(u64, L.part[0].nbytes, 128));                 /* packed codes */
    cr_assert(eq(int, L.part[1].dtype, QT_DTYPE_U8));          /* nested codes */
    cr_assert(eq(u64, L.part[1].shape[0], 4));
    cr_assert(eq(u64, L.part[3].shape[0], 1));                 /* ceil(4/256) */
    cr_assert(eq(u64, L.part[4].shape[0], 256));
    cr_assert(eq(int, qt_bnb_layout_of(QT_SCHEME_BF16, 64, false, QT_DTYPE_BF16, 2, shape, 0, &L),
                 QT_ERR_ARG));
}

/* ---- the seam ----------------------------------------------------------- */

/* A folder with a minimal config.json; out = <dir>/out. */
static void setup(char *dir, size_t n, char *cfg, char *out)
{
    cr_assert(qt_test_tmpdir(dir, n) != NULL);
    snprintf(cfg, 1100, "%s/config.json", dir);
    const char *js = "{\"architectures\": [\"LlamaForCausalLM\"], \"torch_dtype\": \"float32\"}";
    cr_assert(eq(int, qt_file_write(cfg, js, strlen(js), NULL), QT_OK));
    snprintf(out, 1100, "%s/out", dir);
}

static qt_out_weight plain_w(const char *name, uint64_t n)
{
    qt_out_weight w = {.name = name, .dtype = QT_DTYPE_F32, .n_dims = 1, .shape = {n}};
    return w;
}

Test(outfmt, round_trip_through_the_model_folder)
{
    char dir[256], cfg[1100], out[1100], err[QT_ERRMSG_SIZE];
    setup(dir, sizeof dir, cfg, out);
    qt_out_model m = {.out = out, .config_path = cfg, .compute = QT_DTYPE_F32,
                      .scheme = QT_SCHEME_NF4, .block = 64, .double_quant = true};
    qt_outfmt *o;
    cr_assert(eq(int, qt_outfmt_new(NULL, &m, &o, err), QT_OK), "%s", err);
    /* a plain norm and an NF4+DQ Linear */
    float norm[8], W[4 * 64];
    for (int i = 0; i < 8; i++) norm[i] = 1.0f + (float)i;
    for (int i = 0; i < 4 * 64; i++) W[i] = (float)((i * 37) % 101 - 50) / 64.0f;
    qt_out_weight wn = plain_w("model.norm.weight", 8);
    qt_out_weight wq = {.name = "model.layers.0.mlp.up_proj.weight", .quantized = true,
                        .scheme = QT_SCHEME_NF4, .dtype = QT_DTYPE_F32, .n_dims = 2,
                        .shape = {4, 64}, .block = 64, .double_quant = true};
    size_t in, iq;
    cr_assert(eq(int, qt_outfmt_declare(o, &wn, &in, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_declare(o, &wq, &iq, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_plan(o, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_outfmt_n_weight_files(o), 1));
    cr_assert(eq(str, (char *)qt_outfmt_file(o, 0), "model.safetensors"));
    /* writing before begin is a caller bug, refused */
    cr_assert(eq(int, qt_outfmt_write_plain(o, in, 0, norm, sizeof norm, err), QT_ERR_ARG));
    /* quantize, tell the output the nested offset, write */
    unsigned char codes[128], absq[4];
    float absmax[4], nested[1];
    qt_qbuf b = {.codes = codes, .absmax = absmax, .absmax_q = absq, .nested = nested};
    qt_qweight q;
    cr_assert(eq(int, qt_quantize_weight(NULL, QT_SCHEME_NF4, 64, true, NULL, QT_SRC_F32, W, 4, 64, &b, &q),
                 QT_OK));
    wq.nested_offset = q.nested_offset;
    cr_assert(eq(int, qt_outfmt_redeclare(o, iq, &wq, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_add_metadata(o, "qtool.test", "yes", err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_begin(o, false, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_write_plain(o, in, 0, norm, sizeof norm, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_write_quant(o, iq, &q, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_commit(o, NULL, 0, err), QT_OK), "%s", err);
    qt_outfmt_free(o);
    /* read back: the same values, a quantized weight grouped as one */
    qt_modeldir *md;
    qt_layout *L;
    cr_assert(eq(int, qt_modeldir_open(out, &md, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_layout_build(md, &L, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_layout_n(L), 2));
    const qt_lweight *rn = qt_layout_find(L, "model.norm.weight");
    const qt_lweight *rq = qt_layout_find(L, "model.layers.0.mlp.up_proj.weight");
    cr_assert(rn && rq);
    cr_assert(memcmp(rn->weight->data, norm, sizeof norm) == 0);
    cr_assert(eq(int, rq->kind, QT_LW_BNB4));
    cr_assert(rq->double_quant);
    cr_assert(memcmp(rq->weight->data, codes, sizeof codes) == 0);
    cr_assert(memcmp(rq->absmax->data, absq, sizeof absq) == 0);
    cr_assert(eq(flt, rq->nested_offset, q.nested_offset));
    cr_assert(eq(str, (char *)qt_st_reader_metadata_get(qt_modeldir_shard(md, 0), "qtool.test"),
                 "yes"));
    qt_layout_free(L);
    qt_modeldir_close(md);
    qt_tree_remove(dir);
}

Test(outfmt, shards_and_abort_leave_nothing)
{
    char dir[256], cfg[1100], out[1100], err[QT_ERRMSG_SIZE];
    setup(dir, sizeof dir, cfg, out);
    qt_out_model m = {.out = out, .config_path = cfg, .compute = QT_DTYPE_F32,
                      .scheme = QT_SCHEME_FP32, .max_shard_size = 100};
    qt_outfmt *o;
    cr_assert(eq(int, qt_outfmt_new("safetensors", &m, &o, err), QT_OK), "%s", err);
    qt_out_weight a = plain_w("a.weight", 20), c = plain_w("c.weight", 20);
    size_t ia, ic;
    cr_assert(eq(int, qt_outfmt_declare(o, &a, &ia, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_declare(o, &c, &ic, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_plan(o, err), QT_OK), "%s", err);
    /* 80 bytes each, 100 per shard: two shards, an index, the config */
    cr_assert(eq(sz, qt_outfmt_n_weight_files(o), 2));
    cr_assert(eq(sz, qt_outfmt_n_files(o), 4));
    cr_assert(eq(str, (char *)qt_outfmt_file(o, 1), "model-00002-of-00002.safetensors"));
    cr_assert(eq(str, (char *)qt_outfmt_file(o, 2), "model.safetensors.index.json"));
    cr_assert(eq(int, qt_outfmt_begin(o, false, err), QT_OK), "%s", err);
    float v[20] = {0};
    cr_assert(eq(int, qt_outfmt_write_plain(o, ia, 0, v, sizeof v, err), QT_OK), "%s", err);
    qt_outfmt_free(o); /* not committed: nothing at OUT, no staging folder */
    struct stat sb;
    cr_assert(stat(out, &sb) != 0);
    char stage[1200];
    snprintf(stage, sizeof stage, "%s/.out.qtool-tmp.%ld", dir, (long)getpid());
    cr_assert(stat(stage, &sb) != 0, "staging folder left behind");
    cr_assert(eq(int, qt_outfmt_new("gguf-not-yet", &m, &o, err), QT_ERR_ARG));
    qt_tree_remove(dir);
}

/* The staging folder: its name within NAME_MAX whatever OUT's length (one
 * home: qt_out_stage_prefix), handed to the caller only while writing, no
 * more readable than the folder named in in_dir; a commit that finds OUT
 * written by another process meanwhile says so and leaves that OUT alone. */
Test(outfmt, stage_name_mode_and_lost_race)
{
    char dir[256], cfg[1100], out[1100], err[QT_ERRMSG_SIZE], pre[NAME_MAX + 1];
    char base[300], pre2[NAME_MAX + 1];
    memset(base, 'L', 255);
    base[255] = 0;
    qt_out_stage_prefix(base, pre, sizeof pre);
    cr_assert(strlen(pre) + 20 <= NAME_MAX, "prefix of %zu bytes", strlen(pre));
    base[254] = 'M';
    qt_out_stage_prefix(base, pre2, sizeof pre2);
    cr_assert(strcmp(pre, pre2) != 0, "two long names, one prefix");
    qt_out_stage_prefix("o", pre, sizeof pre);
    cr_assert(eq(str, pre, ".o.qtool-tmp."));

    umask(022); /* the modes below do not depend on the caller's umask */
    setup(dir, sizeof dir, cfg, out);
    char in[1200];
    snprintf(in, sizeof in, "%s/in", dir);
    cr_assert(mkdir(in, 0750) == 0 && chmod(in, 0750) == 0);
    qt_out_model m = {.out = out, .config_path = cfg, .in_dir = in, .compute = QT_DTYPE_F32,
                      .scheme = QT_SCHEME_FP32};
    qt_outfmt *o;
    cr_assert(eq(int, qt_outfmt_new(NULL, &m, &o, err), QT_OK), "%s", err);
    qt_out_weight a = plain_w("a.weight", 4);
    size_t ia;
    cr_assert(eq(int, qt_outfmt_declare(o, &a, &ia, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_outfmt_plan(o, err), QT_OK), "%s", err);
    cr_assert(qt_outfmt_stage_dir(o) == NULL, "a staging folder before begin");
    cr_assert(eq(int, qt_outfmt_begin(o, false, err), QT_OK), "%s", err);
    const char *sd = qt_outfmt_stage_dir(o);
    cr_assert(sd != NULL);
    struct stat sb;
    cr_assert(stat(sd, &sb) == 0 && S_ISDIR(sb.st_mode));
    cr_assert(eq(u32, (unsigned)(sb.st_mode & 07777), 0750u));
    float v[4] = {1, 2, 3, 4};
    cr_assert(eq(int, qt_outfmt_write_plain(o, ia, 0, v, sizeof v, err), QT_OK), "%s", err);
    /* another process writes OUT meanwhile */
    char theirs[1200];
    cr_assert(mkdir(out, 0755) == 0);
    snprintf(theirs, sizeof theirs, "%s/theirs", out);
    cr_assert(eq(int, qt_file_write(theirs, "x", 1, NULL), QT_OK));
    cr_assert(eq(int, qt_outfmt_commit(o, NULL, 0, err), QT_ERR_IO));
    cr_assert(strstr(err, "was written by another process meanwhile; this run's output was "
                          "discarded") != NULL,
              "%s", err);
    cr_assert(stat(theirs, &sb) == 0, "the other output was touched");
    qt_outfmt_free(o);
    char stage[1200];
    snprintf(stage, sizeof stage, "%s/.out.qtool-tmp.%ld", dir, (long)getpid());
    cr_assert(stat(stage, &sb) != 0, "staging folder left behind");
    qt_tree_remove(dir);
}
