/*
 * tests/fuzz/fuzz_index.c: libFuzzer harness for sharded checkpoints. The
 * input becomes model.safetensors.index.json in a folder created once per
 * process (under $TMPDIR, removed at exit) that holds two small valid shards
 * (model-00001-of-00002.safetensors: "a"; model-00002-of-00002.safetensors:
 * "b", "c"), a stray shard, a config.json and a symlink leading out of the
 * folder (link.safetensors -> ../outside.safetensors, tensor "d"); then
 * qt_modeldir_open_ex reads the folder (symlinks followed for odd-length
 * inputs) and every tensor of the unified view is walked and looked up by
 * name.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/modeldir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[256], dir[300], index_path[400];

static void put(const char *name, const char *header, const void *payload, size_t plen)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    uint8_t n8[8];
    qt_store_le64(n8, strlen(header));
    fwrite(n8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    fwrite(payload, 1, plen, f);
    fclose(f);
}

static void cleanup(void)
{
    static const char *const names[] = {
        "model/model-00001-of-00002.safetensors", "model/model-00002-of-00002.safetensors",
        "model/stray.safetensors", "model/config.json", "model/link.safetensors",
        "model/model.safetensors.index.json", "outside.safetensors"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        unlink(path);
    }
    rmdir(dir);
    rmdir(root);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/qtool-fuzz-index-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) abort();
    snprintf(dir, sizeof dir, "%s/model", root);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    if (mkdir(dir, 0700) != 0) abort();
    atexit(cleanup);
    const uint8_t bytes[8] = {0, 0, 128, 63, 0, 0, 0, 64};
    put("model/model-00001-of-00002.safetensors",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", bytes, 8);
    put("model/model-00002-of-00002.safetensors",
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[3,5]}}",
        bytes, 5);
    put("model/stray.safetensors", "{\"e\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[0,1]}}",
        bytes, 1);
    put("outside.safetensors", "{\"d\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        bytes, 4);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(cfg, "w");
    if (!f) abort();
    fputs("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 2, "
          "\"num_hidden_layers\": 1, \"torch_dtype\": \"float32\"}\n", f);
    fclose(f);
    char link[512];
    snprintf(link, sizeof link, "%s/link.safetensors", dir);
    if (symlink("../outside.safetensors", link) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) setup();
    int fd = open(index_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    close(fd);

    qt_modeldir *md = NULL;
    qt_md_rule rule = QT_MD_RULE_OK;
    qt_st_rule st_rule;
    char err[QT_ERRMSG_SIZE];
    unsigned flags = (size & 1) ? QT_MODELDIR_FOLLOW_SYMLINKS : 0;
    if (qt_modeldir_open_ex(dir, flags, &md, &rule, &st_rule, err) != QT_OK) {
        if (getenv("QT_FUZZ_VERBOSE")) fprintf(stderr, "rejected: %s\n", err);
        if (md || rule == QT_MD_RULE_OK) __builtin_trap();
        return 0;
    }
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < qt_modeldir_n_tensors(md); i++) {
        qt_st_reader *r = NULL;
        const qt_st_tensor *t = qt_modeldir_tensor(md, i, &r);
        if (!t || !r) __builtin_trap();
        const uint8_t *p = t->data;
        for (uint64_t k = 0; k < t->nbytes; k++) sink += p[k];
        qt_st_reader *r2 = NULL;
        if (qt_modeldir_find(md, t->name, &r2) != t || r2 != r) __builtin_trap();
    }
    for (size_t i = 0; i < qt_modeldir_n_shards(md); i++) sink += strlen(qt_modeldir_shard_name(md, i));
    for (size_t i = 0; i < qt_modeldir_n_files(md); i++) sink += strlen(qt_modeldir_file(md, i));
    for (size_t i = 0; i < qt_modeldir_n_strays(md); i++) sink += strlen(qt_modeldir_stray(md, i));
    char line[256];
    qt_modeldir_architecture_line(md, line, sizeof line);
    qt_modeldir_close(md);
    return 0;
}
