/* tests/unit/test_common.c: status codes, allocation hook, size math,
 * sha256 and fp16/bf16 conversion (every ISA bit-identical to the scalar
 * definition, exhaustively over all 2^16 narrow values and over 2^32 /
 * 4096-step float32 sweeps). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "common/cpu.h"
#include "common/half.h"
#include "common/mapguard.h"
#include "common/sha256.h"
#include "testutil.h"

Test(common, status_names_are_distinct)
{
    for (int i = 0; i < QT_STATUS_COUNT; i++)
        for (int j = i + 1; j < QT_STATUS_COUNT; j++)
            cr_assert(ne(str, (char *)qt_status_str((qt_status)i),
                         (char *)qt_status_str((qt_status)j)));
    cr_assert(eq(str, (char *)qt_status_str(QT_OK), "ok"));
}

Test(common, alloc_hook_fails_the_nth_allocation)
{
    qt_alloc_fail_after(3);
    void *a = qt_malloc(8), *b = qt_malloc(8), *c = qt_malloc(8), *d = qt_malloc(8);
    cr_assert(a && b && !c && d);
    qt_free(a);
    qt_free(b);
    qt_free(d);
    qt_alloc_fail_after(0);
}

Test(common, size_math_detects_overflow)
{
    size_t r;
    cr_assert(qt_mul_size(1u << 20, 1u << 20, &r));
    cr_assert(not(qt_mul_size(SIZE_MAX / 2 + 1, 2, &r)));
    cr_assert(not(qt_add_size(SIZE_MAX, 1, &r)));
    uint64_t u;
    cr_assert(not(qt_mul_u64(2, 18446744073709551614ULL, &u)));
}

Test(sha256, fips_vectors)
{
    unsigned char d[32];
    char hex[65];
    qt_sha256("abc", 3, d);
    qt_sha256_hex(d, hex);
    cr_assert(eq(str, hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    qt_sha256("", 0, d);
    qt_sha256_hex(d, hex);
    cr_assert(eq(str, hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    qt_sha256(m, strlen(m), d);
    qt_sha256_hex(d, hex);
    cr_assert(eq(str, hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    /* streaming in odd pieces equals one shot */
    qt_sha256_ctx c;
    qt_sha256_init(&c);
    for (size_t i = 0; i < strlen(m); i += 7)
        qt_sha256_update(&c, m + i, strlen(m) - i < 7 ? strlen(m) - i : 7);
    unsigned char d2[32];
    qt_sha256_final(&c, d2);
    cr_assert(eq(int, memcmp(d, d2, 32), 0));
}

Test(half, known_values)
{
    cr_assert(eq(u16, qt_fp32_to_fp16(1.0f), 0x3c00));
    cr_assert(eq(u16, qt_fp32_to_fp16(-2.0f), 0xc000));
    cr_assert(eq(u16, qt_fp32_to_fp16(65504.0f), 0x7bff));
    cr_assert(eq(u16, qt_fp32_to_fp16(65520.0f), 0x7c00)); /* rounds to inf */
    cr_assert(eq(u16, qt_fp32_to_fp16(65519.99f), 0x7bff));
    cr_assert(eq(u16, qt_fp32_to_fp16(5.9604645e-8f), 0x0001)); /* smallest subnormal */
    cr_assert(eq(u16, qt_fp32_to_fp16(2.9802322e-8f), 0x0000)); /* tie to even: 0 */
    cr_assert(eq(u16, qt_fp32_to_fp16(8.940697e-8f), 0x0002));  /* 1.5 ulp tie -> 2 */
    cr_assert(eq(u16, qt_fp32_to_fp16(INFINITY), 0x7c00));
    cr_assert(eq(u16, qt_fp32_to_fp16(-0.0f), 0x8000));
    uint16_t hn = qt_fp32_to_fp16(NAN);
    cr_assert(eq(int, (hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), 1));
    cr_assert(eq(u16, qt_fp32_to_bf16(1.0f), 0x3f80));
    cr_assert(eq(u16, qt_fp32_to_bf16(qt_f32_from_bits(0x3f808000)), 0x3f80)); /* tie to even */
    cr_assert(eq(u16, qt_fp32_to_bf16(qt_f32_from_bits(0x3f818000)), 0x3f82));
    cr_assert(eq(u16, qt_fp32_to_bf16(qt_f32_from_bits(0x00000001)), 0x0000)); /* subnormal kept */
    cr_assert(eq(u16, qt_fp32_to_bf16(qt_f32_from_bits(0x00018000)), 0x0002));
    cr_assert(eq(flt, qt_bf16_to_fp32(0xc040), -3.0f));
    cr_assert(eq(flt, qt_fp16_to_fp32(0x0001), 5.9604645e-8f));
    cr_assert(eq(flt, qt_fp16_to_fp32(0x7bff), 65504.0f));
    /* every fp16 value round-trips through fp32 */
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = qt_fp32_to_fp16(qt_fp16_to_fp32((uint16_t)h));
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (!nan) cr_assert(eq(u16, back, (uint16_t)h), "fp16 0x%04x", h);
    }
}

static void check_isa(qt_isa isa)
{
    const qt_half_kernels *k = qt_half_kernels_for(isa), *r = qt_half_kernels_for(QT_ISA_REF);
    if (!k) cr_skip_test("this CPU lacks %s", qt_isa_name(isa));
    enum { N = 65536 + 13 };
    static uint16_t h[N], o1[N], o2[N];
    static float f1[N], f2[N], src[N];
    for (uint32_t i = 0; i < N; i++) h[i] = (uint16_t)(i * 40503u);
    k->fp16_to_fp32(h, f1, N);
    r->fp16_to_fp32(h, f2, N);
    cr_assert(eq(int, memcmp(f1, f2, sizeof f1), 0), "fp16->fp32 %s", qt_isa_name(isa));
    k->bf16_to_fp32(h, f1, N);
    r->bf16_to_fp32(h, f2, N);
    cr_assert(eq(int, memcmp(f1, f2, sizeof f1), 0), "bf16->fp32 %s", qt_isa_name(isa));
    /* float32 sweep: every 2^32/2^20 bit pattern plus offsets hitting ties */
    for (uint64_t base = 0; base < (1ull << 32); base += (uint64_t)N * 61) {
        for (uint32_t i = 0; i < N; i++) src[i] = qt_f32_from_bits((uint32_t)(base + i * 61ull + (i & 7) * 0x1000));
        k->fp32_to_fp16(src, o1, N);
        r->fp32_to_fp16(src, o2, N);
        for (uint32_t i = 0; i < N; i++)
            if (o1[i] != o2[i])
                cr_fail("fp32->fp16 %s: 0x%08x -> 0x%04x, ref 0x%04x", qt_isa_name(isa),
                        qt_f32_bits(src[i]), o1[i], o2[i]);
        k->fp32_to_bf16(src, o1, N);
        r->fp32_to_bf16(src, o2, N);
        for (uint32_t i = 0; i < N; i++)
            if (o1[i] != o2[i])
                cr_fail("fp32->bf16 %s: 0x%08x -> 0x%04x, ref 0x%04x", qt_isa_name(isa),
                        qt_f32_bits(src[i]), o1[i], o2[i]);
    }
}

Test(half, avx2_matches_ref) { check_isa(QT_ISA_AVX2); }
Test(half, avx512_matches_ref) { check_isa(QT_ISA_AVX512); }

Test(cpu, isa_names_parse_back)
{
    for (int i = 0; i < QT_ISA_COUNT; i++) {
        qt_isa x;
        cr_assert(eq(int, qt_isa_parse(qt_isa_name((qt_isa)i), &x), QT_OK));
        cr_assert(eq(int, (int)x, i));
    }
    qt_isa x;
    cr_assert(eq(int, qt_isa_parse("sse9", &x), QT_ERR_ARG));
    cr_assert(qt_isa_supported(QT_ISA_REF));
}

/* Issue 12 item 3: a mapped file cut short while it is read. The read of a
 * page past the new end would raise SIGBUS; guarded, it reads zeros and the
 * file is reported. */
Test(common, mapguard_turns_sigbus_into_zeros_and_a_flag)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/m.bin", dir);
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = 4 * pg;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    unsigned char *buf = malloc(n);
    memset(buf, 0xab, n);
    cr_assert(eq(sz, (size_t)write(fd, buf, n), n));
    const unsigned char *m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert(m != MAP_FAILED);
    qt_mapguard_clear();
    cr_assert(eq(int, qt_mapguard_add(m, n, path), QT_OK));
    cr_assert(not(qt_mapguard_tripped(NULL)));
    cr_assert(eq(int, m[pg], 0xab));
    /* cut to one page: pages 1..3 now lie past the end */
    cr_assert(eq(int, ftruncate(fd, (off_t)pg), 0));
    cr_assert(eq(int, m[0], 0xab));          /* still inside the file */
    cr_assert(eq(int, m[2 * pg + 7], 0));    /* past the end: zeros, no SIGBUS */
    cr_assert(eq(int, m[3 * pg], 0));
    const char *name = NULL;
    cr_assert(qt_mapguard_tripped(&name));
    cr_assert(name && strcmp(name, path) == 0);
    qt_mapguard_remove(m);
    qt_mapguard_clear();
    cr_assert(not(qt_mapguard_tripped(NULL)));
    munmap((void *)m, n);
    close(fd);
    free(buf);
    unlink(path);
    rmdir(dir);
}
