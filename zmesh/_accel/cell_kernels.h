/* Batch kernels for the onion data path: layered AEAD over runs of 1024-byte cells.
 *
 * Byte layouts: docs/wire/cells.md section 5. The pure-Python twin in zmesh/_accel/cells.py is
 * the specification these kernels are tested against; each function here is the C backend of
 * the twin function of the same name (without the zm_ prefix).
 *
 * The cffi builder (build_cells.py) pastes the declarations between the CDEF markers into
 * ffibuilder.cdef(), so this header is the single source of the C API.
 *
 * Conventions: every buffer comes with its length, and every function checks all lengths before
 * it touches memory (returning ZM_CELL_EARG when they do not fit together); the Python wrapper
 * has validated them already, so that return is a bug guard, not a code path. A run is n cells
 * (or n layer plaintexts) back to back. Opening functions return k, the number of leading cells
 * that verified (0..n); everything else returns n or 0 on success. A negative return is an
 * error: nothing of the output may be used.
 *
 * A zm_cell_key is not for concurrent use: cffi releases the GIL around these calls, so a
 * second thread calling with a key that is already in use gets ZM_CELL_EBUSY instead of
 * sharing its cipher contexts.
 */
#ifndef ZMESH_CELL_KERNELS_H
#define ZMESH_CELL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define ZM_CELL_SIZE 1024
#define ZM_CELL_HEADER_SIZE 5
#define ZM_CELL_TAG_SIZE 16
#define ZM_CELL_PLAIN_SIZE 1003
#define ZM_CELL_MESSAGE_OFFSET 32
#define ZM_CELL_MAX_PAYLOAD 968
#define ZM_CELL_MAX_HOPS 3

#define ZM_CELL_AEAD_CHACHA20_POLY1305 0
#define ZM_CELL_AEAD_AES_256_GCM 1

#define ZM_CELL_EEVP -1
#define ZM_CELL_EARG -2
#define ZM_CELL_EBUSY -3

typedef struct zm_cell_key zm_cell_key;

/* The libcrypto these kernels run on, as OpenSSL_version(OPENSSL_VERSION) reports it. */
const char *zm_openssl_version(void);

/* One direction's AEAD key: an encrypt and a decrypt EVP_CIPHER_CTX with the key schedule set
 * up once. NULL for an unknown aead, a key_len other than 32, or an OpenSSL failure. */
zm_cell_key *zm_key_new(int aead, const unsigned char *key, size_t key_len);
void zm_key_free(zm_cell_key *key);

/* cell i -> header || pads[16i..16i+16] || Open(key, counter + i, body_i). Returns k. */
int64_t zm_relay_forward(zm_cell_key *key, uint64_t counter, const unsigned char *cells,
                         size_t cells_len, const unsigned char *pads, size_t pads_len,
                         const unsigned char *header, size_t header_len, unsigned char *out,
                         size_t out_len);

/* cell i -> header || Seal(key, counter + i, body_i[16..]). Returns n. */
int64_t zm_relay_backward(zm_cell_key *key, uint64_t counter, const unsigned char *cells,
                          size_t cells_len, const unsigned char *header, size_t header_len,
                          unsigned char *out, size_t out_len);

/* Open every layer of each cell with keys[0..hops) (unused keys NULL); out gets the innermost
 * plaintexts (1003 bytes each). Returns k. */
int64_t zm_end_open(size_t hops, zm_cell_key *key0, zm_cell_key *key1, zm_cell_key *key2,
                    uint64_t counter, const unsigned char *cells, size_t cells_len,
                    unsigned char *out, size_t out_len);

/* plain i (1003 bytes) -> header || Seal(key, counter + i, plain_i). Returns n. */
int64_t zm_end_seal(zm_cell_key *key, uint64_t counter, const unsigned char *plains,
                    size_t plains_len, const unsigned char *header, size_t header_len,
                    unsigned char *out, size_t out_len);

/* The client's forward seal (cells.md 5.5) for hops = 1..3 forward keys in path order (unused
 * keys NULL): plain i (1003 bytes, of which bytes 32.. are the relay message) -> header || the
 * body every hop opens in turn. pad0/pad1: the next 16 * n bytes of hop 0's / hop 1's forward pad
 * stream (NULL, 0 when that hop is the last or absent); filler: n * (32 - 16 * (hops - 1))
 * random bytes, cell i taking its share in order. Returns n. */
int64_t zm_client_seal(size_t hops, zm_cell_key *key0, zm_cell_key *key1, zm_cell_key *key2,
                       uint64_t counter, const unsigned char *plains, size_t plains_len,
                       const unsigned char *pad0, size_t pad0_len, const unsigned char *pad1,
                       size_t pad1_len, const unsigned char *filler, size_t filler_len,
                       const unsigned char *header, size_t header_len, unsigned char *out,
                       size_t out_len);

/* For each of the count lengths: prefix (32) || kind || u16 length || payload || zeros, to 1003
 * bytes. The lengths must add up to payloads_len. Returns count. */
int64_t zm_frame_messages(unsigned kind, const unsigned char *payloads, size_t payloads_len,
                          const uint16_t *lengths, size_t count, const unsigned char *prefix,
                          size_t prefix_len, unsigned char *out, size_t out_len);

/* Check the relay message of each plaintext (kind < n_kinds, length <= 968, zero fill); writes
 * kinds[i] and lengths[i] for the k leading plaintexts that pass (cap >= n). Returns k. */
int64_t zm_scan_messages(const unsigned char *plains, size_t plains_len, unsigned n_kinds,
                         unsigned char *kinds, uint16_t *lengths, size_t cap);

/* RFC 6455 §5.3 masking (its own inverse): out[i] = in[i] ^ key[i % 4] for n bytes (out may be
 * in). Returns n. For the cell link's WebSocket frames, not for cells. */
int64_t zm_ws_mask(const unsigned char *in, size_t n, const unsigned char *key, size_t key_len,
                   unsigned char *out, size_t out_len);
/* CDEF-END */

#endif
