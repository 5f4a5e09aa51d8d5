/*
 * crypto.c — the only file that includes OpenSSL: random bytes, SHA-256,
 * base64url, constant-time compare, wiping, AES-256-GCM seal/open and the
 * wrapping of data keys under a master key.
 *
 * Pure C (no postgres.h, no palloc, no ereport) so unit tests and fuzz
 * targets link it outside a backend. Every function returns a status; the
 * caller decides what an error means. It never logs and never keeps a key:
 * the two reused EVP contexts hold the last key schedule only until the next
 * call or m365_crypto_release (EVP_CIPHER_CTX_free cleanses them).
 */
#include "crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* EVP takes int lengths; feed big values in slices well below INT_MAX. */
#define EVP_SLICE	(1 << 30)

static EVP_CIPHER *aes_gcm = NULL;
static EVP_MAC *hmac = NULL;	/* fetched once for the keyed HMACs */
static EVP_CIPHER_CTX *seal_ctx = NULL;
static EVP_CIPHER_CTX *open_ctx = NULL;

struct M365GcmKey
{
	EVP_CIPHER_CTX *seal;
	EVP_CIPHER_CTX *open;
};

/*
 * Nonces come from a pool filled by one RAND_bytes call: RAND_bytes costs
 * microseconds per call in OpenSSL 3, more than sealing a 1 kB value. The
 * pool belongs to one process: a fork child empties it (pthread_atfork,
 * not a getpid() per call, which is a slow system call in a VM), so parent
 * and child never hand out the same nonces. Nonces are not secret, so the
 * pool needs no wiping.
 */
#define NONCE_POOL_BYTES (256 * M365_NONCE_BYTES)
static uint8_t nonce_pool[NONCE_POOL_BYTES];
static size_t nonce_pos = NONCE_POOL_BYTES;
static int	nonce_atfork = 0;

static void
empty_nonce_pool(void)
{
	nonce_pos = NONCE_POOL_BYTES;
}

static M365CryptoStatus
fresh_nonce(uint8_t nonce[M365_NONCE_BYTES])
{
	if (!nonce_atfork)
	{
		if (pthread_atfork(NULL, NULL, empty_nonce_pool) != 0)
			return M365_CRYPTO_INTERNAL;
		nonce_atfork = 1;
	}
	if (nonce_pos + M365_NONCE_BYTES > NONCE_POOL_BYTES)
	{
		if (RAND_bytes(nonce_pool, NONCE_POOL_BYTES) != 1)
			return M365_CRYPTO_INTERNAL;
		nonce_pos = 0;
	}
	memcpy(nonce, nonce_pool + nonce_pos, M365_NONCE_BYTES);
	nonce_pos += M365_NONCE_BYTES;
	return M365_CRYPTO_OK;
}

/*
 * Fetch the cipher once and bind it to a context once: later calls only set
 * key and nonce, which skips the provider lookup that dominates small values.
 */
static EVP_CIPHER_CTX *
gcm_context(int encrypt)
{
	EVP_CIPHER_CTX **slot = encrypt ? &seal_ctx : &open_ctx;

	if (aes_gcm == NULL)
	{
		aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
		if (aes_gcm == NULL)
			return NULL;
	}
	if (*slot == NULL)
	{
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

		if (ctx == NULL)
			return NULL;
		if (EVP_CipherInit_ex2(ctx, aes_gcm, NULL, NULL, encrypt, NULL) != 1)
		{
			EVP_CIPHER_CTX_free(ctx);
			return NULL;
		}
		*slot = ctx;
	}
	return *slot;
}

void
m365_crypto_release(void)
{
	EVP_CIPHER_CTX_free(seal_ctx);
	EVP_CIPHER_CTX_free(open_ctx);
	EVP_CIPHER_free(aes_gcm);
	EVP_MAC_free(hmac);
	seal_ctx = open_ctx = NULL;
	aes_gcm = NULL;
	hmac = NULL;
}

const char *
m365_crypto_status_text(M365CryptoStatus status)
{
	switch (status)
	{
		case M365_CRYPTO_OK:
			return "ok";
		case M365_CRYPTO_BAD_INPUT:
			return "malformed input";
		case M365_CRYPTO_AUTH_FAILED:
			return "authentication failed";
		case M365_CRYPTO_UNKNOWN_KEY:
			return "unknown key";
		case M365_CRYPTO_INTERNAL:
			return "OpenSSL failure";
	}
	return "unknown status";
}

M365CryptoStatus
m365_random_bytes(uint8_t *out, size_t len)
{
	while (len > 0)
	{
		int			n = len > EVP_SLICE ? EVP_SLICE : (int) len;

		if (RAND_bytes(out, n) != 1)
			return M365_CRYPTO_INTERNAL;
		out += n;
		len -= n;
	}
	return M365_CRYPTO_OK;
}

M365CryptoStatus
m365_sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != 32)
		return M365_CRYPTO_INTERNAL;
	return M365_CRYPTO_OK;
}

M365CryptoStatus
m365_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned int outlen = 0;

	if (keylen > INT_MAX)
		return M365_CRYPTO_BAD_INPUT;
	if (HMAC(EVP_sha256(), key, (int) keylen, data, len, out, &outlen) == NULL || outlen != 32)
		return M365_CRYPTO_INTERNAL;
	return M365_CRYPTO_OK;
}

struct M365HmacKey
{
	EVP_MAC_CTX *ctx;			/* keyed: each value re-initialises it with the key it holds */
};

M365HmacKey *
m365_hmac_key_new(const uint8_t *key, size_t keylen)
{
	M365HmacKey *k;
	OSSL_PARAM	params[2];

	if (hmac == NULL && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return NULL;
	k = OPENSSL_zalloc(sizeof(M365HmacKey));
	if (k == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	k->ctx = EVP_MAC_CTX_new(hmac);
	if (k->ctx == NULL || EVP_MAC_init(k->ctx, key, keylen, params) != 1)
	{
		m365_hmac_key_free(k);
		return NULL;
	}
	return k;
}

void
m365_hmac_key_free(M365HmacKey *key)
{
	if (key == NULL)
		return;
	EVP_MAC_CTX_free(key->ctx);	/* cleanses the key it holds */
	OPENSSL_clear_free(key, sizeof(*key));
}

M365CryptoStatus
m365_hmac_key_mac(M365HmacKey *key, const uint8_t *data, size_t len, uint8_t out[32])
{
	size_t		outlen = 0;

	if (key == NULL || key->ctx == NULL)
		return M365_CRYPTO_INTERNAL;
	/* a NULL key keeps the one set at m365_hmac_key_new */
	if (EVP_MAC_init(key->ctx, NULL, 0, NULL) != 1)
		return M365_CRYPTO_INTERNAL;
	while (len > 0)
	{
		size_t		n = len > EVP_SLICE ? EVP_SLICE : len;

		if (EVP_MAC_update(key->ctx, data, n) != 1)
			return M365_CRYPTO_INTERNAL;
		data += n;
		len -= n;
	}
	if (EVP_MAC_final(key->ctx, out, &outlen, 32) != 1 || outlen != 32)
		return M365_CRYPTO_INTERNAL;
	return M365_CRYPTO_OK;
}

size_t
m365_base64url_len(size_t len)
{
	return (len / 3) * 4 + ((len % 3) ? (len % 3) + 1 : 0);
}

M365CryptoStatus
m365_base64url_encode(const uint8_t *data, size_t len, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		i;
	char	   *p = out;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32_t	v = ((uint32_t) data[i] << 16) | ((uint32_t) data[i + 1] << 8) | data[i + 2];

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
		*p++ = alphabet[v & 63];
	}
	if (len - i == 1)
	{
		uint32_t	v = (uint32_t) data[i] << 16;

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32_t	v = ((uint32_t) data[i] << 16) | ((uint32_t) data[i + 1] << 8);

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
	}
	*p = '\0';
	return M365_CRYPTO_OK;
}

int
m365_secure_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

void
m365_secure_zero(void *p, size_t len)
{
	if (p != NULL && len > 0)
		OPENSSL_cleanse(p, len);
}

/* Feed AAD (out == NULL) or data through the context in int-sized slices. */
static int
gcm_update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
	while (len > 0)
	{
		int			n = len > EVP_SLICE ? EVP_SLICE : (int) len;
		int			outl = 0;

		if (EVP_CipherUpdate(ctx, out, &outl, in, n) != 1)
			return 0;
		if (out != NULL)
		{
			if (outl != n)
				return 0;
			out += n;
		}
		in += n;
		len -= n;
	}
	return 1;
}

/* Seal with a context already holding the key (key NULL) or not (key given). */
static M365CryptoStatus
seal_ctx_with(EVP_CIPHER_CTX *ctx, const uint8_t *key,
			  const uint8_t nonce[M365_NONCE_BYTES],
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *plain, size_t len, uint8_t *out)
{
	uint8_t    *ct = out + M365_NONCE_BYTES;
	int			outl = 0;

	if (ctx == NULL)
		return M365_CRYPTO_INTERNAL;
	if (len > SIZE_MAX - M365_GCM_OVERHEAD)
		return M365_CRYPTO_BAD_INPUT;
	memmove(out, nonce, M365_NONCE_BYTES);
	if (EVP_CipherInit_ex2(ctx, NULL, key, out, 1, NULL) != 1)
		return M365_CRYPTO_INTERNAL;
	if (aad_len > 0 && !gcm_update(ctx, NULL, aad, aad_len))
		return M365_CRYPTO_INTERNAL;
	if (!gcm_update(ctx, ct, plain, len))
		return M365_CRYPTO_INTERNAL;
	if (EVP_CipherFinal_ex(ctx, ct + len, &outl) != 1 || outl != 0)
		return M365_CRYPTO_INTERNAL;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, M365_TAG_BYTES, ct + len) != 1)
		return M365_CRYPTO_INTERNAL;
	return M365_CRYPTO_OK;
}

static M365CryptoStatus
open_ctx_with(EVP_CIPHER_CTX *ctx, const uint8_t *key,
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *sealed, size_t sealed_len, uint8_t *out)
{
	size_t		len;
	uint8_t		tag[M365_TAG_BYTES];
	int			outl = 0;

	if (sealed_len < M365_GCM_OVERHEAD)
		return M365_CRYPTO_BAD_INPUT;
	if (ctx == NULL)
		return M365_CRYPTO_INTERNAL;
	len = sealed_len - M365_GCM_OVERHEAD;
	/* EVP_CTRL_GCM_SET_TAG takes a non-const pointer: give it a copy. */
	memcpy(tag, sealed + M365_NONCE_BYTES + len, M365_TAG_BYTES);
	if (EVP_CipherInit_ex2(ctx, NULL, key, sealed, 0, NULL) != 1)
		return M365_CRYPTO_INTERNAL;
	if (aad_len > 0 && !gcm_update(ctx, NULL, aad, aad_len))
		return M365_CRYPTO_INTERNAL;
	if (!gcm_update(ctx, out, sealed + M365_NONCE_BYTES, len))
	{
		m365_secure_zero(out, len);
		return M365_CRYPTO_INTERNAL;
	}
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, M365_TAG_BYTES, tag) != 1)
	{
		m365_secure_zero(out, len);
		return M365_CRYPTO_INTERNAL;
	}
	if (EVP_CipherFinal_ex(ctx, out + len, &outl) != 1)
	{
		/* Never hand back unauthenticated plaintext. */
		m365_secure_zero(out, len);
		return M365_CRYPTO_AUTH_FAILED;
	}
	return M365_CRYPTO_OK;
}

M365CryptoStatus
m365_gcm_seal_nonce(const uint8_t key[M365_KEY_BYTES],
					const uint8_t nonce[M365_NONCE_BYTES],
					const uint8_t *aad, size_t aad_len,
					const uint8_t *plain, size_t len, uint8_t *out)
{
	return seal_ctx_with(gcm_context(1), key, nonce, aad, aad_len, plain, len, out);
}

M365CryptoStatus
m365_gcm_seal(const uint8_t key[M365_KEY_BYTES],
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *plain, size_t len, uint8_t *out)
{
	uint8_t		nonce[M365_NONCE_BYTES];
	M365CryptoStatus st;

	st = fresh_nonce(nonce);
	if (st != M365_CRYPTO_OK)
		return st;
	return seal_ctx_with(gcm_context(1), key, nonce, aad, aad_len, plain, len, out);
}

M365CryptoStatus
m365_gcm_open(const uint8_t key[M365_KEY_BYTES],
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *sealed, size_t sealed_len, uint8_t *out)
{
	return open_ctx_with(gcm_context(0), key, aad, aad_len, sealed, sealed_len, out);
}

M365GcmKey *
m365_gcm_key_new(const uint8_t key[M365_KEY_BYTES])
{
	M365GcmKey *k;

	if (gcm_context(1) == NULL)	/* fetches the cipher once */
		return NULL;
	k = OPENSSL_zalloc(sizeof(M365GcmKey));
	if (k == NULL)
		return NULL;
	k->seal = EVP_CIPHER_CTX_new();
	k->open = EVP_CIPHER_CTX_new();
	if (k->seal == NULL || k->open == NULL ||
		EVP_CipherInit_ex2(k->seal, aes_gcm, key, NULL, 1, NULL) != 1 ||
		EVP_CipherInit_ex2(k->open, aes_gcm, key, NULL, 0, NULL) != 1)
	{
		m365_gcm_key_free(k);
		return NULL;
	}
	return k;
}

void
m365_gcm_key_free(M365GcmKey *key)
{
	if (key == NULL)
		return;
	EVP_CIPHER_CTX_free(key->seal);	/* cleanses the key schedule */
	EVP_CIPHER_CTX_free(key->open);
	OPENSSL_clear_free(key, sizeof(*key));
}

M365CryptoStatus
m365_gcm_key_seal(M365GcmKey *key, const uint8_t *aad, size_t aad_len,
				  const uint8_t *plain, size_t len, uint8_t *out)
{
	uint8_t		nonce[M365_NONCE_BYTES];
	M365CryptoStatus st;

	st = fresh_nonce(nonce);
	if (st != M365_CRYPTO_OK)
		return st;
	return seal_ctx_with(key->seal, NULL, nonce, aad, aad_len, plain, len, out);
}

M365CryptoStatus
m365_gcm_key_open(M365GcmKey *key, const uint8_t *aad, size_t aad_len,
				  const uint8_t *sealed, size_t sealed_len, uint8_t *out)
{
	return open_ctx_with(key->open, NULL, aad, aad_len, sealed, sealed_len, out);
}

M365CryptoStatus
m365_wrap_key(const uint8_t master[M365_KEY_BYTES],
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t data_key[M365_KEY_BYTES],
			  uint8_t out[M365_WRAPPED_KEY_BYTES])
{
	out[0] = M365_WRAP_VERSION;
	return m365_gcm_seal(master, aad, aad_len, data_key, M365_KEY_BYTES, out + 1);
}

M365CryptoStatus
m365_unwrap_key(const uint8_t master[M365_KEY_BYTES],
				const uint8_t *aad, size_t aad_len,
				const uint8_t *wrapped, size_t wrapped_len,
				uint8_t data_key[M365_KEY_BYTES])
{
	if (wrapped_len != M365_WRAPPED_KEY_BYTES || wrapped[0] != M365_WRAP_VERSION)
		return M365_CRYPTO_BAD_INPUT;
	return m365_gcm_open(master, aad, aad_len, wrapped + 1, wrapped_len - 1, data_key);
}
