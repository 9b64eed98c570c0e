/* Region multiply and multiply-add over GF(2^8) and packed GF(2^4).
 *
 * Fields: GF(2^8) with x^8+x^4+x^3+x^2+1 (0x11D, RFC 5510 section 8.1, as used by RFC 8681 and
 * RFC 9407 Tetrys) and GF(2^4) with x^4+x+1 (0x13); alpha = 2 in both.
 *
 * Three paths, all in one build and chosen at run time:
 *   portable  one 256-byte product table per coefficient, dst[i] ^= T[c][src[i]];
 *   ssse3     split-nibble PSHUFB (Plank, Greenan, Miller, "Screaming Fast Galois Field
 *             Arithmetic Using Intel SIMD Instructions", FAST 2013): c*x = L[x & 15] ^ H[x >> 4]
 *             with two 16-entry tables per coefficient, 16 bytes per shuffle;
 *   avx2      the same with 32-byte registers.
 * The SIMD functions carry __attribute__((target(...))), so the file is compiled without -mavx2
 * and the portable path stays safe on any x86-64; __builtin_cpu_supports picks the path.
 *
 * Packed GF(16) uses the very same SIMD kernel: its "low" table holds c*x in the low nibble and
 * its "high" table c*x in the high nibble, so L[x & 15] ^ H[x >> 4] multiplies both halves.
 */
#include "gf_kernels.h"

#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define ZM_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define ZM_HAVE_X86_SIMD 0
#endif

/* Bytes of dst processed against every source before moving on in the *_multi kernels: small
 * enough that the dst block stays in L1 while each source streams through once. */
#define ZM_MULTI_BLOCK 4096

typedef struct {
    uint8_t full[256][256]; /* full[c][x] = c * x (for GF(16): both nibbles of x) */
    uint8_t nib[256][32];   /* nib[c][0..15] = c * low nibble, nib[c][16..31] = c * high nibble */
} zm_field_tables;

static zm_field_tables gf256_tables;
static zm_field_tables gf16_tables; /* only rows 0..15 are used */
static int cpu_features = -1;

static unsigned gf_mul_bitwise(unsigned a, unsigned b, unsigned poly, unsigned bits) {
    /* Shift-and-add, independent of the Python twin's log/exp tables on purpose. */
    unsigned acc = 0;
    unsigned top = 1u << bits;
    while (b) {
        if (b & 1u) acc ^= a;
        b >>= 1;
        a <<= 1;
        if (a & top) a ^= poly;
    }
    return acc;
}

static void build_tables(void) {
    for (unsigned c = 0; c < 256; c++) {
        for (unsigned x = 0; x < 256; x++) {
            gf256_tables.full[c][x] = (uint8_t)gf_mul_bitwise(c, x, 0x11D, 8);
        }
        for (unsigned x = 0; x < 16; x++) {
            gf256_tables.nib[c][x] = gf256_tables.full[c][x];
            gf256_tables.nib[c][16 + x] = gf256_tables.full[c][x << 4];
        }
    }
    for (unsigned c = 0; c < 16; c++) {
        for (unsigned x = 0; x < 256; x++) {
            unsigned hi = gf_mul_bitwise(c, x >> 4, 0x13, 4);
            unsigned lo = gf_mul_bitwise(c, x & 15u, 0x13, 4);
            gf16_tables.full[c][x] = (uint8_t)((hi << 4) | lo);
        }
        for (unsigned x = 0; x < 16; x++) {
            unsigned p = gf_mul_bitwise(c, x, 0x13, 4);
            gf16_tables.nib[c][x] = (uint8_t)p;
            gf16_tables.nib[c][16 + x] = (uint8_t)(p << 4);
        }
    }
}

static int detect_cpu(void) {
    int bits = 0;
#if ZM_HAVE_X86_SIMD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("ssse3")) bits |= ZM_GF_CPU_SSSE3;
    /* libgcc/compiler-rt only report avx2 when the OS saves YMM state (XGETBV), as required. */
    if (__builtin_cpu_supports("avx2")) bits |= ZM_GF_CPU_AVX2;
#endif
    return bits;
}

int zm_gf_init(void) {
    if (cpu_features < 0) {
        build_tables();
        cpu_features = detect_cpu();
    }
    return cpu_features;
}

int zm_gf_cpu_features(void) { return cpu_features < 0 ? 0 : cpu_features; }

/* ---- portable ---------------------------------------------------------------------------- */

static void xor_portable(uint8_t *dst, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t a, b;
        memcpy(&a, dst + i, 8); /* memcpy: dst/src may be unaligned */
        memcpy(&b, src + i, 8);
        a ^= b;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++) dst[i] ^= src[i];
}

static void mul_add_portable(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *nib,
                             const uint8_t *full) {
    (void)nib;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        dst[i] ^= full[src[i]];
        dst[i + 1] ^= full[src[i + 1]];
        dst[i + 2] ^= full[src[i + 2]];
        dst[i + 3] ^= full[src[i + 3]];
    }
    for (; i < n; i++) dst[i] ^= full[src[i]];
}

static void mul_portable(uint8_t *dst, size_t n, const uint8_t *nib, const uint8_t *full) {
    (void)nib;
    for (size_t i = 0; i < n; i++) dst[i] = full[dst[i]];
}

/* ---- SSSE3 / AVX2 ------------------------------------------------------------------------ */

#if ZM_HAVE_X86_SIMD

__attribute__((target("ssse3"))) static void mul_add_ssse3(uint8_t *dst, const uint8_t *src,
                                                            size_t n, const uint8_t *nib,
                                                            const uint8_t *full) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)nib);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(nib + 16));
    const __m128i mask = _mm_set1_epi8(0x0f);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i s0 = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i s1 = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i p0 = _mm_xor_si128(_mm_shuffle_epi8(lo, _mm_and_si128(s0, mask)),
                                   _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s0, 4), mask)));
        __m128i p1 = _mm_xor_si128(_mm_shuffle_epi8(lo, _mm_and_si128(s1, mask)),
                                   _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s1, 4), mask)));
        __m128i d0 = _mm_loadu_si128((const __m128i *)(dst + i));
        __m128i d1 = _mm_loadu_si128((const __m128i *)(dst + i + 16));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(d0, p0));
        _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(d1, p1));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i s = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i p = _mm_xor_si128(_mm_shuffle_epi8(lo, _mm_and_si128(s, mask)),
                                  _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s, 4), mask)));
        __m128i d = _mm_loadu_si128((const __m128i *)(dst + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(d, p));
    }
    for (; i < n; i++) dst[i] ^= full[src[i]];
}

__attribute__((target("ssse3"))) static void mul_ssse3(uint8_t *dst, size_t n,
                                                        const uint8_t *nib, const uint8_t *full) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)nib);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(nib + 16));
    const __m128i mask = _mm_set1_epi8(0x0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i s = _mm_loadu_si128((const __m128i *)(dst + i));
        __m128i p = _mm_xor_si128(_mm_shuffle_epi8(lo, _mm_and_si128(s, mask)),
                                  _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s, 4), mask)));
        _mm_storeu_si128((__m128i *)(dst + i), p);
    }
    for (; i < n; i++) dst[i] = full[dst[i]];
}

__attribute__((target("avx2"))) static inline __m256i mul32_avx2(__m256i s, __m256i lo, __m256i hi,
                                                                 __m256i mask) {
    return _mm256_xor_si256(_mm256_shuffle_epi8(lo, _mm256_and_si256(s, mask)),
                            _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi64(s, 4), mask)));
}

__attribute__((target("avx2"))) static void mul_add_avx2(uint8_t *dst, const uint8_t *src,
                                                          size_t n, const uint8_t *nib,
                                                          const uint8_t *full) {
    /* PSHUFB shuffles within each 128-bit lane, so the 16-entry tables go in both lanes. */
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nib));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(nib + 16)));
    const __m256i mask = _mm256_set1_epi8(0x0f);
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i s0 = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i s1 = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i s2 = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i s3 = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        __m256i d0 = _mm256_loadu_si256((const __m256i *)(dst + i));
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(dst + i + 32));
        __m256i d2 = _mm256_loadu_si256((const __m256i *)(dst + i + 64));
        __m256i d3 = _mm256_loadu_si256((const __m256i *)(dst + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(d0, mul32_avx2(s0, lo, hi, mask)));
        _mm256_storeu_si256((__m256i *)(dst + i + 32),
                            _mm256_xor_si256(d1, mul32_avx2(s1, lo, hi, mask)));
        _mm256_storeu_si256((__m256i *)(dst + i + 64),
                            _mm256_xor_si256(d2, mul32_avx2(s2, lo, hi, mask)));
        _mm256_storeu_si256((__m256i *)(dst + i + 96),
                            _mm256_xor_si256(d3, mul32_avx2(s3, lo, hi, mask)));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i s = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i d = _mm256_loadu_si256((const __m256i *)(dst + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(d, mul32_avx2(s, lo, hi, mask)));
    }
    if (i + 16 <= n) {
        /* One 16-byte step keeps short tails (a 1200-byte symbol ends in 16) off the byte loop. */
        __m128i s = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i l = _mm256_castsi256_si128(lo), h = _mm256_castsi256_si128(hi);
        __m128i m = _mm256_castsi256_si128(mask);
        __m128i p = _mm_xor_si128(_mm_shuffle_epi8(l, _mm_and_si128(s, m)),
                                  _mm_shuffle_epi8(h, _mm_and_si128(_mm_srli_epi64(s, 4), m)));
        __m128i d = _mm_loadu_si128((const __m128i *)(dst + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(d, p));
        i += 16;
    }
    for (; i < n; i++) dst[i] ^= full[src[i]];
}

__attribute__((target("avx2"))) static void mul_avx2(uint8_t *dst, size_t n, const uint8_t *nib,
                                                      const uint8_t *full) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nib));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(nib + 16)));
    const __m256i mask = _mm256_set1_epi8(0x0f);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i s0 = _mm256_loadu_si256((const __m256i *)(dst + i));
        __m256i s1 = _mm256_loadu_si256((const __m256i *)(dst + i + 32));
        _mm256_storeu_si256((__m256i *)(dst + i), mul32_avx2(s0, lo, hi, mask));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), mul32_avx2(s1, lo, hi, mask));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i s = _mm256_loadu_si256((const __m256i *)(dst + i));
        _mm256_storeu_si256((__m256i *)(dst + i), mul32_avx2(s, lo, hi, mask));
    }
    for (; i < n; i++) dst[i] = full[dst[i]];
}

__attribute__((target("avx2"))) static void xor_avx2(uint8_t *dst, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(dst + i));
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(dst + i + 32));
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a0, b0));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(a1, b1));
    }
    xor_portable(dst + i, src + i, n - i);
}

#endif /* ZM_HAVE_X86_SIMD */

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef void (*mul_add_fn)(uint8_t *, const uint8_t *, size_t, const uint8_t *, const uint8_t *);
typedef void (*mul_fn)(uint8_t *, size_t, const uint8_t *, const uint8_t *);
typedef void (*xor_fn)(uint8_t *, const uint8_t *, size_t);

typedef struct {
    mul_add_fn mul_add;
    mul_fn mul;
    xor_fn xor_;
} zm_kernels;

static zm_kernels pick(int backend) {
    zm_kernels k = {mul_add_portable, mul_portable, xor_portable};
    /* Every entry point comes through here: a caller that skipped zm_gf_init() still gets
     * filled tables (one predictable branch per call). */
    int cpu = zm_gf_init();
#if ZM_HAVE_X86_SIMD
    /* A request the CPU cannot honour degrades to portable instead of faulting (SIGILL). */
    if (backend == ZM_GF_BACKEND_AVX2 && (cpu & ZM_GF_CPU_AVX2)) {
        k.mul_add = mul_add_avx2;
        k.mul = mul_avx2;
        k.xor_ = xor_avx2;
    } else if (backend == ZM_GF_BACKEND_SSSE3 && (cpu & ZM_GF_CPU_SSSE3)) {
        k.mul_add = mul_add_ssse3;
        k.mul = mul_ssse3;
    }
#else
    (void)backend;
    (void)cpu;
#endif
    return k;
}

static void region_mul_add(const zm_field_tables *t, int backend, uint8_t *dst, const uint8_t *src,
                           size_t n, unsigned coef) {
    if (coef == 0 || n == 0) return;
    zm_kernels k = pick(backend);
    if (coef == 1) {
        k.xor_(dst, src, n);
    } else {
        k.mul_add(dst, src, n, t->nib[coef], t->full[coef]);
    }
}

static void region_mul(const zm_field_tables *t, int backend, uint8_t *dst, size_t n,
                       unsigned coef) {
    if (coef == 1 || n == 0) return;
    if (coef == 0) {
        memset(dst, 0, n);
        return;
    }
    pick(backend).mul(dst, n, t->nib[coef], t->full[coef]);
}

static void region_mul_add_multi(const zm_field_tables *t, int backend, uint8_t *dst,
                                 const uint8_t *const *srcs, const uint8_t *coefs, size_t count,
                                 size_t n) {
    zm_kernels k = pick(backend);
    for (size_t off = 0; off < n; off += ZM_MULTI_BLOCK) {
        size_t len = n - off < ZM_MULTI_BLOCK ? n - off : ZM_MULTI_BLOCK;
        for (size_t j = 0; j < count; j++) {
            unsigned c = coefs[j];
            if (c == 0) continue;
            if (c == 1) {
                k.xor_(dst + off, srcs[j] + off, len);
            } else {
                k.mul_add(dst + off, srcs[j] + off, len, t->nib[c], t->full[c]);
            }
        }
    }
}

static int region_mul_add_window(const zm_field_tables *t, int backend, uint8_t *dst,
                                 const uint8_t *window, size_t window_len, size_t stride,
                                 const uint8_t *slots, const uint8_t *coefs, size_t count,
                                 size_t n) {
    if (count == 0 || n == 0) return 0;
    /* Validate every slot before the first write, so a bad call leaves dst as it was. Written
     * as a division so that slot * stride + n cannot overflow. */
    if (n > window_len) return -1;
    size_t last_start = window_len - n;
    if (stride != 0) {
        size_t max_slot = last_start / stride;
        for (size_t j = 0; j < count; j++) {
            if (slots[j] > max_slot) return -1;
        }
    }
    zm_kernels k = pick(backend);
    for (size_t off = 0; off < n; off += ZM_MULTI_BLOCK) {
        size_t len = n - off < ZM_MULTI_BLOCK ? n - off : ZM_MULTI_BLOCK;
        for (size_t j = 0; j < count; j++) {
            unsigned c = coefs[j];
            if (c == 0) continue;
            const uint8_t *src = window + (size_t)slots[j] * stride + off;
            if (c == 1) {
                k.xor_(dst + off, src, len);
            } else {
                k.mul_add(dst + off, src, len, t->nib[c], t->full[c]);
            }
        }
    }
    return 0;
}

void zm_gf256_mul_add(int backend, uint8_t *dst, const uint8_t *src, size_t n, unsigned coef) {
    region_mul_add(&gf256_tables, backend, dst, src, n, coef & 0xFFu);
}

void zm_gf256_mul(int backend, uint8_t *dst, size_t n, unsigned coef) {
    region_mul(&gf256_tables, backend, dst, n, coef & 0xFFu);
}

void zm_gf256_mul_add_multi(int backend, uint8_t *dst, const uint8_t *const *srcs,
                            const uint8_t *coefs, size_t count, size_t n) {
    region_mul_add_multi(&gf256_tables, backend, dst, srcs, coefs, count, n);
}

int zm_gf256_mul_add_window(int backend, uint8_t *dst, const uint8_t *window, size_t window_len,
                            size_t stride, const uint8_t *slots, const uint8_t *coefs,
                            size_t count, size_t n) {
    return region_mul_add_window(&gf256_tables, backend, dst, window, window_len, stride, slots,
                                 coefs, count, n);
}

/* GF(16) coefficients are masked to 4 bits so a stray value can never index past row 15 of
 * the tables that were filled; the Python layer rejects such values before they get here. */
void zm_gf16_mul_add(int backend, uint8_t *dst, const uint8_t *src, size_t n, unsigned coef) {
    region_mul_add(&gf16_tables, backend, dst, src, n, coef & 0x0Fu);
}

void zm_gf16_mul(int backend, uint8_t *dst, size_t n, unsigned coef) {
    region_mul(&gf16_tables, backend, dst, n, coef & 0x0Fu);
}

void zm_gf16_mul_add_multi(int backend, uint8_t *dst, const uint8_t *const *srcs,
                           const uint8_t *coefs, size_t count, size_t n) {
    /* Rows 16..255 of gf16_tables are zero, so an out-of-range coefficient would only drop a
     * term; Python validates every coefficient before calling. */
    region_mul_add_multi(&gf16_tables, backend, dst, srcs, coefs, count, n);
}

int zm_gf16_mul_add_window(int backend, uint8_t *dst, const uint8_t *window, size_t window_len,
                           size_t stride, const uint8_t *slots, const uint8_t *coefs,
                           size_t count, size_t n) {
    /* As for mul_add_multi: rows 16..255 are zero and Python validates the coefficients. */
    return region_mul_add_window(&gf16_tables, backend, dst, window, window_len, stride, slots,
                                 coefs, count, n);
}
