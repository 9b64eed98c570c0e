/* Batch kernels for the onion data path on OpenSSL 3 libcrypto EVP AEADs.
 *
 * Layered AEAD of docs/wire/cells.md section 5 (ChaCha20-Poly1305 per RFC 8439 section 2.8,
 * AES-256-GCM per NIST SP 800-38D), for a run of cells of one circuit and direction. These are
 * the same OpenSSL AEAD implementations the `cryptography` package wraps; what this file saves
 * is the per-call overhead around them: a key object keeps one encrypt and one decrypt
 * EVP_CIPHER_CTX with the key schedule done once, and each cell only re-initialises the
 * context with its 12-byte nonce. The pure-Python twin in cells.py is the specification.
 *
 * Rules kept throughout: every length is checked before any memory is touched; no heap
 * allocation per cell (scratch lives on the stack); tags are compared by OpenSSL's
 * EVP_DecryptFinal_ex (constant time); a cell that fails verification leaves no plaintext in
 * the output, and scratch plaintext is cleansed before returning.
 */
#include "cell_kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "cell_kernels.c needs OpenSSL 3 libcrypto"
#endif

enum {
    CELL = ZM_CELL_SIZE,
    HDR = ZM_CELL_HEADER_SIZE,
    TAG = ZM_CELL_TAG_SIZE,
    PLAIN = ZM_CELL_PLAIN_SIZE,
    BODY = PLAIN + TAG, /* 1019: ciphertext || tag */
    DROP = HDR + TAG,   /* backward: header plus the 16 bytes a hop drops */
    NONCE = 12,
    MSG = ZM_CELL_MESSAGE_OFFSET,
    MAX_PAYLOAD = ZM_CELL_MAX_PAYLOAD,
};

/* Checked once at compile time: the layout constants agree with each other. */
_Static_assert(HDR + BODY == CELL, "cell = header + body");
_Static_assert(MSG + 3 + MAX_PAYLOAD == PLAIN, "plaintext = offset + message header + payload");

struct zm_cell_key {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    atomic_flag busy;
};

static const unsigned char ZEROS[2 * TAG];

const char *zm_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

zm_cell_key *zm_key_new(int aead, const unsigned char *key, size_t key_len)
{
    const EVP_CIPHER *cipher;
    zm_cell_key *k;

    if (key == NULL || key_len != 32)
        return NULL;
    if (aead == ZM_CELL_AEAD_CHACHA20_POLY1305)
        cipher = EVP_chacha20_poly1305();
    else if (aead == ZM_CELL_AEAD_AES_256_GCM)
        cipher = EVP_aes_256_gcm();
    else
        return NULL;
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    atomic_flag_clear(&k->busy);
    k->enc = EVP_CIPHER_CTX_new();
    k->dec = EVP_CIPHER_CTX_new();
    /* Key only: the nonce arrives per cell. Both AEADs default to a 12-byte IV. */
    if (k->enc == NULL || k->dec == NULL
        || EVP_CipherInit_ex(k->enc, cipher, NULL, key, NULL, 1) != 1
        || EVP_CipherInit_ex(k->dec, cipher, NULL, key, NULL, 0) != 1
        || EVP_CIPHER_CTX_get_iv_length(k->enc) != NONCE) {
        ERR_clear_error();
        zm_key_free(k);
        return NULL;
    }
    return k;
}

void zm_key_free(zm_cell_key *key)
{
    if (key == NULL)
        return;
    EVP_CIPHER_CTX_free(key->enc); /* cleanses the key schedule */
    EVP_CIPHER_CTX_free(key->dec);
    free(key);
}

/* 0 if keys[i] is listed before position i too: a key listed twice is locked once. */
static int first_listing(zm_cell_key *const *keys, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (keys[j] == keys[i])
            return 0;
    return 1;
}

static void unlock_keys(zm_cell_key *const *keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (first_listing(keys, i))
            atomic_flag_clear_explicit(&keys[i]->busy, memory_order_release);
}

/* Try-lock up to three keys. 1 on success, 0 if another thread holds one of them (then none
 * is held). */
static int lock_keys(zm_cell_key *const *keys, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (first_listing(keys, i)
            && atomic_flag_test_and_set_explicit(&keys[i]->busy, memory_order_acquire)) {
            unlock_keys(keys, i);
            return 0;
        }
    }
    return 1;
}

/* 96-bit nonce: 32 zero bits || 64-bit big-endian cell counter (cells.md 5.3). */
static void make_nonce(unsigned char iv[NONCE], uint64_t counter)
{
    memset(iv, 0, 4);
    for (int b = 0; b < 8; b++)
        iv[4 + b] = (unsigned char)(counter >> (56 - 8 * b));
}

/* Run lengths: n whole items of `size` bytes, at least one; 0 when len does not fit. */
static size_t items(size_t len, size_t size)
{
    return len != 0 && len % size == 0 ? len / size : 0;
}

/* counter + n - 1 must not pass 2^64 - 1 (the twin's "counter <= 2^64 - n"). */
static int counter_fits(uint64_t counter, size_t n)
{
    return (uint64_t)(n - 1) <= UINT64_MAX - counter;
}

/* Open one 1019-byte body (ciphertext || tag) into 1003 bytes: 1 verified, 0 tag mismatch,
 * -1 any other EVP failure. out must not overlap in. */
static int open_body(EVP_CIPHER_CTX *ctx, const unsigned char *iv, const unsigned char *in,
                     unsigned char *out)
{
    int len = 0, fin = 0;

    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, 0) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, (void *)(in + PLAIN)) != 1
        || EVP_DecryptUpdate(ctx, out, &len, in, PLAIN) != 1 || len < 0 || len > PLAIN)
        return -1;
    if (EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1)
        return 0;
    return len + fin == PLAIN ? 1 : -1;
}

/* Seal 1003 bytes into a 1019-byte body. 1 on success, -1 on an EVP failure. */
static int seal_body(EVP_CIPHER_CTX *ctx, const unsigned char *iv, const unsigned char *in,
                     unsigned char *out)
{
    int len = 0, fin = 0;

    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, 1) != 1
        || EVP_EncryptUpdate(ctx, out, &len, in, PLAIN) != 1 || len < 0 || len > PLAIN
        || EVP_EncryptFinal_ex(ctx, out + len, &fin) != 1 || len + fin != PLAIN
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + PLAIN) != 1)
        return -1;
    return 1;
}

/* The first `len` (<= 32) bytes of the AEAD keystream for iv: the encryption of zeros. The
 * context is re-initialised by its next use, so no Final (and no tag) is needed here. */
static int keystream(EVP_CIPHER_CTX *ctx, const unsigned char *iv, unsigned char *out, int len)
{
    int got = 0;

    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, 1) != 1
        || EVP_EncryptUpdate(ctx, out, &got, ZEROS, len) != 1 || got != len)
        return -1;
    return 1;
}

/* Open every layer of a run of n cells with keys[0..hops): the innermost plaintext of cell i
 * goes to out + i * stride. Returns k (the verified prefix; cell k's output is cleansed),
 * ZM_CELL_EBUSY or ZM_CELL_EEVP. The callers have checked every length. */
static int64_t open_run(zm_cell_key *const *keys, size_t hops, uint64_t counter,
                        const unsigned char *cells, size_t n, unsigned char *out, size_t stride)
{
    /* Ping-pong scratch for the middle layers: 16 bytes put back, then the plaintext. */
    unsigned char scratch[2][BODY];
    unsigned char dropped[ZM_CELL_MAX_HOPS][TAG];
    unsigned char last[2 * TAG];
    unsigned char iv[NONCE];
    int64_t result;

    if (!lock_keys(keys, hops))
        return ZM_CELL_EBUSY;
    result = (int64_t)n;
    for (size_t i = 0; i < n && result == (int64_t)n; i++) {
        const unsigned char *in = cells + i * CELL + HDR;
        unsigned char *o = out + i * stride;
        int r = 1;

        make_nonce(iv, counter + i);
        /* dropped[j], j >= 1: the 16 bytes hop j-1 dropped from hop j's output, which are the
         * later hops' encryption of the exit's zero prefix (the twin's _dropped_prefixes). */
        if (hops == 2) {
            r = keystream(keys[1]->enc, iv, dropped[1], TAG);
        } else if (hops == 3) {
            r = keystream(keys[2]->enc, iv, last, 2 * TAG);
            if (r == 1)
                r = keystream(keys[1]->enc, iv, dropped[1], TAG);
            for (size_t b = 0; b < TAG; b++)
                dropped[1][b] ^= last[TAG + b];
            memcpy(dropped[2], last, TAG);
        }
        for (size_t j = 0; j < hops && r == 1; j++) {
            unsigned char *dst = j + 1 == hops ? o : scratch[j & 1] + TAG;

            r = open_body(keys[j]->dec, iv, in, dst);
            if (r == 1 && j + 1 < hops) {
                memcpy(scratch[j & 1], dropped[j + 1], TAG);
                in = scratch[j & 1];
            }
        }
        if (r != 1) {
            OPENSSL_cleanse(o, PLAIN); /* no unverified plaintext leaves */
            ERR_clear_error();
            result = r == 0 ? (int64_t)i : ZM_CELL_EEVP;
        }
    }
    unlock_keys(keys, hops);
    if (hops > 1) /* one hop opens straight into out and never touches the scratch */
        OPENSSL_cleanse(scratch, sizeof scratch);
    return result;
}

/* Seal a run of n plaintexts (PLAIN bytes each, plaintext i at in + i * stride): out cell i is
 * header || Seal(key, counter + i, plaintext i). Returns n, ZM_CELL_EBUSY or ZM_CELL_EEVP. The
 * callers have checked every length. */
static int64_t seal_run(zm_cell_key *key, uint64_t counter, const unsigned char *in,
                        size_t stride, size_t n, const unsigned char *header, unsigned char *out)
{
    unsigned char iv[NONCE];
    int64_t result;

    if (!lock_keys(&key, 1))
        return ZM_CELL_EBUSY;
    result = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        unsigned char *o = out + i * CELL;

        make_nonce(iv, counter + i);
        memcpy(o, header, HDR);
        if (seal_body(key->enc, iv, in + i * stride, o + HDR) != 1) {
            ERR_clear_error();
            result = ZM_CELL_EEVP;
            break;
        }
    }
    unlock_keys(&key, 1);
    return result;
}

int64_t zm_relay_forward(zm_cell_key *key, uint64_t counter, const unsigned char *cells,
                         size_t cells_len, const unsigned char *pads, size_t pads_len,
                         const unsigned char *header, size_t header_len, unsigned char *out,
                         size_t out_len)
{
    size_t n = items(cells_len, CELL);
    int64_t k;

    if (key == NULL || n == 0 || !counter_fits(counter, n) || pads_len != n * TAG
        || header_len != HDR || out_len != cells_len)
        return ZM_CELL_EARG;
    /* Each plaintext lands where it stays in the output cell, after header and pad. */
    k = open_run(&key, 1, counter, cells, n, out + DROP, CELL);
    for (int64_t i = 0; i < k; i++) {
        memcpy(out + i * CELL, header, HDR);
        memcpy(out + i * CELL + HDR, pads + i * TAG, TAG);
    }
    return k;
}

int64_t zm_relay_backward(zm_cell_key *key, uint64_t counter, const unsigned char *cells,
                          size_t cells_len, const unsigned char *header, size_t header_len,
                          unsigned char *out, size_t out_len)
{
    size_t n = items(cells_len, CELL);

    if (key == NULL || n == 0 || !counter_fits(counter, n) || header_len != HDR
        || out_len != cells_len)
        return ZM_CELL_EARG;
    /* The first 16 body bytes are the filler this hop drops (cells.md 5.6). */
    return seal_run(key, counter, cells + DROP, CELL, n, header, out);
}

int64_t zm_end_open(size_t hops, zm_cell_key *key0, zm_cell_key *key1, zm_cell_key *key2,
                    uint64_t counter, const unsigned char *cells, size_t cells_len,
                    unsigned char *out, size_t out_len)
{
    zm_cell_key *keys[ZM_CELL_MAX_HOPS] = {key0, key1, key2};
    size_t n = items(cells_len, CELL);

    if (hops < 1 || hops > ZM_CELL_MAX_HOPS || n == 0 || !counter_fits(counter, n)
        || n > SIZE_MAX / PLAIN || out_len != n * PLAIN)
        return ZM_CELL_EARG;
    for (size_t j = 0; j < hops; j++)
        if (keys[j] == NULL)
            return ZM_CELL_EARG;
    return open_run(keys, hops, counter, cells, n, out, PLAIN);
}

int64_t zm_end_seal(zm_cell_key *key, uint64_t counter, const unsigned char *plains,
                    size_t plains_len, const unsigned char *header, size_t header_len,
                    unsigned char *out, size_t out_len)
{
    size_t n = items(plains_len, PLAIN);

    if (key == NULL || n == 0 || !counter_fits(counter, n) || header_len != HDR
        || n > SIZE_MAX / CELL || out_len != n * CELL)
        return ZM_CELL_EARG;
    return seal_run(key, counter, plains, PLAIN, n, header, out);
}

/* Seal one forward cell for every hop into o (HDR + BODY bytes); scratch[0] gets the innermost
 * plaintext, and the layers ping-pong between the two scratch bodies until hop 0 seals into
 * o. pads[i] and filler point at this cell's share. 1 on success, -1 on an EVP failure. */
static int client_seal_cell(zm_cell_key *const *keys, size_t hops, const unsigned char *iv,
                            const unsigned char *const *pads, const unsigned char *filler,
                            const unsigned char *message, const unsigned char *header,
                            unsigned char scratch[2][BODY], unsigned char *ks, unsigned char *o)
{
    unsigned char *inner = scratch[0];
    size_t plen = 0, fill = MSG - TAG * (hops - 1);
    int r = 1;

    /* The ciphertext prefix hop i+1 receives is fixed by the pads of the hops before it:
     * prefix_{i+1} = pad_i || (prefix_i XOR keystream_i); the last hop's plaintext starts with
     * that prefix decrypted (the twin's loop, built in place at the front of inner). */
    for (size_t i = 0; i + 1 < hops && r == 1; i++) {
        if (plen) {
            r = keystream(keys[i]->enc, iv, ks, (int)plen);
            for (size_t b = 0; b < plen; b++)
                inner[b] ^= ks[b];
        }
        memmove(inner + TAG, inner, plen);
        memcpy(inner, pads[i], TAG);
        plen += TAG;
    }
    if (plen && r == 1) {
        r = keystream(keys[hops - 1]->enc, iv, ks, (int)plen);
        for (size_t b = 0; b < plen; b++)
            inner[b] ^= ks[b];
    }
    if (r != 1)
        return -1;
    if (fill)
        memcpy(inner + plen, filler, fill);
    memcpy(inner + MSG, message, PLAIN - MSG);
    memcpy(o, header, HDR);
    /* Hop i's plaintext is hop i+1's body minus the 16-byte pad hop i will put in front. */
    for (size_t i = hops; i-- > 0 && r == 1;) {
        const unsigned char *in = i + 1 == hops ? inner : scratch[(hops - 1 - i) & 1] + TAG;
        unsigned char *dst = i == 0 ? o + HDR : scratch[(hops - i) & 1];

        r = seal_body(keys[i]->enc, iv, in, dst);
    }
    return r;
}

int64_t zm_client_seal(size_t hops, zm_cell_key *key0, zm_cell_key *key1, zm_cell_key *key2,
                       uint64_t counter, const unsigned char *plains, size_t plains_len,
                       const unsigned char *pad0, size_t pad0_len, const unsigned char *pad1,
                       size_t pad1_len, const unsigned char *filler, size_t filler_len,
                       const unsigned char *header, size_t header_len, unsigned char *out,
                       size_t out_len)
{
    zm_cell_key *keys[ZM_CELL_MAX_HOPS] = {key0, key1, key2};
    const unsigned char *pad_runs[ZM_CELL_MAX_HOPS - 1] = {pad0, pad1};
    const size_t pad_lens[ZM_CELL_MAX_HOPS - 1] = {pad0_len, pad1_len};
    const unsigned char *pads[ZM_CELL_MAX_HOPS - 1];
    unsigned char scratch[2][BODY];
    unsigned char ks[2 * TAG];
    unsigned char iv[NONCE];
    size_t n = items(plains_len, PLAIN), fill;
    int64_t result;

    if (hops < 1 || hops > ZM_CELL_MAX_HOPS || n == 0 || !counter_fits(counter, n)
        || header_len != HDR || n > SIZE_MAX / CELL || out_len != n * CELL)
        return ZM_CELL_EARG;
    fill = MSG - TAG * (hops - 1);
    if ((fill && filler == NULL) || filler_len != n * fill)
        return ZM_CELL_EARG;
    for (size_t j = 0; j < hops; j++)
        if (keys[j] == NULL)
            return ZM_CELL_EARG;
    for (size_t i = 0; i + 1 < hops; i++)
        if (pad_runs[i] == NULL || pad_lens[i] != n * TAG)
            return ZM_CELL_EARG;
    if (!lock_keys(keys, hops))
        return ZM_CELL_EBUSY;
    result = (int64_t)n;
    for (size_t j = 0; j < n; j++) {
        /* fill == 0 (three hops): the filler may be empty, and NULL + 0 is not valid C. */
        const unsigned char *share = fill ? filler + j * fill : NULL;

        make_nonce(iv, counter + j);
        for (size_t i = 0; i + 1 < hops; i++)
            pads[i] = pad_runs[i] + j * TAG;
        if (client_seal_cell(keys, hops, iv, pads, share, plains + j * PLAIN + MSG, header,
                             scratch, ks, out + j * CELL)
            != 1) {
            ERR_clear_error();
            result = ZM_CELL_EEVP;
            break;
        }
    }
    unlock_keys(keys, hops);
    /* The scratch held plaintext; the keystream bytes are cleansed with it. */
    OPENSSL_cleanse(scratch, sizeof scratch);
    OPENSSL_cleanse(ks, sizeof ks);
    return result;
}

int64_t zm_frame_messages(unsigned kind, const unsigned char *payloads, size_t payloads_len,
                          const uint16_t *lengths, size_t count, const unsigned char *prefix,
                          size_t prefix_len, unsigned char *out, size_t out_len)
{
    size_t total = 0, pos = 0;

    if (kind > 0xFF || prefix_len != MSG || count == 0 || count > SIZE_MAX / PLAIN
        || out_len != count * PLAIN)
        return ZM_CELL_EARG;
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] > MAX_PAYLOAD)
            return ZM_CELL_EARG;
        total += lengths[i];
    }
    if (total != payloads_len)
        return ZM_CELL_EARG;
    for (size_t i = 0; i < count; i++) {
        unsigned char *o = out + i * PLAIN;
        size_t m = lengths[i];

        memcpy(o, prefix, MSG);
        o[MSG] = (unsigned char)kind;
        o[MSG + 1] = (unsigned char)(m >> 8);
        o[MSG + 2] = (unsigned char)m;
        if (m)
            memcpy(o + MSG + 3, payloads + pos, m);
        memset(o + MSG + 3 + m, 0, MAX_PAYLOAD - m);
        pos += m;
    }
    return (int64_t)count;
}

int64_t zm_scan_messages(const unsigned char *plains, size_t plains_len, unsigned n_kinds,
                         unsigned char *kinds, uint16_t *lengths, size_t cap)
{
    size_t n = items(plains_len, PLAIN);

    if (n == 0 || cap < n || n_kinds > 256)
        return ZM_CELL_EARG;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = plains + i * PLAIN + MSG;
        unsigned kind = p[0];
        size_t m = (size_t)p[1] << 8 | p[2];
        unsigned char fill = 0;

        if (kind >= n_kinds || m > MAX_PAYLOAD)
            return (int64_t)i;
        for (size_t b = 3 + m; b < PLAIN - MSG; b++)
            fill |= p[b];
        if (fill)
            return (int64_t)i;
        kinds[i] = (unsigned char)kind;
        lengths[i] = (uint16_t)m;
    }
    return (int64_t)n;
}

int64_t zm_ws_mask(const unsigned char *in, size_t n, const unsigned char *key, size_t key_len,
                   unsigned char *out, size_t out_len)
{
    uint32_t k32;
    uint64_t k64;
    size_t i = 0;

    if (key_len != 4 || out_len < n || (n && (in == NULL || out == NULL)))
        return ZM_CELL_EARG;
    /* Eight bytes at a time with the key repeated (memcpy: no alignment assumptions); the
     * compiler vectorises the loop further. */
    memcpy(&k32, key, 4);
    k64 = (uint64_t)k32 | (uint64_t)k32 << 32;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
        w ^= k64;
        memcpy(out + i, &w, 8);
    }
    for (; i < n; i++)
        out[i] = in[i] ^ key[i & 3];
    return (int64_t)n;
}
