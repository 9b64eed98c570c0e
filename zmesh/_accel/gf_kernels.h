/* Region kernels for GF(2^8) (poly 0x11D) and packed GF(2^4) (poly 0x13, two elements a byte).
 *
 * The cffi builder (build_gf.py) pastes the declarations between the CDEF markers into
 * ffibuilder.cdef(), so this header is the single source of the C API. The pure-Python twin in
 * zmesh/_accel/gf.py is the specification these kernels are tested against.
 */
#ifndef ZMESH_GF_KERNELS_H
#define ZMESH_GF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define ZM_GF_BACKEND_PORTABLE 1
#define ZM_GF_BACKEND_SSSE3 2
#define ZM_GF_BACKEND_AVX2 3

#define ZM_GF_CPU_SSSE3 1
#define ZM_GF_CPU_AVX2 2

/* Builds the multiplication tables; returns the ZM_GF_CPU_* bits this CPU (and OS) supports. */
int zm_gf_init(void);
/* The ZM_GF_CPU_* bits, valid after zm_gf_init(). */
int zm_gf_cpu_features(void);

/* dst[i] ^= coef * src[i] for i < n. A backend this CPU lacks runs as portable. */
void zm_gf256_mul_add(int backend, uint8_t *dst, const uint8_t *src, size_t n, unsigned coef);
/* dst[i] = coef * dst[i]. */
void zm_gf256_mul(int backend, uint8_t *dst, size_t n, unsigned coef);
/* dst ^= sum_k coefs[k] * srcs[k], every source n bytes, blocked so dst stays in L1. */
void zm_gf256_mul_add_multi(int backend, uint8_t *dst, const uint8_t *const *srcs,
                            const uint8_t *coefs, size_t count, size_t n);

/* dst ^= sum_k coefs[k] * window[slots[k] * stride .. + n]: a combination of symbols held in one
 * contiguous buffer (the Tetrys decoder's and encoder's window), so the caller pins one buffer
 * per call instead of one per source. Checks every slot first: returns 0, or -1 with dst
 * untouched if a slot's n bytes do not lie inside the window_len-byte window. dst must not
 * overlap the window. */
int zm_gf256_mul_add_window(int backend, uint8_t *dst, const uint8_t *window, size_t window_len,
                            size_t stride, const uint8_t *slots, const uint8_t *coefs,
                            size_t count, size_t n);

/* The same four over packed GF(16): both nibbles of a byte are multiplied by coef (< 16). */
void zm_gf16_mul_add(int backend, uint8_t *dst, const uint8_t *src, size_t n, unsigned coef);
void zm_gf16_mul(int backend, uint8_t *dst, size_t n, unsigned coef);
void zm_gf16_mul_add_multi(int backend, uint8_t *dst, const uint8_t *const *srcs,
                           const uint8_t *coefs, size_t count, size_t n);
int zm_gf16_mul_add_window(int backend, uint8_t *dst, const uint8_t *window, size_t window_len,
                           size_t stride, const uint8_t *slots, const uint8_t *coefs,
                           size_t count, size_t n);
/* CDEF-END */

#endif
