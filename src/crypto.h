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

#endif							/* M365SYNC_CRYPTO_H */
