/*
 * crypto.h — the only door to OpenSSL (implemented in crypto.c, the only file
 * that includes OpenSSL headers). Pure C: no fmgr, no palloc, no ereport, so
 * unit tests and fuzz targets call it outside a backend. Functions return an
 * M365CryptoStatus; keyring.c turns a status into an ereport.
 */
#ifndef M365SYNC_CRYPTO_H
#define M365SYNC_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

typedef enum M365CryptoStatus
{
	M365_CRYPTO_OK = 0,
	M365_CRYPTO_BAD_INPUT,		/* malformed envelope, wrong length, bad hex */
	M365_CRYPTO_AUTH_FAILED,	/* tag mismatch: tampered, moved or wrong key */
	M365_CRYPTO_UNKNOWN_KEY,	/* envelope names a key we do not hold */
	M365_CRYPTO_INTERNAL		/* OpenSSL failed (out of memory, RNG) */
} M365CryptoStatus;

#define M365_KEY_BYTES		32	/* AES-256 */
#define M365_NONCE_BYTES	12	/* 96-bit GCM nonce */
#define M365_TAG_BYTES		16

/* Random bytes from OpenSSL's CSPRNG (RAND_bytes). */
extern M365CryptoStatus m365_random_bytes(uint8_t *out, size_t len);

/* SHA-256 of data into out[32]. */
extern M365CryptoStatus m365_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

/* HMAC-SHA256 (RFC 2104) of data under key into out[32]. */
extern M365CryptoStatus m365_hmac_sha256(const uint8_t *key, size_t keylen,
										 const uint8_t *data, size_t len, uint8_t out[32]);

/*
 * An HMAC-SHA256 key set up once, for keys that hash again and again (the
 * keyring's keyed hashes): each value then costs no key set-up and no
 * algorithm fetch. m365_hmac_key_free cleanses and frees it. The result is
 * the same as m365_hmac_sha256's under that key.
 */
typedef struct M365HmacKey M365HmacKey;

extern M365HmacKey *m365_hmac_key_new(const uint8_t *key, size_t keylen);	/* NULL on failure */
extern void m365_hmac_key_free(M365HmacKey *key);
extern M365CryptoStatus m365_hmac_key_mac(M365HmacKey *key, const uint8_t *data, size_t len,
										  uint8_t out[32]);

/*
 * base64url without padding (RFC 4648 §5), as PKCE and JWT use. out must hold
 * m365_base64url_len(len) + 1 bytes; the result is NUL-terminated.
 */
extern size_t m365_base64url_len(size_t len);
extern M365CryptoStatus m365_base64url_encode(const uint8_t *data, size_t len, char *out);

/* Constant-time comparison. */
extern int	m365_secure_equal(const void *a, const void *b, size_t len);

/* Wipe secrets (OPENSSL_cleanse). */
extern void m365_secure_zero(void *p, size_t len);

/*
 * AES-256-GCM with a fresh random 96-bit nonce from RAND_bytes. The sealed
 * form is nonce || ciphertext || tag, len + M365_GCM_OVERHEAD bytes; aad is
 * authenticated but not stored. One EVP context per direction is created on
 * first use and reused for the life of the process (m365_crypto_release
 * frees them).
 */
#define M365_GCM_OVERHEAD	(M365_NONCE_BYTES + M365_TAG_BYTES)

extern M365CryptoStatus m365_gcm_seal(const uint8_t key[M365_KEY_BYTES],
									  const uint8_t *aad, size_t aad_len,
									  const uint8_t *plain, size_t len,
									  uint8_t *out);

/* As m365_gcm_seal with a caller-chosen nonce: known-answer tests only. */
extern M365CryptoStatus m365_gcm_seal_nonce(const uint8_t key[M365_KEY_BYTES],
											const uint8_t nonce[M365_NONCE_BYTES],
											const uint8_t *aad, size_t aad_len,
											const uint8_t *plain, size_t len,
											uint8_t *out);

/*
 * Open a sealed value into out (sealed_len - M365_GCM_OVERHEAD bytes).
 * AUTH_FAILED when the tag does not match (tampered, other aad, other key);
 * out is wiped then. BAD_INPUT when sealed_len is shorter than the overhead.
 */
extern M365CryptoStatus m365_gcm_open(const uint8_t key[M365_KEY_BYTES],
									  const uint8_t *aad, size_t aad_len,
									  const uint8_t *sealed, size_t sealed_len,
									  uint8_t *out);

/*
 * A key with its own pair of keyed EVP contexts, for keys used again and
 * again (the keyring's cached data keys): each value then costs one nonce
 * set-up instead of a key schedule. m365_gcm_key_free cleanses and frees it.
 */
typedef struct M365GcmKey M365GcmKey;

extern M365GcmKey *m365_gcm_key_new(const uint8_t key[M365_KEY_BYTES]);	/* NULL on failure */
extern void m365_gcm_key_free(M365GcmKey *key);
extern M365CryptoStatus m365_gcm_key_seal(M365GcmKey *key,
										  const uint8_t *aad, size_t aad_len,
										  const uint8_t *plain, size_t len,
										  uint8_t *out);
extern M365CryptoStatus m365_gcm_key_open(M365GcmKey *key,
										  const uint8_t *aad, size_t aad_len,
										  const uint8_t *sealed, size_t sealed_len,
										  uint8_t *out);

/*
 * Data key wrapping under a master key: AES-256-GCM as above, prefixed by a
 * format byte (M365_WRAP_VERSION). GCM rather than AES key wrap (RFC 5649)
 * because it takes associated data: the caller binds the wrapped key to its
 * account and master key id, so a wrapped key copied to another account
 * does not unwrap. Wraps are few (one per account per rotation), far below
 * the 2^32 random nonces per key that GCM allows.
 */
#define M365_WRAP_VERSION		1
#define M365_WRAPPED_KEY_BYTES	(1 + M365_GCM_OVERHEAD + M365_KEY_BYTES)

extern M365CryptoStatus m365_wrap_key(const uint8_t master[M365_KEY_BYTES],
									  const uint8_t *aad, size_t aad_len,
									  const uint8_t data_key[M365_KEY_BYTES],
									  uint8_t out[M365_WRAPPED_KEY_BYTES]);
extern M365CryptoStatus m365_unwrap_key(const uint8_t master[M365_KEY_BYTES],
										const uint8_t *aad, size_t aad_len,
										const uint8_t *wrapped, size_t wrapped_len,
										uint8_t data_key[M365_KEY_BYTES]);

/* Free the reused EVP contexts (backend exit); they are made again on use. */
extern void m365_crypto_release(void);

/* A short, secret-free description of a status for messages. */
extern const char *m365_crypto_status_text(M365CryptoStatus status);

#endif							/* M365SYNC_CRYPTO_H */
